"""The distillation scaling law of Busbridge et al. (ICML 2025) and compute-optimal planning.

Losses are in nats per token; ``N`` counts non-embedding parameters, ``D`` tokens.

* Supervised: ``L(N, D) = E + (A / N^alpha + B / D^beta)^gamma``.
* Distilled student: ``L_S = L_T + L_T^-c0 * (1 + (L_T / (d1 * Lt_S))^(1/f1))^(-c1 * f1) *
  (A' / N_S^alpha' + B' / D_S^beta')^gamma'`` with ``Lt_S = L(N_S, D_S)``. The middle factor is the
  *capacity gap*: once the teacher is much better than the student could ever be on its own
  (``L_T << d1 * Lt_S``) it stops helping. Its exponents are about 11 and 47, so it is evaluated in
  log space (a softplus), never as a raw power.
* Compute: ``FLOPs = 3 F(N_S) D_S + F(N_T) (delta_logits D_S + delta_pretrain 3 D_T)`` with
  ``F(N) = 2N (1 + s1 n_ctx N^-1/3 + s2 n_vocab N^-2/3)`` forward FLOPs per token.

The default coefficients are the paper's Table 6, fitted on one setup (C4, muP, a fixed aspect
ratio); pass your own :class:`Coefficients` for anything else.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt

from grace_engine.errors import InvalidInput

Scenario = Literal[
    "best_case", "teacher_inference", "teacher_pretraining", "teacher_pretraining_and_inference"
]
SCENARIOS: dict[str, tuple[int, int]] = {  # (delta_logits, delta_pretrain)
    "best_case": (0, 0),
    "teacher_inference": (1, 0),
    "teacher_pretraining": (0, 1),
    "teacher_pretraining_and_inference": (1, 1),
}
TEACHER_BOUNDS = (1e6, 1e17)  # teacher parameters and tokens searched within these
COEFFICIENT_SOURCE = (
    "Busbridge et al. (ICML 2025), Table 6: fitted on one pretraining setup (C4, muP, fixed aspect ratio); "
    "other data or architectures need their own fit"
)


@dataclass(frozen=True)
class Coefficients:
    """Scaling-law coefficients; ``*_s`` are the primed (student) ones. ``omega``/``rho`` set the
    attention and embedding terms of the FLOPs model."""

    E: float = 1.220
    A: float = 3355.0
    B: float = 18186.0
    alpha: float = 0.408
    beta: float = 0.431
    gamma: float = 0.452
    A_s: float = 2243.0
    B_s: float = 24181.0
    alpha_s: float = 0.321
    beta_s: float = 0.637
    gamma_s: float = 0.764
    c0: float = 2.549
    c1: float = 522.6
    f1: float = 0.090
    d1: float = 1.315
    omega: float = 12.0
    rho: float = 128.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InvalidInput("must be a positive finite number", field=f"coefficients.{f.name}")

    @classmethod
    def resolve(cls, given: Coefficients | Mapping[str, float] | None) -> Coefficients:
        """The defaults, with any given entries replaced (unknown names are an error)."""
        if given is None:
            return cls()
        if isinstance(given, Coefficients):
            return given
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidInput(f"unknown coefficient(s) {', '.join(unknown)}", field="coefficients")
        return replace(cls(), **{k: float(v) for k, v in given.items()})

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


CoefficientsLike = Coefficients | Mapping[str, float] | None


def _positive(value: float, field: str) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise InvalidInput("must be a positive finite number", field=field)
    return float(value)


_Law = TypeVar("_Law", bound=Callable[..., Any])


def _finite(law: _Law) -> _Law:
    """Extreme coefficients or inputs (``beta: 1e300``, ``n_student: 1e308``) overflow the law;
    that is bad input, not a crash. An overflow, a division by zero, a log of zero, or a
    non-finite number in the result is an :class:`InvalidInput` naming ``coefficients`` when some
    were given, else the law's first input."""
    signature = inspect.signature(law)
    first = next(iter(signature.parameters))

    @functools.wraps(law)
    def checked(*args: Any, **kwargs: Any) -> Any:
        given = signature.bind(*args, **kwargs).arguments.get("coefficients")
        field = "coefficients" if given is not None else first
        try:
            with np.errstate(all="ignore"):  # numpy's overflows surface as non-finite results
                out = law(*args, **kwargs)
        except (OverflowError, ZeroDivisionError, ValueError) as exc:  # math's range and domain errors
            raise InvalidInput(f"the scaling law overflows for these inputs ({exc})", field=field) from exc
        values = asdict(out).values() if isinstance(out, Plan) else [out]
        if not all(math.isfinite(v) for v in values if isinstance(v, float)):
            raise InvalidInput(
                "the scaling law overflows for these inputs (a non-finite result)", field=field
            )
        return out

    return cast(_Law, checked)


