"""Study C: which proj_dim, as a function of the training rows per split? (protocol.md)

python -m studies.C     (needs the inputs Studies A and B left under .grace/studies; builds them if absent)
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from grace_engine.models.candidates import Candidate, read_candidates
from grace_engine.models.data import read_prompts
from grace_engine.models.loading import ModelCache, ModelPolicy
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.results import RankingResult
from grace_engine.pipelines.scoring import rank_teachers
from grace_engine.science.grace import train_rows
from grace_engine.science.predictors import Evidence, GraceSettings, value
from grace_engine.science.ranking import spearman
from grace_engine.stores.response_store import DirectoryResponseStore
from studies.run import HERE

DIMS = (8, 16, 32, 64, 128, 256, 512, 1024)
SEEDS = (0, 1, 2)
RULE_KS = (1, 2, 4, 8)
TIE = 0.02
ROOT = Path(".grace/studies")


def first_responses(ev: Evidence, m: int) -> Evidence:
    """The evidence of the first ``m`` responses of every prompt."""
    rows = (np.arange(ev.n_prompts)[:, None] * ev.m + np.arange(m)[None, :]).reshape(-1)
    return Evidence(
        ev.gradients[rows], ev.losses[rows], ev.n_tokens[rows], ev.rank_sums[rows], ev.correct[rows], m
    )


def values(name: str, evidence: dict[str, Evidence], order: list[str], d: int | None = None) -> list[float]:
    """Predictor ``name`` of every candidate in ``order`` (gradients folded to ``d`` when given)."""
    out = []
    for c in order:
        ev = evidence[c] if d is None else evidence[c].folded(d)
        v = value(name, ev, GraceSettings())
        assert v is not None
        out.append(v)
    return out


def score_study(
    student: Path, candidates: list[Candidate], prompts: Path, root: Path, m: int, store: Path | None
) -> list[RankingResult]:
    """One result per projection seed at d = 1024; seeds after the first score the first run's
    responses (supplied), so only the projection changes."""
    policy = ModelPolicy.from_paths([root])
    cache = ModelCache(policy, capacity=2)
    results: list[RankingResult] = []
    for seed in SEEDS:
        config = ScoringConfig(
            responses_per_prompt=m,
            proj_dim=DIMS[-1],
            seed=seed,
            bootstrap=0,
            predictors=("grace", "g_norm", "student_nll", "rsr", "length"),
        )
        if results:
            first = results[0].candidates
            ids = [p.id for p in read_prompts(prompts)]
            candidates = [
                Candidate(
                    c.name,
                    responses=dict(zip(ids, first[c.name].responses, strict=True)),
                    responses_per_prompt=m,
                )
                for c in candidates
            ]
        started = time.perf_counter()
        results.append(
            rank_teachers(
                JobInputs(read_prompts(prompts), candidates, str(student)),
                config,
                EngineContext(
                    policy=policy,
                    models=cache,
                    responses=None if store is None else DirectoryResponseStore(store),
                ),
            )
        )
        print(f"  seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    return results


def check_same_responses(result: RankingResult, study: dict[str, Any]) -> None:
    """The re-scored responses are the study's: same student NLL and length per candidate."""
    for name, c in study["candidates"].items():
        mine = result.candidates[name]
        for key, theirs in (
            ("student_nll", c["student_nll"]),
            ("mean_response_tokens", c["mean_response_tokens"]),
        ):
            if not math.isclose(getattr(mine, key), theirs, rel_tol=1e-4):
                raise SystemExit(f"{name}: {key} {getattr(mine, key)} != study's {theirs}; responses differ")


