"""Teacher responses generated with transformers (CPU and tests) or vLLM (GPU).

Candidates themselves are in :mod:`grace_engine.models.candidates`. Teachers see their
own chat template with one user turn, ``instruction + prompt``, and the generation prompt added
(design.md §2.2). Responses are stripped; results are ``n_prompts`` lists of ``m`` strings, in
prompt order.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import torch

from grace_engine.errors import Cancelled, InvalidInput
from grace_engine.memory import MemoryBudget, generation_cost, resident_bytes
from grace_engine.models.candidates import Responses
from grace_engine.models.data import DEFAULT_INSTRUCTION, Prompt, pad_token_id
from grace_engine.models.loading import context_length
from grace_engine.science.projection import stream_seed


def teacher_input(tokenizer: Any, prompt: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The text a teacher is conditioned on: its chat template with one user turn and the
    generation prompt; a tokenizer without a template gets the bare ``instruction + prompt``."""
    content = instruction + prompt
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        return str(text)
    return content


@dataclass(frozen=True)
class GenerationSettings:
    """What determines a teacher's responses besides the model and the prompts."""

    m: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    instruction: str = DEFAULT_INSTRUCTION


def response_key(model_id: str, settings: GenerationSettings, prompts: Sequence[Prompt], backend: str) -> str:
    """Content hash identifying a set of generated responses, so a re-score can reuse them."""
    payload = {
        "model": model_id,
        "backend": backend,
        "settings": asdict(settings),
        "prompts": [[p.id, p.prompt] for p in prompts],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Generated:
    """A teacher's responses, ``texts[prompt][index]``, and which of them stopped at ``max_tokens``
    instead of at the teacher's end-of-sequence token (``at_cap``, same shape)."""

    texts: Responses
    at_cap: list[list[bool]]

    @property
    def n_at_cap(self) -> int:
        return sum(sum(group) for group in self.at_cap)


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


class _StopWhenCancelled:
    """A stopping criterion that ends every row of a ``generate`` call once ``should_cancel()``
    says so: a cancel or a shutdown lands within one decoded token, not at the end of a batch of
    long responses. ``should_cancel`` is cheap between its own polls of the job's state."""

    def __init__(self, should_cancel: Callable[[], bool]) -> None:
        self.should_cancel, self.fired = should_cancel, False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        del scores, kwargs
        self.fired = self.fired or bool(self.should_cancel())
        return torch.full((input_ids.shape[0],), self.fired, dtype=torch.bool, device=input_ids.device)


class _RowSampler:
    """A logits processor that samples each row's next token from that row's own generator, with
    temperature and nucleus (top-p) filtering, and leaves only that token possible.

    ``generate`` then runs greedily over its choice. Because no row draws from a shared stream, a
    response depends on its prompt, its index and the seed, not on which other sequences share its
    batch, so batch sizes (and with them the memory budget) do not change what a teacher says, up to
    floating-point rounding of differently padded batches.
    """

    def __init__(self, generators: list[torch.Generator], temperature: float, top_p: float) -> None:
        self.generators, self.temperature, self.top_p = generators, temperature, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1).cpu()
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
            sorted_p[(sorted_p.cumsum(-1) - sorted_p) > self.top_p] = 0.0
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
        picks = torch.cat(
            [torch.multinomial(row, 1, generator=g) for row, g in zip(probs, self.generators, strict=True)]
        )
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0], device=scores.device), picks.to(scores.device)] = 0.0
        return out


