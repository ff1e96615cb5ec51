"""What every job does before its own work: check every model reference against the policy,
load the student, size the job's longest example against the memory budget, and collect each
candidate's responses (:func:`prepare_job`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grace_engine.config import ScoringConfig
from grace_engine.data import (
    Prompt,
    StudentFormat,
    validate_prompts,
)
from grace_engine.generation import (
    Candidate,
    Generated,
    provided_responses,
)
from grace_engine.gradients import ForwardStatistics
from grace_engine.memory import BatchCost, MemoryBudget, resident_bytes
from grace_engine.models import (
    LoadedModel,
    ModelCache,
    ModelPolicy,
    ModelSource,
    context_length,
    resolve_model,
)
from grace_engine.progress import ProgressFn
from grace_engine.responses import (
    GenerationBackend,
    Origin,
    ResponseStore,
    collect_responses,
    make_backend,
    release_if_short,
    resolve_candidates,
    stored_responses,
    student_examples,
)


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


StudentCheck = tuple[LoadedModel, StudentFormat, BatchCost]


@dataclass
class PreparedJob:
    """What every job starts with: checked inputs, the candidates' responses, and the student,
    loaded (and checked against the memory budget) when first needed: a job whose gradients are
    all stored never loads it."""

    cfg: ScoringConfig
    prompts: list[Prompt]
    generated: list[Generated]
    origins: list[Origin]
    student_source: ModelSource
    budget: MemoryBudget
    cache: ModelCache
    report: ProgressFn
    load_student: Callable[[], StudentCheck]
    checked: StudentCheck | None = None

    def _student(self) -> StudentCheck:
        if self.checked is None:
            self.checked = self.load_student()
        return self.checked

    @property
    def student(self) -> LoadedModel:
        return self._student()[0]

    @property
    def fmt(self) -> StudentFormat:
        """The student format within the student's context."""
        return self._student()[1]

    @property
    def cost(self) -> BatchCost:
        """Of one gradient batch on the student, probed once per job."""
        return self._student()[2]

    def resident(self) -> float:
        # The student stays alive through this job even if the cache has evicted it for a teacher.
        loaded = [] if self.checked is None else [self.checked[0].model]
        return resident_bytes([*self.cache.models(), *loaded])


def prepare_job(
    prompts: Sequence[Prompt],
    candidates: Sequence[Candidate],
    student: str,
    *,
    policy: ModelPolicy,
    config: ScoringConfig | None,
    models: ModelCache | None,
    responses: ResponseStore | None,
    progress: ProgressFn | None,
    should_cancel: Callable[[], bool] | None,
    generator: GenerationBackend | None,
    budget: MemoryBudget | None,
    gradient_cost: Callable[[LoadedModel], BatchCost] | None = None,
    defer_student: bool = False,
    base_dir: Path | None = None,
) -> PreparedJob:
    """Check every input and model reference, check the memory budget against the job's longest
    possible example (``gradient_cost`` probes the student once; default: the student's forward
    pass, as for responses collected alone), then collect the responses (stored in ``responses``
    when generated) and load the student. A fanned-out influence or validation job's candidate
    unit is this call alone, for its candidate, so that the job's last unit finds every response
    stored.

    The budget check needs the student loaded (its cost is probed); on a vLLM worker the student
    waits until the teachers are done and have released the GPU, so there it follows generation.
    ``defer_student``: when every candidate's responses are at hand (supplied, or in
    ``responses``: looked up once, here), nothing is generated, and the student is left unloaded
    until first used.
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
        cost = gradient_cost(loaded) if gradient_cost is not None else ForwardStatistics(loaded.model).cost()
        budget.plan(resident_bytes(cache.models()), cost, stage="gradient").require(longest)
        return loaded, fmt, cost

    found = stored_responses(checked, candidates, sources, cfg, responses, backend)
    generating = sum(c.responses is None for c in candidates)
    deferred = defer_student and len(found) == generating  # nothing to generate
    early = checked_student() if backend.name != "vllm" and not deferred else None
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
        stored=found,
    )
    release_if_short(backend, cfg)
    job = PreparedJob(
        cfg, checked, collected, origins, student_source, budget, cache, report, checked_student
    )
    if not deferred:
        job.checked = early or checked_student()
    return job
