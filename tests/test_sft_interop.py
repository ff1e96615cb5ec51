"""The exported training set in TRL (issue 28): ``SFTTrainer`` reads both forms and trains the tiny
student on them, tokenizing each example to exactly what GRACE scored: the prompt/completion form
through the student's template, the chat form through the chat template the tiny student ships
(the same template around the teacher's user turn). Three optimizer steps each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from grace_engine.models.data import (
    DEFAULT_INSTRUCTION,
    SFT_FORMS,
    SftForm,
    StudentFormat,
    encode_for_student,
    read_prompts,
)
from grace_engine.models.tiny_models import TinyModels
from grace_engine.science.mixture import MixedExample, sft_jsonl

FMT = StudentFormat()


@pytest.mark.parametrize("form", SFT_FORMS)
def test_sft_trainer_trains_the_tiny_student_on_the_scored_text(
    tiny: TinyModels, tmp_path: Path, form: SftForm
) -> None:
    prompts = read_prompts(tiny.prompts_file)[:8]
    rows = [
        MixedExample(p.id, p.prompt, "tutor", 0, f"Step by step: the answer is {p.answer}.", 0.1, "grace")
        for p in prompts
    ]
    path = tmp_path / f"{form}.jsonl"
    path.write_text(sft_jsonl(rows, form, student_format=FMT, instruction=DEFAULT_INSTRUCTION), "utf-8")
    tok = AutoTokenizer.from_pretrained(tiny.student)
    model = AutoModelForCausalLM.from_pretrained(tiny.student)
    before = [p.detach().clone() for p in model.parameters()]
    config = SFTConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=load_dataset("json", data_files=str(path), split="train"),
        processing_class=tok,
    )
    # What TRL will train on is what the engine scored: the same token ids, and for the
    # prompt/completion form the loss on the same (response + EOS) tokens.
    instruction = "" if form == "prompt_completion" else DEFAULT_INSTRUCTION  # chat: the teacher's turn
    for example, row, p in zip(trainer.train_dataset, rows, prompts, strict=True):
        scored = encode_for_student(tok, instruction + p.prompt, row.response, FMT)
        assert example["input_ids"] == scored.input_ids, (form, p.id)
        if form == "prompt_completion":  # the loss on the scored positions only
            assert example["labels"] == scored.labels, p.id
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert json.loads(path.read_text("utf-8").splitlines()[0])["teacher"] == "tutor"
