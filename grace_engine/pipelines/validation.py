"""Ground truth for a ranking (design §2.8): distil the student on each candidate's responses,
evaluate what came out, and measure how well GRACE and every baseline predicted it.

:func:`run_validation` is the job: the candidates' scores and responses come from
:func:`~grace_engine.pipelines.scoring.rank_teachers` (supplied, stored from an earlier job, or generated);
for each training seed a fresh copy of the student is distilled on each candidate's responses
(:mod:`~grace_engine.pipelines.distillation`) and evaluated on held-out problems
(:mod:`~grace_engine.science.evaluation`), next to the untrained student. :func:`correlate` then compares
each score with each outcome. Everything is signed so that +1 means a perfect prediction, whichever
way the score and the outcome point.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from typing import Any, Literal

import numpy as np

from grace_engine.errors import InvalidInput
from grace_engine.memory import release_memory, resident_bytes
from grace_engine.models.data import Prompt, ReferenceExample, StudentFormat, student_examples
from grace_engine.models.loading import LoadedModel, context_length, resolve_model
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.distillation import DistillConfig, TrainStats, distil
from grace_engine.pipelines.prepare import prepare_candidate
from grace_engine.pipelines.results import RankingResult
from grace_engine.pipelines.scoring import rank_teachers
from grace_engine.progress import ProgressEvent
from grace_engine.science import caveats, permutation
from grace_engine.science.caveats import ResultWarning
from grace_engine.science.evaluation import DEFAULT_MAX_NEW_TOKENS, Outcome, eval_examples, evaluate
from grace_engine.science.predictors import PREDICTORS
from grace_engine.science.ranking import spearman
from grace_engine.science.uncertainty import Draws

BOOTSTRAP_SAMPLES = 2000
OutcomeName = Literal["eval_nll", "accuracy"]
OUTCOMES: dict[str, bool] = {"eval_nll": False, "accuracy": True}  # name -> higher is better


@dataclass(frozen=True)
class Correlation:
    """Agreement of one score with the outcome over ``n_candidates`` candidates.

    ``spearman`` and ``kendall`` (tau-b) are between the score's predicted goodness and the
    outcome's quality, None when either side is constant (nothing to predict, or no prediction);
    ``ci95`` is a percentile bootstrap interval of ``spearman`` over candidates (resamples with
    fewer than two distinct values on either side are skipped; None when none is left).
    ``regret`` is how much worse, in the outcome's units, the score's top pick did than the best
    candidate; ``regret_rel`` the same divided by the best outcome's magnitude. ``p_value`` is the
    one-sided permutation p-value of ``spearman`` (exact up to 10 candidates, else 100,000 seeded
    pairings: :mod:`~grace_engine.science.permutation`), ``critical_rho`` the smallest Spearman that reaches
    5% for this many candidates, and ``distinguishable`` whether ``p_value <= 0.05``: a correlation
    that is not is "not distinguishable from chance", whatever its size.
    """

    score: str
    outcome: str
    spearman: float | None
    kendall: float | None
    ci95: tuple[float, float] | None
    regret: float
    regret_rel: float | None
    n_candidates: int
    top_pick: str
    best: str
    p_value: float | None = None
    critical_rho: float | None = None
    distinguishable: bool | None = None


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float | None:
    """Kendall's tau-b of two equally long vectors (ties handled as tau-b does); None when either
    side is constant."""
    n = len(a)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            ties_a += da == 0
            ties_b += db == 0
            concordant += da * db > 0
            discordant += da * db < 0
    pairs = n * (n - 1) // 2
    denom = math.sqrt((pairs - ties_a) * (pairs - ties_b))
    return float((concordant - discordant) / denom) if denom > 0 else None


def _varies(x: np.ndarray) -> bool:
    return len(np.unique(x)) > 1


def correlate(
    score_name: str,
    scores: Mapping[str, float],
    outcomes: Mapping[str, float],
    *,
    lower_score_is_better: bool,
    higher_outcome_is_better: bool,
    outcome_name: str = "outcome",
    seed: int = 0,
    n_boot: int = BOOTSTRAP_SAMPLES,
) -> Correlation:
    """How well ``scores`` predicted ``outcomes`` (both keyed by candidate name).

    GRACE, G-Norm, student NLL: lower is better; G-Vendi, teacher accuracy: higher is better.
    Outcomes: ``eval_nll`` lower is better, ``accuracy`` higher is better.
    """
    names = sorted(scores)
    if sorted(outcomes) != names:
        raise InvalidInput("scores and outcomes must cover the same candidates", field="outcomes")
    if len(names) < 2:
        raise InvalidInput("needs at least 2 candidates", field="candidates")
    values = np.array([[scores[n], outcomes[n]] for n in names], dtype=np.float64)
    if not np.isfinite(values).all():
        raise InvalidInput("scores and outcomes must be finite numbers", field="outcomes")
    goodness = -values[:, 0] if lower_score_is_better else values[:, 0]
    quality = values[:, 1] if higher_outcome_is_better else -values[:, 1]
    defined = _varies(goodness) and _varies(quality)
    ci: tuple[float, float] | None = None
    if defined:
        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(names), len(names))
            if _varies(goodness[idx]) and _varies(quality[idx]):
                boot.append(spearman(goodness[idx].tolist(), quality[idx].tolist()))
        if boot:
            ci = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
    # The pick: best predicted goodness (the first name on ties); the best: best quality.
    pick, best = int(np.argmax(goodness)), int(np.argmax(quality))
    regret = float(quality[best] - quality[pick])
    scale = float(abs(values[best, 1]))
    p_value = permutation.spearman_p(goodness.tolist(), quality.tolist(), seed=seed) if defined else None
    return Correlation(
        score=score_name,
        outcome=outcome_name,
        spearman=spearman(goodness.tolist(), quality.tolist()) if defined else None,
        kendall=kendall_tau_b(goodness, quality) if defined else None,
        ci95=ci,
        regret=regret,
        regret_rel=regret / scale if scale > 0 else (None if regret > 0 else 0.0),
        n_candidates=len(names),
        top_pick=names[pick],
        best=names[best],
        p_value=p_value,
        critical_rho=permutation.critical_rho(len(names)),
        distinguishable=None if p_value is None else p_value <= permutation.ALPHA,
    )


# --- the job -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationConfig:
    """What a validation job does besides scoring.

    ``train_seeds``: one distilled student per candidate and seed; a candidate's outcome is the
    mean over seeds (training noise averages out; each seed's values are kept). Three by default,
    so that the spread between seeds is measured and the outcomes are tested against it. ``outcome``:
    the outcome ``correlations`` are computed against (every outcome is in ``correlations_by_outcome``).
    ``accuracy``: greedy-decode the eval problems (needs an answer on each), up to
    ``eval_max_tokens`` new tokens.
    """

    distill: DistillConfig = field(default_factory=DistillConfig)
    train_seeds: tuple[int, ...] = (0, 1, 2)
    outcome: OutcomeName = "eval_nll"
    accuracy: bool = True
    eval_max_tokens: int = DEFAULT_MAX_NEW_TOKENS
    bootstrap_seed: int = 0
    mixed: bool = False  # also distil on the mixed-teacher set routed by per-prompt GRACE

    def check(self, eval_set: Sequence[ReferenceExample]) -> None:
        self.distill.check()
        if not self.train_seeds:
            raise InvalidInput("needs at least one seed", field="train_seeds")
        if min(self.train_seeds) < 0:
            raise InvalidInput("seeds must be 0 or more", field="train_seeds")
        if len(set(self.train_seeds)) != len(self.train_seeds):
            raise InvalidInput("seeds must be distinct", field="train_seeds")
        if self.outcome not in OUTCOMES:
            raise InvalidInput(f"must be one of {', '.join(OUTCOMES)}", field="outcome")
        if self.eval_max_tokens < 1:
            raise InvalidInput("must be at least 1", field="eval_max_tokens")
        if not eval_set:
            raise InvalidInput("needs at least one eval problem", field="eval")
        if self.outcome == "accuracy":
            if not self.accuracy:
                raise InvalidInput("the accuracy outcome needs accuracy on", field="outcome")
            missing = [i for i, e in enumerate(eval_set) if e.answer is None]
            if missing:
                raise InvalidInput(
                    "the accuracy outcome needs an answer on every eval problem",
                    field=f"eval[{missing[0]}].answer",
                )


@dataclass(frozen=True)
class CandidateValidation:
    """One candidate's distilled students: the outcome averaged over seeds, and each seed's run."""

    name: str
    outcome: Outcome
    per_seed: list[Outcome]
    training: list[TrainStats]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; :meth:`from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CandidateValidation:
        return cls(
            d["name"],
            Outcome(**d["outcome"]),
            [Outcome(**o) for o in d["per_seed"]],
            [TrainStats(**t) for t in d["training"]],
        )


def _mean_outcome(runs: Sequence[Outcome]) -> Outcome:
    accs = [r.accuracy for r in runs]
    return Outcome(
        eval_nll=float(np.mean([r.eval_nll for r in runs])),
        accuracy=None if any(a is None for a in accs) else float(np.mean(accs)),  # type: ignore[arg-type]
        n_eval=runs[0].n_eval,
        n_eval_tokens=runs[0].n_eval_tokens,
    )


def _outcome_value(o: Outcome, name: str) -> float | None:
    return o.eval_nll if name == "eval_nll" else o.accuracy


@dataclass(frozen=True)
class ValidationResult:
    """What :func:`run_validation` found: the scores (``ranking``), each candidate's distilled
    outcome, the untrained student's, and each score's correlation with each outcome."""

    ranking: RankingResult
    untrained: Outcome
    candidates: dict[str, CandidateValidation]
    correlations: dict[str, dict[str, Correlation]]  # outcome -> score -> correlation
    config: ValidationConfig
    n_eval: int
    warnings: list[ResultWarning]
    versions: dict[str, str]
    mixed: CandidateValidation | None = None  # the mixed-teacher set as one more candidate

    def mixed_summary(self) -> dict[str, Any] | None:
        """The mixed candidate's outcome against the best single teacher's (by the chosen outcome),
        and how many prompts each teacher supplied."""
        if self.mixed is None:
            return None
        name = self.config.outcome
        higher = OUTCOMES[name]
        values = {c: _outcome_value(v.outcome, name) for c, v in self.candidates.items()}
        known = {c: v for c, v in values.items() if v is not None}
        mine = _outcome_value(self.mixed.outcome, name)
        best = (max if higher else min)(known, key=lambda c: known[c]) if known else None
        gain = None
        if best is not None and mine is not None:
            gain = (mine - known[best]) if higher else (known[best] - mine)
        teachers = dict(Counter(r.teacher for r in self.ranking.mixed))
        return {
            "outcome": asdict(self.mixed.outcome),
            "per_seed": [asdict(o) for o in self.mixed.per_seed],
            "training": [asdict(t) for t in self.mixed.training],
            "teachers": teachers,
            "best_single": best,
            "gain_over_best_single": gain,
            "beats_best_single": None if gain is None else gain > 0,
        }

    def protocol(self) -> dict[str, Any]:
        """Every setting and seed the result depends on."""
        distill = asdict(self.config.distill)
        distill["learning_rate"] = self.config.distill.lr
        return {
            "student": self.ranking.student,
            "n_train_prompts": self.ranking.n_prompts,
            "n_eval": self.n_eval,
            "scoring": asdict(self.ranking.config),
            "distillation": distill,
            "train_seeds": list(self.config.train_seeds),
            "outcome": self.config.outcome,
            "accuracy": self.config.accuracy,
            "eval_max_tokens": self.config.eval_max_tokens,
            "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "seed": self.config.bootstrap_seed},
            "memory_budget_gb": self.ranking.memory_budget_gb,
            "versions": self.versions,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the same in the CLI's ``--out`` and the API's result."""
        scored = self.ranking.to_dict(include_responses=False)
        ranks = {r.name: r.rank for r in self.ranking.ranking}
        candidates = {}
        for name, v in self.candidates.items():
            outcome = asdict(v.outcome)
            outcome["delta_eval_nll"] = v.outcome.eval_nll - self.untrained.eval_nll
            outcome["per_seed"] = [asdict(o) for o in v.per_seed]
            candidates[name] = {
                **scored["candidates"][name],
                "rank": ranks[name],
                "outcome": outcome,
                "training": [asdict(t) for t in v.training],
            }
        by_outcome = {
            outcome: {score: asdict(c) for score, c in per_score.items()}
            for outcome, per_score in self.correlations.items()
        }
        return {
            "student": self.ranking.student,
            "outcome": self.config.outcome,
            "untrained": asdict(self.untrained),
            "candidates": candidates,
            "correlations": by_outcome.get(self.config.outcome, {}),
            "correlations_by_outcome": by_outcome,
            "ranking": self.ranking.ranking_rows(),
            "settled": scored["settled"],
            "mixed": scored["mixed"],
            "mixed_candidate": self.mixed_summary(),
            "uncertainty": scored["uncertainty"],
            "projection": scored["projection"],
            "protocol": self.protocol(),
            "warnings": [w.to_dict() for w in self.warnings],
        }


def correlations_for(
    ranking: RankingResult, outcomes: Mapping[str, Outcome], *, seed: int = 0
) -> tuple[dict[str, dict[str, Correlation]], list[ResultWarning]]:
    """Every reported score against every outcome that every candidate has; a score missing on a
    candidate (teacher accuracy without answers) is left out."""
    found: dict[str, dict[str, Correlation]] = {}
    notes: list[ResultWarning] = []
    for outcome, higher_is_better in OUTCOMES.items():
        values = {n: _outcome_value(o, outcome) for n, o in outcomes.items()}
        if any(v is None for v in values.values()):
            continue
        target = {n: float(v) for n, v in values.items() if v is not None}
        if len(set(target.values())) == 1:
            notes.append(caveats.constant_outcome(outcome, next(iter(target.values()))))
        found[outcome] = {}
        for name, predictor in PREDICTORS.items():
            raw = {n: ranking.candidates[n].score(name) for n in target}
            if any(v is None for v in raw.values()):
                continue
            found[outcome][name] = correlate(
                name,
                {n: float(v) for n, v in raw.items() if v is not None},
                target,
                lower_score_is_better=predictor.lower_is_better,
                higher_outcome_is_better=higher_is_better,
                outcome_name=outcome,
                seed=seed,
            )
    return found, notes


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("grace-service", "torch", "transformers", "peft"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def _checked_student(
    inputs: ValidationInputs, spec: ValidationSpec, ctx: EngineContext
) -> tuple[LoadedModel, StudentFormat]:
    """The student and its format, with the eval set checked against them before any other work."""
    source = resolve_model(inputs.student, ctx.policy, field="student", base_dir=ctx.base_dir)
    loaded = ctx.cache.get(source, field="student")
    fmt = spec.scoring.student_format.within(context_length(loaded.model))
    eval_examples(loaded.tokenizer, inputs.eval_set, fmt)
    return loaded, fmt


@dataclass(frozen=True)
class ValidationInputs(JobInputs):
    """A job's inputs and the held-out problems each distilled student is evaluated on."""

    eval_set: Sequence[ReferenceExample] = ()


@dataclass(frozen=True)
class ValidationSpec:
    """How candidates are scored (``scoring``) and how each distilled student is trained and
    judged (``validation``)."""

    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


@dataclass
class _Bench:
    """Distils copies of ``loaded`` and evaluates them on ``eval_set``, one trained copy alive at a
    time; progress counts ``n_models`` evaluations (stage ``evaluate``) and each candidate's
    optimizer steps over all seeds (``distil``)."""

    loaded: LoadedModel
    fmt: StudentFormat
    prompts: Sequence[Prompt]
    eval_set: Sequence[ReferenceExample]
    vcfg: ValidationConfig
    ctx: EngineContext
    n_models: int
    evaluated: int = 0

    def resident(self) -> float:
        return resident_bytes([*self.ctx.cache.models(), self.loaded.model])

    def evaluate(self, model: Any) -> Outcome:
        # the stage is ``evaluate`` while it runs, not only once it is done
        self.ctx.progress(ProgressEvent("evaluate", self.evaluated, self.n_models))
        outcome = evaluate(
            model,
            self.loaded.tokenizer,
            self.eval_set,
            self.fmt,
            accuracy=self.vcfg.accuracy,
            max_new_tokens=self.vcfg.eval_max_tokens,
            budget=self.ctx.budget,
            resident=self.resident() + (0 if model is self.loaded.model else resident_bytes([model])),
            should_cancel=self.ctx.should_cancel,
        )
        self.evaluated += 1
        self.ctx.progress(ProgressEvent("evaluate", self.evaluated, self.n_models))
        return outcome

    def distil(self, name: str, index: int, texts: list[list[str]]) -> CandidateValidation:
        """Candidate ``index`` (``name``), distilled on its responses ``texts`` once per seed."""
        seeds = self.vcfg.train_seeds
        examples = student_examples(self.loaded.tokenizer, self.prompts, texts, self.fmt, index)
        per_seed, training = [], []
        steps_done = 0
        for seed in seeds:
            self.ctx.check_cancel()

            def step(done: int, total: int, before: int = steps_done) -> None:
                self.ctx.progress(ProgressEvent("distil", before + done, total * len(seeds), name))

            trained, stats = distil(
                self.loaded.model,
                self.loaded.tokenizer,
                examples,
                replace(self.vcfg.distill, seed=seed),
                budget=self.ctx.budget,
                resident=self.resident(),
                progress=step,
                should_cancel=self.ctx.should_cancel,
            )
            steps_done += stats.steps
            training.append(stats)
            per_seed.append(self.evaluate(trained))
            del trained
            release_memory()  # one trained copy alive at a time, its freed memory back to the OS
        return CandidateValidation(name, _mean_outcome(per_seed), per_seed, training)


@dataclass(frozen=True)
class CandidateRun:
    """One candidate's part of a validation job (:func:`validate_candidate`): its distilled
    students, and its scores under the job's projection when its gradients were stored."""

    validation: CandidateValidation
    ranking: RankingResult | None


def validate_candidate(
    inputs: ValidationInputs, spec: ValidationSpec, ctx: EngineContext, name: str
) -> CandidateRun:
    """The candidate ``name`` of a validation job, alone: its responses collected (and stored in
    the context's response store), the student distilled on them per seed and evaluated. With a
    gradient store in the context, the candidate is also scored under the job's projection (its d
    resolved for all the candidates) and its gradients stored, so the job's :func:`run_validation`
    computes none. A fanned-out validation job runs this per candidate, then
    ``run_validation(distilled=)``.
    """
    vcfg = spec.validation
    vcfg.check(inputs.eval_set)
    index = inputs.index(name)
    loaded, fmt = _checked_student(inputs, spec, ctx)
    ranking = None
    if ctx.gradients is not None:
        ranking = rank_teachers(inputs, spec.scoring, ctx, only=name)
        texts = ranking.candidates[name].responses
    else:
        texts = prepare_candidate(inputs, spec.scoring, ctx, name).generated[0].texts
    release_memory()  # what scoring freed, before training allocates
    bench = _Bench(loaded, fmt, inputs.prompts, inputs.eval_set, vcfg, ctx, len(vcfg.train_seeds))
    return CandidateRun(bench.distil(name, index, texts), ranking)


def run_validation(
    inputs: ValidationInputs,
    spec: ValidationSpec,
    ctx: EngineContext,
    *,
    distilled: Mapping[str, CandidateValidation] | None = None,
    known: Mapping[str, Draws] | None = None,
) -> ValidationResult:
    """Score the candidates (as :func:`~grace_engine.pipelines.scoring.rank_teachers`, with
    ``known`` draws), then distil the student on each candidate's responses and evaluate it on
    ``inputs.eval_set``; a candidate in ``distilled`` (:func:`validate_candidate`, same spec) is not
    distilled again.

    Stages beyond scoring: ``distil`` (per candidate, optimizer steps over all seeds) and
    ``evaluate`` (students evaluated, the untrained one first). The budget bounds every stage;
    distillation holds one trained copy of the student at a time.
    """
    vcfg = spec.validation
    vcfg.check(inputs.eval_set)
    candidates, prompts, eval_set = inputs.candidates, inputs.prompts, inputs.eval_set
    done = dict(distilled or {})
    unknown = sorted(set(done) - set(inputs.names))
    if unknown:
        raise InvalidInput(f"distilled names no candidate: {', '.join(unknown)}", field="distilled")
    loaded, fmt = _checked_student(inputs, spec, ctx)
    ranking = rank_teachers(inputs, spec.scoring, ctx, known=known)
    release_memory()  # what scoring freed, before evaluation and training allocate
    mixed_texts = _mixed_texts(ranking, len(prompts)) if vcfg.mixed else None
    to_distil = len(candidates) - len(done) + (mixed_texts is not None)
    n_models = 1 + to_distil * len(vcfg.train_seeds)
    bench = _Bench(loaded, fmt, prompts, eval_set, vcfg, ctx, n_models)
    ctx.progress(ProgressEvent("evaluate", 0, n_models))
    untrained = bench.evaluate(loaded.model)
    results = {
        cand.name: done.get(cand.name) or bench.distil(cand.name, i, ranking.candidates[cand.name].responses)
        for i, cand in enumerate(candidates)
    }
    mixed = None if mixed_texts is None else bench.distil(MIXED, len(candidates), mixed_texts)
    correlations, notes = correlations_for(
        ranking, {n: v.outcome for n, v in results.items()}, seed=vcfg.bootstrap_seed
    )
    train_texts = {" ".join(p.prompt.split()) for p in prompts}
    overlap = sum(" ".join(e.prompt.split()) in train_texts for e in eval_set)
    per_seed = {
        n: [v for v in (_outcome_value(o, vcfg.outcome) for o in r.per_seed) if v is not None]
        for n, r in results.items()
    }
    base = _outcome_value(untrained, vcfg.outcome)
    spread = damage = None
    if base is not None and all(per_seed.values()):
        spread = caveats.outcomes_not_separated(vcfg.outcome, per_seed, base)
        means = {n: _outcome_value(r.outcome, vcfg.outcome) for n, r in results.items()}  # over seeds
        damage = caveats.no_student_improved(
            vcfg.outcome,
            {n: v for n, v in means.items() if v is not None},
            base,
            higher_is_better=OUTCOMES[vcfg.outcome],
        )
    warnings = [
        *ranking.warnings,
        *caveats.present(
            caveats.few_candidates(len(candidates)),
            caveats.eval_overlaps_training(overlap, len(eval_set)),
            spread,
            damage,
        ),
        *notes,
    ]
    return ValidationResult(
        ranking=ranking,
        untrained=untrained,
        candidates=results,
        correlations=correlations,
        config=vcfg,
        n_eval=len(eval_set),
        warnings=warnings,
        versions=_versions(),
        mixed=mixed,
    )


MIXED = "mixed (GRACE-routed)"


def _mixed_texts(ranking: RankingResult, n_prompts: int) -> list[list[str]]:
    """Per prompt, all the responses of the teacher the per-prompt GRACE route chose there: as many
    training examples as a single teacher gives, so the comparison is at equal data."""
    if len(ranking.mixed) != n_prompts:
        raise InvalidInput(
            "the mixed candidate needs GRACE on every prompt: include grace in predictors, without a budget",
            field="mixed",
        )
    return [list(ranking.candidates[r.teacher].responses[i]) for i, r in enumerate(ranking.mixed)]
