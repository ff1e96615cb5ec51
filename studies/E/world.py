"""Study E's world: the arithmetic task's problem sets, a zoo of teachers, and the students.

Everything is built here from nothing, seeded, on the CPU, and cached: a model whose directory
holds ``trained.json`` is not trained again, so a stopped build picks up where it stopped.

* **Problems** (:func:`problem_sets`): the teachers' training problems, the distillation prompts
  (the student's training set, which each candidate answers in full), the 512 scoring prompts and
  the evaluation problems, disjoint by construction (:mod:`grace_engine.models.arithmetic`).
* **The zoo** (:data:`ZOO`): models of three families (Llama, GPT-2, GPT-NeoX), each with its own
  byte-level BPE tokenizer and chat template, of two or more sizes per family, trained for
  different numbers of steps on the reference solutions of one style each. Every model is a
  candidate at each of :data:`TEMPERATURES`.
* **The students** (:data:`STUDENTS`): two families and sizes, pretrained on the world's problems
  in their own template (no solution after it) and generic text (the shipped GSM8K subset's
  problems), never on a solution.

    python -m studies.E build [--jobs 2]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from grace_engine.models.arithmetic import STYLES, Difficulty, Problem, generate
from grace_engine.models.data import DEFAULT_INSTRUCTION, Prompt, StudentFormat

Family = Literal["llama", "gpt2", "gpt_neox"]
HERE = Path(__file__).resolve().parent
ROOT = HERE / "world"  # built here (git-ignored): models, problem sets, caches

# Fixed on the pilot (pilot.json): a Llama of 0.43M parameters trained on verbose solutions reaches
# ~65% held-out exact match after 500 steps and ~92% after 1,000 on this mix, so the zoo's
# training budgets span weak to strong teachers.
LEVEL = Difficulty(
    steps=(1, 2, 3, 4), weights=(4, 3, 2, 1), max_value=50, max_start=20, max_term=10, max_factor=3
)
TEMPERATURES = (0.3, 0.7, 1.1)
MAX_NEW_TOKENS = 96  # the longest reference (verbose, 4 steps) is ~70 tokens in every tokenizer
BATCH, SEQ_LEN, LR = 32, 128, 3e-3  # every model's training: windows of the text stream


@dataclass(frozen=True)
class ModelSpec:
    """One model to train: architecture (``family``, ``hidden``, ``layers``), tokenizer size
    (``vocab``), training ``steps`` of ``batch`` windows and ``seed``; a teacher trains on
    reference solutions of ``style``, a student (``style`` None) on problem text and generic text
    only."""

    name: str
    family: Family
    hidden: int
    layers: int
    vocab: int
    steps: int
    seed: int
    style: str | None = None
    batch: int = BATCH


ZOO: tuple[ModelSpec, ...] = (
    ModelSpec("llama-s-verbose", "llama", 64, 2, 512, 1500, 11, "verbose"),
    ModelSpec("llama-m-equations", "llama", 128, 2, 512, 1200, 12, "equations"),
    ModelSpec("llama-m-answer_first", "llama", 128, 2, 512, 1500, 13, "answer_first"),
    ModelSpec("gpt2-s-verbose", "gpt2", 64, 2, 640, 400, 21, "verbose"),
    ModelSpec("gpt2-m-equations", "gpt2", 96, 3, 640, 1500, 22, "equations"),
    ModelSpec("gpt2-m-verbose", "gpt2", 96, 3, 640, 2000, 23, "verbose"),
    ModelSpec("neox-s-equations", "gpt_neox", 64, 2, 768, 500, 31, "equations"),
    ModelSpec("neox-m-verbose", "gpt_neox", 128, 2, 768, 1200, 32, "verbose"),
    ModelSpec("neox-m-answer_first", "gpt_neox", 128, 2, 768, 2000, 33, "answer_first"),
)
STUDENTS: tuple[ModelSpec, ...] = (
    ModelSpec("student-llama", "llama", 96, 2, 512, 600, 41),
    ModelSpec("student-gpt2", "gpt2", 96, 2, 576, 600, 42),
)


@dataclass(frozen=True)
class Sizes:
    """Problems per set."""

    teacher_train: int = 8000
    distill: int = 2000
    score: int = 512
    eval: int = 500


def problem_sets(sizes: Sizes, level: Difficulty = LEVEL) -> dict[str, list[Problem]]:
    """The world's problem sets, seeded: ``teacher_train`` and ``distill`` are disjoint parts of
    the train split; ``score`` and ``eval`` are their own splits."""
    train = generate(sizes.teacher_train + sizes.distill, "train", seed=0, level=level)
    return {
        "teacher_train": train[: sizes.teacher_train],
        "distill": train[sizes.teacher_train :],
        "score": generate(sizes.score, "score", seed=0, level=level),
        "eval": generate(sizes.eval, "eval", seed=0, level=level),
    }


def prompts(problems: Sequence[Problem]) -> list[Prompt]:
    return [p.prompt() for p in problems]


def _model(spec: ModelSpec, tok: Any) -> Any:
    from grace_engine.models.tiny_models import EOS, tiny_gpt2, tiny_llama, tiny_neox

    ids = {"eos_id": tok.convert_tokens_to_ids(EOS), "pad_id": tok.pad_token_id}
    if spec.family == "gpt2":  # no dropout, as the other two families have none
        return tiny_gpt2(len(tok), hidden=spec.hidden, layers=spec.layers, dropout=0.0, **ids)
    make = tiny_llama if spec.family == "llama" else tiny_neox
    return make(len(tok), hidden=spec.hidden, layers=spec.layers, **ids)


def _generic_text() -> list[str]:
    """Generic text for the students: GSM8K's problems, without their solutions (with them, a
    student learns to end in "The answer is \\boxed{12}" whatever it was asked, and scores 4% by
    chance on this world's small answers)."""
    from grace_engine.models.tiny_models import gsm8k_records

    return [r["question"] for r in gsm8k_records()]


