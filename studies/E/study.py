"""Study E's runs (protocol.md): each candidate's distillation set, the distillations and their
outcomes, and the predictors' scores, every stage cached under the world's root and resumable.

* ``generate``: each candidate answers every distillation prompt once at its temperature.
* ``distil``: each student is fine-tuned (full fine-tuning, the product's ``distil``) on each
  candidate's answers, once per seed; the outcome is the distilled student's greedy exact match on
  the evaluation problems, and its NLL on their references in all three styles.
* ``score``: the product's ``rank_teachers`` scores every candidate for each student on the 512
  scoring prompts under each configuration of :data:`CONFIGS`.

    python -m studies.E run [--jobs 2] [--stage generate|distil|score|all]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from studies.E.world import MAX_NEW_TOKENS, ROOT, STUDENTS, ModelSpec, load

SEEDS = (0, 1)  # distillation seeds
DISTIL_BATCH = 32
# Steps and learning rate are fixed on the pilot teacher by this rule (protocol.md), never on an
# outcome the study reports: per student, the cheapest pilot run (fewest steps, then the lower
# rate) within PLATEAU of the pilot's best accuracy.
PILOT_TEACHER = "llama-m-equations@0.7"
PILOT_STEPS = (400, 800, 1200)
PILOT_LRS = (2e-3, 5e-3)
PLATEAU = 0.02
PILOT_FILE = Path(__file__).resolve().parent / "pilot_distil.json"
# The paper's scoring setup (512 prompts x 4 responses, d = 512) on both gradient paths, and the
# product's default (d "auto", the fast path).
CONFIGS: dict[str, dict[str, Any]] = {
    "exact-512": {"proj_dim": 512, "path": "exact"},
    "fast-512": {"proj_dim": 512, "path": "fast"},
    "default": {},
}
SCORING_M = 4


@dataclass(frozen=True)
class Problems:
    """A problem set read back from the world's JSONL: prompts and per style reference solutions."""

    ids: list[str]
    questions: list[str]
    answers: list[str]
    solutions: dict[str, list[str]]

    @classmethod
    def read(cls, path: Path) -> Problems:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        styles = list(rows[0]["solutions"])
        return cls(
            [r["id"] for r in rows],
            [r["prompt"] for r in rows],
            [r["answer"] for r in rows],
            {s: [r["solutions"][s] for r in rows] for s in styles},
        )

    def prompts(self) -> list[Any]:
        from grace_engine.models.data import Prompt

        return [Prompt(i, q, a) for i, q, a in zip(self.ids, self.questions, self.answers, strict=True)]


def candidates(root: Path) -> list[Any]:
    """The zoo's candidates, one per model and temperature."""
    from grace_engine.models.candidates import read_candidates

    return read_candidates(root / "candidates.json")


def _policy(root: Path) -> Any:
    from grace_engine.models.loading import ModelPolicy

    return ModelPolicy.from_paths([root])


def candidate(root: Path, name: str) -> Any:
    """The zoo's candidate ``name``."""
    (found,) = [c for c in candidates(root) if c.name == name]
    return found


def distillation_set(root: Path, cand: Any) -> list[str]:
    """``cand``'s answers to every distillation prompt (cached)."""
    path = root / "distill-responses" / f"{cand.name}.json"
    if path.is_file():
        return list(json.loads(path.read_text())["responses"])
    from grace_engine.models.generation import GenerationSettings, TransformersBackend

    started = time.perf_counter()
    problems = Problems.read(root / "distill.jsonl")
    model, tok = load(Path(cand.model))
    settings = GenerationSettings(1, cand.temperature, 1.0, MAX_NEW_TOKENS, seed=0)
    texts = [t[0] for t in TransformersBackend().generate(model, tok, problems.prompts(), settings).texts]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"responses": texts, "seconds": time.perf_counter() - started}) + "\n")
    return texts


