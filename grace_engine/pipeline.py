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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from grace_engine import caveats
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
    GradientComputer,
    GradientSpace,
    PathKind,
    compute_gradients,
    make_gradient_computer,
)
from grace_engine.influence import InfluenceResult, influence, influence_cost
from grace_engine.influence import Method as InfluenceMethod
from grace_engine.memory import BatchCost, MemoryBudget, grace_workers, resident_bytes
from grace_engine.models import (
    LoadedModel,
    ModelCache,
    ModelPolicy,
    ModelSource,
    context_length,
    resolve_model,
)
from grace_engine.ranking import RankedCandidate, rank_by_grace
from grace_engine.scores import (
    GraceResult,
    g_norm,
    g_vendi,
    grace,
    log_length_factor,
    student_nll,
    teacher_accuracy,
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
    proj_dim: int = 512
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

    def validate(self) -> None:
        for name in (
            "responses_per_prompt",
            "proj_dim",
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

    ``n_at_max_tokens`` counts generated responses that stopped at ``max_tokens`` (None for
    supplied responses, where it is unknown); ``n_truncated`` counts examples cut at the
    student's ``max_length``.
    """

    name: str
    grace: GraceResult
    g_norm: float
    g_vendi: float
    student_nll: float
    accuracy: float | None
    responses_per_prompt: int
    n_responses: int
    n_truncated: int
    n_at_max_tokens: int | None
    max_tokens: int | None
    mean_response_tokens: float
    response_source: Origin
    responses: Responses = field(repr=False)


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

    def ranking_rows(self) -> list[dict[str, Any]]:
        """The ranking best-first, one flat row per candidate with its baselines."""
        rows = []
        for r in self.ranking:
            c = self.candidates[r.name]
            rows.append(
                {
                    **asdict(r),
                    "g_norm": c.g_norm,
                    "g_vendi": c.g_vendi,
                    "student_nll": c.student_nll,
                    "accuracy": c.accuracy,
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
            item["grace"]["split_std"] = c.grace.split_std
            details[name] = item
        return {
            "student": self.student,
            "n_prompts": self.n_prompts,
            "grad_dim": self.grad_dim,
            "config": asdict(self.config),
            "memory_budget_gb": self.memory_budget_gb,
            "ranking": [asdict(r) for r in self.ranking],
            "candidates": details,
            "warnings": [w.to_dict() for w in self.warnings],
        }


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
    head = max(
        len(tokenizer(fmt.template.format(prompt=p.prompt), add_special_tokens=False)["input_ids"])
        for p in prompts
    )
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
) -> list[ResultWarning]:
    m = min(r.responses_per_prompt for r in results.values())
    found = caveats.present(
        caveats.few_prompts(len(prompts)),
        caveats.small_sample(n_prompts=len(prompts), test_fraction=cfg.test_fraction, m=m, d=cfg.proj_dim),
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

    def probe(loaded: LoadedModel) -> BatchCost:
        # The job's one projection, built here for the probe and kept: candidates' scores must be
        # comparable, so every candidate goes through this same computer.
        cfg = config or ScoringConfig()
        built.append(
            make_gradient_computer(
                loaded.model,
                space=cfg.gradient_space,
                d=cfg.proj_dim,
                seed=cfg.seed,
                path=cfg.path,
                factor_dim=cfg.factor_dim,
            )
        )
        return built[-1].cost()

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
        gradient_cost=probe,
    )
    cfg, report = job.cfg, job.report
    tokenizer = job.student.tokenizer
    pad_id = pad_token_id(tokenizer)
    (computer,) = built
    encoded = [
        student_examples(tokenizer, job.prompts, g.texts, job.fmt, i) for i, g in enumerate(job.generated)
    ]
    plan = job.budget.plan(job.resident(), job.cost, stage="gradient")
    plan.require(max(len(e.input_ids) for examples in encoded for e in examples))
    results: dict[str, CandidateResult] = {}
    answers = [p.answer for p in job.prompts]
    for i, cand in enumerate(candidates):
        examples = encoded[i]
        report(ProgressEvent("gradients", 0, len(examples), cand.name))
        grads = compute_gradients(
            job.student.model,
            computer,
            examples,
            pad_id=pad_id,
            plan=plan,
            max_tokens=cfg.max_tokens_per_batch,
            max_batch=cfg.max_batch,
            progress=_stage_progress(report, "gradients", cand.name),
            should_cancel=should_cancel,
        )
        g = grads.gradients.astype(np.float64)
        if cfg.length_factor:
            g *= log_length_factor(grads.n_tokens)[:, None]
        generated = job.generated[i]
        m = len(generated.texts[0])
        results[cand.name] = CandidateResult(
            name=cand.name,
            grace=grace(
                g,
                m,
                n_splits=cfg.n_splits,
                test_fraction=cfg.test_fraction,
                smoothing=cfg.smoothing,
                max_workers=grace_workers(job.budget, job.resident(), g.shape),
            ),
            g_norm=g_norm(g),
            g_vendi=g_vendi(g),
            student_nll=student_nll(grads.losses, grads.n_tokens),
            accuracy=teacher_accuracy(generated.texts, answers),
            responses_per_prompt=m,
            n_responses=len(examples),
            n_truncated=sum(e.truncated for e in examples),
            n_at_max_tokens=None if job.origins[i] == "provided" else generated.n_at_cap,
            max_tokens=None if cand.model is None else cand.max_tokens,
            mean_response_tokens=float(np.mean(grads.n_tokens)),
            response_source=job.origins[i],
            responses=generated.texts,
        )
    _check_cancel(should_cancel)
    ranking = rank_by_grace({name: r.grace for name, r in results.items()})
    report(ProgressEvent("score", len(candidates), len(candidates)))
    return RankingResult(
        job.student.source.location,
        ranking,
        results,
        cfg,
        computer.grad_dim,
        len(job.prompts),
        warnings=_job_warnings(job.prompts, candidates, cfg, results, job.fmt),
        memory_budget_gb=job.budget.gb,
    )


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
    seed and the student format; GRACE-only settings are ignored. Batches are sized by ``budget``."""
    cfg = config or ScoringConfig()
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
            loaded.model, method=method, space=cfg.gradient_space, proj_dim=cfg.proj_dim, seed=cfg.seed
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
        proj_dim=job.cfg.proj_dim,
        seed=job.cfg.seed,
        fmt=job.fmt,
        budget=job.budget,
        resident=job.resident(),
        cost=job.cost,
        progress=lambda done, total: job.report(ProgressEvent("gradients", done, total)),
        should_cancel=should_cancel,
    )
    job.report(ProgressEvent("score", 1, 1))
    return result
