"""Budget-aware ranking: score prompts in rounds, stop once the ranking is settled (design §2.11).

A full run computes every candidate's gradients on every prompt. Most of that is wasted when one
candidate dominates early, or when a candidate is clearly out of the race. :func:`adaptive_evidence`
scores a first subset of the prompts (in a seeded order), tests the ranking
(:mod:`~grace_engine.science.uncertainty`) and, while it is not settled, adds prompts in rounds that grow
geometrically, each round only for the candidates still in the race: a candidate whose P(top-1)
falls below ``drop_below`` is dropped (successive halving; the two most likely leaders always stay).
It stops when the ranking is settled, when the budget (gradient examples, or seconds checked between
rounds) is spent, or when every prompt is scored, and reports the compute it used against a full run.

Looking again after every round would settle twins by chance more often than the stated confidence
allows, so the rounds spend it: round ``k`` (from 0) tests at level ``alpha / 2^(k+1)`` with
``alpha = 1 - confidence``, and the levels of all rounds sum to less than ``alpha`` (a Bonferroni
alpha-spending rule). Each round's uncertainty records the confidence it was computed at.

The gradients are projected once, to the d a full run would use; each round folds them
(:meth:`~grace_engine.science.predictors.Evidence.folded`) to the d its own prompts call for, and scores its
prompts in the job's order, so a run that scores every prompt gives the full run's scores.

The evidence source is a callable, so the same procedure drives a real job (it computes gradients)
and a benchmark (it looks rows up in a full run's evidence).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from grace_engine.errors import InvalidInput
from grace_engine.science.predictors import Evidence
from grace_engine.science.uncertainty import Uncertainty

Stop = Literal["settled", "budget", "exhausted"]


@dataclass(frozen=True)
class RankingBudget:
    """Limits and schedule of a budget-aware ranking.

    Attributes:
        examples: gradient examples (responses scored) at most, over all candidates; None: no cap.
        seconds: wall seconds at most, checked between rounds; None: no cap.
        initial_prompts: prompts of the first round (at least 4, so the bootstrap has splits to vary).
        growth: each round scores ``growth`` times the prompts scored so far, in all.
        drop_below: a candidate whose P(top-1) falls below this leaves the race.
        seed: of the prompt order.
    """

    examples: int | None = None
    seconds: float | None = None
    initial_prompts: int = 16
    growth: float = 2.0
    drop_below: float = 0.01
    seed: int = 0

    def check(self) -> None:
        if self.examples is not None and self.examples < 1:
            raise InvalidInput("must be at least 1", field="budget.examples")
        if self.seconds is not None and not self.seconds > 0:
            raise InvalidInput("must be positive", field="budget.seconds")
        if self.initial_prompts < 4:
            raise InvalidInput("must be at least 4", field="budget.initial_prompts")
        if not self.growth > 1.0:
            raise InvalidInput("must be greater than 1", field="budget.growth")
        if not 0.0 <= self.drop_below < 0.5:
            raise InvalidInput("must be in [0, 0.5)", field="budget.drop_below")


@dataclass(frozen=True)
class Round:
    """One round: ``n_prompts`` scored in all for the ``active`` candidates at ``proj_dim``
    (None: as computed), ``examples`` used in all so far, and what the bootstrap then said."""

    index: int
    n_prompts: int
    proj_dim: int | None
    active: list[str]
    examples: int
    seconds: float
    settled: bool
    leader: str
    p_top1: dict[str, float]


@dataclass(frozen=True)
class BudgetReport:
    """What a budget-aware ranking spent. ``compute_fraction`` is ``examples_used`` over the
    ``examples_full`` a full run scores (every candidate on every prompt); ``dropped`` gives the
    round after which each dropped candidate left."""

    stopped: Stop
    examples_used: int
    examples_full: int
    seconds: float
    rounds: list[Round] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def compute_fraction(self) -> float:
        return self.examples_used / self.examples_full


Collect = Callable[[str, npt.NDArray[np.int64]], Evidence]
Assess = Callable[[dict[str, Evidence], float], Uncertainty]  # (evidence, confidence)


def round_confidence(confidence: float, index: int) -> float:
    """The confidence round ``index`` tests at (module docstring)."""
    return 1.0 - (1.0 - confidence) / 2.0 ** (index + 1)


def prompt_order(n_prompts: int, seed: int) -> npt.NDArray[np.int64]:
    """The seeded order in which a budget-aware ranking takes the prompts."""
    order: npt.NDArray[np.int64] = np.random.default_rng(seed).permutation(n_prompts)
    return order


def adaptive_evidence(
    names: Sequence[str],
    n_prompts: int,
    responses_per_prompt: dict[str, int],
    collect: Collect,
    assess: Assess,
    budget: RankingBudget,
    *,
    dim: Callable[[int], int] | None = None,
    confidence: float = 0.9,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, Evidence], Uncertainty, BudgetReport]:
    """Run the rounds (module docstring).

    Args:
        names: the candidates.
        n_prompts: prompts available.
        responses_per_prompt: ``m`` of each candidate (a prompt costs ``m`` examples).
        collect: ``(candidate, prompt indices) -> Evidence`` of those prompts, in that order.
        assess: the uncertainty of the ranking over evidence that shares its prompts, at a confidence.
        confidence: the job's; each round tests at its share (:func:`round_confidence`).
        dim: the projection dimension to score ``n`` prompts at (a divisor of the computed one);
            None: as computed.
    Returns:
        Every candidate's evidence, as computed (a dropped one's stops at the round it left),
        prompts in the job's order; the last round's bootstrap (over the candidates still active);
        the report.
    """
    budget.check()
    if n_prompts < 4:
        raise InvalidInput("a budget-aware ranking needs at least 4 prompts", field="prompts")
    started = clock()
    order = prompt_order(n_prompts, budget.seed)
    full = n_prompts * sum(responses_per_prompt[c] for c in names)
    evidence: dict[str, Evidence] = {}
    active, dropped, rounds = list(names), {}, list[Round]()
    have, used = 0, 0
    target = min(budget.initial_prompts, n_prompts)
    stopped: Stop = "exhausted"
    u: Uncertainty | None = None
    while True:
        new = order[have:target]
        if budget.examples is not None:
            per_prompt = sum(responses_per_prompt[c] for c in active)
            new = new[: max(0, (budget.examples - used) // per_prompt)]
        if len(new) == 0 or (u is None and have + len(new) < 4):
            if u is None:
                raise InvalidInput(
                    "the budget does not cover the first round's 4 prompts for every candidate",
                    field="budget.examples",
                )
            stopped = "budget"
            break
        for c in active:
            part = collect(c, new)
            both = part if c not in evidence else Evidence.concat([evidence[c], part])
            evidence[c] = both.in_prompt_order()
            used += len(new) * responses_per_prompt[c]
        have += len(new)
        d = None if dim is None else dim(have)
        level = round_confidence(confidence, len(rounds))
        u = assess({c: evidence[c] if d is None else evidence[c].folded(d) for c in active}, level)
        rounds.append(
            Round(
                len(rounds),
                have,
                d,
                list(active),
                used,
                clock() - started,
                u.settled,
                u.leader,
                {c: x.p_top1 for c, x in u.candidates.items()},
            )
        )
        if u.settled:
            stopped = "settled"
            break
        if have >= n_prompts:
            break
        if (budget.seconds is not None and clock() - started >= budget.seconds) or (
            budget.examples is not None and used >= budget.examples
        ):
            stopped = "budget"
            break
        likely = sorted(active, key=lambda c: -u.candidates[c].p_top1)
        keep = set(likely[:2]) | {c for c in active if u.candidates[c].p_top1 >= budget.drop_below}
        for c in active:
            if c not in keep:
                dropped[c] = len(rounds) - 1
        active = [c for c in active if c in keep]
        target = min(n_prompts, max(have + 1, math.ceil(have * budget.growth)))
    assert u is not None  # the first round either ran or raised
    report = BudgetReport(stopped, used, full, clock() - started, rounds, dropped)
    return evidence, u, report
