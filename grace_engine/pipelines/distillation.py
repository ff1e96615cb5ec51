"""Distil a fresh copy of the student on one candidate's responses (design §2.8).

Supervised fine-tuning with transformers' ``Trainer`` on the student's view of each response
(design §2.3: the student template, response tokens and EOS carry the loss, the prompt part is
masked). ``method="lora"`` trains low-rank adapters on every linear layer but the output head
(peft), ``"full"`` every parameter. Both are seeded (initialisation, data order, dropout) and size
their micro-batches from the memory budget; the effective batch is fixed by the config and reached
by gradient accumulation, and the Trainer normalises the loss by the response tokens of the whole
effective batch, so the budget changes the arithmetic's grouping only, never what is learnt.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from grace_engine.errors import Cancelled, InvalidInput
from grace_engine.memory import BatchCost, MemoryBudget, gradient_cost, module_bytes, release_memory
from grace_engine.models.batches import collate
from grace_engine.models.data import StudentExample, pad_token_id
from grace_engine.science.cost import training_steps

Method = Literal["lora", "full"]
METHODS: tuple[Method, ...] = ("lora", "full")
# AdamW keeps two moments per trainable parameter, and backward writes one gradient.
OPTIMIZER_COPIES = 3


@dataclass(frozen=True)
class DistillConfig:
    """How each candidate's student is trained.

    Defaults suit a 135M student on two CPU cores: LoRA rank 16 on every linear layer, three epochs,
    effective batch 8, AdamW at 1e-3 (LoRA) or 1e-4 (full) with linear decay, for short runs on a few
    hundred responses. Three epochs because one did not train enough to tell a teacher from random
    tokens: on the shipped tiny models (24 prompts x 4, 3 seeds) one epoch left the student trained
    on `noise` within 0.011 eval NLL of the one trained on `tutor-cold` (3.441 against 3.430); three
    separate them (4.33 against 3.50). ``max_steps``, when set, replaces ``epochs``.
    ``learning_rate=None`` takes the method's default.
    """

    method: Method = "lora"
    epochs: float = 3.0
    max_steps: int | None = None
    batch_size: int = 8
    learning_rate: float | None = None
    weight_decay: float = 0.0
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    seed: int = 0

    def check(self) -> None:
        if self.method not in METHODS:
            raise InvalidInput(f"must be one of {', '.join(METHODS)}", field="method")
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise InvalidInput("must be a positive number", field="epochs")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidInput("must be at least 1", field="max_steps")
        for name in ("batch_size", "lora_rank", "lora_alpha"):
            if getattr(self, name) < 1:
                raise InvalidInput("must be at least 1", field=name)
        lr = self.lr
        if not (math.isfinite(lr) and 0 < lr < 1):
            raise InvalidInput("must be in (0, 1)", field="learning_rate")
        if not 0 <= self.lora_dropout < 1:
            raise InvalidInput("must be in [0, 1)", field="lora_dropout")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InvalidInput("must be a non-negative number", field="weight_decay")

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-3 if self.method == "lora" else 1e-4


@dataclass(frozen=True)
class TrainStats:
    """What one distillation run did: optimizer steps, examples seen, the mean training loss
    (nats per response token, as the Trainer logs it) and the wall time."""

    steps: int
    examples: int
    micro_batch: int
    train_loss: float
    seconds: float


class _Examples(torch.utils.data.Dataset[dict[str, list[int]]]):
    def __init__(self, examples: Sequence[StudentExample]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        e = self.examples[i]
        return {"input_ids": e.input_ids, "labels": e.labels}


def _collator(pad_id: int) -> Callable[[list[dict[str, list[int]]]], dict[str, torch.Tensor]]:
    def collate_rows(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        batch = collate([StudentExample(r["input_ids"], r["labels"], truncated=False) for r in rows], pad_id)
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "labels": batch.labels}

    return collate_rows


def _trainable_copy(student: nn.Module, cfg: DistillConfig) -> nn.Module:
    """A fresh copy of the student, with LoRA adapters when asked; the original stays untouched."""
    torch.manual_seed(cfg.seed)  # the adapters' initialisation
    model = copy.deepcopy(student)
    model.train()
    for p in model.parameters():
        p.requires_grad_(cfg.method == "full")
    if cfg.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",  # every linear layer except the output head
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def training_cost(model: nn.Module) -> BatchCost:
    """One training micro-batch on ``model`` (a trainable copy): the probed activations and
    backward transients, plus gradients and AdamW moments of the trainable parameters."""
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)

    def step(ids: list[int], labels: list[int]) -> object:
        out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]), use_cache=False)
        return out.loss

    return gradient_cost(model, step, fixed=OPTIMIZER_COPIES * trainable)


def micro_batch(batch_size: int, fits: Callable[[int, int], bool], width: int) -> int:
    """The largest divisor of ``batch_size`` whose micro-batch of ``width`` tokens fits, so that
    accumulation reaches exactly ``batch_size`` rows per step."""
    for size in range(batch_size, 0, -1):
        if batch_size % size == 0 and fits(size, width):
            return size
    return 1


def distil(
    student: nn.Module,
    tokenizer: Any,
    examples: Sequence[StudentExample],
    cfg: DistillConfig,
    *,
    budget: MemoryBudget | None = None,
    resident: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> tuple[nn.Module, TrainStats]:
    """Train a fresh copy of ``student`` on ``examples``; returns it (merged: a plain model of the
    student's architecture, in eval mode) and what the run did.

    Args:
        examples: the candidate's responses in the student's view (:func:`encode_for_student`).
        resident: bytes already taken besides the copy (runtime, the original student, teachers).
        progress: ``(step, total_steps)`` after every optimizer step.
        should_cancel: polled after every optimizer step; training then stops with :class:`Cancelled`.
    """
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    cfg.check()
    if not examples:
        raise InvalidInput("no responses to train on", field="candidates")
    budget = budget or MemoryBudget()
    model = _trainable_copy(student, cfg)
    cost = training_cost(model)
    plan = budget.plan(resident + module_bytes(model), cost, stage="distillation")
    width = max(len(e.input_ids) for e in examples)
    plan.require(width)
    micro = micro_batch(cfg.batch_size, plan.fits, width)
    total = training_steps(
        len(examples), batch_size=cfg.batch_size, epochs=cfg.epochs, max_steps=cfg.max_steps
    )
    cancelled = False

    class Report(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            nonlocal cancelled
            if progress is not None:
                progress(state.global_step, total)
            if should_cancel is not None and should_cancel():
                cancelled = control.should_training_stop = True
            return control

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grace-distil-") as out_dir:
        args = TrainingArguments(
            output_dir=out_dir,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=cfg.batch_size // micro,
            max_steps=total,
            learning_rate=cfg.lr,
            weight_decay=cfg.weight_decay,
            lr_scheduler_type="linear",
            optim="adamw_torch",
            seed=cfg.seed,
            data_seed=cfg.seed,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=next(student.parameters()).device.type == "cpu",
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            remove_unused_columns=False,
        )
        trainer = Trainer(
            model=model,
            args=args,
            data_collator=_collator(pad_token_id(tokenizer)),
            train_dataset=_Examples(examples),
            callbacks=[Report()],
        )
        trainer.remove_callback(PrinterCallback)  # progress goes through ``progress``, not stdout
        output = trainer.train()
        del trainer  # its optimizer state and dataloaders
    release_memory()
    if cancelled:
        raise Cancelled()
    trained = model.merge_and_unload() if cfg.method == "lora" else model  # type: ignore[operator]
    trained.eval()
    for p in trained.parameters():
        p.requires_grad_(False)
    stats = TrainStats(
        steps=int(output.global_step),
        examples=total * cfg.batch_size,
        micro_batch=micro,
        train_loss=float(output.training_loss),
        seconds=time.perf_counter() - started,
    )
    return trained, stats
