"""One scoring job: prompts + candidate teachers -> responses -> student gradients -> scores -> ranking.

Stages, reported through ``progress(ProgressEvent)``: ``generate`` (per candidate, prompts done),
``gradients`` (per candidate, responses done), ``score``. ``should_cancel()`` is polled between
batches and stages; when it returns true the job stops with :class:`~grace_engine.errors.Cancelled`.
Every model reference is checked against the policy before anything is loaded, and one projection
is built for the whole call so that candidates' scores are comparable. Every stage sizes its batches
from one :class:`~grace_engine.memory.MemoryBudget`; a budget that cannot hold the student and the
job's longest example is refused before any generation or gradient work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from grace_engine import caveats
from grace_engine.adaptive import BudgetReport, RankingBudget, adaptive_evidence
from grace_engine.caveats import ResultWarning
from grace_engine.data import (
    Prompt,
    StudentExample,
    StudentFormat,
    ValidationExample,
    encode_for_student,
    pad_token_id,
    validate_prompts,
)
from grace_engine.errors import Cancelled, InvalidInput
from grace_engine.generation import (
    DEFAULT_INSTRUCTION,
    Candidate,
    Generated,
    GenerationSettings,
    Responses,
    TransformersBackend,
    VllmBackend,
    generated_from_json,
    generated_to_json,
    gpu_memory_short,
    provided_responses,
    response_key,
    select_backend,
    validate_candidates,
)
from grace_engine.gradients import (
    ForwardStatistics,
    GradientComputer,
    GradientSpace,
    PathKind,
    compute_gradients,
    make_gradient_computer,
)
from grace_engine.influence import DEFAULT_PROJ_DIM as DEFAULT_INFLUENCE_DIM
from grace_engine.influence import InfluenceResult, influence, influence_cost
from grace_engine.influence import Method as InfluenceMethod
from grace_engine.memory import BatchCost, MemoryBudget, grace_workers, resident_bytes
from grace_engine.mixture import MixedExample, route_by_grace, route_by_influence
from grace_engine.models import (
    LoadedModel,
    ModelCache,
    ModelPolicy,
    ModelSource,
    context_length,
    resolve_model,
)
from grace_engine.predictors import (
    PREDICTOR_NAMES,
    Evidence,
    GraceSettings,
    check_predictors,
    grace_of,
    needs_gradients,
    value,
)
from grace_engine.projection import ProjectionIdentity
from grace_engine.ranking import RankedCandidate, rank_candidates, spearman
from grace_engine.scores import (
    GraceResult,
    auto_proj_dim,
    log_length_factor,
    prompt_rows,
    response_correct,
)
from grace_engine.uncertainty import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    Uncertainty,
    bootstrap,
)

Stage = Literal["generate", "gradients", "score", "distil", "evaluate"]


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` units of ``stage`` finished for ``candidate`` (None: the whole job)."""

    stage: Stage
    done: int
    total: int
    candidate: str | None = None