def _eos_ids(model: torch.nn.Module, tokenizer: Any) -> set[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(getattr(tokenizer, "eos_token_id", None))
    return {i for i in ids if isinstance(i, int)}


class TransformersBackend:
    """Batched ``generate`` with left padding; sampling when ``temperature > 0``, else greedy (the
    greedy response is then repeated ``m`` times). Response ``j`` of a prompt is sampled from its
    own seeded stream (:class:`_RowSampler`), so a run is reproducible whatever the batch size.
    Batches hold at most ``batch_size`` sequences, fewer when the memory budget says so."""

    name = "transformers"

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

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
    ) -> Generated:
        """The backend interface shared with :class:`VllmBackend`; ``load()`` gives (model, tokenizer)
        and ``resident_bytes()`` what is resident once it is loaded."""
        assert load is not None, "the transformers backend loads through the model cache"
        model, tokenizer = load()
        return self.generate(
            model,
            tokenizer,
            prompts,
            settings,
            budget=budget,
            resident=resident_bytes() if resident_bytes is not None else None,
            progress=progress,
            should_cancel=should_cancel,
            field=field,
        )

    def release(self) -> None:
        """Nothing to drop: models live in the shared model cache."""

    def generate(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        prompts: Sequence[Prompt],
        settings: GenerationSettings,
        *,
        budget: MemoryBudget | None = None,
        resident: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        field: str = "max_tokens",
        model_input: Callable[[str], str] | None = None,
    ) -> Generated:
        """Responses to every prompt; ``field`` names ``max_tokens`` in the error raised when the
        longest prompt plus ``max_tokens`` does not fit the teacher's context (checked up front),
        or the memory budget cannot hold one sequence of that length. ``model_input(prompt)`` is
        the text the model continues (default: :func:`teacher_input`; a distilled student gets its
        template)."""
        inputs = [
            model_input(p.prompt) if model_input else teacher_input(tokenizer, p.prompt, settings.instruction)
            for p in prompts
        ]
        longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in inputs)
        limit = context_length(model)
        if limit is not None and longest + settings.max_tokens > limit:
            raise InvalidInput(
                f"the longest prompt ({longest} tokens with the chat template) plus max_tokens="
                f"{settings.max_tokens} exceeds the teacher's context of {limit} tokens",
                field=field,
            )
        sample = settings.temperature > 0
        per_prompt = settings.m if sample else 1
        rows = [(i, j) for i in range(len(prompts)) for j in range(per_prompt)]
        batch_rows = self.batch_size
        if budget is not None:
            plan = budget.plan(
                resident if resident is not None else resident_bytes([model]),
                generation_cost(model),
                stage="generation",
            )
            plan.require(longest + settings.max_tokens, what="one sequence (longest prompt + max_tokens)")
            batch_rows = plan.rows(longest + settings.max_tokens, limit=self.batch_size)
        pad_id = pad_token_id(tokenizer)
        eos = _eos_ids(model, tokenizer)
        device = next(model.parameters()).device
        texts: list[list[str]] = [[] for _ in prompts]
        at_cap: list[list[bool]] = [[] for _ in prompts]
        done_prompts = 0
        for start in range(0, len(rows), batch_rows):
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            chunk = rows[start : start + batch_rows]
            enc = tokenizer(
                [inputs[i] for i, _ in chunk],
                return_tensors="pt",
                padding=True,
                padding_side="left",
                add_special_tokens=False,
            )
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            kwargs: dict[str, Any] = {
                "max_new_tokens": settings.max_tokens,
                "pad_token_id": pad_id,
                "do_sample": False,
            }
            if sample:
                generators = [
                    torch.Generator().manual_seed(stream_seed(settings.seed, f"generate/{prompts[i].id}/{j}"))
                    for i, j in chunk
                ]
                kwargs["logits_processor"] = [_RowSampler(generators, settings.temperature, settings.top_p)]
            stop = None if should_cancel is None else _StopWhenCancelled(should_cancel)
            if stop is not None:
                kwargs["stopping_criteria"] = [stop]
            with torch.inference_mode():
                generated = model.generate(**enc, **kwargs)  # type: ignore[operator]
            if stop is not None and stop.fired:
                raise Cancelled()  # cut short by the criterion: a partial response is no response
            new_tokens = generated[:, enc["input_ids"].shape[1] :]
            decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            full_length = new_tokens.shape[1] >= settings.max_tokens
            for (i, _), text, row in zip(chunk, decoded, new_tokens.tolist(), strict=True):
                texts[i].append(text.strip())
                at_cap[i].append(full_length and not eos.intersection(row))
            if progress is not None:
                finished = chunk[-1][0] + (1 if chunk[-1][1] == per_prompt - 1 else 0)
                if finished > done_prompts:
                    done_prompts = finished
                    progress(done_prompts, len(prompts))
        if not sample:
            texts = [group * settings.m for group in texts]
            at_cap = [group * settings.m for group in at_cap]
        return Generated(texts, at_cap)


# --- backend selection and vLLM (GPU) -----------------------------------------------------------

BackendName = Literal["auto", "vllm", "transformers"]
BACKENDS: tuple[BackendName, ...] = ("auto", "vllm", "transformers")


def vllm_installed() -> bool:
    """Whether vLLM can be imported, without importing it."""
    return importlib.util.find_spec("vllm") is not None


def select_backend(
    requested: str, *, installed: bool | None = None, gpu_visible: bool | None = None
) -> Literal["vllm", "transformers"]:
    """``auto``: vLLM when it is installed and a CUDA GPU is visible, else transformers. Asking for
    ``vllm`` where it cannot run is a configuration error naming ``generation_backend``."""
    if requested not in BACKENDS:
        raise InvalidInput(f"must be one of {', '.join(BACKENDS)}", field="generation_backend")
    installed = vllm_installed() if installed is None else installed
    gpu_visible = torch.cuda.is_available() if gpu_visible is None else gpu_visible
    if requested == "transformers":
        return "transformers"
    if requested == "vllm":
        if not installed:
            raise InvalidInput(
                "vLLM is not installed; install the gpu extra (pip install -e '.[gpu]') "
                "or use 'transformers'",
                field="generation_backend",
            )
        if not gpu_visible:
            raise InvalidInput("vLLM needs a CUDA GPU and none is visible", field="generation_backend")
        return "vllm"
    return "vllm" if installed and gpu_visible else "transformers"


