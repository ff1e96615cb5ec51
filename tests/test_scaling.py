"""The distillation scaling law (design.md §2.7) and compute-optimal plans."""

from __future__ import annotations

import itertools
import math

import pytest

from grace_engine.errors import InvalidInput
from grace_engine.science.scaling import (
    SCENARIOS,
    TEACHER_BOUNDS,
    Coefficients,
    forward_flops_per_token,
    plan,
    student_loss,
    supervised_loss,
)


def test_sanity_values_from_the_paper() -> None:
    assert supervised_loss(1e9, 2e10) == pytest.approx(2.374692, abs=1e-6)
    assert student_loss(1e9, 2e10, 2.0) == pytest.approx(2.276811, abs=1e-6)
    assert student_loss(1e9, 2e10, 3.0) == pytest.approx(3.000000, abs=1e-6)


def test_student_approaches_the_teacher_and_a_weak_teacher_caps_it() -> None:
    gaps = [student_loss(n, 20 * n, 2.0) - 2.0 for n in (1e8, 1e9, 1e10, 1e12, 1e14)]
    assert gaps[0] > 0.1
    assert all(g >= 0 for g in gaps)
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-3
    for n in (1e8, 1e9, 1e10):  # a teacher far worse than the student alone: the student just matches it
        weak = 1.25 * supervised_loss(n, 20 * n)
        assert student_loss(n, 20 * n, weak) == pytest.approx(weak, abs=1e-6)


