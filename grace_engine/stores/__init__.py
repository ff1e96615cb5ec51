"""Content-addressed stores a job reads before computing and writes after: generated responses
(:mod:`~grace_engine.stores.response_store`) and projected gradients
(:mod:`~grace_engine.stores.gradient_store`). The workers keep theirs in the database.
"""
