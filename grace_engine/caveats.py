"""Warnings that travel with results (design §2.10).

Small samples and cut responses mislead quietly: the numbers come out, only less meaningful. Each
condition here becomes a :class:`ResultWarning` in the result (engine, CLI, API), stating the
numbers and what to change. A warning never changes a score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# With fewer prompts the held-out sets of the splits overlap heavily (the paper scores 512).
MIN_PROMPTS = 10


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


def small_sample(*, n_prompts: int, test_fraction: float, m: int, d: int) -> ResultWarning | None:
    """Fewer training rows per split than projection dimensions: ``K_tr`` is rank-deficient, the
    smoothing fills its null space with one constant, and GRACE tends to a multiple of G-Norm."""
    n_test = _held_out(n_prompts, test_fraction)
    rows = (n_prompts - n_test) * m
    if rows >= d:
        return None
    needed = n_prompts
    while (needed - _held_out(needed, test_fraction)) * m < d:
        needed += 1
    return ResultWarning(
        "small_sample",
        f"each split trains on {rows} gradient rows ({n_prompts - n_test} prompts x {m} responses) but "
        f"the projection has d={d} dimensions, so GRACE degenerates toward G-Norm and mostly ranks "
        f"gradient size; score about {needed} prompts or more, or lower proj_dim to {max(rows, 1)} or less",
        {"train_rows": rows, "proj_dim": d, "n_prompts": n_prompts, "prompts_needed": needed},
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


def eval_overlaps_training(n: int, total: int) -> ResultWarning | None:
    if n == 0:
        return None
    return ResultWarning(
        "eval_overlaps_training",
        f"{n} of {total} eval problems are also training prompts: the outcome then rewards "
        "memorising the candidates' responses; keep train and eval prompts disjoint",
        {"n_overlapping": n, "n_eval": total},
    )


def unsettled(
    *,
    score: str,
    leader: str,
    runner_up: str,
    p_top1: float,
    intervals: tuple[tuple[float, float], tuple[float, float]],
    n_prompts: int,
    prompts_needed: int | None,
) -> ResultWarning:
    """The ranking's leader is not settled by the bootstrap over prompts (design §2.11): its
    P(top-1) is under 0.9, or its interval overlaps the runner-up's (``intervals``: leader's,
    runner-up's)."""
    (lo, hi), (r_lo, r_hi) = intervals
    why = []
    if p_top1 < 0.9:
        why.append(f"{leader!r} ranks first in only {p_top1:.0%} of bootstrap resamples (settled needs 90%)")
    if not (hi < r_lo or lo > r_hi):
        why.append(
            f"its interval [{lo:.4g}, {hi:.4g}] overlaps that of {runner_up!r}, [{r_lo:.4g}, {r_hi:.4g}]"
        )
    more = (
        f"about {prompts_needed - n_prompts} more prompts ({prompts_needed} in all) would likely settle it"
        if prompts_needed is not None
        else "the two lead scores are equal, so more prompts may not separate them"
    )
    return ResultWarning(
        "ranking_unsettled",
        f"the ranking by {score} over {n_prompts} prompts is not settled: {'; '.join(why)}; {more}",
        {
            "score": score,
            "leader": leader,
            "runner_up": runner_up,
            "p_top1": p_top1,
            "n_prompts": n_prompts,
            "prompts_needed": prompts_needed,
        },
    )


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
    top pick. In Studies A and B (studies/D) teacher accuracy predicted the distilled student
    better than GRACE on both, with no worse regret; the README recommends ranking by it then."""
    if score == "teacher_accuracy" or not accuracy:
        return None
    best = max(accuracy.values())
    if accuracy[top_pick] >= best:
        return None
    leader = min(c for c, a in accuracy.items() if a == best)
    return ResultWarning(
        "accuracy_disagrees",
        f"the ranking by {score} puts {top_pick!r} first, but {leader!r}'s responses are the most "
        f"accurate ({best:.0%} against {accuracy[top_pick]:.0%}); in our ground-truth studies teacher "
        "accuracy predicted the distilled student better than GRACE, so with reference answers "
        "consider rank_by teacher_accuracy (README, Study D)",
        {"score": score, "top_pick": top_pick, "most_accurate": leader, "accuracy": accuracy},
    )


def present(*warnings: ResultWarning | None) -> list[ResultWarning]:
    return [w for w in warnings if w is not None]
