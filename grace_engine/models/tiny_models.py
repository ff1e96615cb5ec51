"""Offline tiny models for tests, demos and benchmarks: a student and teachers built from nothing.

Everything is made here, without network: byte-level BPE tokenizers trained with ``tokenizers`` on
the GSM8K subset shipped in ``grace_engine/resources``, tiny Llama / GPT-2 configs, a few hundred
steps of training on 2 CPU cores, ``save_pretrained`` into ``out_dir``. Models share nothing but the
text format: each has its own tokenizer, architecture and training text.

* ``student`` -- Llama, 2 layers, hidden 64: briefly pretrained on GSM8K problems and solutions as
  plain text, never on the chat format.
* ``tutor`` -- GPT-2: trained on (instruction + problem -> worked solution ending in
  ``\\boxed{answer}``) in its chat format. The sensible teacher.
* ``parrot`` -- Llama: trained to answer a problem with *another problem*. Fluent, on-topic text
  that never solves anything.
* ``noise`` -- GPT-2, random weights, never trained: its responses are random tokens.

The candidate file written next to them scores ``tutor`` at three temperatures, ``parrot`` and
``noise``; the prompts file holds GSM8K problems held out from all training.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from grace_engine.models.data import DEFAULT_INSTRUCTION, PROMPT_PLACEHOLDER, StudentFormat, clean_solution
from grace_engine.models.generation import teacher_input
from grace_engine.progress import ProgressFn, stage_progress

EOS, PAD, USER, ASSISTANT = "<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
N_DEMO_PROMPTS = 24  # GSM8K problems kept out of every training set, for the demo and tests
N_EVAL_PROMPTS = 32  # held-out problems written to eval.jsonl for validation jobs


def gsm8k_records(name: str = "gsm8k_test_subset.jsonl") -> list[dict[str, Any]]:
    """A shipped GSM8K file (MIT licence, see resources/GSM8K_LICENSE.md): the 700-problem subset
    the tiny models are built from, or ``gsm8k_eval.jsonl``, 64 problems none of them has seen."""
    text = resources.files("grace_engine").joinpath(f"resources/{name}").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def student_chat_template(fmt: StudentFormat | None = None) -> str:
    """A chat template that renders a user turn as ``fmt``'s template around its content and an
    assistant turn as its content + EOS (marked as generation, for assistant-only losses): chat
    SFT of the student then trains on the format it was scored in."""
    before, _, after = (fmt or StudentFormat()).template.partition(PROMPT_PLACEHOLDER)
    return (
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}"
        + _jinja_text(before)
        + "{{ message['content'] }}"
        + _jinja_text(after)
        + "{% elif message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}{{ eos_token }}"
        "{% endgeneration %}{% endif %}{% endfor %}"
    )


def _jinja_text(text: str) -> str:
    """``text`` as a Jinja expression printing it verbatim (whatever braces or tags it holds)."""
    return "{{ " + json.dumps(text) + " }}"


def train_tokenizer(texts: Sequence[str], vocab_size: int, *, chat: bool, template: str | None = None) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, wrapped as a transformers fast tokenizer.
    ``chat``: with the user and assistant special tokens and :data:`CHAT_TEMPLATE`; ``template``:
    this chat template instead (or, without ``chat``, a template and no special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = [EOS, PAD, USER, ASSISTANT] if chat else [EOS, PAD]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=template or (CHAT_TEMPLATE if chat else None),
        model_max_length=512,
    )


def tiny_llama(
    vocab_size: int,
    *,
    eos_id: int,
    pad_id: int,
    hidden: int = 64,
    layers: int = 2,
    tied: bool = False,
    max_positions: int = 512,
) -> torch.nn.Module:
    """A Llama with grouped-query attention (4 heads, 2 KV heads), randomly initialised."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model: torch.nn.Module = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_positions,
            tie_word_embeddings=tied,
            bos_token_id=None,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
    )
    return model


def tiny_gpt2(
    vocab_size: int,
    *,
    eos_id: int,
    pad_id: int,
    hidden: int = 64,
    layers: int = 2,
    tied: bool = True,
    max_positions: int = 512,
    dropout: float = 0.1,
) -> torch.nn.Module:
    """A GPT-2 (Conv1D layers, LayerNorm, learned positions), randomly initialised; ``dropout``
    (GPT-2's default 0.1) on the embeddings, residuals and attention."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model: torch.nn.Module = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=layers,
            n_head=4,
            n_positions=max_positions,
            tie_word_embeddings=tied,
            embd_pdrop=dropout,
            resid_pdrop=dropout,
            attn_pdrop=dropout,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
    )
    return model


def tiny_neox(
    vocab_size: int,
    *,
    eos_id: int,
    pad_id: int,
    hidden: int = 64,
    layers: int = 2,
    max_positions: int = 512,
) -> torch.nn.Module:
    """A GPT-NeoX (parallel attention and MLP, rotary positions on a quarter of each head, untied
    output), randomly initialised: a third architecture besides Llama and GPT-2."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    model: torch.nn.Module = GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            max_position_embeddings=max_positions,
            tie_word_embeddings=False,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
    )
    return model


