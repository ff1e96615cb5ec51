"""One scoring job: prompts + candidate teachers -> responses -> student gradients -> scores -> ranking.

Stages, reported through ``progress(ProgressEvent)``: ``generate`` (per candidate, prompts done),
``gradients`` (per candidate, responses done), ``score``. ``should_cancel()`` is polled between
batches and stages; when it returns true the job stops with :class:`~grace_engine.errors.Cancelled`.
Every model reference is checked against the policy before anything is loaded, and one projection
is built for the whole call so that candidates' scores are comparable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from grace_engine.data import (
    Prompt,
    StudentExample,
    StudentFormat,
    encode_for_student,
    pad_token_id,
    validate_prompts,
)
from grace_engine.errors import Cancelled, InvalidInput
from grace_engine.generation import (
    DEFAULT_INSTRUCTION,
    Candidate,
    GenerationSettings,
    Responses,
    TransformersBackend,
    VllmBackend,
    gpu_memory_short,
    provided_responses,
    response_key,
    select_backend,
    validate_candidates,
)
from grace_engine.gradients import GradientSpace, PathKind, compute_gradients, make_gradient_computer
from grace_engine.influence import InfluenceResult, ValidationExample, influence
from grace_engine.influence import Method as InfluenceMethod
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

Stage = Literal["generate", "gradients", "score"]


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
    max_tokens_per_batch: int = 16384
    max_batch: int = 64
    generation_batch: int = 16
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
        if self.max_tokens_per_batch < 2:
            raise InvalidInput("must be at least 2", field="max_tokens_per_batch")
        if not 0.0 < self.test_fraction < 1.0:
            raise InvalidInput("must be strictly between 0 and 1", field="test_fraction")
        if not 0.0 <= self.smoothing <= 1.0:
            raise InvalidInput("must be between 0 and 1", field="smoothing")


class ResponseStore(Protocol):
    """Where generated responses are kept so a re-score never regenerates them."""

    def get(self, key: str) -> Responses | None: ...

    def put(self, key: str, responses: Responses) -> None: ...


class DirectoryResponseStore:
    """One JSON file per response key under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def get(self, key: str) -> Responses | None:
        path = self.root / f"{key}.json"
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None  # missing or unreadable (e.g. a crash mid-write elsewhere): regenerate
        if not isinstance(data, list) or not all(isinstance(g, list) for g in data):
            return None
        return [[str(t) for t in group] for group in data]

    def put(self, key: str, responses: Responses) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{key}.json.tmp"
        tmp.write_text(json.dumps(responses, ensure_ascii=False), "utf-8")
        tmp.replace(self.root / f"{key}.json")


@dataclass(frozen=True)
class CandidateResult:
    """Every score of one candidate and the responses they were computed from."""

    name: str
    grace: GraceResult
    g_norm: float
    g_vendi: float
    student_nll: float
    accuracy: float | None
    responses_per_prompt: int
    n_responses: int
    n_truncated: int
    mean_response_tokens: float
    response_source: Origin
    responses: Responses = field(repr=False)


@dataclass(frozen=True)
class RankingResult:
    """The outcome of :func:`rank_teachers`: ranking best-first plus each candidate's details."""

    student: str
    ranking: list[RankedCandidate]
    candidates: dict[str, CandidateResult]
    config: ScoringConfig
    grad_dim: int
    n_prompts: int

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
        """JSON-ready form (the CLI's ``--out`` and later the API's result body)."""
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
            "ranking": [asdict(r) for r in self.ranking],
            "candidates": details,
        }


ProgressFn = Callable[[ProgressEvent], None]


def _stage_progress(report: ProgressFn, stage: Stage, candidate: str) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        report(ProgressEvent(stage, done, total, candidate))

    return update


def _check_cancel(should_cancel: Callable[[], bool] | None) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled()


def _student_examples(
    tokenizer: Any, prompts: Sequence[Prompt], responses: Responses, fmt: StudentFormat, index: int
) -> list[StudentExample]:
    examples = []
    for p, group in zip(prompts, responses, strict=True):
        for j, text in enumerate(group):
            field_name = f"candidates[{index}].responses[{p.id}][{j}]"
            examples.append(encode_for_student(tokenizer, p.prompt, text, fmt, field=field_name))
    return examples


Origin = Literal["provided", "generated", "stored"]


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
        progress: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        field: str = "max_tokens",
    ) -> Responses: ...

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
) -> tuple[list[Responses], list[Origin]]:
    """Every candidate's responses in prompt order: supplied, stored from an earlier run, or
    generated now (and stored) by ``backend`` (default: chosen by ``cfg.generation_backend``)."""
    all_responses: list[Responses] = []
    origins: list[Origin] = []
    backend = backend or make_backend(cfg)
    for i, cand in enumerate(candidates):
        _check_cancel(should_cancel)
        m = cand.responses_per_prompt or cfg.responses_per_prompt
        if cand.responses is not None:
            all_responses.append(provided_responses(cand, prompts, m, index=i))
            origins.append("provided")
            report(ProgressEvent("generate", len(prompts), len(prompts), cand.name))
            continue
        settings = GenerationSettings(
            m, cand.temperature, cand.top_p, cand.max_tokens, cfg.seed, cfg.instruction
        )
        key = response_key(sources[i].location, settings, prompts, backend.name)
        stored = responses.get(key) if responses is not None else None
        if stored is not None and len(stored) == len(prompts) and all(len(g) == m for g in stored):
            all_responses.append(stored)
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
            progress=_stage_progress(report, "generate", cand.name),
            should_cancel=should_cancel,
            field=f"candidates[{i}].max_tokens",
        )
        if responses is not None:
            responses.put(key, generated)
        all_responses.append(generated)
        origins.append("generated")
    return all_responses, origins


