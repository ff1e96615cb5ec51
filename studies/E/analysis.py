"""Study E's pre-registered analysis (protocol.md, "Analysis"), from the cached runs alone.

For each student: the outcome of each candidate (mean over seeds) and the seed spread; for every
scoring configuration and predictor, the correlation with the outcome (Spearman, Kendall tau-b,
the permutation p-value, a bootstrap interval, the regret of the top pick:
:func:`~grace_engine.pipelines.validation.correlate`); and the paper's three guidances, each
predictor's choices against the outcome's own (the oracle), as regret.

    python -m studies.E report
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from grace_engine.pipelines.validation import correlate
from grace_engine.science.guidance import Teacher, guide
from grace_engine.science.predictors import PREDICTORS, Need
from studies.E.study import CONFIGS, SEEDS, Distillation, study_setting
from studies.E.world import STUDENTS, ZOO, ModelSpec

# The guidance's size limit, fixed in the protocol: below every "m" model of the zoo, above every "s".
MAX_PARAMS = 300_000
PRIMARY, SECONDARY = "accuracy", "mean_nll"


def _order(values: Mapping[str, float], *, lower_is_better: bool) -> list[str]:
    """Names best first (ties by name)."""
    return sorted(values, key=lambda n: (values[n] if lower_is_better else -values[n], n))


def guidance_regret(
    predicted: Sequence[str], outcome: Mapping[str, float], teachers: Mapping[str, Teacher]
) -> dict[str, Any]:
    """Each guidance's choices by the ``predicted`` order against the outcome's own (higher
    outcome is better): per group the outcome lost by the predicted choice, and the mean."""
    oracle = _order(outcome, lower_is_better=False)
    mine, best = (
        guide(predicted, teachers, max_params=MAX_PARAMS),
        guide(oracle, teachers, max_params=MAX_PARAMS),
    )

    def regrets(pairs: list[tuple[str, str, str]]) -> dict[str, Any]:
        lost = {group: outcome[want] - outcome[got] for group, got, want in pairs}
        return {
            "per_group": {g: {"chosen": got, "best": want, "regret": lost[g]} for g, got, want in pairs},
            "mean_regret": statistics.fmean(lost.values()) if lost else None,  # None: nothing fits
            "hits": sum(got == want for _, got, want in pairs),
            "groups": len(pairs),
        }

    temps = {c.model: c.candidate for c in best.best_temperature}
    families = {c.family: c.candidate for c in best.best_per_family}
    assert mine.under_max_params is not None
    assert best.under_max_params is not None
    size_pick, size_best = mine.under_max_params.candidate, best.under_max_params.candidate
    return {
        "temperature": regrets([(c.model, c.candidate, temps[c.model]) for c in mine.best_temperature]),
        "family": regrets([(c.family, c.candidate, families[c.family]) for c in mine.best_per_family]),
        "size": regrets(
            [] if size_pick is None or size_best is None else [("max_params", size_pick, size_best)]
        ),
    }


def _outcomes(root: Path, spec: ModelSpec, names: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """Per candidate, each seed's primary and secondary outcome."""
    out: dict[str, dict[str, list[float]]] = {}
    setting = study_setting(spec.name)
    for name in names:
        runs = [json.loads(Distillation(root, spec, name, s, *setting).path.read_text()) for s in SEEDS]
        out[name] = {PRIMARY: [r[PRIMARY] for r in runs], SECONDARY: [r[SECONDARY] for r in runs]}
    return out