def outcome(model: Any, tok: Any, problems: Problems) -> dict[str, Any]:
    """A (distilled) student's greedy exact match on ``problems`` and its NLL per reference token
    on their solutions in every style, and the mean of those NLLs."""
    from grace_engine.models.data import ReferenceExample, StudentFormat
    from grace_engine.science.evaluation import evaluate, greedy_accuracy

    fmt = StudentFormat()
    refs = {
        style: [
            ReferenceExample(q, s, a)
            for q, s, a in zip(problems.questions, sols, problems.answers, strict=True)
        ]
        for style, sols in problems.solutions.items()
    }
    nll = {style: evaluate(model, tok, ex, fmt, accuracy=False).eval_nll for style, ex in refs.items()}
    first = next(iter(refs.values()))
    return {
        "accuracy": greedy_accuracy(model, tok, first, fmt, max_new_tokens=MAX_NEW_TOKENS),
        "nll": nll,
        "mean_nll": sum(nll.values()) / len(nll),
    }


@dataclass(frozen=True)
class Distillation:
    """Student ``student`` distilled on candidate ``candidate``'s distillation set with ``seed``,
    ``steps`` optimizer steps of ``batch`` examples at learning rate ``lr``."""

    root: Path
    student: ModelSpec
    candidate: str
    seed: int
    steps: int
    lr: float
    batch: int = DISTIL_BATCH

    @property
    def path(self) -> Path:
        name = f"seed{self.seed}-steps{self.steps}-lr{self.lr:g}.json"
        return self.root / "outcomes" / self.student.name / self.candidate / name


