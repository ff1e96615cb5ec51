"""Warnings that travel with results (design §2.10).

Small samples and cut responses mislead quietly: the numbers come out, only less meaningful. Each
condition here becomes a :class:`ResultWarning` in the result (engine, CLI, API), stating the
numbers and what to change. A warning never changes a score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from grace_engine.science.grace import PAPER_DIM, PAPER_TRAIN_ROWS

if TYPE_CHECKING:
    from grace_engine.science.uncertainty import Uncertainty

# With fewer prompts the held-out sets of the splits overlap heavily (the paper scores 512).
MIN_PROMPTS = 10
# Distilled outcomes count as separated when a one-way ANOVA over candidates rejects equal means here.
NOT_SEPARATED_ALPHA = 0.05


@dataclass(frozen=True)
class ResultWarning:
    """``code`` is stable (for programs), ``message`` is for people, ``numbers`` back it up."""

    code: str
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.numbers}


def _held_out(n_prompts: int, test_fraction: float) -> int:
    return max(1, int(n_prompts * test_fraction))  # as grace() holds out


def _prompts_for_rows(rows: int, *, from_prompts: int, test_fraction: float, m: int) -> int:
    """The fewest prompts, at least ``from_prompts``, whose splits train on ``rows`` rows or more."""
    needed = from_prompts
    while (needed - _held_out(needed, test_fraction)) * m < rows:
        needed += 1
    return needed


def small_sample(*, n_prompts: int, test_fraction: float, m: int, d: int) -> ResultWarning | None:
    """Fewer training rows per split than projection dimensions: ``K_tr`` is rank-deficient, the
    smoothing fills its null space with one constant, and GRACE tends to a multiple of G-Norm."""
    n_test = _held_out(n_prompts, test_fraction)
    rows = (n_prompts - n_test) * m
    if rows >= d:
        return None
    needed = _prompts_for_rows(d, from_prompts=n_prompts, test_fraction=test_fraction, m=m)
    return ResultWarning(
        "small_sample",
        f"each split trains on {rows} gradient rows ({n_prompts - n_test} prompts x {m} responses) but "
        f"the projection has d={d} dimensions, so GRACE degenerates toward G-Norm and mostly ranks "
        f"gradient size; score about {needed} prompts or more, or lower proj_dim to {max(rows, 1)} or less",
        {"train_rows": rows, "proj_dim": d, "n_prompts": n_prompts, "prompts_needed": needed},
    )


def below_papers_dim(*, n_prompts: int, test_fraction: float, m: int, d: int) -> ResultWarning | None:
    """``proj_dim: auto`` chose a d below the paper's 512 because the sample trains on fewer rows
    than the paper's 512 x 4: the rule keeps the paper's rows per dimension, but GRACE at this d and
    sample size is outside what the paper tested."""
    if d >= PAPER_DIM:
        return None
    train_prompts = n_prompts - _held_out(n_prompts, test_fraction)
    rows = train_prompts * m
    needed = _prompts_for_rows(PAPER_TRAIN_ROWS, from_prompts=n_prompts, test_fraction=test_fraction, m=m)
    return ResultWarning(
        "small_sample",
        f"each split trains on {rows} gradient rows ({train_prompts} prompts x {m} responses), fewer "
        f"than the paper's {PAPER_TRAIN_ROWS} (512 x 4), so proj_dim auto chose d={d} instead of the "
        f"paper's {PAPER_DIM}, keeping its "
        f"{PAPER_TRAIN_ROWS / PAPER_DIM:.1f} rows per dimension (a rule taken from the paper, not tuned on "
        f"any study's outcomes); the paper did not test GRACE this small: score about {needed} prompts "
        f"x {m} responses for its setting",
        {
            "train_rows": rows,
            "proj_dim": d,
            "n_prompts": n_prompts,
            "prompts_needed": needed,
            "paper_proj_dim": PAPER_DIM,
        },
    )


def few_prompts(n_prompts: int) -> ResultWarning | None:
    if n_prompts >= MIN_PROMPTS:
        return None
    return ResultWarning(
        "few_prompts",
        f"only {n_prompts} prompts: the cross-validation splits hold out nearly the same prompts and "
        f"the ranking rests on a handful of problems; score at least {MIN_PROMPTS} (the paper uses 512)",
        {"n_prompts": n_prompts, "minimum": MIN_PROMPTS},
    )


def at_max_tokens(candidate: str, *, n: int, total: int, max_tokens: int) -> ResultWarning | None:
    if n == 0:
        return None
    return ResultWarning(
        "responses_at_max_tokens",
        f"{n} of {total} responses of {candidate!r} stopped at max_tokens={max_tokens} before the "
        "teacher ended them: the student is scored on unfinished solutions; raise max_tokens",
        {"candidate": candidate, "n_responses": n, "total": total, "max_tokens": max_tokens},
    )


def cut_by_max_length(candidate: str, *, n: int, total: int, max_length: int | None) -> ResultWarning | None:
    if n == 0:
        return None
    return ResultWarning(
        "examples_truncated",
        f"{n} of {total} examples of {candidate!r} were cut at the student's max_length={max_length} "
        "tokens (their ends and EOS carry no loss); raise max_length up to the student's context",
        {"candidate": candidate, "n_examples": n, "total": total, "max_length": max_length},
    )


# Below this many candidates a rank correlation's bootstrap interval spans most of [-1, 1].
MIN_VALIDATION_CANDIDATES = 5


def few_candidates(n: int) -> ResultWarning | None:
    if n >= MIN_VALIDATION_CANDIDATES:
        return None
    return ResultWarning(
        "few_candidates",
        f"only {n} candidates: a rank correlation over so few is coarse (one swapped pair moves it by "
        f"a lot) and its interval is wide; validate at least {MIN_VALIDATION_CANDIDATES}",
        {"n_candidates": n, "minimum": MIN_VALIDATION_CANDIDATES},
    )


def constant_outcome(outcome: str, value: float) -> ResultWarning:
    return ResultWarning(
        "outcome_constant",
        f"every distilled student has the same {outcome} ({value:g}), so no score can be checked "
        f"against it; its correlations are null (more eval problems, or more training, separate them)",
        {"outcome": outcome, "value": value},
    )


def outcomes_not_separated(
    outcome: str, per_seed: dict[str, list[float]], untrained: float
) -> ResultWarning | None:
    """The candidates' distilled outcomes may be training noise: with one seed per candidate the
    spread between seeds is unknown; with several, a one-way ANOVA over candidates (seeds as
    replicates) does not reject equal means at 5%."""
    means = {name: float(np.mean(v)) for name, v in per_seed.items()}
    lo, hi = min(means.values()), max(means.values())
    numbers: dict[str, Any] = {"outcome": outcome, "lowest": lo, "highest": hi, "untrained": untrained}
    seeds = min(len(v) for v in per_seed.values())
    if seeds == 1:
        return ResultWarning(
            "outcome_spread_unknown",
            f"one training seed per candidate: the candidates' {outcome} spans {lo:.4g} to {hi:.4g} "
            f"(untrained {untrained:.4g}), but how much a student moves between seeds is unknown, so "
            "these differences may be training noise; train with 3 or more seeds (train_seeds)",
            {**numbers, "n_seeds": 1},
        )
    groups = list(per_seed.values())
    if len(groups) < 2:
        return None
    within = float(np.sqrt(np.mean([np.var(g, ddof=1) for g in groups])))
    if within == 0.0:  # identical across seeds: the ANOVA is undefined and nothing is noise
        return None
    from scipy import stats

    p = float(stats.f_oneway(*groups).pvalue)
    if p <= NOT_SEPARATED_ALPHA:
        return None
    return ResultWarning(
        "outcomes_within_seed_spread",
        f"the candidates' {outcome} ({lo:.4g} to {hi:.4g}, untrained {untrained:.4g}) differ no more "
        f"than training seeds make one candidate's differ (seed s.d. {within:.3g}; one-way ANOVA over "
        f"{len(groups)} candidates x {seeds} seeds, p {p:.2f}): no score can be checked against "
        "them; train longer or on more responses, or add seeds",
        {**numbers, "n_seeds": seeds, "seed_sd": within, "p_value": p},
    )


def no_student_improved(
    outcome: str, outcomes: dict[str, float], untrained: float, *, higher_is_better: bool
) -> ResultWarning | None:
    """Every distilled student ends worse than the untrained one: the outcome then ranks how much
    each candidate's data damaged the student, not how well it taught."""
    if not outcomes:
        return None
    best = max(outcomes.values()) if higher_is_better else min(outcomes.values())
    if (best >= untrained) if higher_is_better else (best <= untrained):  # the best is no worse
        return None
    return ResultWarning(
        "no_student_improved",
        f"every distilled student's {outcome} is worse than the untrained student's ({untrained:.4g}; "
        f"the best reaches {best:.4g}): the validation ranks damage, not teaching; train on data the "
        "student can learn from, or change the training settings",
        {"outcome": outcome, "untrained": untrained, "best": best},
    )