@dataclass(frozen=True)
class ScoringConfig:
    """Settings of a scoring job; defaults follow the paper (m = 4, d = 512, 10 splits)."""

    responses_per_prompt: int = 4
    proj_dim: int | Literal["auto"] = "auto"  # auto: from the training rows per split (auto_proj_dim)
    n_splits: int = 10
    test_fraction: float = 0.1
    smoothing: float = 1e-3
    gradient_space: GradientSpace = field(default_factory=GradientSpace)
    path: PathKind = "fast"
    seed: int = 0
    factor_dim: int = 64
    length_factor: bool = False
    student_format: StudentFormat = field(default_factory=StudentFormat)
    instruction: str = DEFAULT_INSTRUCTION
    max_tokens_per_batch: int | None = None  # an extra cap on padded tokens; the memory budget sizes batches
    max_batch: int = 64
    generation_batch: int = 64  # sequences per generate() call at most; the memory budget may lower it
    generation_backend: str = "auto"
    release_below_gb: float = 8.0  # free GPU memory under which vLLM engines are dropped before gradients
    predictors: tuple[str, ...] = PREDICTOR_NAMES  # gradient ones need the backward pass
    budget: RankingBudget | None = None  # budget-aware ranking in rounds (grace_engine.adaptive)
    rank_by: str | None = None  # the predictor that orders the ranking; None: GRACE when computed
    bootstrap: int = DEFAULT_RESAMPLES  # resamples over prompts for P(top-1) and intervals; 0: none
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def ranking_score(self) -> str:
        """The predictor the ranking is ordered by."""
        if self.rank_by is not None:
            return self.rank_by
        return "grace" if "grace" in self.predictors else self.predictors[0]

    def resolved(self, n_prompts: int, candidates: Sequence[Candidate]) -> ScoringConfig:
        """This config with ``proj_dim`` fixed for ``n_prompts`` prompts and these candidates (the
        fewest responses per prompt of any candidate sets the rows)."""
        if self.proj_dim != "auto":
            return self
        return replace(self, proj_dim=self.auto_dim(n_prompts, candidates))

    def auto_dim(self, n_prompts: int, candidates: Sequence[Candidate]) -> int:
        """The ``auto`` rule's d for ``n_prompts`` prompts of these candidates (the fewest responses
        per prompt of any candidate sets the rows)."""
        m = (
            min((c.responses_per_prompt or self.responses_per_prompt) for c in candidates)
            if candidates
            else 1
        )
        return auto_proj_dim(n_prompts, m, self.test_fraction)

    @property
    def dim(self) -> int:
        """``proj_dim`` once resolved (:meth:`resolved`)."""
        if self.proj_dim == "auto":
            raise ValueError("proj_dim is still 'auto': resolve the config for the job first")
        return self.proj_dim

    @property
    def grace_settings(self) -> GraceSettings:
        return GraceSettings(self.n_splits, self.test_fraction, self.smoothing)

    def validate(self) -> None:
        if self.proj_dim != "auto" and (not isinstance(self.proj_dim, int) or self.proj_dim < 1):
            raise InvalidInput('must be "auto" or at least 1', field="proj_dim")
        for name in (
            "responses_per_prompt",
            "n_splits",
            "factor_dim",
            "max_batch",
            "generation_batch",
        ):
            if getattr(self, name) < 1:
                raise InvalidInput("must be at least 1", field=name)
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < 2:
            raise InvalidInput("must be at least 2", field="max_tokens_per_batch")
        if not 0.0 < self.test_fraction < 1.0:
            raise InvalidInput("must be strictly between 0 and 1", field="test_fraction")
        if not 0.0 <= self.smoothing <= 1.0:
            raise InvalidInput("must be between 0 and 1", field="smoothing")
        check_predictors(self.predictors, self.ranking_score)
        if self.seed < 0:
            raise InvalidInput("must be 0 or more (NumPy's generators take no negative seed)", field="seed")
        if self.bootstrap < 0:
            raise InvalidInput("must be 0 (off) or more", field="bootstrap")
        if not 0.0 < self.confidence < 1.0:
            raise InvalidInput("must be strictly between 0 and 1", field="confidence")
        if self.budget is not None:
            self.budget.validate()
            if self.bootstrap < 1:
                raise InvalidInput(
                    "a budget-aware ranking needs the bootstrap (at least 1)", field="bootstrap"
                )


class ResponseStore(Protocol):
    """Where generated responses are kept so a re-score never regenerates them."""

    def get(self, key: str) -> Generated | None: ...

    def put(self, key: str, generated: Generated) -> None: ...


