"""An influence job: candidates' responses, then the influence of each on the student's loss on
a validation set (:func:`run_influence`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from grace_engine.config import ScoringConfig
from grace_engine.data import (
    Prompt,
    ValidationExample,
)
from grace_engine.generation import (
    Candidate,
)
from grace_engine.influence import DEFAULT_PROJ_DIM as DEFAULT_INFLUENCE_DIM
from grace_engine.influence import InfluenceResult, influence, influence_cost
from grace_engine.influence import Method as InfluenceMethod
from grace_engine.job import prepare_job
from grace_engine.memory import MemoryBudget
from grace_engine.mixture import route_by_influence
from grace_engine.models import (
    ModelCache,
    ModelPolicy,
)
from grace_engine.progress import ProgressEvent, ProgressFn
from grace_engine.responses import GenerationBackend, ResponseStore


def run_influence(
    prompts: Sequence[Prompt],
    candidates: Sequence[Candidate],
    student: str,
    validation: Sequence[ValidationExample],
    *,
    policy: ModelPolicy,
    method: InfluenceMethod = "projected",
    config: ScoringConfig | None = None,
    base_dir: Path | None = None,
    models: ModelCache | None = None,
    responses: ResponseStore | None = None,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
    generator: GenerationBackend | None = None,
    budget: MemoryBudget | None = None,
) -> InfluenceResult:
    """An influence job: candidates' responses (supplied, stored or generated), then the influence of
    each on the student's loss on ``validation``. ``config`` supplies m, d, the gradient space, the
    seed and the student format; GRACE-only settings are ignored (``proj_dim`` "auto" is
    :data:`~grace_engine.influence.DEFAULT_PROJ_DIM`: influence has no splits to size it by). Batches
    are sized by ``budget``."""
    cfg = config or ScoringConfig()
    dim = DEFAULT_INFLUENCE_DIM if cfg.proj_dim == "auto" else cfg.proj_dim
    job = prepare_job(
        prompts,
        candidates,
        student,
        policy=policy,
        config=config,
        base_dir=base_dir,
        models=models,
        responses=responses,
        progress=progress,
        should_cancel=should_cancel,
        generator=generator,
        budget=budget,
        gradient_cost=lambda loaded: influence_cost(
            loaded.model, method=method, space=cfg.gradient_space, proj_dim=dim, seed=cfg.seed
        ),
    )
    result = influence(
        job.student.model,
        job.student.tokenizer,
        job.prompts,
        {c.name: g.texts for c, g in zip(candidates, job.generated, strict=True)},
        validation,
        method=method,
        space=job.cfg.gradient_space,
        proj_dim=dim,
        seed=job.cfg.seed,
        fmt=job.fmt,
        budget=job.budget,
        resident=job.resident(),
        cost=job.cost,
        progress=job.report,
        should_cancel=should_cancel,
    )
    job.report(ProgressEvent("score", 1, 1))
    texts = {c.name: g.texts for c, g in zip(candidates, job.generated, strict=True)}
    return replace(result, mixed=route_by_influence(result, job.prompts, texts))
