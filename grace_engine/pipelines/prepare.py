"""What every job does before its own work: check every model reference against the policy,
load the student, size the job's longest example against the memory budget, and collect each
candidate's responses (:func:`prepare`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from grace_engine.errors import as_candidate
from grace_engine.memory import BatchCost, MemoryBudget, resident_bytes
from grace_engine.models.candidates import Candidate, provided_responses
from grace_engine.models.data import (
    Prompt,
    StudentFormat,
    check_prompts,
    student_examples,
)
from grace_engine.models.generation import Generated
from grace_engine.models.loading import (
    LoadedModel,
    ModelSource,
    context_length,
    resolve_model,
)
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.responses import (
    collect_responses,
    release_if_short,
    resolve_candidates,
    stored_responses,
)
from grace_engine.pipelines.results import Origin
from grace_engine.progress import ProgressEvent
from grace_engine.science.gradients import ForwardStatistics


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


class Probe(Protocol):
    """What is measured on the loaded student before any batch runs: one batch's cost (a gradient
    computer, the forward pass alone, or a pipeline's own)."""

    def cost(self) -> BatchCost: ...


P = TypeVar("P", bound=Probe)


@dataclass(frozen=True)
class FixedCost:
    """A probe whose cost is already known."""

    known: BatchCost

    def cost(self) -> BatchCost:
        return self.known


@dataclass(frozen=True)
class CheckedStudent(Generic[P]):
    """The loaded student, its format within its context, and the probe built on it."""

    loaded: LoadedModel
    fmt: StudentFormat
    probe: P
    cost: BatchCost


@dataclass
class PreparedJob(Generic[P]):
    """What every job starts with: checked inputs, the candidates' responses, and the student,
    loaded (and checked against the memory budget) by :meth:`load_student`, at once or, for a job
    whose gradients may all be stored, only if it needs it."""

    cfg: ScoringConfig
    prompts: list[Prompt]
    generated: list[Generated]
    origins: list[Origin]
    student_source: ModelSource
    ctx: EngineContext
    sources: dict[int, ModelSource]  # each generating candidate's model, by its index
    check_student: Callable[[], CheckedStudent[P]]
    checked: CheckedStudent[P] | None = None

    def load_student(self) -> CheckedStudent[P]:
        """The student, loaded, probed and checked against the budget the first time it is asked for."""
        if self.checked is None:
            self.checked = self.check_student()
        return self.checked

    @property
    def student(self) -> LoadedModel:
        return self.load_student().loaded

    @property
    def fmt(self) -> StudentFormat:
        """The student format within the student's context."""
        return self.load_student().fmt

    @property
    def cost(self) -> BatchCost:
        """Of one batch on the student, probed once per job."""
        return self.load_student().cost

    @property
    def budget(self) -> MemoryBudget:
        return self.ctx.budget

    def report(self, event: ProgressEvent) -> None:
        self.ctx.progress(event)

    def resident(self) -> float:
        # The student stays alive through this job even if the cache has evicted it for a teacher.
        loaded = [] if self.checked is None else [self.checked.loaded.model]
        return resident_bytes([*self.ctx.cache.models(), *loaded])


def prepare(
    inputs: JobInputs,
    spec: ScoringConfig,
    ctx: EngineContext,
    probe: Callable[[LoadedModel], P],
    *,
    defer_student: bool = False,
) -> PreparedJob[P]:
    """Check every input and model reference, check the memory budget against the job's longest
    possible example (``probe`` measures one batch on the loaded student, once), then collect the
    responses (stored in the context's response store when generated) and load the student.

    The budget check needs the student loaded (its cost is probed); on a vLLM worker the student
    waits until the teachers are done and have released the GPU, so there it follows generation.
    ``defer_student``: when every candidate's responses are at hand (supplied, or in the store:
    looked up once, here), nothing is generated, and the student is left unloaded until
    :meth:`PreparedJob.load_student`.
    """
    spec.check()
    candidates = inputs.candidates
    checked = check_prompts(inputs.prompts)
    sources = resolve_candidates(candidates, ctx.policy, ctx.base_dir)
    student_source = resolve_model(inputs.student, ctx.policy, field="student", base_dir=ctx.base_dir)
    backend = ctx.backend(spec.generation_backend)

    def check_student() -> CheckedStudent[P]:
        loaded = ctx.cache.get(student_source, field="student")
        fmt = spec.student_format.within(context_length(loaded.model))
        longest = _longest_example(loaded.tokenizer, checked, candidates, spec, fmt)
        measured = probe(loaded)
        cost = measured.cost()
        ctx.budget.plan(resident_bytes(ctx.cache.models()), cost, stage="gradient").require(longest)
        return CheckedStudent(loaded, fmt, measured, cost)

    found = stored_responses(checked, candidates, sources, spec, ctx.responses, backend)
    generating = sum(c.responses is None for c in candidates)
    deferred = defer_student and len(found) == generating  # nothing to generate
    early = check_student() if backend.name != "vllm" and not deferred else None
    collected, origins = collect_responses(
        checked,
        candidates,
        sources,
        spec,
        ctx,
        backend=backend,
        stored=found,
        also_resident=[early.loaded.model] if early else [],
    )
    release_if_short(backend, ctx)
    job = PreparedJob(spec, checked, collected, origins, student_source, ctx, sources, check_student, early)
    if not deferred:
        job.load_student()
    return job


def forward_only(loaded: LoadedModel) -> ForwardStatistics:
    """The probe of a job that runs the student's forward pass alone."""
    return ForwardStatistics(loaded.model)


def prepare_candidate(
    inputs: JobInputs, spec: ScoringConfig, ctx: EngineContext, name: str
) -> PreparedJob[ForwardStatistics]:
    """Candidate ``name``'s part of :func:`prepare`, alone (errors name its place among all the
    candidates): a fanned-out influence or validation job's candidate unit, so that the job's last
    unit finds every response stored."""
    index = inputs.index(name)
    with as_candidate(index):
        return prepare(replace(inputs, candidates=[inputs.candidates[index]]), spec, ctx, forward_only)