def training_texts(spec: ModelSpec, problems: Sequence[Problem]) -> tuple[Any, list[str]]:
    """The model's tokenizer and training texts: a teacher's chat turns (the instruction and problem,
    then the reference solution in its style), or a student's problem and generic text."""
    import torch

    from grace_engine.models.generation import teacher_input
    from grace_engine.models.tiny_models import train_tokenizer

    torch.manual_seed(spec.seed)
    if spec.style is None:
        # Each problem in the student's template with no solution after it: the student knows the
        # problems and where a solution would go, and has never seen one. Trained on the bare
        # problems instead, it continued with another problem, whose last number matched the
        # answer by chance on 1-4% of the evaluation problems.
        fmt = StudentFormat()
        texts = [fmt.head(p.question) for p in problems] + _generic_text()
        return train_tokenizer(texts, spec.vocab, chat=False), texts
    pairs = [(p.question, p.solution(spec.style)) for p in problems]
    tok = train_tokenizer([q + "\n" + s for q, s in pairs] + [DEFAULT_INSTRUCTION], spec.vocab, chat=True)
    return tok, [teacher_input(tok, q, DEFAULT_INSTRUCTION) + s for q, s in pairs]


def train_model(spec: ModelSpec, problems: Sequence[Problem], out: Path) -> dict[str, Any]:
    """Train ``spec`` and save it with its tokenizer under ``out``; cached by ``trained.json``."""
    done = out / "trained.json"
    if done.is_file():
        return dict(json.loads(done.read_text()))
    import torch

    from grace_engine.models.tiny_models import train_lm

    started = time.perf_counter()
    tok, texts = training_texts(spec, problems)
    torch.manual_seed(spec.seed)
    model = _model(spec, tok)
    loss = train_lm(
        model, tok, texts, steps=spec.steps, seed=spec.seed, seq_len=SEQ_LEN, batch_size=spec.batch, lr=LR
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    record = {
        **asdict(spec),
        "params": sum(p.numel() for p in model.parameters()),
        "final_loss": loss,
        "train_seconds": time.perf_counter() - started,
    }
    done.write_text(json.dumps(record, indent=2) + "\n")
    return record


def load(path: Path, *, field: str = "model") -> tuple[Any, Any]:
    """The model and tokenizer saved at ``path``, loaded as the product loads them (its model
    policy, its directory's parent as the root)."""
    from grace_engine.models.loading import ModelPolicy, load_causal_lm, load_tokenizer, resolve_model

    policy = ModelPolicy.from_paths([path.parent])
    source = resolve_model(str(path), policy, field=field)
    return load_causal_lm(source, policy), load_tokenizer(source, policy)


def teacher_accuracy(path: Path, problems: Sequence[Problem], *, temperature: float, seed: int = 0) -> float:
    """The share of ``problems`` a teacher answers right at ``temperature`` (0: greedy), one
    response each, prompted as a candidate is and judged as the teacher-accuracy predictor judges."""
    from grace_engine.models.generation import GenerationSettings, TransformersBackend
    from grace_engine.science.grace import response_correct

    model, tok = load(path)
    settings = GenerationSettings(1, temperature, 1.0, MAX_NEW_TOKENS, seed)
    texts = TransformersBackend().generate(model, tok, prompts(problems), settings).texts
    return float(response_correct(texts, [str(p.answer) for p in problems]).mean())


def _build_one(args: tuple[ModelSpec, Sizes, Difficulty, Path]) -> dict[str, Any]:
    """One model of the world, trained and (a teacher) measured; run in a worker process."""
    import torch

    spec, sizes, level, root = args
    torch.set_num_threads(1)
    sets = problem_sets(sizes, level)
    out = root / ("students" if spec.style is None else "zoo") / spec.name
    # Students read problem text of every training problem; teachers the solutions of theirs.
    record = train_model(spec, sets["teacher_train"] + (sets["distill"] if spec.style is None else []), out)
    if "accuracy" not in record:  # a student's before distillation; a teacher's at each temperature
        started = time.perf_counter()
        if spec.style is None:
            record["accuracy"] = {"0.0": student_accuracy(out, sets["eval"])}
        else:
            record["accuracy"] = {
                str(t): teacher_accuracy(out, sets["eval"], temperature=t) for t in (0.0, *TEMPERATURES)
            }
        record["accuracy_seconds"] = time.perf_counter() - started
        (out / "trained.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def student_accuracy(path: Path, problems: Sequence[Problem]) -> float:
    """A student's greedy exact match, continuing its template (before or after distillation)."""
    from grace_engine.models.data import ReferenceExample, StudentFormat
    from grace_engine.science.evaluation import greedy_accuracy

    model, tok = load(path, field="student")
    examples = [ReferenceExample(p.question, p.solution("verbose"), str(p.answer)) for p in problems]
    return greedy_accuracy(model, tok, examples, StudentFormat(), max_new_tokens=MAX_NEW_TOKENS)


def candidates_file(root: Path, zoo: Sequence[ModelSpec] = ZOO) -> Path:
    """The zoo as candidates: every model at every temperature (``name@T``)."""
    path = root / "candidates.json"
    entries = [
        {
            "name": s.name,
            "model": f"zoo/{s.name}",
            "temperatures": list(TEMPERATURES),
            "max_tokens": MAX_NEW_TOKENS,
        }
        for s in zoo
    ]
    path.write_text(json.dumps({"candidates": entries}, indent=2) + "\n")
    return path


def build(
    root: Path = ROOT,
    *,
    sizes: Sizes = Sizes(),
    level: Difficulty = LEVEL,
    zoo: Sequence[ModelSpec] = ZOO,
    students: Sequence[ModelSpec] = STUDENTS,
    jobs: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Build (or finish building) the world under ``root``: the problem sets as JSONL, every zoo
    model and student (``jobs`` at a time, one CPU thread each), the candidate file; returns each
    model's record (its spec, size, loss, times and accuracies). ``level``: the problems'
    difficulty."""
    root.mkdir(parents=True, exist_ok=True)
    for name, problems in problem_sets(sizes, level).items():
        path = root / f"{name}.jsonl"
        if not path.is_file():
            path.write_text("".join(json.dumps(_record(p)) + "\n" for p in problems))
    specs = [*students, *zoo]
    records: dict[str, dict[str, Any]] = {}
    # Longest first, so the last job to start is a short one.
    order = sorted(specs, key=lambda s: -s.steps * s.hidden * s.layers)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for spec, record in zip(
            order, pool.map(_build_one, [(s, sizes, level, root) for s in order]), strict=True
        ):
            records[spec.name] = record
            acc = record.get("accuracy", {})
            log(
                f"{spec.name:<22} {record['params']:>9,d} params  loss {record['final_loss']:.3f}  "
                f"{record['train_seconds']:.0f} s  accuracy "
                + " ".join(f"T{t}:{a:.0%}" for t, a in acc.items())
            )
    candidates_file(root, zoo)
    (root / "world.json").write_text(
        json.dumps({"sizes": asdict(sizes), "level": asdict(level), "models": records}, indent=2) + "\n"
    )
    return records


def _record(p: Problem) -> dict[str, Any]:
    return {
        "id": p.id,
        "prompt": p.question,
        "answer": str(p.answer),
        "solutions": {s: p.solution(s) for s in STYLES},
    }