@_finite
def supervised_loss(n_params: float, n_tokens: float, coefficients: CoefficientsLike = None) -> float:
    """``L(N, D)`` of supervised training, nats/token."""
    k = Coefficients.resolve(coefficients)
    return _supervised_loss(_positive(n_params, "n_params"), _positive(n_tokens, "n_tokens"), k)


def _supervised_loss(n: float, d: float, k: Coefficients) -> float:
    return float(k.E + (k.A / n**k.alpha + k.B / d**k.beta) ** k.gamma)


def _log_softplus(z: float) -> float:
    return float(np.logaddexp(0.0, z))


@_finite
def student_loss(
    n_student: float, student_tokens: float, teacher_loss: float, coefficients: CoefficientsLike = None
) -> float:
    """The distilled student's loss ``L_S`` for a teacher of loss ``teacher_loss``, nats/token."""
    k = Coefficients.resolve(coefficients)
    n, d = _positive(n_student, "n_student"), _positive(student_tokens, "student_tokens")
    lt = _positive(teacher_loss, "teacher_loss")
    if lt <= k.E:
        raise InvalidInput(
            f"{lt} is at or below the law's irreducible loss E = {k.E}; no model reaches it",
            field="teacher_loss",
        )
    return _student_loss(n, d, lt, k)


def _student_loss(n: float, d: float, lt: float, k: Coefficients) -> float:
    ls_alone = _supervised_loss(n, d, k)
    # log of (1 + (lt / (d1 ls_alone))^(1/f1))^(-c1 f1), as -c1 f1 softplus((1/f1) log(ratio)).
    log_gap = -k.c1 * k.f1 * _log_softplus(math.log(lt / (k.d1 * ls_alone)) / k.f1)
    log_term = (
        -k.c0 * math.log(lt) + log_gap + k.gamma_s * math.log(k.A_s / n**k.alpha_s + k.B_s / d**k.beta_s)
    )
    return lt + math.exp(log_term)


def forward_flops_per_token(
    n_params: float, n_ctx: int = 4096, n_vocab: int = 32768, coefficients: CoefficientsLike = None
) -> float:
    """``F(N)``: forward FLOPs per token, with the attention (``n_ctx``) and embedding (``n_vocab``)
    terms of a model with the paper's aspect ratio."""
    k = Coefficients.resolve(coefficients)
    n = _positive(n_params, "n_params")
    s1 = (k.rho * k.omega**2) ** (-1 / 3)
    s2 = (k.rho / k.omega) ** (1 / 3)
    return float(2 * n * (1 + s1 * n_ctx * n ** (-1 / 3) + s2 * n_vocab * n ** (-2 / 3)))


@dataclass(frozen=True)
class Plan:
    """The compute-optimal distillation of an ``n_student`` student at ``compute_flops``.

    ``teacher_params``/``teacher_tokens`` are ``None`` where the scenario does not charge for them
    (best_case charges neither, teacher_inference does not charge pretraining tokens): any values
    reaching ``teacher_loss`` do. ``supervised_loss`` is the same student trained without a teacher
    on the same compute, ``distillation_wins`` whether the distilled student is better.
    """

    scenario: str
    n_student: float
    compute_flops: float
    student_loss: float
    student_tokens: float
    teacher_loss: float
    teacher_params: float | None
    teacher_tokens: float | None
    supervised_loss: float
    supervised_tokens: float
    distillation_wins: bool
    flops_used: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _grid_losses(
    n_s: float,
    budget: float,
    delta: tuple[int, int],
    k: Coefficients,
    log_nt: npt.NDArray[np.float64],
    log_dt: npt.NDArray[np.float64],
    n_ctx: int,
    n_vocab: int,
) -> npt.NDArray[np.float64]:
    out = np.full((len(log_nt), len(log_dt)), np.inf)
    for i, a in enumerate(log_nt):
        for j, b in enumerate(log_dt):
            out[i, j] = _objective(np.array([a, b]), n_s, budget, delta, k, n_ctx, n_vocab)
    return out


def _student_tokens(
    n_s: float,
    n_t: float,
    d_t: float,
    budget: float,
    delta: tuple[int, int],
    k: Coefficients,
    n_ctx: int,
    n_vocab: int,
) -> float:
    """The student's tokens that spend the rest of the budget (closed form, so the budget is exact)."""
    f_s = forward_flops_per_token(n_s, n_ctx, n_vocab, k)
    f_t = forward_flops_per_token(n_t, n_ctx, n_vocab, k)
    logits, pretrain = delta
    return (budget - f_t * pretrain * 3 * d_t) / (3 * f_s + logits * f_t)