class DirectoryResponseStore:
    """One JSON file per response key under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def get(self, key: str) -> Generated | None:
        try:
            text = (self.root / f"{key}.json").read_text("utf-8")
        except OSError:
            return None  # missing or unreadable (e.g. a crash mid-write elsewhere): regenerate
        return generated_from_json(text)

    def put(self, key: str, generated: Generated) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{key}.json.tmp"
        tmp.write_text(generated_to_json(generated), "utf-8")
        tmp.replace(self.root / f"{key}.json")


Origin = Literal["provided", "generated", "stored"]


@dataclass(frozen=True)
class CandidateResult:
    """Every score of one candidate and the responses they were computed from.

    Scores the job did not ask for (``predictors``) are None, as is ``accuracy`` without answers.
    ``p_top1`` and ``interval`` come from the bootstrap over prompts of the ranking's score (None
    without one). ``n_at_max_tokens`` counts generated responses that stopped at ``max_tokens``
    (None for supplied responses, where it is unknown); ``n_truncated`` counts examples cut at the
    student's ``max_length``.
    """

    name: str
    grace: GraceResult | None
    g_norm: float | None
    g_vendi: float | None
    student_nll: float | None
    rsr: float | None
    accuracy: float | None
    p_top1: float | None
    interval: tuple[float, float] | None
    responses_per_prompt: int
    n_responses: int
    n_truncated: int
    n_at_max_tokens: int | None
    max_tokens: int | None
    mean_response_tokens: float
    response_source: Origin
    responses: Responses = field(repr=False)

    def score(self, name: str) -> float | None:
        """Predictor ``name``'s value (see :mod:`~grace_engine.predictors`)."""
        if name == "grace":
            return None if self.grace is None else self.grace.score
        if name == "length":
            return self.mean_response_tokens
        if name == "teacher_accuracy":
            return self.accuracy
        value: float | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class RankingResult:
    """The outcome of :func:`rank_teachers`: ranking best-first plus each candidate's details, and
    the warnings that qualify them."""

    student: str
    ranking: list[RankedCandidate]
    candidates: dict[str, CandidateResult]
    config: ScoringConfig
    grad_dim: int
    n_prompts: int
    warnings: list[ResultWarning] = field(default_factory=list)
    memory_budget_gb: float | None = None
    uncertainty: Uncertainty | None = None
    projection: ProjectionIdentity | None = None
    auto_proj_dim: bool = False  # config.proj_dim was chosen by the auto rule
    budget: BudgetReport | None = None  # what a budget-aware ranking spent
    # The mixed-teacher dataset routed by per-prompt GRACE contributions (empty without gradients).
    mixed: list[MixedExample] = field(default_factory=list, repr=False)
    # Per-example rows every score was computed from (not serialised): re-scoring, studies.
    evidence: dict[str, Evidence] = field(default_factory=dict, repr=False, compare=False)

    @property
    def settled(self) -> bool | None:
        """Whether the bootstrap settles the leader (None without a bootstrap)."""
        return None if self.uncertainty is None else self.uncertainty.settled

    def ranking_rows(self) -> list[dict[str, Any]]:
        """The ranking best-first, one flat row per candidate with every predictor and its
        bootstrap ``p_top1`` and ``interval``."""
        rows = []
        for r in self.ranking:
            c = self.candidates[r.name]
            rows.append(
                {
                    **asdict(r),
                    "g_norm": c.g_norm,
                    "g_vendi": c.g_vendi,
                    "student_nll": c.student_nll,
                    "rsr": c.rsr,
                    "mean_response_tokens": c.mean_response_tokens,
                    "accuracy": c.accuracy,
                    "p_top1": c.p_top1,
                    "interval": None if c.interval is None else list(c.interval),
                }
            )
        return rows

    def to_dict(self, *, include_responses: bool = True) -> dict[str, Any]:
        """JSON-ready form (the CLI's ``--out`` and the API's result body)."""
        details = {}
        for name, c in self.candidates.items():
            item = asdict(c)
            if not include_responses:
                item.pop("responses")
            if c.grace is not None:
                item["grace"]["split_std"] = c.grace.split_std
            details[name] = item
        return {
            "student": self.student,
            "n_prompts": self.n_prompts,
            "grad_dim": self.grad_dim,
            "proj_dim": self.config.proj_dim,
            "auto_proj_dim": self.auto_proj_dim,
            "config": asdict(self.config),
            "memory_budget_gb": self.memory_budget_gb,
            "projection": None if self.projection is None else asdict(self.projection),
            "settled": self.settled,
            "budget": _budget_dict(self.budget),
            "mixed": [asdict(r) for r in self.mixed],
            "uncertainty": _uncertainty_dict(self.uncertainty),
            "ranking": [asdict(r) for r in self.ranking],
            "candidates": details,
            "warnings": [w.to_dict() for w in self.warnings],
        }


def _budget_dict(b: BudgetReport | None) -> dict[str, Any] | None:
    return None if b is None else {**asdict(b), "compute_fraction": b.compute_fraction}


def _uncertainty_dict(u: Uncertainty | None) -> dict[str, Any] | None:
    if u is None:
        return None
    item = asdict(u)
    item.pop("candidates")  # per candidate, p_top1 and interval sit with the candidate
    return item


ProgressFn = Callable[[ProgressEvent], None]


def _stage_progress(report: ProgressFn, stage: Stage, candidate: str) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        report(ProgressEvent(stage, done, total, candidate))

    return update


def _check_cancel(should_cancel: Callable[[], bool] | None) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled()


def student_examples(
    tokenizer: Any, prompts: Sequence[Prompt], responses: Responses, fmt: StudentFormat, index: int
) -> list[StudentExample]:
    """Candidate ``index``'s responses in the student's view, prompt by prompt."""
    examples = []
    for p, group in zip(prompts, responses, strict=True):
        for j, text in enumerate(group):
            field_name = f"candidates[{index}].responses[{p.id}][{j}]"
            examples.append(encode_for_student(tokenizer, p.prompt, text, fmt, field=field_name))
    return examples


