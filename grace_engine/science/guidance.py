"""The paper's three uses of a teacher ranking, answered from any best-first order.

Panigrahi et al. use GRACE to choose (i) the sampling temperature of a teacher model, (ii) the best
teacher under a parameter-count limit, and (iii) the best teacher within a family. Each is the
first candidate of a group in the ranking's order, so one function answers all three for any
order: the job's ranking, a leaderboard's, or (in the studies) the order of the outcome itself,
against which a predictor's choices are scored as regret.

Only candidates a model generated have a model, a temperature, a family and a size; supplied
responses stay out of the groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Teacher:
    """What a generated candidate is: ``model`` (the reference as given), the ``temperature`` it
    sampled at, and from the model's files its ``family`` (config ``model_type``) and ``params``
    (parameter count); None where the files do not say."""

    model: str
    temperature: float
    family: str | None
    params: int | None


@dataclass(frozen=True)
class TemperatureChoice:
    """For one ``model``: the best of its candidates and the temperature it sampled at;
    ``temperatures``: every temperature the model was tried at, ascending."""

    model: str
    candidate: str
    temperature: float
    rank: int
    temperatures: list[float]


@dataclass(frozen=True)
class FamilyChoice:
    """The best candidate of ``family`` among ``n_candidates`` of it."""

    family: str
    candidate: str
    params: int | None
    rank: int
    n_candidates: int


@dataclass(frozen=True)
class SizeChoice:
    """The best candidate with at most ``max_params`` parameters (None: none fits);
    ``n_within``: candidates that fit; ``unknown``: generated candidates whose size is unknown,
    left out."""

    max_params: int
    candidate: str | None
    params: int | None
    rank: int | None
    n_within: int
    unknown: list[str]


@dataclass(frozen=True)
class Guidance:
    """The three answers; each list in the order of its best candidate's rank."""

    best_temperature: list[TemperatureChoice]
    best_per_family: list[FamilyChoice]
    under_max_params: SizeChoice | None


def guide(
    order: Sequence[str], teachers: Mapping[str, Teacher | None], *, max_params: int | None = None
) -> Guidance:
    """The guidances of the best-first ``order`` (candidate names; rank = position + 1).
    ``teachers``: each generated candidate's :class:`Teacher` (None or absent: supplied responses).
    A model sampled at a single temperature still gets its choice: one candidate, no choice to make
    but the answer stays complete."""
    by_model: dict[str, list[tuple[int, str, Teacher]]] = {}
    by_family: dict[str, list[tuple[int, str, Teacher]]] = {}
    for rank, name in enumerate(order, start=1):
        teacher = teachers.get(name)
        if teacher is None:
            continue
        by_model.setdefault(teacher.model, []).append((rank, name, teacher))
        if teacher.family is not None:
            by_family.setdefault(teacher.family, []).append((rank, name, teacher))
    temperatures = [
        TemperatureChoice(model, name, t.temperature, rank, sorted({x.temperature for _, _, x in group}))
        for model, group in by_model.items()
        for rank, name, t in group[:1]
    ]
    families = [
        FamilyChoice(family, name, t.params, rank, len(group))
        for family, group in by_family.items()
        for rank, name, t in group[:1]
    ]
    size = None
    if max_params is not None:
        generated = [(rank, name, t) for group in by_model.values() for rank, name, t in group]
        within = sorted(
            (x for x in generated if x[2].params is not None and x[2].params <= max_params),
            key=lambda x: x[0],
        )
        unknown = sorted(name for _, name, t in generated if t.params is None)
        first = within[0] if within else None
        size = SizeChoice(
            max_params,
            None if first is None else first[1],
            None if first is None else first[2].params,
            None if first is None else first[0],
            len(within),
            unknown,
        )
    return Guidance(sorted(temperatures, key=lambda c: c.rank), sorted(families, key=lambda c: c.rank), size)