def cells(name: str, results: list[RankingResult]) -> list[dict[str, Any]]:
    """Per (rows, d): Spearman of every predictor with the outcome, averaged over seeds and subsets."""
    study = json.loads((HERE / name / "results.json").read_text("utf-8"))
    check_same_responses(results[0], study)
    outcome = {n: c["outcome"]["eval_nll"] for n, c in study["candidates"].items()}
    names = sorted(outcome)
    settings = GraceSettings()
    m, n = results[0].evidence[names[0]].m, results[0].evidence[names[0]].n_prompts
    variants: list[tuple[str, list[Any]]] = []
    if m > 1:  # A: fewer responses per prompt
        variants = [(f"m={k}", [("all", k)]) for k in (1, 2, 4)]
    else:  # B: fewer prompts, three seeded subsets each
        variants = [
            (f"n={size}", [(np.sort(np.random.default_rng(s).permutation(n)[:size]), 1) for s in range(3)])
            if size < n
            else (f"n={n}", [("all", 1)])
            for size in (24, 48, 96)
        ]
    out = []
    for label, subsets in variants:
        per_d: dict[int, dict[str, list[float]]] = {d: {"grace": [], "g_norm": []} for d in DIMS}
        fixed: dict[str, list[float]] = {"student_nll": [], "rsr": [], "length": []}
        rows = 0
        for prompts, k in subsets:
            for r in results:
                evs = {}
                for c in names:
                    ev = first_responses(r.evidence[c], k)
                    evs[c] = ev if isinstance(prompts, str) else ev.take(prompts)
                rows = train_rows(next(iter(evs.values())).n_prompts, k, settings.test_fraction)
                target = [outcome[c] for c in names]
                for d in DIMS:
                    for p in ("grace", "g_norm"):
                        per_d[d][p].append(spearman(values(p, evs, names, d), target))
                for p in fixed:
                    vals = values(p, evs, names)
                    # length: longer is better, so its goodness is -length against -eval_nll
                    fixed[p].append(spearman([-v for v in vals] if p == "length" else vals, target))
        for d in DIMS:
            out.append(
                {
                    "study": name,
                    "sample": label,
                    "train_rows": rows,
                    "d": d,
                    **{f"spearman_{p}": float(np.mean(v)) for p, v in per_d[d].items()},
                    **{f"spearman_{p}": float(np.mean(v)) for p, v in fixed.items()},
                    "n_runs": len(per_d[d]["grace"]),
                }
            )
    return out


def rule_d(rows: int, k: int) -> int:
    return int(min(max(2 ** math.floor(math.log2(max(rows / k, 1.0))), 16), 512))


def choose(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The protocol's selection: the rule with the best mean Spearman over the cells (ties: smaller k)."""
    by_cell: dict[tuple[str, str], dict[int, float]] = {}
    rows_of: dict[tuple[str, str], int] = {}
    for t in table:
        by_cell.setdefault((t["study"], t["sample"]), {})[t["d"]] = t["spearman_grace"]
        rows_of[(t["study"], t["sample"])] = t["train_rows"]
    scores = {k: float(np.mean([by_cell[c][rule_d(rows_of[c], k)] for c in by_cell])) for k in RULE_KS}
    fixed64 = float(np.mean([by_cell[c][64] for c in by_cell]))
    best = max(scores.values())
    chosen = min(k for k in RULE_KS if scores[k] >= best - TIE)
    return {
        "rule_scores": scores,
        "fixed_d64": fixed64,
        "chosen_k": chosen,
        "beats_d64": best > fixed64 + TIE,
    }


def main() -> None:
    started = time.perf_counter()
    a, b = ROOT / "A", ROOT / "B"
    if not (a / "candidates.json").is_file() or not (b / "candidates.json").is_file():
        raise SystemExit("run python -m studies.A and python -m studies.B first (they build the inputs)")
    print("A: tiny student, 9 candidates, 24 prompts x 4", flush=True)
    tiny = a / "tiny-models"
    results_a = score_study(
        tiny / "student", read_candidates(a / "candidates.json"), tiny / "prompts.jsonl", tiny, 4, None
    )
    print("B: SmolLM2, 7 candidates, 96 prompts x 1", flush=True)
    results_b = score_study(
        b / "smollm2", read_candidates(b / "candidates.json"), b / "prompts.jsonl", b, 1, b / "responses"
    )
    table = cells("A", results_a) + cells("B", results_b)
    selection = choose(table)
    out = {
        "protocol": "studies/C/protocol.md",
        "dims": DIMS,
        "seeds": SEEDS,
        "table": table,
        "selection": selection,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (HERE / "C" / "results.json").write_text(json.dumps(out, indent=2) + "\n", "utf-8")
    header = f"{'study':<5} {'sample':<6} {'rows':>4} " + " ".join(f"{d:>6}" for d in DIMS)
    lines = ["Spearman(-GRACE, -eval_nll) by d", header]
    for key in dict.fromkeys((t["study"], t["sample"]) for t in table):
        row = [t for t in table if (t["study"], t["sample"]) == key]
        lines.append(
            f"{key[0]:<5} {key[1]:<6} {row[0]['train_rows']:>4} "
            + " ".join(f"{t['spearman_grace']:+6.2f}" for t in row)
            + f"   g_norm@64 {next(t for t in row if t['d'] == 64)['spearman_g_norm']:+.2f}"
            f"  nll {row[0]['spearman_student_nll']:+.2f}  rsr {row[0]['spearman_rsr']:+.2f}"
            f"  length {row[0]['spearman_length']:+.2f}"
        )
    lines.append(f"rules k: {selection['rule_scores']}; fixed d=64: {selection['fixed_d64']:.3f}")
    lines.append(f"chosen: d = rows / {selection['chosen_k']} (power of two, 16..512)")
    text = "\n".join(lines)
    print(text)
    (HERE / "C" / "report.txt").write_text(text + f"\nwall time {out['wall_seconds']:.0f} s\n", "utf-8")


if __name__ == "__main__":
    main()