def train_lm(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    steps: int,
    seed: int,
    seq_len: int = 128,
    batch_size: int = 16,
    lr: float = 3e-3,
    progress: Callable[[int, int], None] | None = None,
) -> float:
    """Next-token training on random windows of the concatenated ``text + EOS`` stream; returns the
    mean loss of the last 20 steps. ``progress(step, steps)`` every few steps and at the end."""
    ids: list[int] = []
    for t in texts:
        ids += tokenizer(t + EOS, add_special_tokens=False)["input_ids"]
    stream = torch.tensor(ids)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    tail: list[float] = []
    for step in range(steps):
        starts = torch.randint(0, len(stream) - seq_len - 1, (batch_size,), generator=gen)
        batch = torch.stack([stream[s : s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        tail = [*tail[-19:], loss.item()]
        if progress is not None and (step + 1 == steps or (step + 1) % 10 == 0):
            progress(step + 1, steps)
    model.eval()
    return sum(tail) / len(tail)


def _chat_text(tok: Any, question: str, reply: str) -> str:
    return teacher_input(tok, question, DEFAULT_INSTRUCTION) + reply


@dataclass(frozen=True)
class TinyModels:
    """Paths written by :func:`build_tiny_models` and the final training loss of each model."""

    root: Path
    student: Path
    teachers: dict[str, Path]
    candidates_file: Path
    prompts_file: Path
    train_loss: dict[str, float]
    seconds: float
    eval_file: Path  # held-out problems with reference solutions, for validation jobs


def _shortest(records: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` shortest problems (question + solution), in their order: the tiny student's
    context is 512 tokens of a 512-token vocabulary."""
    keep = sorted(range(len(records)), key=lambda i: len(records[i]["question"]) + len(records[i]["answer"]))
    return [records[i] for i in sorted(keep[:n])]


def build_tiny_models(
    out_dir: str | Path,
    *,
    seed: int = 0,
    steps: int = 300,
    log: Callable[[str], None] | None = None,
    progress: ProgressFn | None = None,
) -> TinyModels:
    """Build the student, three teachers, and the candidate, prompt and eval files under ``out_dir``;
    ``progress`` gets each model's training steps (stage ``train``, the model's name)."""
    started = time.perf_counter()
    say = log or (lambda _msg: None)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    records = gsm8k_records()
    demo, train = records[:N_DEMO_PROMPTS], records[N_DEMO_PROMPTS:]
    rng = random.Random(seed)
    questions = [r["question"] for r in train]
    solutions = [clean_solution(r["answer"]) for r in train]
    losses: dict[str, float] = {}

    def steps_of(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else stage_progress(progress, "train", name)

    def keep(name: str, model: torch.nn.Module, tok: Any, loss: float | None) -> Path:
        path = root / name
        model.save_pretrained(path)  # type: ignore[operator]
        tok.save_pretrained(path)
        n_params = sum(p.numel() for p in model.parameters())
        trained = "untrained" if loss is None else f"loss {loss:.2f}"
        say(f"{name:<8} {type(model).__name__:<17} {n_params:>8,d} params  {trained}")
        if loss is not None:
            losses[name] = loss
        return path

    # Student: plain text only, so it has seen the domain but not the solution format.
    plain = questions + solutions
    tok = train_tokenizer(plain, 512, chat=False, template=student_chat_template())
    student = tiny_llama(len(tok), eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    student_path = keep(
        "student",
        student,
        tok,
        train_lm(student, tok, plain, steps=steps // 2, seed=seed, progress=steps_of("student")),
    )

    teachers: dict[str, Path] = {}
    pairs = list(zip(questions, solutions, strict=True))
    tok = train_tokenizer([q + "\n" + s for q, s in pairs] + [DEFAULT_INSTRUCTION], 640, chat=True)
    tutor = tiny_gpt2(len(tok), eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, hidden=96)
    texts = [_chat_text(tok, q, s) for q, s in pairs]
    teachers["tutor"] = keep(
        "tutor",
        tutor,
        tok,
        train_lm(tutor, tok, texts, steps=steps, seed=seed + 1, progress=steps_of("tutor")),
    )

    tok = train_tokenizer([*questions, DEFAULT_INSTRUCTION], 448, chat=True)
    parrot = tiny_llama(len(tok), eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, hidden=48)
    texts = [_chat_text(tok, q, rng.choice(questions)) for q in questions]
    teachers["parrot"] = keep(
        "parrot",
        parrot,
        tok,
        train_lm(parrot, tok, texts, steps=steps, seed=seed + 2, progress=steps_of("parrot")),
    )

    tok = train_tokenizer([*questions[:200], DEFAULT_INSTRUCTION], 384, chat=True)
    noise = tiny_gpt2(len(tok), eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, hidden=32, layers=1)
    teachers["noise"] = keep("noise", noise, tok, None)

    candidates = [
        {"name": "tutor-cold", "model": "tutor", "temperature": 0.3, "max_tokens": 96},
        {"name": "tutor", "model": "tutor", "temperature": 0.6, "max_tokens": 96},
        {"name": "tutor-hot", "model": "tutor", "temperature": 1.3, "max_tokens": 96},
        {"name": "parrot", "model": "parrot", "temperature": 0.6, "max_tokens": 96},
        {"name": "noise", "model": "noise", "temperature": 1.0, "max_tokens": 96},
    ]
    candidates_file = root / "candidates.json"
    candidates_file.write_text(json.dumps({"candidates": candidates}, indent=2) + "\n")
    prompts_file = root / "prompts.jsonl"
    prompts_file.write_text(
        "".join(
            json.dumps({"id": f"gsm8k-{r['idx']}", "prompt": r["question"], "answer": r["answer"]}) + "\n"
            for r in demo
        )
    )
    eval_file = root / "eval.jsonl"
    eval_file.write_text(
        "".join(
            json.dumps({"id": f"gsm8k-{r['idx']}", "question": r["question"], "answer": r["answer"]}) + "\n"
            for r in _shortest(gsm8k_records("gsm8k_eval.jsonl"), N_EVAL_PROMPTS)
        )
    )
    return TinyModels(
        root,
        student_path,
        teachers,
        candidates_file,
        prompts_file,
        losses,
        time.perf_counter() - started,
        eval_file,
    )