class GenerationBackend(Protocol):
    """What :func:`collect_responses` needs from a teacher backend (transformers or vLLM)."""

    name: str

    def generate_from(
        self,
        location: str,
        prompts: Sequence[Prompt],
        settings: GenerationSettings,
        *,
        load: Callable[[], tuple[Any, Any]] | None = None,
        budget: MemoryBudget | None = None,
        resident_bytes: Callable[[], float] | None = None,
        progress: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        field: str = "max_tokens",
    ) -> Generated: ...

    def release(self) -> None: ...


def make_backend(cfg: ScoringConfig) -> GenerationBackend:
    """The backend ``cfg.generation_backend`` selects (``auto``: vLLM on a GPU when installed)."""
    if select_backend(cfg.generation_backend) == "vllm":
        return VllmBackend()
    return TransformersBackend(batch_size=cfg.generation_batch)


def release_if_short(backend: GenerationBackend, cfg: ScoringConfig) -> None:
    """Give the teachers' GPU memory back before the student's gradients when it is short."""
    if gpu_memory_short(cfg.release_below_gb * 2**30):
        backend.release()


def resolve_candidates(
    candidates: Sequence[Candidate], policy: ModelPolicy, base_dir: Path | None = None
) -> dict[int, ModelSource]:
    """Check every candidate model against the policy (before anything is loaded)."""
    validate_candidates(candidates)
    return {
        i: resolve_model(c.model, policy, field=f"candidates[{i}].model", base_dir=base_dir)
        for i, c in enumerate(candidates)
        if c.model is not None
    }


def collect_responses(
    prompts: Sequence[Prompt],
    candidates: Sequence[Candidate],
    sources: dict[int, ModelSource],
    cfg: ScoringConfig,
    *,
    cache: ModelCache,
    responses: ResponseStore | None,
    report: ProgressFn,
    should_cancel: Callable[[], bool] | None,
    backend: GenerationBackend | None = None,
    budget: MemoryBudget | None = None,
    also_resident: Sequence[Any] = (),
) -> tuple[list[Generated], list[Origin]]:
    """Every candidate's responses in prompt order: supplied, stored from an earlier run, or
    generated now (and stored) by ``backend`` (default: chosen by ``cfg.generation_backend``) in
    batches sized by ``budget``, counting the cache's models and ``also_resident`` as taken."""
    collected: list[Generated] = []
    origins: list[Origin] = []
    backend = backend or make_backend(cfg)
    for i, cand in enumerate(candidates):
        _check_cancel(should_cancel)
        m = cand.responses_per_prompt or cfg.responses_per_prompt
        if cand.responses is not None:
            texts = provided_responses(cand, prompts, m, index=i)
            collected.append(Generated(texts, [[False] * len(g) for g in texts]))
            origins.append("provided")
            report(ProgressEvent("generate", len(prompts), len(prompts), cand.name))
            continue
        settings = GenerationSettings(
            m, cand.temperature, cand.top_p, cand.max_tokens, cfg.seed, cfg.instruction
        )
        key = response_key(sources[i].location, settings, prompts, backend.name)
        stored = responses.get(key) if responses is not None else None
        if (
            stored is not None
            and len(stored.texts) == len(prompts)
            and all(len(g) == m for g in stored.texts)
        ):
            collected.append(stored)
            origins.append("stored")
            report(ProgressEvent("generate", len(prompts), len(prompts), cand.name))
            continue
        report(ProgressEvent("generate", 0, len(prompts), cand.name))

        def load(source: ModelSource = sources[i], field: str = f"candidates[{i}].model") -> tuple[Any, Any]:
            teacher = cache.get(source, field=field)
            return teacher.model, teacher.tokenizer

        generated = backend.generate_from(
            sources[i].location,
            prompts,
            settings,
            load=load,
            budget=budget,
            resident_bytes=lambda: resident_bytes([*cache.models(), *also_resident]),
            progress=_stage_progress(report, "generate", cand.name),
            should_cancel=should_cancel,
            field=f"candidates[{i}].max_tokens",
        )
        if responses is not None:
            responses.put(key, generated)
        collected.append(generated)
        origins.append("generated")
    return collected, origins