def eval_overlaps_training(n: int, total: int) -> ResultWarning | None:
    if n == 0:
        return None
    return ResultWarning(
        "eval_overlaps_training",
        f"{n} of {total} eval problems are also training prompts: the outcome then rewards "
        "memorising the candidates' responses; keep train and eval prompts disjoint",
        {"n_overlapping": n, "n_eval": total},
    )


def unsettled(u: Uncertainty) -> ResultWarning | None:
    """The ranking's leader is not settled (design §2.11): the paired comparison with the runner-up
    does not reach the stated confidence by both tests (or, for G-Vendi, the leader's P(top-1) at
    half the prompts stays below it). Says what the learning curves expect of more prompts."""
    if u.settled or u.runner_up is None:
        return None
    leader, runner_up = u.leader, u.runner_up
    versus = u.candidates[runner_up].vs_leader
    level = f"{u.confidence:.0%}"
    alpha = (1.0 - u.confidence) / 2
    numbers: dict[str, Any] = {
        "score": u.score,
        "method": u.method,
        "leader": leader,
        "runner_up": runner_up,
        "p_top1": u.candidates[leader].p_top1,
        "n_prompts": u.n_prompts,
        "prompts_needed": u.prompts_to_settle,
        "curves_cross_at": u.curves_cross_at,
    }
    if versus is None:
        why = (
            f"{leader!r} scores best in only {u.candidates[leader].p_top1:.0%} of subsamples of "
            f"{u.subsample_size} prompts (settled needs {level})"
        )
    else:
        lo, hi = versus.interval
        how = f"{u.repeats} x {u.folds}-fold cross-validation" if u.method == "paired_cv" else "a paired test"
        why = (
            f"by {how}, {runner_up!r} minus {leader!r} is {versus.gap:+.4g} ({level} interval "
            f"[{lo:.4g}, {hi:.4g}]; t-test p = {versus.p_value:.2g}, signed-rank p = "
            f"{versus.wilcoxon_p:.2g}, settled needs both below {alpha:.2g}); {leader!r} is better on "
            f"{versus.leader_better:.0%} of prompts, {runner_up!r} on {versus.candidate_better:.0%}"
        )
        numbers |= {
            "gap": versus.gap,
            "interval": list(versus.interval),
            "p_value": versus.p_value,
            "wilcoxon_p": versus.wilcoxon_p,
        }
    if u.curves_cross_at is not None:
        more = (
            f"the learning curves cross near {u.curves_cross_at} prompts: with more prompts {runner_up!r} "
            "would likely lead"
        )
    elif u.prompts_to_settle is not None:
        more = (
            f"along the learning curves, about {u.prompts_to_settle - u.n_prompts} more prompts "
            f"({u.prompts_to_settle} in all) would likely settle it"
        )
    elif versus is not None and versus.p_value < alpha:
        more = "the mean gap is clear but the per-prompt signs are not: the lead rests on a few prompts"
    else:
        more = "the learning curves do not separate the two, so more prompts may not settle it"
    return ResultWarning(
        "ranking_unsettled",
        f"the ranking by {u.score} over {u.n_prompts} prompts is not settled: {why}; {more}",
        numbers,
    )


