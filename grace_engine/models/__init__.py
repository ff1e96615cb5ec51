"""Models and data: loading models from allowed places (:mod:`~grace_engine.models.loading`),
teacher generation backends, prompt and response records and the student's view of them, padded
batches, the offline tiny models and the SmolLM2 conversion. Nothing here knows of a job.
"""