def _longest_example(
    tokenizer: Any,
    prompts: Sequence[Prompt],
    candidates: Sequence[Candidate],
    cfg: ScoringConfig,
    fmt: StudentFormat,
) -> int:
    """The most student tokens one example of this job can have, known before anything runs:
    supplied responses are measured, generated ones are taken at ``max_tokens`` (in the teacher's
    tokens, which is what the cap counts), both within the student's ``max_length``."""
    head = max(len(tokenizer(fmt.head(p.prompt), add_special_tokens=False)["input_ids"]) for p in prompts)
    longest = 2
    for i, cand in enumerate(candidates):
        if cand.responses is None:
            longest = max(longest, head + cand.max_tokens + 1)
        else:
            m = cand.responses_per_prompt or cfg.responses_per_prompt
            texts = provided_responses(cand, prompts, m, index=i)
            examples = student_examples(tokenizer, prompts, texts, fmt, i)
            longest = max(longest, *(len(e.input_ids) for e in examples))
    return longest if fmt.max_length is None else min(longest, fmt.max_length)


@dataclass
class _Job:
    """What every job starts with: checked inputs, the candidates' responses, the student."""

    cfg: ScoringConfig
    prompts: list[Prompt]
    generated: list[Generated]
    origins: list[Origin]
    student: LoadedModel
    fmt: StudentFormat
    budget: MemoryBudget
    cost: BatchCost  # of one gradient batch on the student, probed once per job
    cache: ModelCache
    report: ProgressFn

    def resident(self) -> float:
        # The student stays alive through this job even if the cache has evicted it for a teacher.
        return resident_bytes([*self.cache.models(), self.student.model])


def _prepare(
    prompts: Sequence[Prompt],
    candidates: Sequence[Candidate],
    student: str,
    *,
    policy: ModelPolicy,
    config: ScoringConfig | None,
    base_dir: Path | None,
    models: ModelCache | None,
    responses: ResponseStore | None,
    progress: ProgressFn | None,
    should_cancel: Callable[[], bool] | None,
    generator: GenerationBackend | None,
    budget: MemoryBudget | None,
    gradient_cost: Callable[[LoadedModel], BatchCost],
) -> _Job:
    """Check every input and model reference, check the memory budget against the job's longest
    possible example (``gradient_cost`` probes the student once), then collect the responses and
    load the student.

    The budget check needs the student loaded (its cost is probed); on a vLLM worker the student
    waits until the teachers are done and have released the GPU, so there it follows generation.
    """
    cfg = config or ScoringConfig()
    cfg.validate()
    checked = validate_prompts(prompts)
    sources = resolve_candidates(candidates, policy, base_dir)
    student_source = resolve_model(student, policy, field="student", base_dir=base_dir)
    cache = models or ModelCache(policy)
    budget = budget or MemoryBudget()
    report: ProgressFn = progress or (lambda _event: None)
    backend = generator or make_backend(cfg)

    def checked_student() -> tuple[LoadedModel, StudentFormat, BatchCost]:
        loaded = cache.get(student_source, field="student")
        fmt = cfg.student_format.within(context_length(loaded.model))
        longest = _longest_example(loaded.tokenizer, checked, candidates, cfg, fmt)
        cost = gradient_cost(loaded)
        budget.plan(resident_bytes(cache.models()), cost, stage="gradient").require(longest)
        return loaded, fmt, cost

    early = checked_student() if backend.name != "vllm" else None
    collected, origins = collect_responses(
        checked,
        candidates,
        sources,
        cfg,
        cache=cache,
        responses=responses,
        report=report,
        should_cancel=should_cancel,
        backend=backend,
        budget=budget,
        also_resident=[early[0].model] if early else [],
    )
    release_if_short(backend, cfg)
    loaded, fmt, cost = early or checked_student()
    return _Job(cfg, checked, collected, origins, loaded, fmt, budget, cost, cache, report)


def _job_warnings(
    prompts: Sequence[Prompt],
    candidates: Sequence[Candidate],
    cfg: ScoringConfig,
    results: dict[str, CandidateResult],
    fmt: StudentFormat,
    *,
    gradients: bool,
) -> list[ResultWarning]:
    m = min(r.responses_per_prompt for r in results.values())
    found = caveats.present(caveats.few_prompts(len(prompts)))
    if gradients:
        found += caveats.present(
            caveats.small_sample(n_prompts=len(prompts), test_fraction=cfg.test_fraction, m=m, d=cfg.dim)
        )
    for cand in candidates:
        r = results[cand.name]
        found += caveats.present(
            caveats.at_max_tokens(
                cand.name, n=r.n_at_max_tokens or 0, total=r.n_responses, max_tokens=cand.max_tokens
            ),
            caveats.cut_by_max_length(
                cand.name, n=r.n_truncated, total=r.n_responses, max_length=fmt.max_length
            ),
        )
    return found


