"""The service's shared infrastructure, below both the web layer (``app``) and the workers
(``workers``), and imported by the job domain (``grace_jobs``): the one settings class
(:mod:`~grace_infra.settings`), the ORM models, sessions and migrations glue
(:mod:`~grace_infra.db`), and the queue (:mod:`~grace_infra.queue`). No web framework here, and
nothing of ``app``, ``workers`` or ``grace_jobs``.
"""
