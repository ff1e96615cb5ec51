"""The job domain, shared by the API (``app``) and the workers (``workers``), framework-free: no
FastAPI, no Starlette, no queue library. What a job asks for (:mod:`~grace_jobs.requests`, with the
text rules of :mod:`~grace_jobs.sanitize`), which models it may load (:mod:`~grace_jobs.policy`),
how it moves between states with its claims and attempts (:mod:`~grace_jobs.lifecycle`), and how
its results are shaped for storage (:mod:`~grace_jobs.results`).

It builds on the shared infrastructure of :mod:`grace_infra` (settings, the ORM), and never
imports the web layer.
"""