def _predictor_warnings(
    score: str,
    top_pick: str,
    ranked: dict[str, float],
    values: dict[str, dict[str, float | None]],
    results: dict[str, CandidateResult],
) -> list[ResultWarning]:
    """What the other predictors say against the ranking: it follows length, or the most
    accurate candidate is not its top pick."""
    names = list(ranked)
    lengths = [results[c].mean_response_tokens for c in names]
    scores = [ranked[c] for c in names]
    distinct = len(set(lengths)) > 1 and len(set(scores)) > 1  # spearman of a constant is undefined
    rho = spearman(scores, lengths) if distinct else 0.0
    accuracy = {c: v.get("teacher_accuracy") for c, v in values.items()}
    known = {c: a for c, a in accuracy.items() if a is not None}
    return caveats.present(
        caveats.tracks_length(score=score, rho=rho, n_candidates=len(names)),
        caveats.accuracy_disagrees(
            score=score, top_pick=top_pick, accuracy=known if len(known) == len(accuracy) else {}
        ),
    )


def rank_teachers(
    prompts: Sequence[Prompt],
    candidates: Sequence[Candidate],
    student: str,
    *,
    policy: ModelPolicy,
    config: ScoringConfig | None = None,
    base_dir: Path | None = None,
    models: ModelCache | None = None,
    responses: ResponseStore | None = None,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
    generator: GenerationBackend | None = None,
    budget: MemoryBudget | None = None,
) -> RankingResult:
    """Score and rank ``candidates`` as teachers for ``student`` on ``prompts``.

    Args:
        prompts: at least 2, unique ids.
        candidates: unique names; each a model reference with sampling settings or supplied responses.
        student: model reference (directory under a policy root, or an allowed hub id).
        policy: where models may be loaded from; relative paths resolve against ``base_dir``.
        models: a cache shared across calls by long-lived workers (default: a fresh one).
        responses: store for generated responses, looked up before generating.
        generator: a long-lived teacher backend (a worker keeps one, so vLLM engines persist
            between jobs); default: the one ``config.generation_backend`` selects.
        budget: the peak memory every stage sizes its batches from (default:
            :func:`~grace_engine.memory.default_budget_gb`). Scores do not depend on it.
    """
    built: list[GradientComputer] = []
    given = config or ScoringConfig()
    given.validate()
    cfg = given.resolved(len(prompts), candidates)

    def probe(loaded: LoadedModel) -> BatchCost:
        # The job's one projection, built here for the probe and kept: candidates' scores must be
        # comparable, so every candidate goes through this same computer.
        built.append(
            make_gradient_computer(
                loaded.model,
                space=cfg.gradient_space,
                d=cfg.dim,
                seed=cfg.seed,
                path=cfg.path,
                factor_dim=cfg.factor_dim,
            )
            if needs_gradients(cfg.predictors)
            else ForwardStatistics(loaded.model)
        )
        return built[-1].cost()

    job = _prepare(
        prompts,
        candidates,
        student,
        policy=policy,
        config=cfg,
        base_dir=base_dir,
        models=models,
        responses=responses,
        progress=progress,
        should_cancel=should_cancel,
        generator=generator,
        budget=budget,
        gradient_cost=probe,
    )
    (computer,) = built
    collect = _Collector(job, candidates, computer, should_cancel)
    names = [c.name for c in candidates]
    adaptive = None
    if cfg.budget is None:
        everything = np.arange(len(job.prompts))
        evidence = {name: collect(name, everything) for name in names}
    else:
        score, settings = cfg.ranking_score, cfg.grace_settings

        def assess(active: dict[str, Evidence]) -> Uncertainty:
            point = {c: float(value(score, ev, settings) or 0.0) for c, ev in active.items()}
            return _bootstrap(cfg, active, point)

        # Projected once at the full run's d; each round, and the result, at its own prompts' d.
        def dim(n: int) -> int:
            return cfg.auto_dim(n, candidates)

        folds = given.proj_dim == "auto" and computer.d > 0
        evidence, last, spent = adaptive_evidence(
            names,
            len(job.prompts),
            {c: collect.m(c) for c in names},
            collect,
            assess,
            cfg.budget,
            dim=dim if folds else None,
        )
        if folds:
            final = dim(max(ev.n_prompts for ev in evidence.values()))
            evidence = {c: ev.folded(final) for c, ev in evidence.items()}
            job.cfg = replace(cfg, proj_dim=final)
        adaptive = (last, spent)
        for name in names:  # close the progress of candidates that stopped early
            job.report(ProgressEvent("gradients", collect.done[name], collect.done[name], name))
    _check_cancel(should_cancel)
    truncated = {name: collect.truncated(name) for name in names}
    return replace(
        _scored(job, candidates, evidence, truncated, computer, adaptive),
        auto_proj_dim=given.proj_dim == "auto",
    )