def vllm_sampling_kwargs(settings: GenerationSettings) -> dict[str, Any]:
    """``SamplingParams`` arguments for ``settings``. Greedy decoding (temperature 0) asks for one
    sequence, repeated ``m`` times afterwards, as the transformers backend does."""
    greedy = settings.temperature == 0
    return {
        "n": 1 if greedy else settings.m,
        "temperature": 0.0 if greedy else settings.temperature,
        "top_p": 1.0 if greedy else settings.top_p,
        "max_tokens": settings.max_tokens,
        "seed": settings.seed,
    }


class VllmBackend:
    """vLLM generation: one long-lived engine per model in this process, prompts in batches, the
    teacher's chat template applied by the same :func:`teacher_input`, token ids passed directly (no
    second BOS), ``trust_remote_code=False``."""

    name = "vllm"

    def __init__(
        self, *, gpu_memory_utilization: float = 0.85, tensor_parallel_size: int = 1, batch_prompts: int = 256
    ) -> None:
        select_backend("vllm")
        import vllm

        self._vllm = vllm
        self.gpu_memory_utilization = gpu_memory_utilization
        self.tensor_parallel_size = tensor_parallel_size
        self.batch_prompts = batch_prompts
        self._engines: dict[str, Any] = {}

    def engine(self, location: str) -> Any:
        if location not in self._engines:
            self._engines[location] = self._vllm.LLM(
                model=location,
                tokenizer=location,
                trust_remote_code=False,
                gpu_memory_utilization=self.gpu_memory_utilization,
                tensor_parallel_size=self.tensor_parallel_size,
                seed=0,
            )
        return self._engines[location]

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
    ) -> Generated:
        """``budget`` is host memory, which vLLM's engine does not size from: its GPU share is
        ``gpu_memory_utilization``."""
        llm = self.engine(location)
        tokenizer = llm.get_tokenizer()
        limit = llm.llm_engine.model_config.max_model_len
        params = self._vllm.SamplingParams(**vllm_sampling_kwargs(settings))
        out: Responses = []
        at_cap: list[list[bool]] = []
        for start in range(0, len(prompts), self.batch_prompts):
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            chunk = prompts[start : start + self.batch_prompts]
            ids = [
                tokenizer(teacher_input(tokenizer, p.prompt, settings.instruction), add_special_tokens=False)[
                    "input_ids"
                ]
                for p in chunk
            ]
            longest = max(len(i) for i in ids)
            if longest + settings.max_tokens > limit:
                raise InvalidInput(
                    f"the longest prompt ({longest} tokens) plus max_tokens={settings.max_tokens} "
                    f"exceeds the teacher's context of {limit} tokens",
                    field=field,
                )
            results = llm.generate([{"prompt_token_ids": i} for i in ids], params, use_tqdm=False)
            for r in results:
                texts = [o.text.strip() for o in r.outputs]
                capped = [o.finish_reason == "length" for o in r.outputs]
                repeat = settings.m if len(texts) == 1 and settings.m > 1 else 1
                out.append(texts * repeat)
                at_cap.append(capped * repeat)
            if progress is not None:
                progress(len(out), len(prompts))
        return Generated(out, at_cap)

    def release(self) -> None:
        """Drop every engine and return its GPU memory (before the student's gradients run)."""
        self._engines.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def gpu_memory_short(min_free_bytes: float) -> bool:
    """True when a CUDA device is in use and has less than ``min_free_bytes`` free."""
    if not torch.cuda.is_available():
        return False
    free, _total = torch.cuda.mem_get_info()
    return free < min_free_bytes


def generated_to_json(generated: Generated) -> str:
    """How response stores keep a teacher's responses."""
    return json.dumps({"texts": generated.texts, "at_cap": generated.at_cap}, ensure_ascii=False)


def generated_from_json(text: str) -> Generated | None:
    """The inverse of :func:`generated_to_json`; ``None`` for anything else (an unreadable entry, or
    one written before cap counting, which is then generated again rather than reported wrongly)."""
    try:
        data = json.loads(text)
        texts, at_cap = data["texts"], data["at_cap"]
    except (ValueError, TypeError, KeyError):
        return None
    shapes_match = isinstance(texts, list) and isinstance(at_cap, list) and len(texts) == len(at_cap)
    if not shapes_match or not all(
        isinstance(t, list) and isinstance(c, list) and len(t) == len(c)
        for t, c in zip(texts, at_cap, strict=True)
    ):
        return None
    return Generated([[str(x) for x in group] for group in texts], [[bool(x) for x in g] for g in at_cap])