# A candidate whose responses copy one another across prompts this often gets a warning.
COPY_SHARE = 0.1


def copies(u: Uncertainty, n_responses: dict[str, int]) -> list[ResultWarning | None]:
    """Candidates many of whose responses (nearly) copy a response to another prompt: GRACE as
    released trains on such a copy while holding out its twin, so it reads low for the wrong
    reason; the cross-validated gaps keep the copies apart."""
    out: list[ResultWarning | None] = []
    for name, c in u.candidates.items():
        total = n_responses[name]
        if total == 0 or c.copy_rows / total < COPY_SHARE:
            continue
        out.append(
            ResultWarning(
                "responses_copied_across_prompts",
                f"{c.copy_rows} of {name!r}'s {total} responses ({c.copy_rows / total:.0%}, in "
                f"{c.copy_clusters} clusters) are (near-)copies of a response to another prompt: its "
                "GRACE trains on a copy of the text it holds out and may be low for that reason; the "
                "cross-validated gap to the leader keeps every copy of a held-out text out of training",
                {"candidate": name, "n_rows": c.copy_rows, "n_clusters": c.copy_clusters, "total": total},
            )
        )
    return out


# A ranking whose order matches response length this closely may be measuring length.
LENGTH_RHO = 0.9
MIN_LENGTH_CANDIDATES = 4


