"""Markdown tables of a study's ``results.json`` (what the study READMEs show).

    python -m studies.table A [--results results.json] [--subset NAME ... | --recompute]

``--subset`` recomputes the correlations on some candidates only, from the reported per-candidate
values (a post-hoc view; the README says so wherever it uses one). ``--recompute`` does so on every
candidate: a result stored before the correlations carried their permutation p-value gets it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from grace_engine.pipelines.validation import OUTCOMES, correlate
from grace_engine.science.predictors import PREDICTORS
from studies.run import HERE


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def correlation_table(correlations: dict[str, Any]) -> str:
    lines = [
        "| score | Spearman | 95% interval | permutation p (5% needs) | Kendall | top pick "
        "| regret (eval NLL) | regret (rel.) |",
        "|---|---:|:---:|---:|---:|---|---:|---:|",
    ]
    for score, c in correlations.items():
        ci = "–" if c["ci95"] is None else f"[{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}]"
        test = f"{_num(c.get('p_value'), '.3f')} ({_num(c.get('critical_rho'), '.3f')})"
        lines.append(
            f"| {score} | {_num(c['spearman'], '+.2f')} | {ci} | {test} | {_num(c['kendall'], '+.2f')} | "
            f"{c['top_pick']} | {c['regret']:.4f} | {_num(c['regret_rel'], '.1%')} |"
        )
    return "\n".join(lines)


def candidate_table(result: dict[str, Any]) -> str:
    lines = [
        "| candidate | GRACE (rank) | G-Norm | G-Vendi | student NLL | teacher acc. "
        "| eval NLL (mean of seeds) | per seed | accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, c in sorted(result["candidates"].items(), key=lambda kv: kv[1]["outcome"]["eval_nll"]):
        o = c["outcome"]
        seeds = ", ".join(f"{s['eval_nll']:.3f}" for s in o["per_seed"])
        v = {
            p: _value(result, name, p)
            for p in ("grace", "g_norm", "g_vendi", "student_nll", "teacher_accuracy")
        }
        lines.append(
            f"| {name} | {_num(v['grace'], '.4g')} ({c['rank']}) | {_num(v['g_norm'], '.3g')} | "
            f"{_num(v['g_vendi'], '.3g')} | {_num(v['student_nll'], '.3f')} | "
            f"{_num(v['teacher_accuracy'], '.0%')} | {o['eval_nll']:.4f} | {seeds} | "
            f"{_num(o['accuracy'], '.0%')} |"
        )
    u = result["untrained"]
    lines.append(
        f"| *(untrained student)* | | | | | | {u['eval_nll']:.4f} | | {_num(u['accuracy'], '.0%')} |"
    )
    return "\n".join(lines)


def subset_correlations(result: dict[str, Any], names: list[str]) -> dict[str, Any]:
    outcome = result["outcome"]
    target = {n: result["candidates"][n]["outcome"][outcome] for n in names}
    out = {}
    for name, predictor in PREDICTORS.items():
        raw = {n: _value(result, n, name) for n in names}
        values = {n: v for n, v in raw.items() if v is not None}
        if len(values) < len(raw):
            continue
        c = correlate(
            name,
            values,
            target,
            lower_score_is_better=predictor.lower_is_better,
            higher_outcome_is_better=OUTCOMES[outcome],
            outcome_name=outcome,
        )
        out[name] = c.__dict__
    return out


def _value(result: dict[str, Any], name: str, score: str) -> float | None:
    """Predictor ``score`` of candidate ``name``: from its ``values``, or, in results written before
    they existed, from its one field per predictor."""
    c = result["candidates"][name]
    if "values" in c:
        value = c["values"].get(score)
    else:
        aliases = {"teacher_accuracy": "accuracy", "length": "mean_response_tokens"}
        value = c["grace"]["score"] if score == "grace" else c.get(aliases.get(score, score))
    return None if value is None else float(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("study")
    parser.add_argument("--results", default="results.json", help="the study's results file")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--subset", nargs="+")
    chosen.add_argument("--recompute", action="store_true")
    args = parser.parse_args()
    result = json.loads((HERE / args.study / args.results).read_text("utf-8"))
    if args.subset or args.recompute:
        print(correlation_table(subset_correlations(result, args.subset or list(result["candidates"]))))
        return
    print(candidate_table(result))
    print()
    print(correlation_table(result["correlations"]))


if __name__ == "__main__":
    main()
