"""The job domain, shared by the API (``app``) and the workers (``workers``), framework-free: no
FastAPI, no Starlette, no queue library. What every job asks for (:mod:`~grace_jobs.requests`, with
the text rules of :mod:`~grace_jobs.sanitize`), the job kinds, each one module found through a
registry (:mod:`~grace_jobs.kinds`: its request, fan-out, units, assembly, stored and public
result), which models a job may load (:mod:`~grace_jobs.policy`), how it moves between states with
its claims and attempts (:mod:`~grace_jobs.lifecycle`), leaderboards, webhooks, and tenants with
their API keys.

It builds on the shared infrastructure of :mod:`grace_infra` (settings, the ORM), and never
imports the web layer.
"""