def analyse_student(root: Path, spec: ModelSpec) -> dict[str, Any]:
    """Everything the protocol reports for one student."""
    student = spec.name
    scores = {c: json.loads((root / "scores" / student / f"{c}.json").read_text()) for c in CONFIGS}
    first = next(iter(scores.values()))
    names = sorted(first["values"])
    teachers = {n: Teacher(**t) for n, t in first["teachers"].items()}
    runs = _outcomes(root, spec, names)
    mean = {k: {n: statistics.fmean(runs[n][k]) for n in names} for k in (PRIMARY, SECONDARY)}
    spread = [max(runs[n][PRIMARY]) - min(runs[n][PRIMARY]) for n in names]
    between = statistics.pstdev(mean[PRIMARY].values())
    predictors: dict[str, Any] = {}
    for config, record in scores.items():
        for p in PREDICTORS.values():
            values = {n: record["values"][n].get(p.name) for n in names}
            if any(v is None for v in values.values()):
                continue
            # A predictor without gradients is the same in every configuration: reported once.
            key = f"{p.name}/{config}" if p.needs == Need.GRADIENTS else p.name
            if key in predictors:
                continue
            given = {n: float(v) for n, v in values.items() if v is not None}
            predictors[key] = {
                PRIMARY: asdict(
                    correlate(
                        key,
                        given,
                        mean[PRIMARY],
                        lower_score_is_better=p.lower_is_better,
                        higher_outcome_is_better=True,
                        outcome_name=PRIMARY,
                    )
                ),
                SECONDARY: asdict(
                    correlate(
                        key,
                        given,
                        mean[SECONDARY],
                        lower_score_is_better=p.lower_is_better,
                        higher_outcome_is_better=False,
                        outcome_name=SECONDARY,
                    )
                ),
                "guidance": guidance_regret(
                    _order(given, lower_is_better=p.lower_is_better), mean[PRIMARY], teachers
                ),
                "proj_dim": record["proj_dim"],
            }
    untrained = json.loads((root / "students" / student / "trained.json").read_text())["accuracy"]["0.0"]
    world = json.loads((root / "world.json").read_text())["models"]
    own = {
        n: world[teachers[n].model.split("/")[-1]]["accuracy"][f"{teachers[n].temperature}"] for n in names
    }
    best = max(names, key=lambda n: mean[PRIMARY][n])
    most_accurate = max(names, key=lambda n: own[n])
    return {
        "student": student,
        "untrained_accuracy": untrained,
        "outcomes": {n: {**{k: mean[k][n] for k in mean}, "seeds": runs[n]} for n in names},
        "teacher_accuracy_eval": own,
        "best": {"candidate": best, "accuracy": mean[PRIMARY][best]},
        "most_accurate_teacher": {
            "candidate": most_accurate,
            "teacher_accuracy": own[most_accurate],
            "distilled_accuracy": mean[PRIMARY][most_accurate],
            "is_best_to_distil_from": most_accurate == best,
        },
        "seed_spread": {
            "mean_abs_diff": statistics.fmean(spread),
            "max_abs_diff": max(spread),
            "between_candidates_std": between,
        },
        "predictors": predictors,
    }


def report(root: Path) -> dict[str, Any]:
    """``results.json`` and ``report.txt`` beside this module, from the runs under ``root``."""
    here = Path(__file__).resolve().parent
    result = {
        "world": json.loads((root / "world.json").read_text()),
        "students": {s.name: analyse_student(root, s) for s in STUDENTS},
        "zoo": [s.name for s in ZOO],
    }
    (here / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (here / "report.txt").write_text(render(result))
    print(render(result))
    return result


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _guided(g: Mapping[str, Any]) -> str:
    """A guidance's mean regret and its hits, in a table cell."""
    if not g["groups"]:
        return "–"
    return f"{g['mean_regret']:.1%} ({g['hits']}/{g['groups']})"


def render_world(world: Mapping[str, Any]) -> str:
    """The zoo and the students: size, training, build time and own accuracy, in markdown."""
    lines = [
        "| model | family | params | style | steps | train s | greedy | T0.3 | T0.7 | T1.1 |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in world["models"].items():
        acc = m.get("accuracy", {})
        cells = [
            name,
            m["family"],
            f"{m['params']:,d}",
            m["style"] or "(student)",
            f"{m['steps']:,d}",
            f"{m['train_seconds']:.0f}",
            *(f"{acc[t]:.0%}" if t in acc else "–" for t in ("0.0", "0.3", "0.7", "1.1")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(result: Mapping[str, Any]) -> str:
    """The report's tables in markdown."""
    lines: list[str] = [render_world(result["world"]), ""]
    for student, r in result["students"].items():
        s = r["seed_spread"]
        lines += [
            f"## {student}",
            "",
            f"untrained {r['untrained_accuracy']:.1%}; best distilled {r['best']['accuracy']:.1%} "
            f"({r['best']['candidate']}); seed spread: mean |difference| {s['mean_abs_diff']:.1%}, "
            f"max {s['max_abs_diff']:.1%}, against a std of {s['between_candidates_std']:.1%} "
            "between candidates",
            f"most accurate teacher: {r['most_accurate_teacher']['candidate']} "
            f"({r['most_accurate_teacher']['teacher_accuracy']:.0%} on the evaluation problems), its student "
            f"{r['most_accurate_teacher']['distilled_accuracy']:.1%}: "
            + (
                "the best to distil from"
                if r["most_accurate_teacher"]["is_best_to_distil_from"]
                else "NOT the best to distil from"
            ),
            "",
            "| predictor | Spearman | 95% interval | p | Kendall | top pick | regret "
            "| temperature regret (hits) | family regret (hits) | size regret (hit) |",
            "|---|---:|:---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for key, p in r["predictors"].items():
            c, g = p[PRIMARY], p["guidance"]
            ci = "–" if c["ci95"] is None else f"[{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}]"
            cells = [
                key,
                _num(c["spearman"], "+.2f"),
                ci,
                _num(c["p_value"], ".4f"),
                _num(c["kendall"], "+.2f"),
                c["top_pick"],
                f"{c['regret']:.1%}",
                *(_guided(g[k]) for k in ("temperature", "family", "size")),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"