def _responses_and_student(
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
) -> tuple[ScoringConfig, list[Prompt], list[Responses], list[Origin], LoadedModel, ProgressFn]:
    """What every job starts with: checked inputs (every model against the policy before anything
    loads), the candidates' responses, and the student model."""
    cfg = config or ScoringConfig()
    cfg.validate()
    checked = validate_prompts(prompts)
    sources = resolve_candidates(candidates, policy, base_dir)
    student_source = resolve_model(student, policy, field="student", base_dir=base_dir)
    cache = models or ModelCache(policy)
    report: ProgressFn = progress or (lambda _event: None)
    # Generate everything first: on a GPU the teachers can then be released before the student runs.
    backend = generator or make_backend(cfg)
    all_responses, origins = collect_responses(
        checked,
        candidates,
        sources,
        cfg,
        cache=cache,
        responses=responses,
        report=report,
        should_cancel=should_cancel,
        backend=backend,
    )
    release_if_short(backend, cfg)
    return cfg, checked, all_responses, origins, cache.get(student_source, field="student"), report


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
    """
    cfg, prompts, all_responses, origins, student_model, report = _responses_and_student(
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
    )
    tokenizer = student_model.tokenizer
    pad_id = pad_token_id(tokenizer)
    computer = make_gradient_computer(
        student_model.model,
        space=cfg.gradient_space,
        d=cfg.proj_dim,
        seed=cfg.seed,
        path=cfg.path,
        factor_dim=cfg.factor_dim,
    )
    fmt = cfg.student_format.within(context_length(student_model.model))
    encoded = [_student_examples(tokenizer, prompts, resp, fmt, i) for i, resp in enumerate(all_responses)]
    results: dict[str, CandidateResult] = {}
    answers = [p.answer for p in prompts]
    for i, cand in enumerate(candidates):
        examples = encoded[i]
        report(ProgressEvent("gradients", 0, len(examples), cand.name))
        grads = compute_gradients(
            student_model.model,
            computer,
            examples,
            pad_id=pad_id,
            max_tokens=cfg.max_tokens_per_batch,
            max_batch=cfg.max_batch,
            progress=_stage_progress(report, "gradients", cand.name),
            should_cancel=should_cancel,
        )
        g = grads.gradients.astype(np.float64)
        if cfg.length_factor:
            g *= log_length_factor(grads.n_tokens)[:, None]
        m = len(all_responses[i][0])
        results[cand.name] = CandidateResult(
            name=cand.name,
            grace=grace(
                g, m, n_splits=cfg.n_splits, test_fraction=cfg.test_fraction, smoothing=cfg.smoothing
            ),
            g_norm=g_norm(g),
            g_vendi=g_vendi(g),
            student_nll=student_nll(grads.losses, grads.n_tokens),
            accuracy=teacher_accuracy(all_responses[i], answers),
            responses_per_prompt=m,
            n_responses=len(examples),
            n_truncated=sum(e.truncated for e in examples),
            mean_response_tokens=float(np.mean(grads.n_tokens)),
            response_source=origins[i],
            responses=all_responses[i],
        )
    _check_cancel(should_cancel)
    ranking = rank_by_grace({name: r.grace for name, r in results.items()})
    report(ProgressEvent("score", len(candidates), len(candidates)))
    return RankingResult(
        student_model.source.location, ranking, results, cfg, computer.grad_dim, len(prompts)
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
) -> InfluenceResult:
    """An influence job: candidates' responses (supplied, stored or generated), then the influence of
    each on the student's loss on ``validation``. ``config`` supplies m, d, the gradient space, the
    seed and the student format; GRACE-only settings are ignored."""
    cfg, prompts, all_responses, _, student_model, report = _responses_and_student(
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
    )
    result = influence(
        student_model.model,
        student_model.tokenizer,
        prompts,
        {c.name: r for c, r in zip(candidates, all_responses, strict=True)},
        validation,
        method=method,
        space=cfg.gradient_space,
        proj_dim=cfg.proj_dim,
        seed=cfg.seed,
        fmt=cfg.student_format.within(context_length(student_model.model)),
        max_tokens=cfg.max_tokens_per_batch,
        progress=lambda done, total: report(ProgressEvent("gradients", done, total)),
        should_cancel=should_cancel,
    )
    report(ProgressEvent("score", 1, 1))
    return result