def distil_one(run: Distillation) -> dict[str, Any]:
    """``run`` and its outcome (cached); runs in a worker process."""
    root, spec, name, seed, path = run.root, run.student, run.candidate, run.seed, run.path
    if path.is_file():
        return dict(json.loads(path.read_text()))
    import torch

    from grace_engine.models.data import StudentFormat, encode_for_student
    from grace_engine.pipelines.distillation import DistillConfig, distil

    torch.set_num_threads(1)
    started = time.perf_counter()
    texts = distillation_set(root, candidate(root, name))
    problems = Problems.read(root / "distill.jsonl")
    student, tok = load(root / "students" / spec.name, field="student")
    fmt = StudentFormat().within(512)
    examples = [
        encode_for_student(tok, q, t, replace(fmt, truncate=True, max_length=256), field="response")
        for q, t in zip(problems.questions, texts, strict=True)
    ]
    cfg = DistillConfig(
        method="full", max_steps=run.steps, batch_size=run.batch, learning_rate=run.lr, seed=seed
    )
    model, stats = distil(student, tok, examples, cfg)
    trained = time.perf_counter() - started
    record = {
        "student": spec.name,
        "candidate": name,
        "seed": seed,
        "steps": run.steps,
        "batch": run.batch,
        "lr": run.lr,
        "train": asdict(stats),
        **outcome(model, tok, Problems.read(root / "eval.jsonl")),
        "train_seconds": trained,
        "seconds": time.perf_counter() - started,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def score(root: Path, spec: ModelSpec, config: str) -> dict[str, Any]:
    """Every candidate scored for student ``spec`` under ``CONFIGS[config]`` on the scoring prompts
    by the product's ``rank_teachers`` (cached; responses shared through the response store)."""
    path = root / "scores" / spec.name / f"{config}.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    from grace_engine.models.loading import ModelCache
    from grace_engine.pipelines.config import ScoringConfig
    from grace_engine.pipelines.context import EngineContext, JobInputs
    from grace_engine.pipelines.scoring import rank_teachers
    from grace_engine.stores.response_store import DirectoryResponseStore

    started = time.perf_counter()
    inputs = JobInputs(
        Problems.read(root / "score.jsonl").prompts(), candidates(root), str(root / "students" / spec.name)
    )
    cfg = ScoringConfig(responses_per_prompt=SCORING_M, **CONFIGS[config])
    ctx = EngineContext(
        policy=_policy(root),
        models=ModelCache(_policy(root)),
        responses=DirectoryResponseStore(root / "responses"),
    )
    result = rank_teachers(inputs, cfg, ctx)
    full = result.to_dict(include_responses=False)
    record = {
        "student": spec.name,
        "config": config,
        "proj_dim": result.config.proj_dim,
        "path": result.config.path,
        "values": {name: c.values for name, c in result.candidates.items()},
        "teachers": {name: c["teacher"] for name, c in full["candidates"].items()},
        "ranking": [r.name for r in result.ranking],
        "guidance": full["guidance"],
        "warnings": full["warnings"],
        "seconds": time.perf_counter() - started,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def plateau(points: Sequence[tuple[int, float, float]]) -> tuple[int, float]:
    """The cheapest ``(steps, lr)`` of ``points`` (``(steps, lr, accuracy)``) whose accuracy is
    within :data:`PLATEAU` of the best: the fewest steps, then the lower rate."""
    best = max(acc for _, _, acc in points)
    return min((steps, lr) for steps, lr, acc in points if acc >= best - PLATEAU)


def study_setting(student: str) -> tuple[int, float]:
    """The distillation ``(steps, lr)`` of ``student``, by the plateau rule on the pilot's record."""
    if not PILOT_FILE.is_file():
        raise SystemExit("no pilot_distil.json: run `python -m studies.E pilot` first")
    runs = json.loads(PILOT_FILE.read_text())["students"][student]
    return plateau([(r["steps"], r["lr"], r["accuracy"]) for r in runs])


def pilot(root: Path = ROOT, *, jobs: int = 2, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Each student distilled on the pilot teacher at each of :data:`PILOT_STEPS` (seed 0), into
    ``pilot_distil.json``: the protocol fixes the study's steps from it by its plateau rule, before
    any other candidate is distilled or scored."""
    runs = [
        Distillation(root, s, PILOT_TEACHER, 0, steps, lr)
        for s in STUDENTS
        for lr in PILOT_LRS
        for steps in PILOT_STEPS
    ]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        records = list(pool.map(distil_one, runs))
    out: dict[str, Any] = {"teacher": PILOT_TEACHER, "students": {}}
    for run, record in zip(runs, records, strict=True):
        out["students"].setdefault(run.student.name, []).append(
            {k: record[k] for k in ("steps", "lr", "accuracy", "mean_nll", "nll", "train_seconds", "seconds")}
        )
        log(
            f"{run.student.name:<14} {run.steps:>5} steps at {run.lr:g}  accuracy {record['accuracy']:.1%}  "
            f"{record['seconds']:.0f} s"
        )
    out["chosen"] = {
        name: dict(
            zip(("steps", "lr"), plateau([(r["steps"], r["lr"], r["accuracy"]) for r in runs]), strict=True)
        )
        for name, runs in out["students"].items()
    }
    PILOT_FILE.write_text(json.dumps(out, indent=2) + "\n")
    log(f"study settings by the plateau rule: {out['chosen']}")
    return out


def _generate_one(args: tuple[Path, str]) -> str:
    import torch

    root, name = args
    torch.set_num_threads(1)
    distillation_set(root, candidate(root, name))
    return name


def run(
    root: Path = ROOT,
    *,
    stage: str = "all",
    jobs: int = 2,
    students: Sequence[ModelSpec] = STUDENTS,
    seeds: Sequence[int] = SEEDS,
    log: Callable[[str], None] = print,
) -> None:
    """Run (or finish) the study's stages under ``root``, ``jobs`` processes at a time."""
    names = [c.name for c in candidates(root)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        if stage in ("generate", "all"):
            for name in pool.map(_generate_one, [(root, n) for n in names]):
                log(f"generated {name}")
        if stage in ("distil", "all"):
            work = [
                Distillation(root, s, n, seed, *study_setting(s.name))
                for seed in seeds
                for s in students
                for n in names
            ]
            for record in pool.map(distil_one, work):
                log(
                    f"{record['student']:<14} {record['candidate']:<26} seed {record['seed']}  "
                    f"accuracy {record['accuracy']:.1%}  mean NLL {record['mean_nll']:.3f}  "
                    f"{record['seconds']:.0f} s"
                )
    if stage in ("score", "all"):
        for spec in students:
            for config in CONFIGS:
                record = score(root, spec, config)
                log(f"scored {spec.name} {config}: d={record['proj_dim']} {record['seconds']:.0f} s")
