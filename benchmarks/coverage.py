"""Do the ranking's stated intervals cover the truth, and is `settled` right when it says so?

    .venv/bin/python benchmarks/coverage.py            # 200 repetitions per scenario (a few minutes)
    .venv/bin/python benchmarks/coverage.py --reps 50  # quicker, coarser

Synthetic candidates with a known population: candidate ``c``'s gradient rows for prompt ``p`` are
``s_c * (a_c * u_p + e)`` times a log-normal per-row scale (gradient norms are heavy-tailed), with
``u_p`` a prompt effect shared by every candidate (so candidates are compared paired, as on real
prompts) and ``e`` noise whose spectrum differs by candidate. The truth a gap's interval describes is
the expected GRACE difference at the job's ``n`` (GRACE as released, mean over its 10 splits):
estimated from ``--truth`` fresh independent samples of ``n`` prompts, an estimate whose own error
the report gives. Each repetition draws one sample of ``n`` prompts, computes the uncertainty the
service reports (:func:`grace_engine.science.uncertainty.rank_uncertainty`, its defaults: 10 x 10-fold, 90%),
and checks:

* coverage: every non-leader's ``gap`` interval against the true difference to the sample's leader;
* settled: among repetitions that say ``settled``, the share whose leader is not truly better than
  the runner-up (a true tie counts as wrong).

Goals (issue 25): coverage within 85-95%, and settled wrong in at most 10% of settled cases.
Results go to ``benchmarks/coverage.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grace_engine.science.grace import grace
from grace_engine.science.predictors import Evidence, GraceSettings, value
from grace_engine.science.uncertainty import rank_uncertainty

FloatArray = npt.NDArray[np.float64]
OUT = Path(__file__).with_name("coverage.json")


@dataclass(frozen=True)
class Population:
    """One candidate's gradient distribution: shared-effect loading, overall scale, noise spectrum."""

    loading: float
    scale: float
    decay: float  # noise std of coordinate k is decay**k


@dataclass(frozen=True)
class Scenario:
    name: str
    n: int
    m: int
    d: int
    candidates: dict[str, Population]


SCENARIOS = [
    Scenario(
        "clear leader",
        40,
        4,
        16,
        {"a": Population(1.0, 0.6, 0.9), "b": Population(1.0, 1.0, 0.9), "c": Population(0.5, 1.0, 0.8)},
    ),
    Scenario(
        "close pair",
        40,
        4,
        16,
        {"a": Population(1.0, 1.0, 0.9), "b": Population(1.0, 1.0, 0.85), "c": Population(0.3, 1.5, 0.9)},
    ),
    Scenario(
        "twins",
        30,
        2,
        8,
        {"a": Population(1.0, 1.0, 0.9), "b": Population(1.0, 1.0, 0.9), "c": Population(1.0, 2.0, 0.7)},
    ),
    Scenario(
        "many prompts, fewer rows than d",
        60,
        2,
        128,
        {"a": Population(1.0, 1.0, 0.97), "b": Population(1.2, 1.0, 0.95), "c": Population(0.8, 1.0, 0.98)},
    ),
]


def sample(s: Scenario, rng: np.random.Generator) -> dict[str, FloatArray]:
    """Every candidate's ``(n * m, d)`` gradients on one fresh sample of ``n`` prompts."""
    shared = np.repeat(rng.normal(size=(s.n, s.d)), s.m, axis=0)
    out = {}
    for name, pop in s.candidates.items():
        noise = rng.normal(size=(s.n * s.m, s.d)) * pop.decay ** np.arange(s.d)
        norms = np.exp(rng.normal(scale=0.5, size=(s.n * s.m, 1)))
        out[name] = pop.scale * norms * (pop.loading * shared + noise)
    return out


def truth(s: Scenario, reps: int, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Expected GRACE at ``n`` of every candidate, and the standard error of that estimate. The
    candidates share the samples, so their differences are estimated more precisely than this."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {c: [] for c in s.candidates}
    for _ in range(reps):
        for c, g in sample(s, rng).items():
            values[c].append(grace(g, s.m).score)
    return (
        {c: float(np.mean(v)) for c, v in values.items()},
        {c: float(np.std(v, ddof=1) / np.sqrt(len(v))) for c, v in values.items()},
    )


def _evidence(g: FloatArray, m: int) -> Evidence:
    rows = g.shape[0]
    ones = np.ones(rows)
    return Evidence(g, ones, ones, ones, np.full(rows, np.nan), m)


def run(s: Scenario, reps: int, truth_reps: int, subsamples: int) -> dict[str, Any]:
    true, true_se = truth(s, truth_reps, seed=10_000)
    rng = np.random.default_rng(1)
    covered = total = runner_covered = settled = wrong = 0
    started = time.perf_counter()
    for _ in range(reps):
        evidence = {c: _evidence(g, s.m) for c, g in sample(s, rng).items()}
        point = {c: float(value("grace", ev, GraceSettings()) or 0.0) for c, ev in evidence.items()}
        u = rank_uncertainty(evidence, "grace", point, settings=GraceSettings(), n_subsamples=subsamples)
        for c, cu in u.candidates.items():
            if cu.vs_leader is None:
                continue
            lo, hi = cu.vs_leader.interval
            hit = lo <= true[c] - true[u.leader] <= hi
            covered += hit
            total += 1
            runner_covered += hit and c == u.runner_up
        if u.settled and u.runner_up is not None:
            settled += 1
            wrong += not true[u.leader] < true[u.runner_up]
    return {
        "scenario": s.name,
        "n": s.n,
        "m": s.m,
        "d": s.d,
        "true_grace": true,
        "true_grace_se": true_se,
        "repetitions": reps,
        "coverage": covered / total,
        "coverage_runner_up": runner_covered / reps,
        "intervals": total,
        "settled": settled,
        "settled_wrong": wrong,
        "settled_wrong_share": wrong / settled if settled else None,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--truth", type=int, default=4000, help="fresh samples behind the true values")
    parser.add_argument("--subsamples", type=int, default=20, help="P(top-1) subsamples (not checked here)")
    parser.add_argument("--only", help="run only the scenario with this name")
    args = parser.parse_args()
    results = []
    for s in SCENARIOS:
        if args.only and s.name != args.only:
            continue
        r = run(s, args.reps, args.truth, args.subsamples)
        results.append(r)
        share = r["settled_wrong_share"]
        print(
            f"{s.name:34s} coverage {r['coverage']:.1%} (runner-up {r['coverage_runner_up']:.1%}, "
            f"{r['intervals']} intervals); settled {r['settled']}/{args.reps}, wrong "
            f"{'-' if share is None else f'{share:.1%}'} ({r['seconds']:.0f} s)",
            flush=True,
        )
    intervals = sum(r["intervals"] for r in results)
    pooled = sum(r["coverage"] * r["intervals"] for r in results) / intervals
    settled = sum(r["settled"] for r in results)
    wrong = sum(r["settled_wrong"] for r in results)
    summary = {
        "coverage": pooled,
        "settled": settled,
        "settled_wrong_share": wrong / settled if settled else None,
        "goals": {"coverage": [0.85, 0.95], "settled_wrong_share_max": 0.10},
    }
    print(f"pooled coverage {pooled:.1%}; settled wrong {wrong}/{settled}")
    if not args.only:
        OUT.write_text(json.dumps({"summary": summary, "scenarios": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