@pytest.mark.parametrize(
    ("n", "d", "lt"),
    [(1e9, 2e10, 2.0), (1e8, 1e9, 2.9), (1e10, 2e11, 1.9), (3e9, 1e11, 2.1), (1e7, 1e8, 1.5)],
)
def test_student_loss_matches_a_50_digit_evaluation(n: float, d: float, lt: float) -> None:
    """The capacity-gap factor has exponents near 11 and 47; compare with the formula written out
    directly in 50-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    k = Coefficients()
    mp = mpmath.mpf
    alone = mp(k.E) + (mp(k.A) / mp(n) ** mp(k.alpha) + mp(k.B) / mp(d) ** mp(k.beta)) ** mp(k.gamma)
    gap = (1 + (mp(lt) / (mp(k.d1) * alone)) ** (1 / mp(k.f1))) ** (-mp(k.c1) * mp(k.f1))
    data = (mp(k.A_s) / mp(n) ** mp(k.alpha_s) + mp(k.B_s) / mp(d) ** mp(k.beta_s)) ** mp(k.gamma_s)
    expected = mp(lt) + mp(lt) ** (-mp(k.c0)) * gap * data
    assert student_loss(n, d, lt) == pytest.approx(float(expected), rel=1e-12)
    assert math.isfinite(student_loss(n, d, lt))


def test_flops_per_token_of_the_546m_configuration() -> None:
    assert forward_flops_per_token(546e6) == pytest.approx(1.417e9, rel=0.01)
    assert forward_flops_per_token(1e9, n_ctx=0, n_vocab=0) == pytest.approx(2e9)


@pytest.mark.parametrize(("n_student", "compute"), [(1e9, 1e21), (3e8, 1e20), (1e10, 1e23)])
def test_plans_spend_the_budget_within_bounds_and_best_case_is_best(n_student: float, compute: float) -> None:
    plans = {s: plan(n_student, compute, s) for s in SCENARIOS}  # type: ignore[arg-type]
    for name, p in plans.items():
        assert p.flops_used == pytest.approx(compute, rel=1e-6), name
        assert p.student_tokens > 0
        for value in (p.teacher_params, p.teacher_tokens):
            if value is not None:
                assert TEACHER_BOUNDS[0] * (1 - 1e-9) <= value <= TEACHER_BOUNDS[1] * (1 + 1e-9)
        assert p.student_loss == pytest.approx(
            student_loss(n_student, p.student_tokens, p.teacher_loss), rel=1e-12
        )
        assert p.distillation_wins == (p.student_loss < p.supervised_loss)
        assert p.supervised_loss == pytest.approx(supervised_loss(n_student, p.supervised_tokens), rel=1e-12)
    best = plans["best_case"]
    assert best.teacher_params is None
    assert best.teacher_tokens is None
    assert plans["teacher_inference"].teacher_params is not None
    assert plans["teacher_inference"].teacher_tokens is None
    for other in plans.values():
        assert best.student_loss <= other.student_loss + 1e-12
    # Paying for the teacher's inference can only cost more than paying for nothing.
    assert (
        plans["teacher_inference"].student_loss
        <= plans["teacher_pretraining_and_inference"].student_loss + 1e-12
    )


def test_plans_are_deterministic() -> None:
    assert plan(1e9, 1e21, "teacher_pretraining") == plan(1e9, 1e21, "teacher_pretraining")


def test_custom_coefficients_change_results() -> None:
    default = plan(1e9, 1e21, "teacher_inference")
    shifted = plan(1e9, 1e21, "teacher_inference", {"E": 1.5})
    assert shifted.student_loss != pytest.approx(default.student_loss, rel=1e-3)
    assert supervised_loss(1e9, 2e10, Coefficients(E=1.0)) == pytest.approx(supervised_loss(1e9, 2e10) - 0.22)
    assert student_loss(1e9, 2e10, 2.0, {"c1": 100.0}) != pytest.approx(
        student_loss(1e9, 2e10, 2.0), rel=1e-6
    )


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: supervised_loss(0, 1e9), "n_params"),
        (lambda: supervised_loss(1e9, -5), "n_tokens"),
        (lambda: student_loss(1e9, 1e10, 1.1), "teacher_loss"),
        (lambda: student_loss(1e9, 1e10, float("nan")), "teacher_loss"),
        (lambda: plan(1e9, 1e21, "cheapest"), "scenario"),  # type: ignore[arg-type]
        (lambda: plan(1e9, 1e10, "best_case"), "compute_flops"),
        (lambda: plan(-1, 1e21, "best_case"), "n_student"),
        (lambda: plan(1e9, 1e21, "best_case", {"zeta": 1.0}), "coefficients"),
        (lambda: plan(1e9, 1e21, "best_case", {"alpha": -0.3}), "coefficients.alpha"),
    ],
)
def test_bad_inputs_name_the_field(call: object, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        call()  # type: ignore[operator]
    assert err.value.field == field


def test_scenarios_are_the_four_of_the_paper() -> None:
    assert set(itertools.chain(SCENARIOS.values())) == {(0, 0), (1, 0), (0, 1), (1, 1)}


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: supervised_loss(1e9, 1e9, {"beta": 1e300}), "coefficients"),
        (lambda: supervised_loss(1e-300, 1e9, {"alpha": 2.0}), "coefficients"),
        (lambda: student_loss(1e9, 1e10, 2.0, {"beta": 1e300}), "coefficients"),
        (lambda: student_loss(1e9, 1e10, 2.0, {"gamma_s": 1e300}), "coefficients"),
        (
            lambda: supervised_loss(1e9, 1e9, {"E": 1.7e308, "A": 1e308, "alpha": 1e-9, "gamma": 1.0}),
            "coefficients",
        ),
        (lambda: plan(1e9, 1e21, "best_case", {"beta": 1e300}), "coefficients"),
        (lambda: plan(1e9, 1e21, "best_case", {"gamma": 1e300}), "coefficients"),
        (lambda: plan(1e9, 1e21, "teacher_inference", {"rho": 1e300, "omega": 1e-300}), "coefficients"),
    ],
)
def test_an_overflowing_law_is_bad_input_not_a_crash(call: object, field: str) -> None:
    """Extreme coefficients or inputs: every overflow is an InvalidInput naming the field."""
    with pytest.raises(InvalidInput) as err:
        call()  # type: ignore[operator]
    assert err.value.field == field
    assert "overflows" in str(err.value)