def _bootstrap(cfg: ScoringConfig, evidence: dict[str, Evidence], point: dict[str, float]) -> Uncertainty:
    """The job's bootstrap of its ranking score over prompts (its resamples, confidence and seed)."""
    return bootstrap(
        evidence,
        cfg.ranking_score,
        point,
        settings=cfg.grace_settings,
        n_resamples=cfg.bootstrap,
        confidence=cfg.confidence,
        seed=cfg.seed,
    )


class _Collector:
    """Computes one candidate's evidence on chosen prompts through the job's one computer, in
    batches the budget allows, reporting each candidate's gradients done so far."""

    def __init__(
        self,
        job: _Job,
        candidates: Sequence[Candidate],
        computer: GradientComputer,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        self.job, self.computer, self.should_cancel = job, computer, should_cancel
        tokenizer = job.student.tokenizer
        self.pad_id = pad_token_id(tokenizer)
        self.index = {c.name: i for i, c in enumerate(candidates)}
        self.encoded = [
            student_examples(tokenizer, job.prompts, g.texts, job.fmt, i) for i, g in enumerate(job.generated)
        ]
        self.plan = job.budget.plan(job.resident(), job.cost, stage="gradient")
        self.plan.require(max(len(e.input_ids) for examples in self.encoded for e in examples))
        self.done = {c.name: 0 for c in candidates}

    def m(self, name: str) -> int:
        return len(self.job.generated[self.index[name]].texts[0])

    def total(self, name: str) -> int:
        return len(self.encoded[self.index[name]])

    def truncated(self, name: str) -> int:
        return sum(e.truncated for e in self.encoded[self.index[name]])

    def __call__(self, name: str, prompts: npt.NDArray[np.int64]) -> Evidence:
        job, cfg, i = self.job, self.job.cfg, self.index[name]
        m, total, base = self.m(name), self.total(name), self.done[name]
        rows = prompt_rows(prompts, m)
        if base == 0:
            job.report(ProgressEvent("gradients", 0, total, name))
        grads = compute_gradients(
            job.student.model,
            self.computer,
            [self.encoded[i][r] for r in rows],
            pad_id=self.pad_id,
            plan=self.plan,
            max_tokens=cfg.max_tokens_per_batch,
            max_batch=cfg.max_batch,
            progress=lambda done, _total: job.report(ProgressEvent("gradients", base + done, total, name)),
            should_cancel=self.should_cancel,
        )
        self.done[name] += len(rows)
        g = grads.gradients.astype(np.float64)
        if cfg.length_factor:
            g *= log_length_factor(grads.n_tokens)[:, None]
        texts = job.generated[i].texts
        return Evidence(
            g,
            grads.losses,
            grads.n_tokens.astype(np.float64),
            grads.rank_sums,
            response_correct([texts[p] for p in prompts], [job.prompts[p].answer for p in prompts]),
            m,
            prompts,
        )


def _scored(
    job: _Job,
    candidates: Sequence[Candidate],
    evidence: dict[str, Evidence],
    truncated: dict[str, int],
    computer: GradientComputer,
    adaptive: tuple[Uncertainty, BudgetReport] | None = None,
) -> RankingResult:
    """Every requested predictor of every candidate, the ranking, its bootstrap and warnings."""
    cfg = job.cfg
    settings = cfg.grace_settings
    graces: dict[str, GraceResult] = {}
    values: dict[str, dict[str, float | None]] = {}
    for name, ev in evidence.items():
        if "grace" in cfg.predictors:
            workers = grace_workers(job.budget, job.resident(), ev.gradients.shape)
            graces[name] = grace_of(ev, settings, max_workers=workers)
        values[name] = {
            p: graces[name].score if p == "grace" else value(p, ev, settings) for p in cfg.predictors
        }
    score = cfg.ranking_score
    point = {name: v[score] for name, v in values.items()}
    missing = [name for name, v in point.items() if v is None]
    if missing:
        raise InvalidInput(
            f"cannot rank by {score}: it has no value for {missing[0]!r} (teacher_accuracy needs "
            "prompts with answers)",
            field="rank_by",
        )
    ranked_values = {name: float(v) for name, v in point.items() if v is not None}
    uncertainty = None
    if adaptive is not None:
        uncertainty = adaptive[0]
    elif cfg.bootstrap > 0:
        uncertainty = _bootstrap(cfg, evidence, ranked_values)
    results = {}
    for i, cand in enumerate(candidates):
        ev, v, generated = evidence[cand.name], values[cand.name], job.generated[i]
        # A candidate dropped by a budget-aware ranking is out of the last round's bootstrap.
        u = None if uncertainty is None else uncertainty.candidates.get(cand.name)
        examples = ev.losses.shape[0]
        results[cand.name] = CandidateResult(
            name=cand.name,
            grace=graces.get(cand.name),
            g_norm=v.get("g_norm"),
            g_vendi=v.get("g_vendi"),
            student_nll=v.get("student_nll"),
            rsr=v.get("rsr"),
            accuracy=v.get("teacher_accuracy"),
            p_top1=(0.0 if adaptive is not None else None) if u is None else u.p_top1,
            interval=None if u is None else u.interval,
            responses_per_prompt=ev.m,
            n_responses=examples,
            n_truncated=truncated[cand.name],
            n_at_max_tokens=None if job.origins[i] == "provided" else generated.n_at_cap,
            max_tokens=None if cand.model is None else cand.max_tokens,
            mean_response_tokens=float(np.mean(ev.n_tokens)),
            response_source=job.origins[i],
            responses=generated.texts,
        )
    ranking = _ranking(ranked_values, score, graces, None if adaptive is None else adaptive[1])
    job.report(ProgressEvent("score", len(candidates), len(candidates)))
    warnings = _job_warnings(job.prompts, candidates, cfg, results, job.fmt, gradients=computer.d > 0)
    warnings += _predictor_warnings(score, ranking[0].name, ranked_values, values, results)
    if uncertainty is not None and not uncertainty.settled and uncertainty.runner_up is not None:
        warnings.append(
            caveats.unsettled(
                score=score,
                leader=uncertainty.leader,
                runner_up=uncertainty.runner_up,
                p_top1=uncertainty.candidates[uncertainty.leader].p_top1,
                intervals=(
                    uncertainty.candidates[uncertainty.leader].interval,
                    uncertainty.candidates[uncertainty.runner_up].interval,
                ),
                n_prompts=uncertainty.n_prompts,
                prompts_needed=uncertainty.prompts_to_settle,
            )
        )
    return RankingResult(
        job.student.source.location,
        ranking,
        results,
        cfg,
        computer.grad_dim,
        len(job.prompts),
        warnings=warnings,
        memory_budget_gb=job.budget.gb,
        uncertainty=uncertainty,
        projection=_identity(computer, cfg.dim),
        evidence=evidence,
        budget=None if adaptive is None else adaptive[1],
        mixed=route_by_grace(
            evidence,
            job.prompts,
            {c.name: g.texts for c, g in zip(candidates, job.generated, strict=True)},
            smoothing=cfg.smoothing,
        )
        if computer.d > 0
        else [],
    )


def _identity(computer: GradientComputer, scored_dim: int) -> ProjectionIdentity | None:
    """The computer's projection, with the d its gradients were folded to when that differs."""
    identity = computer.identity()
    if identity is None or identity.d == scored_dim:
        return identity
    return replace(identity, folded_to=scored_dim)


def _ranking(
    values: dict[str, float], score: str, graces: dict[str, GraceResult], spent: BudgetReport | None
) -> list[RankedCandidate]:
    """Best first. After a budget-aware run the candidates still in the race come first; those
    dropped follow, the later a candidate left the better, and its value is on fewer prompts."""
    if spent is None or not spent.dropped:
        return rank_candidates(values, score, graces)
    stayed = rank_candidates({c: v for c, v in values.items() if c not in spent.dropped}, score, graces)
    by_round = sorted(set(spent.dropped.values()), reverse=True)
    for r in by_round:
        group = rank_candidates({c: values[c] for c, k in spent.dropped.items() if k == r}, score, graces)
        stayed += [
            replace(x, rank=len(stayed) + 1 + j, agreement_with_next=None) for j, x in enumerate(group)
        ]
    return stayed


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
    job = _prepare(
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
        progress=lambda done, total: job.report(ProgressEvent("gradients", done, total)),
        should_cancel=should_cancel,
    )
    job.report(ProgressEvent("score", 1, 1))
    texts = {c.name: g.texts for c, g in zip(candidates, job.generated, strict=True)}
    return replace(result, mixed=route_by_influence(result, job.prompts, texts))
