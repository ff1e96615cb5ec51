"""Budget-aware ranking against a full run: hit rate of the full run's top-1, and compute used.

    .venv/bin/python benchmarks/budget.py tiny       # tiny student, 9 candidates, 256 prompts x 4
    .venv/bin/python benchmarks/budget.py smollm2    # SmolLM2-135M, 5 supplied candidates, 256 prompts x 1

Each setting computes every candidate's projected gradients on every prompt once, at d = 512. The
full run is GRACE on all of them at the ``auto`` d for all prompts; each of the 20 seeded budget-aware
runs (a seeded prompt order, rounds from 16 prompts doubling, candidates dropped below P(top-1) 1%)
takes its rows from the same pass and scores each round at the ``auto`` d for that round's prompts,
as a budget-aware job does. A smaller d is the d = 512 CountSketch folded (bucket b to b mod d),
itself a CountSketch to d dimensions. The goal: the full run's top-1 with at most 30% of its
gradient examples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grace_engine.models.candidates import Candidate, read_candidates
from grace_engine.models.data import Prompt, StudentFormat
from grace_engine.models.loading import ModelCache, ModelPolicy
from grace_engine.models.tiny_models import build_tiny_models, gsm8k_records
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.scoring import rank_teachers
from grace_engine.science.adaptive import RankingBudget, adaptive_evidence
from grace_engine.science.grace import auto_proj_dim
from grace_engine.science.predictors import Evidence, GraceSettings, value
from grace_engine.science.uncertainty import Uncertainty, rank_uncertainty
from grace_engine.stores.response_store import DirectoryResponseStore
from studies import candidates as cands

WORK = Path(".grace/benchmarks/budget")
BASE_D = 512
N_PROMPTS = 256
REPEATS = 20
RESAMPLES = 100  # per round; the service's default is 200
GOAL = 0.30


def _prompts() -> tuple[list[Prompt], list[dict[str, Any]]]:
    records = gsm8k_records()[:N_PROMPTS]
    prompts = [Prompt(cands.prompt_id(r), r["question"], r["answer"]) for r in records]
    return prompts, records


def _supplied(records: list[dict[str, Any]], m: int, *, terse: bool) -> list[Candidate]:
    sets = {
        "gold": cands.gold(records, m),
        "gold-wrong-50": cands.wrong_answers(records, m, rate=0.5),
        "gold-shuffled": cands.shuffled_steps(records, m),
        "other-problem": cands.other_problem(records, m),
    }
    if terse:
        sets["terse"] = cands.terse(records, m)
    return [Candidate(name, responses=texts, responses_per_prompt=m) for name, texts in sets.items()]


def setting(name: str) -> tuple[str, Path, list[Candidate], int]:
    """(student, model root, candidates, m) of a benchmark setting, building what is missing."""
    _, records = _prompts()
    if name == "tiny":
        root = WORK / "tiny-models"
        if not (root / "student" / "config.json").is_file():
            build_tiny_models(root, seed=0, steps=300)
        teachers = read_candidates(root / "candidates.json")
        return str(root / "student"), root, [*teachers, *_supplied(records, 4, terse=False)], 4
    from grace_cli.main import main as grace

    root = WORK / "smollm2"
    if grace(["models", "smollm2", str(root / "student")]) != 0:
        raise SystemExit("could not convert SmolLM2")
    return str(root / "student"), root, _supplied(records, 1, terse=True), 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("setting", choices=["tiny", "smollm2"])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    student, root, candidates, m = setting(args.setting)
    prompts, _ = _prompts()
    policy = ModelPolicy.from_paths([root])
    started = time.perf_counter()
    full_pass = rank_teachers(
        JobInputs(prompts, candidates, student),
        ScoringConfig(
            responses_per_prompt=m,
            proj_dim=BASE_D,
            bootstrap=0,
            predictors=("grace",),
            seed=0,
            student_format=StudentFormat(truncate=True),
        ),
        EngineContext(
            policy=policy,
            models=ModelCache(policy, capacity=2),
            responses=DirectoryResponseStore(WORK / "responses"),
        ),
    )
    gradient_seconds = time.perf_counter() - started
    evidence = full_pass.evidence
    names = list(evidence)
    settings = GraceSettings()
    d_full = auto_proj_dim(N_PROMPTS, m)
    full = {c: value("grace", ev.folded(d_full), settings) for c, ev in evidence.items()}
    full_top = min(full, key=lambda c: (full[c], c))
    budget = RankingBudget(initial_prompts=16)
    d_first = auto_proj_dim(budget.initial_prompts, m)
    folded = {c: ev.folded(d_full) for c, ev in evidence.items()}

    def dim(n: int) -> int:
        return auto_proj_dim(n, m)

    def assess(active: dict[str, Evidence], confidence: float) -> Uncertainty:
        point = {c: float(value("grace", ev, settings) or 0.0) for c, ev in active.items()}
        return rank_uncertainty(
            active, "grace", point, settings=settings, n_subsamples=RESAMPLES, seed=0, confidence=confidence
        )

    runs = []
    for seed in range(args.repeats):

        def collect(name: str, idx: npt.NDArray[np.int64]) -> Evidence:
            return folded[name].take(idx)

        t0 = time.perf_counter()
        _, u, report = adaptive_evidence(
            names, N_PROMPTS, {c: m for c in names}, collect, assess, replace(budget, seed=seed), dim=dim
        )
        runs.append(
            {
                "seed": seed,
                "top1": u.leader,
                "hit": u.leader == full_top,
                "stopped": report.stopped,
                "rounds": len(report.rounds),
                "prompts": report.rounds[-1].n_prompts,
                "proj_dim": report.rounds[-1].proj_dim,
                "compute_fraction": report.compute_fraction,
                "dropped": sorted(report.dropped),
                "seconds": time.perf_counter() - t0,
            }
        )
        r = runs[-1]
        print(
            f"seed {seed:2d}: top-1 {r['top1']:<14} {'hit ' if r['hit'] else 'MISS'} {r['stopped']:<9} "
            f"{r['rounds']} rounds, {r['prompts']:3d} prompts at d={r['proj_dim']}, "
            f"{r['compute_fraction']:.1%} of the compute",
            flush=True,
        )
    fractions = np.array([r["compute_fraction"] for r in runs])
    hits = np.array([r["hit"] for r in runs])
    summary = {
        "setting": args.setting,
        "candidates": names,
        "n_prompts": N_PROMPTS,
        "responses_per_prompt": m,
        "full_run": {"proj_dim": d_full, "grace": full, "top1": full_top},
        "budget": {
            "initial_prompts": budget.initial_prompts,
            "growth": budget.growth,
            "first_proj_dim": d_first,
        },
        "bootstrap_resamples": RESAMPLES,
        "repeats": len(runs),
        "hit_rate": float(hits.mean()),
        "hit_rate_within_goal": float(np.mean(hits & (fractions <= GOAL))),
        "compute_fraction": {
            "mean": float(fractions.mean()),
            "median": float(np.median(fractions)),
            "max": float(fractions.max()),
        },
        "gradient_pass_seconds": round(gradient_seconds, 1),
        "runs": runs,
    }
    out = Path(__file__).resolve().parent / f"budget-{args.setting}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    print(
        f"\nfull run (d={d_full}): top-1 {full_top}. Budget-aware (d={d_first} first, {len(runs)} seeds): "
        f"hit rate {summary['hit_rate']:.0%}, within {GOAL:.0%} of the compute and a hit "
        f"{summary['hit_rate_within_goal']:.0%}; compute mean {fractions.mean():.1%}, "
        f"median {np.median(fractions):.1%}, max {fractions.max():.1%}. Wrote {out.name}."
    )


if __name__ == "__main__":
    main()