def tracks_length(*, score: str, rho: float, n_candidates: int) -> ResultWarning | None:
    """The ranking by ``score`` follows mean response length (``rho``: Spearman of the score's
    values with mean response tokens over ``n_candidates``), a known confounder."""
    if score == "length" or n_candidates < MIN_LENGTH_CANDIDATES or abs(rho) < LENGTH_RHO:
        return None
    return ResultWarning(
        "ranking_tracks_length",
        f"the ranking by {score} follows response length (Spearman {rho:+.2f} with mean response tokens "
        f"over {n_candidates} candidates): it may measure length rather than quality; compare it with "
        "the length column, or with candidates of similar length",
        {"score": score, "spearman_with_length": rho, "n_candidates": n_candidates},
    )


def accuracy_disagrees(*, score: str, top_pick: str, accuracy: dict[str, float]) -> ResultWarning | None:
    """The prompts carry reference answers and the most accurate candidate is not the ranking's
    top pick. Reported, not a recommendation: the studies that favoured teacher accuracy built their
    outcome from gold text (README, What our studies found)."""
    if score == "teacher_accuracy" or not accuracy:
        return None
    best = max(accuracy.values())
    if accuracy[top_pick] >= best:
        return None
    leader = min(c for c, a in accuracy.items() if a == best)
    return ResultWarning(
        "accuracy_disagrees",
        f"the ranking by {score} puts {top_pick!r} first, but {leader!r}'s responses are the most "
        f"accurate ({best:.0%} against {accuracy[top_pick]:.0%}); no study yet decides which of the "
        "two predicts the distilled student better (README, What our studies found)",
        {"score": score, "top_pick": top_pick, "most_accurate": leader, "accuracy": accuracy},
    )


def present(*warnings: ResultWarning | None) -> list[ResultWarning]:
    return [w for w in warnings if w is not None]
