"""Terminal output of ``grace rank``: one progress bar per (stage, candidate) and the ranking table."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from grace_engine.progress import ProgressEvent

if TYPE_CHECKING:  # the service commands format API JSON; the engine's results stay unimported
    from grace_engine.pipelines.results import RankingResult
    from grace_engine.science.predictors import Predictor

_UNITS = {
    "train": "step",
    "generate": "prompt",
    "validation": "example",
    "gradients": "resp",
    "score": "cand",
    "uncertainty": "split",
    "distil": "step",
    "evaluate": "model",
}


class ProgressBars:
    """tqdm bars on stderr, opened on a stage's first event and closed when it completes."""

    def __init__(self, *, enabled: bool = True, rates: bool = True) -> None:
        """``rates=False`` hides items/s, which mean nothing when progress arrives by polling."""
        self.enabled, self.rates = enabled, rates
        self._bars: dict[tuple[str, str | None], Any] = {}

    def update(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        key = (event.stage, event.candidate)
        bar = self._bars.get(key)
        if bar is None:
            label = f"{event.stage:<10} {event.candidate or '':<14}"
            bar = tqdm(
                bar_format=None if self.rates else "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}",
                total=event.total,
                desc=label,
                unit=_UNITS[event.stage],
                file=sys.stderr,
                leave=True,
                dynamic_ncols=True,
            )
            self._bars[key] = bar
        bar.n = event.done
        bar.refresh()
        if event.done >= event.total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEADER = (
    "rank",
    "candidate",
    "GRACE",
    "± split std",
    "gap to #1",
    "gap interval",
    "P(top-1)",
    "beats next",
)


def _shown(rows: Sequence[Mapping[str, Any]], *, besides: frozenset[str]) -> list[Predictor]:
    """The predictors (registry order) any row has a value for, but those in ``besides``."""
    from grace_engine.science.predictors import PREDICTORS

    present = {name for r in rows for name in r.get("values") or {}}
    return [p for name, p in PREDICTORS.items() if name in present and name not in besides]


def _directions(shown: Sequence[Predictor]) -> str:
    lower = [p.label for p in shown if p.lower_is_better]
    higher = [p.label for p in shown if not p.lower_is_better]
    return f"Lower {', '.join(['GRACE', *lower])} = better teacher" + (
        f"; higher {', '.join(higher)}." if higher else "."
    )


def _interval(value: Sequence[float] | None) -> str:
    return "-" if value is None else f"[{value[0]:.4g}, {value[1]:.4g}]"


def _aligned(table: Sequence[Sequence[str]], *, left: int) -> list[str]:
    """Rows of cells in columns (column ``left`` flush left, the others right), a rule under the header."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    return lines


def format_ranking(
    rows: Sequence[Mapping[str, Any]],
    footer: Sequence[str] = (),
    *,
    uncertainty: Mapping[str, Any] | None = None,
) -> str:
    """The ranking table, best teacher first; ``rows`` as :meth:`RankingResult.ranking_rows` (or
    the API's ranking entries) give them; ``uncertainty`` is the result's (its JSON form), for the
    verdict line: settled or not, and on what."""
    shown = _shown(rows, besides=frozenset({"grace"}))
    table = [(*HEADER, *(p.label for p in shown))]
    for r in rows:
        agreement = r["agreement_with_next"]
        values = r.get("values") or {}
        table.append(
            (
                str(r["rank"]),
                str(r["name"]),
                _fmt(r["grace"], ".4g"),
                _fmt(r["grace_std"], ".3g"),
                _fmt(r.get("gap"), "+.3g"),
                _interval(r.get("gap_interval")),
                _fmt(r.get("p_top1"), ".0%"),
                "-" if agreement is None else f"{agreement:.0%}",
                *(_fmt(values.get(p.name), p.fmt) for p in shown),
            )
        )
    lines = _aligned(table, left=1)
    lines += ["", *footer, *_verdict(uncertainty)]
    lines.append(f"{_directions(shown)} 'beats next': share of GRACE splits where it scores below the next.")
    return "\n".join(lines)


def _verdict(u: Mapping[str, Any] | None) -> list[str]:
    """What the gaps, P(top-1) and ``settled`` rest on, in words."""
    if not u:
        return []
    level = f"{u['confidence']:.0%}"
    state = "settled" if u["settled"] else "NOT settled"
    if u["method"] == "subsampling":
        how = f"the leader scores best in at least {level} of subsamples of {u['subsample_size']} prompts"
    else:
        source = (
            f"{u['repeats']} x {u['folds']}-fold cross-validation over the {u['n_prompts']} prompts, "
            "paired, Nadeau-Bengio corrected"
            if u["method"] == "paired_cv"
            else f"a paired t-test over the {u['n_prompts']} prompts"
        )
        how = (
            f"gap = {u['score']} minus the leader's, {level} interval by {source}; settled = the "
            "runner-up's interval excludes 0 and the signed-rank test agrees"
        )
    return [
        f"Ranked by {u['score']}: {state} ({how}). P(top-1): share of subsamples of "
        f"{u['subsample_size']} prompts (half, without replacement) in which a candidate scores best."
    ]


def _params(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 1e9:.3g}B params" if n >= 1e9 else f"{n / 1e6:.3g}M params"


def format_guidance(guidance: Mapping[str, Any] | None) -> list[str]:
    """The guidance's answers, one line each: the best temperature of every model tried at more
    than one, the best of every family when there are several, and the best under the size limit.
    Empty when no candidate was generated by a model."""
    if not guidance:
        return []
    lines = [
        f"best temperature for {c['model']}: {c['temperature']:g} ({c['candidate']}, rank {c['rank']}; "
        f"tried {', '.join(f'{t:g}' for t in c['temperatures'])})"
        for c in guidance["best_temperature"]
        if len(c["temperatures"]) > 1
    ]
    families = guidance["best_per_family"]
    if len(families) > 1:
        lines += [
            f"best {c['family']}: {c['candidate']} (rank {c['rank']} of {c['n_candidates']} {c['family']} "
            f"candidates, {_params(c['params'])})"
            for c in families
        ]
    size = guidance.get("under_max_params")
    if size is not None:
        limit = _params(size["max_params"]).replace(" params", "")
        lines.append(
            f"best with at most {limit} params: "
            + (
                f"{size['candidate']} (rank {size['rank']}, {_params(size['params'])})"
                if size["candidate"] is not None
                else "none fits"
            )
            + (f"; size unknown, left out: {', '.join(size['unknown'])}" if size["unknown"] else "")
        )
    return lines


def _count(w: Mapping[str, Any]) -> str:
    """A per-candidate warning's share: its first count field of its total."""
    n = next((v for k, v in w.items() if k.startswith("n_") and isinstance(v, int)), None)
    return f"{n} of {w['total']}" if n is not None and "total" in w else ""


def format_warnings(warnings: Sequence[Mapping[str, Any]]) -> str:
    """One ``warning [code]: message`` line per condition of a result (empty when there is none):
    a condition several candidates share is one line, the first one's message and the others'
    names and counts after it."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for w in warnings:
        groups.setdefault(w["code"], []).append(w)
    lines = []
    for code, group in groups.items():
        named = [w for w in group if w.get("candidate") is not None]
        if len(named) > 1:
            also = ", ".join(f"{w['candidate']!r} {_count(w)}".rstrip() for w in named[1:])
            lines.append(f"warning [{code}]: {named[0]['message']} (likewise {also})")
            group = [w for w in group if w.get("candidate") is None]
        lines += [f"warning [{code}]: {w['message']}" for w in group]
    return "\n".join(lines)


def format_table(result: RankingResult) -> str:
    """``grace rank``'s table: the ranking, the settings it was computed with, and its warnings."""
    cfg = result.config
    p = result.projection
    folded = f" (folded from {p.d})" if p is not None and p.folded_to is not None else ""
    footer = (
        f"student {result.student} | {result.n_prompts} prompts | gradient space {cfg.gradient_space.kind} "
        f"({result.grad_dim:,d} params) | path {cfg.path} | d={cfg.proj_dim}{folded} | {cfg.n_splits} splits "
        f"| seed {cfg.seed}"
    )
    lines = [footer]
    if result.budget is not None:
        b = result.budget
        lines.append(
            f"budget-aware: {b.stopped} after {len(b.rounds)} round(s) on {b.rounds[-1].n_prompts} prompts; "
            f"{b.examples_used:,d} of {b.examples_full:,d} gradient examples "
            f"({b.compute_fraction:.0%} of a full run), {b.seconds:.0f} s"
            + (f"; dropped {', '.join(b.dropped)}" if b.dropped else "")
        )
    full = result.to_dict(include_responses=False)
    lines += format_guidance(full["guidance"])
    table = format_ranking(result.ranking_rows(), lines, uncertainty=full["uncertainty"])
    notes = format_warnings([w.to_dict() for w in result.warnings])
    return f"{table}\n\n{notes}" if notes else table


def _chance(c: Mapping[str, Any]) -> str:
    """The permutation test of a correlation, in words."""
    if c.get("p_value") is None:
        return "(p -)"
    critical = "-" if c.get("critical_rho") is None else f"{c['critical_rho']:.3f}"
    verdict = "" if c["distinguishable"] else ", not distinguishable from chance"
    return f"(p = {c['p_value']:.3f}, 5% needs {critical}{verdict})"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def format_validation(result: Mapping[str, Any]) -> str:
    """``grace validate``'s report, from the result's JSON form: per candidate its scores beside
    the distilled student's outcome, the untrained student as the reference row, then one line per
    score with its correlation against the outcome."""
    candidates = sorted(result["candidates"].items(), key=lambda kv: kv[1]["rank"])
    shown = _shown([c for _, c in candidates], besides=frozenset())
    outcome_columns = ("eval NLL", "vs untrained", "accuracy")
    table: list[tuple[str, ...]] = [("candidate", "rank", *(p.label for p in shown), *outcome_columns)]
    for name, c in candidates:
        o = c["outcome"]
        table.append(
            (
                name,
                str(c["rank"]),
                *(_fmt(c["values"].get(p.name), p.fmt) for p in shown),
                f"{o['eval_nll']:.4f}",
                f"{o['delta_eval_nll']:+.4f}",
                "-" if o["accuracy"] is None else f"{o['accuracy']:.1%}",
            )
        )
    blank = [""] * (1 + len(shown))
    base = result["untrained"]
    acc = "-" if base["accuracy"] is None else f"{base['accuracy']:.1%}"
    mixed = result.get("mixed_candidate")
    if mixed is not None:
        o = mixed["outcome"]
        delta = o["eval_nll"] - base["eval_nll"]
        mixed_acc = "-" if o["accuracy"] is None else f"{o['accuracy']:.1%}"
        table.append(("(mixed, GRACE-routed)", *blank, f"{o['eval_nll']:.4f}", f"{delta:+.4f}", mixed_acc))
    table.append(("(untrained)", *blank, f"{base['eval_nll']:.4f}", "", acc))
    lines = _aligned(table, left=0)
    outcome = result["outcome"]
    lines += [
        "",
        f"how well each score predicted {outcome} (+1 = perfectly; regret = the pick's loss vs the best):",
    ]
    for score, c in result["correlations"].items():
        ci = "[   -,    -]" if c["ci95"] is None else f"[{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}]"
        rel = "" if c["regret_rel"] is None else f" ({c['regret_rel']:.1%})"
        lines.append(
            f"  {score:<17} spearman {_signed(c['spearman'])} {ci} {_chance(c)}  kendall "
            f"{_signed(c['kendall'])}  regret {c['regret']:.4g}{rel}  pick {c['top_pick']}, best {c['best']}"
        )
    if mixed is not None and mixed["gain_over_best_single"] is not None:
        verdict = "beats" if mixed["beats_best_single"] else "does not beat"
        shares = ", ".join(f"{t} {n}" for t, n in sorted(mixed["teachers"].items(), key=lambda kv: -kv[1]))
        lines.append(
            f"  the mixed set {verdict} the best single teacher ({mixed['best_single']}) by "
            f"{mixed['gain_over_best_single']:+.4g} {outcome}; prompts per teacher: {shares}"
        )
    p = result["protocol"]
    d = p["distillation"]
    lines += [
        "",
        f"student {p['student']} | {p['n_train_prompts']} train prompts, {p['n_eval']} eval | {d['method']} "
        f"lr {d['learning_rate']:g} | seeds {p['train_seeds']}",
    ]
    notes = format_warnings(result["warnings"])
    return "\n".join(lines) + (f"\n\n{notes}" if notes else "")
