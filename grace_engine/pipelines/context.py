"""What a pipeline runs in, and what it runs on.

Every pipeline entry point takes ``(inputs, spec, ctx)``:

* ``inputs``: the job's data (:class:`JobInputs`: prompts, candidates, the student; a pipeline's
  own inputs extend it, e.g. influence's reference set);
* ``spec``: how to score it (a :class:`~grace_engine.pipelines.config.ScoringConfig`, or a
  pipeline's spec that holds one): everything that decides the result;
* ``ctx``: the :class:`EngineContext`, built once by the worker, the CLI or a test: where models
  may come from, what is reused between jobs (model cache, response and gradient stores, the
  teacher backend), the memory budget, progress and cancellation. Nothing in it changes a score.

As TRAK's ``TRAKer`` does with its collaborators, the context is handed over once; after that a
call takes only data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grace_engine.errors import InvalidInput
from grace_engine.memory import MemoryBudget
from grace_engine.models.candidates import Candidate
from grace_engine.models.data import Prompt
from grace_engine.models.generation import GenerationBackend, TransformersBackend, VllmBackend, select_backend
from grace_engine.models.loading import ModelCache, ModelPolicy
from grace_engine.progress import ProgressEvent, ProgressFn, check_cancel
from grace_engine.stores.gradient_store import GradientStore
from grace_engine.stores.response_store import ResponseStore

DEFAULT_GENERATION_BATCH = 64
DEFAULT_MAX_BATCH = 64
DEFAULT_RELEASE_BELOW_GB = 8.0


def _silent(event: ProgressEvent) -> None:
    del event


@dataclass(frozen=True)
class JobInputs:
    """What a job scores: ``prompts`` (at least 2, unique ids), ``candidates`` (unique names; each
    a model reference with sampling settings, or supplied responses) and the ``student`` (a model
    reference: a directory under a policy root, or an allowed hub id)."""

    prompts: Sequence[Prompt]
    candidates: Sequence[Candidate]
    student: str

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.candidates]

    def index(self, name: str) -> int:
        """The position of candidate ``name`` (errors about it name ``candidates[index]``)."""
        names = self.names
        if name not in names:
            raise InvalidInput(f"no candidate named {name!r}", field="candidates")
        return names.index(name)


@dataclass
class EngineContext:
    """Where and how a pipeline runs; see the module docstring.

    Attributes:
        policy: where models may be loaded from; relative paths resolve against ``base_dir``.
        models: loaded models, shared across calls by long-lived workers (default: a fresh cache).
        responses: store of generated responses, looked up before generating.
        gradients: store of projected gradients by content: a candidate found there is not
            computed again, and one computed is put there.
        generator: a long-lived teacher backend (a worker keeps one, so vLLM engines persist
            between jobs); default: the one a job's ``generation_backend`` selects.
        budget: the peak memory every stage sizes its batches from. Scores do not depend on it.
        progress: receives every :class:`~grace_engine.progress.ProgressEvent`.
        should_cancel: polled between batches and stages; true stops the job with
            :class:`~grace_engine.errors.Cancelled`.
        max_batch, max_tokens_per_batch: extra caps on a gradient batch's rows and padded tokens
            (the budget sizes batches; these only lower them).
        generation_batch: sequences per ``generate()`` call at most (the budget may lower it).
        release_below_gb: free GPU memory under which vLLM engines are dropped before gradients.
    """

    policy: ModelPolicy
    base_dir: Path | None = None
    models: ModelCache | None = None
    responses: ResponseStore | None = None
    gradients: GradientStore | None = None
    generator: GenerationBackend | None = None
    budget: MemoryBudget = field(default_factory=MemoryBudget)
    progress: ProgressFn = _silent
    should_cancel: Callable[[], bool] | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    max_tokens_per_batch: int | None = None
    generation_batch: int = DEFAULT_GENERATION_BATCH
    release_below_gb: float = DEFAULT_RELEASE_BELOW_GB

    def __post_init__(self) -> None:
        if self.models is None:
            self.models = ModelCache(self.policy)
        for name in ("max_batch", "generation_batch"):
            if getattr(self, name) < 1:
                raise InvalidInput("must be at least 1", field=name)
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < 2:
            raise InvalidInput("must be at least 2", field="max_tokens_per_batch")

    @property
    def cache(self) -> ModelCache:
        """The model cache (always set after construction)."""
        assert self.models is not None
        return self.models

    def backend(self, requested: str) -> GenerationBackend:
        """The context's teacher backend, or else the one ``requested`` selects (``auto``: vLLM on
        a GPU when installed)."""
        if self.generator is not None:
            return self.generator
        if select_backend(requested) == "vllm":
            return VllmBackend()
        return TransformersBackend(batch_size=self.generation_batch)

    def check_cancel(self) -> None:
        check_cancel(self.should_cancel)
