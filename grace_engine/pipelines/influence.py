"""An influence job: candidates' responses, then the influence of each on the student's loss on
a reference set (:func:`run_influence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from grace_engine.errors import InvalidInput
from grace_engine.models.data import ReferenceExample
from grace_engine.models.loading import LoadedModel
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.prepare import FixedCost, prepare
from grace_engine.progress import ProgressEvent
from grace_engine.science.influence import DEFAULT_PROJ_DIM as DEFAULT_INFLUENCE_DIM
from grace_engine.science.influence import InfluenceResult, influence, influence_cost
from grace_engine.science.influence import Method as InfluenceMethod
from grace_engine.science.mixture import route_by_influence


@dataclass(frozen=True)
class InfluenceInputs(JobInputs):
    """A job's inputs and the reference set whose loss each response's influence is measured on."""

    reference: Sequence[ReferenceExample] = ()


@dataclass(frozen=True)
class InfluenceSpec:
    """How influence is computed: ``method``, and from ``scoring`` m, d, the gradient space, the
    seed and the student format (its GRACE-only settings are ignored; ``proj_dim`` "auto" is
    :data:`~grace_engine.science.influence.DEFAULT_PROJ_DIM`: influence has no splits to size it by)."""

    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    method: InfluenceMethod = "projected"


def run_influence(inputs: InfluenceInputs, spec: InfluenceSpec, ctx: EngineContext) -> InfluenceResult:
    """An influence job: candidates' responses (supplied, stored or generated), then the influence
    of each on the student's loss on ``inputs.reference``. Batches are sized by the context's budget."""
    if not inputs.reference:
        raise InvalidInput("needs at least one reference example", field="reference")
    cfg = spec.scoring.resolved(len(inputs.prompts), inputs.candidates, auto=DEFAULT_INFLUENCE_DIM)
    dim, method = cfg.dim, spec.method

    def probe(loaded: LoadedModel) -> FixedCost:
        cost = influence_cost(
            loaded.model, method=method, space=cfg.gradient_space, proj_dim=dim, seed=cfg.seed
        )
        return FixedCost(cost)

    job = prepare(inputs, cfg, ctx, probe)
    texts = {c.name: g.texts for c, g in zip(inputs.candidates, job.generated, strict=True)}
    result = influence(
        job.student.model,
        job.student.tokenizer,
        job.prompts,
        texts,
        inputs.reference,
        method=method,
        space=cfg.gradient_space,
        proj_dim=dim,
        seed=cfg.seed,
        fmt=job.fmt,
        budget=ctx.budget,
        resident=job.resident(),
        cost=job.cost,
        progress=ctx.progress,
        should_cancel=ctx.should_cancel,
    )
    job.report(ProgressEvent("score", 1, 1))
    return replace(result, mixed=route_by_influence(result, job.prompts, texts))
