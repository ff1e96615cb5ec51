"""The pipelines: one job each (scoring, influence, validation), built from the science on the
models and data, each an entry point taking ``(inputs, spec, ctx)``: what to score, how, and the
:class:`~grace_engine.pipelines.context.EngineContext` it runs in. Also what every job does first
(:mod:`~grace_engine.pipelines.prepare`), collecting responses, distillation, and the results.
"""