def _objective(
    x: npt.NDArray[np.float64],
    n_s: float,
    budget: float,
    delta: tuple[int, int],
    k: Coefficients,
    n_ctx: int,
    n_vocab: int,
) -> float:
    n_t, d_t = 10.0 ** x[0], 10.0 ** x[1]
    d_s = _student_tokens(n_s, n_t, d_t, budget, delta, k, n_ctx, n_vocab)
    if d_s <= 1.0:  # the teacher took the whole budget
        return math.inf
    lt = _supervised_loss(n_t, d_t, k)
    return _student_loss(n_s, d_s, lt, k)


@_finite
def plan(
    n_student: float,
    compute_flops: float,
    scenario: Scenario,
    coefficients: CoefficientsLike = None,
    *,
    n_ctx: int = 4096,
    n_vocab: int = 32768,
) -> Plan:
    """Minimise the student's loss over the teacher's size and tokens (within [1e6, 1e17]) and the
    student's tokens, spending exactly ``compute_flops``.

    The student's tokens follow from the budget in closed form, leaving a 2-D search over
    ``(log10 N_T, log10 D_T)``: a grid, then bounded Nelder-Mead from its five best points.
    Deterministic for given inputs.
    """
    k = Coefficients.resolve(coefficients)
    n_s = _positive(n_student, "n_student")
    budget = _positive(compute_flops, "compute_flops")
    if scenario not in SCENARIOS:
        raise InvalidInput(f"must be one of {', '.join(SCENARIOS)}", field="scenario")
    delta = SCENARIOS[scenario]
    f_s = forward_flops_per_token(n_s, n_ctx, n_vocab, k)
    supervised_tokens = budget / (3 * f_s)
    if supervised_tokens < 1e3:
        raise InvalidInput(
            f"{budget:.3g} FLOPs train a {n_s:.3g}-parameter student on only {supervised_tokens:.3g} tokens",
            field="compute_flops",
        )
    lo, hi = (math.log10(b) for b in TEACHER_BOUNDS)
    grid = np.linspace(lo, hi, 45)
    from scipy.optimize import minimize

    losses = _grid_losses(n_s, budget, delta, k, grid, grid, n_ctx, n_vocab)
    if not np.isfinite(losses).any():
        raise InvalidInput(
            "no teacher within [1e6, 1e17] leaves compute for the student", field="compute_flops"
        )
    starts = np.argsort(losses, axis=None)[:5]
    # Relative to the loss's size: an absolute 1e-12 is never met by losses of 1e10 (extreme
    # coefficients), and each start would then spend all 4,000 iterations.
    fatol = 1e-12 * max(1.0, float(np.min(losses[np.isfinite(losses)])))
    best_x, best_f = None, math.inf
    for flat in starts:
        i, j = np.unravel_index(flat, losses.shape)
        x0 = np.array([grid[i], grid[j]])
        if not math.isfinite(losses[i, j]):
            continue
        res = minimize(
            _objective,
            x0,
            args=(n_s, budget, delta, k, n_ctx, n_vocab),
            method="Nelder-Mead",
            bounds=[(lo, hi), (lo, hi)],
            options={"xatol": 1e-7, "fatol": fatol, "maxiter": 4000},
        )
        fx = float(res.fun) if math.isfinite(res.fun) else math.inf
        if fx < best_f:
            best_x, best_f = np.clip(res.x, lo, hi), fx
        if losses[i, j] < best_f:
            best_x, best_f = x0, float(losses[i, j])
    assert best_x is not None
    n_t, d_t = 10.0 ** float(best_x[0]), 10.0 ** float(best_x[1])
    d_s = _student_tokens(n_s, n_t, d_t, budget, delta, k, n_ctx, n_vocab)
    lt = _supervised_loss(n_t, d_t, k)
    ls = _student_loss(n_s, d_s, lt, k)
    logits, pretrain = delta
    used = 3 * f_s * d_s + forward_flops_per_token(n_t, n_ctx, n_vocab, k) * (
        logits * d_s + pretrain * 3 * d_t
    )
    sup = _supervised_loss(n_s, supervised_tokens, k)
    return Plan(
        scenario=scenario,
        n_student=n_s,
        compute_flops=budget,
        student_loss=ls,
        student_tokens=d_s,
        teacher_loss=lt,
        teacher_params=n_t if (logits or pretrain) else None,
        teacher_tokens=d_t if pretrain else None,
        supervised_loss=sup,
        supervised_tokens=supervised_tokens,
        distillation_wins=ls < sup,
        flops_used=used,
    )
