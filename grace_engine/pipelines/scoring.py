"""One scoring job: prompts + candidate teachers -> responses -> student gradients -> scores -> ranking.

Stages, reported through ``progress(ProgressEvent)``: ``generate`` (per candidate, prompts done),
``gradients`` (per candidate, responses done), ``score``. ``should_cancel()`` is polled between
batches and stages; when it returns true the job stops with :class:`~grace_engine.errors.Cancelled`.
Every model reference is checked against the policy before anything is loaded, and one projection
is built for the whole call so that candidates' scores are comparable. Every stage sizes its batches
from one :class:`~grace_engine.memory.MemoryBudget`; a budget that cannot hold the student and the
job's longest example is refused before any generation or gradient work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from grace_engine.errors import InvalidInput, as_candidate
from grace_engine.memory import grace_workers
from grace_engine.models.candidates import Candidate
from grace_engine.models.data import (
    Prompt,
    StudentFormat,
    pad_token_id,
    student_examples,
)
from grace_engine.models.facts import model_facts
from grace_engine.models.loading import (
    LoadedModel,
    ModelSource,
)
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.prepare import PreparedJob, prepare
from grace_engine.pipelines.results import CandidateResult, RankingResult
from grace_engine.progress import ProgressEvent, Stage, check_cancel
from grace_engine.science import caveats
from grace_engine.science.adaptive import BudgetReport, adaptive_evidence
from grace_engine.science.caveats import ResultWarning
from grace_engine.science.grace import (
    GraceResult,
    log_length_factor,
    prompt_rows,
    response_correct,
)
from grace_engine.science.gradients import (
    ForwardStatistics,
    GradientComputer,
    GradientResult,
    compute_gradients,
    make_gradient_computer,
)
from grace_engine.science.guidance import Teacher
from grace_engine.science.mixture import route_by_grace
from grace_engine.science.predictors import (
    PREDICTORS,
    Evidence,
    grace_of,
    needs_gradients,
    value,
)
from grace_engine.science.projection import ProjectionIdentity
from grace_engine.science.ranking import RankedCandidate, rank_candidates, spearman
from grace_engine.science.uncertainty import Draws, Uncertainty, draws_steps, rank_uncertainty
from grace_engine.stores.gradient_store import GradientStore, StoredGradients, content_hash, gradient_key

Prepared = PreparedJob[GradientComputer]


class Projection(Protocol):
    """What a result records of the job's projection (a built computer, or its stored record)."""

    @property
    def d(self) -> int: ...

    @property
    def grad_dim(self) -> int: ...

    def identity(self) -> ProjectionIdentity | None: ...


def _job_warnings(
    prompts: Sequence[Prompt],
    candidates: Sequence[Candidate],
    cfg: ScoringConfig,
    results: dict[str, CandidateResult],
    fmt: StudentFormat,
    *,
    gradients: bool,
) -> list[ResultWarning]:
    m = min(r.responses_per_prompt for r in results.values())
    found = caveats.present(caveats.few_prompts(len(prompts)))
    if gradients:
        found += caveats.present(
            caveats.small_sample(n_prompts=len(prompts), test_fraction=cfg.test_fraction, m=m, d=cfg.dim)
        )
    for cand in candidates:
        r = results[cand.name]
        found += caveats.present(
            caveats.at_max_tokens(
                cand.name, n=r.n_at_max_tokens or 0, total=r.n_responses, max_tokens=cand.max_tokens
            ),
            caveats.cut_by_max_length(
                cand.name, n=r.n_truncated, total=r.n_responses, max_length=fmt.max_length
            ),
        )
    return found


def _predictor_warnings(
    score: str,
    top_pick: str,
    ranked: dict[str, float],
    values: dict[str, dict[str, float | None]],
    results: dict[str, CandidateResult],
) -> list[ResultWarning]:
    """What the other predictors say against the ranking: it follows length, or the most
    accurate candidate is not its top pick."""
    names = list(ranked)
    lengths = [results[c].mean_response_tokens for c in names]
    scores = [ranked[c] for c in names]
    distinct = len(set(lengths)) > 1 and len(set(scores)) > 1  # spearman of a constant is undefined
    rho = spearman(scores, lengths) if distinct else 0.0
    accuracy = {c: v.get("teacher_accuracy") for c, v in values.items()}
    known = {c: a for c, a in accuracy.items() if a is not None}
    return caveats.present(
        caveats.tracks_length(score=score, rho=rho, n_candidates=len(names)),
        caveats.accuracy_disagrees(
            score=score, top_pick=top_pick, accuracy=known if len(known) == len(accuracy) else {}
        ),
    )


def rank_teachers(
    inputs: JobInputs,
    spec: ScoringConfig,
    ctx: EngineContext,
    *,
    only: str | None = None,
    known: Mapping[str, Draws] | None = None,
) -> RankingResult:
    """Score and rank ``inputs.candidates`` as teachers for ``inputs.student`` on its prompts.

    Args:
        inputs: prompts, candidates and student (:class:`~grace_engine.pipelines.context.JobInputs`).
        spec: the scoring settings; ``proj_dim`` "auto" is resolved here, for all the candidates,
            and the result records the value it took.
        ctx: the context (:class:`~grace_engine.pipelines.context.EngineContext`): its gradient
            store, when set, is read before any gradient is computed and written after.
        only: score this candidate alone, under the projection the whole job has (a fanned-out
            job's unit); errors about it name its place among all the candidates.
        known: per candidate, its uncertainty draws (``result.uncertainty.draws``) from an earlier
            call on the same prompts with the same spec and that candidate's same responses: a
            fanned-out job's units score their candidate alone, and the assembly reuses them
            instead of computing them again. Not for budget-aware rankings.
    """
    spec.check()
    cfg = spec.resolved(len(inputs.prompts), inputs.candidates)
    if only is None:
        return _rank(inputs, spec, cfg, ctx, known)
    index = inputs.index(only)
    with as_candidate(index):
        return _rank(replace(inputs, candidates=[inputs.candidates[index]]), spec, cfg, ctx, known)


def _rank(
    inputs: JobInputs,
    given: ScoringConfig,
    cfg: ScoringConfig,
    ctx: EngineContext,
    known: Mapping[str, Draws] | None,
) -> RankingResult:
    """:func:`rank_teachers` with ``cfg`` resolved (``given``: as asked for)."""
    candidates, gradients = inputs.candidates, ctx.gradients

    def probe(loaded: LoadedModel) -> GradientComputer:
        # The job's one projection: candidates' scores must be comparable, so every candidate goes
        # through this same computer, built on the student when it is loaded.
        if not needs_gradients(cfg.predictors):
            return ForwardStatistics(loaded.model)
        return make_gradient_computer(
            loaded.model,
            space=cfg.gradient_space,
            d=cfg.dim,
            seed=cfg.seed,
            path=cfg.path,
            factor_dim=cfg.factor_dim,
        )

    deferrable = gradients is not None and needs_gradients(cfg.predictors) and cfg.budget is None
    job = prepare(inputs, cfg, ctx, probe, defer_student=deferrable)
    keys = _gradient_keys(job, candidates) if gradients is not None else None
    found = _stored_gradients(job, gradients, keys) if gradients is not None and keys is not None else {}
    every = {n: g for n, g in found.items() if g is not None}
    if job.checked is None and len(every) == len(candidates):  # deferred, and nothing to compute
        return _marked_auto(_from_store(job, candidates, every, known), given)
    computer = job.load_student().probe
    collect = Collector(job, candidates, computer, gradients, keys, found)
    names = [c.name for c in candidates]
    adaptive = None
    if cfg.budget is None:
        everything = np.arange(len(job.prompts))
        evidence = {name: collect(name, everything) for name in names}
    else:
        score, settings = cfg.ranking_score, cfg.grace_settings

        def assess(active: dict[str, Evidence], level: float) -> Uncertainty:
            point = {c: float(value(score, ev, settings) or 0.0) for c, ev in active.items()}
            return _uncertainty(job, candidates, active, point, confidence=level)

        # Projected once at the full run's d; each round, and the result, at its own prompts' d.
        def dim(n: int) -> int:
            return cfg.auto_dim(n, candidates)

        folds = given.proj_dim == "auto" and computer.d > 0
        evidence, last, spent = adaptive_evidence(
            names,
            len(job.prompts),
            {c: collect.m(c) for c in names},
            collect,
            assess,
            cfg.budget,
            dim=dim if folds else None,
            confidence=cfg.confidence,
        )
        if folds:
            final = dim(max(ev.n_prompts for ev in evidence.values()))
            evidence = {c: ev.folded(final) for c, ev in evidence.items()}
            job.cfg = replace(cfg, proj_dim=final)
        adaptive = (last, spent)
        for name in names:  # close the progress of candidates that stopped early
            job.report(ProgressEvent("gradients", collect.done[name], collect.done[name], name))
    ctx.check_cancel()
    truncated = {name: collect.truncated(name) for name in names}
    result = _scored(job, candidates, evidence, truncated, computer, job.fmt, adaptive, known)
    return _marked_auto(result, given)


def _marked_auto(result: RankingResult, given: ScoringConfig) -> RankingResult:
    """``result`` marked as scored at the ``auto`` d when ``given`` asked for it, warned when that d
    fell below the paper's (unless the sample is already warned as too small for its d)."""
    if given.proj_dim != "auto":
        return result
    warnings = result.warnings
    if result.projection is not None and not any(w.code == "small_sample" for w in warnings):
        m = min(r.responses_per_prompt for r in result.candidates.values())
        below = caveats.below_papers_dim(
            n_prompts=result.n_prompts, test_fraction=result.config.test_fraction, m=m, d=result.config.dim
        )
        warnings = [*warnings, *caveats.present(below)]
    return replace(result, auto_proj_dim=True, warnings=warnings)


def _gradient_keys(job: Prepared, candidates: Sequence[Candidate]) -> dict[str, str] | None:
    """Each candidate's content address under this job's student, format (as requested: the
    student's content fixes its context) and projection; None for a forward-only job (it has no
    gradients to store)."""
    cfg = job.cfg
    if not needs_gradients(cfg.predictors):
        return None
    student = content_hash(job.student_source)
    return {
        c.name: gradient_key(
            student_hash=student, prompts=job.prompts, responses=g.texts, settings=cfg.gradient_settings()
        )
        for c, g in zip(candidates, job.generated, strict=True)
    }


def _stored_gradients(
    job: Prepared, store: GradientStore, keys: dict[str, str]
) -> dict[str, StoredGradients | None]:
    """Each candidate's stored gradients, looked up once per job; None where there are none of the
    shape this job's would have (a set of another shape is ignored: the key changed meaning)."""
    found: dict[str, StoredGradients | None] = {}
    for name, generated in zip(keys, job.generated, strict=True):
        stored = store.get(keys[name])
        rows = len(job.prompts) * len(generated.texts[0])
        found[name] = stored if stored is not None and stored.gradients.shape == (rows, job.cfg.dim) else None
    return found


@dataclass(frozen=True)
class _StoredProjection:
    """What a result reports of a projection that is not built: the stored gradients' record of it."""

    d: int
    grad_dim: int
    recorded: ProjectionIdentity | None

    def identity(self) -> ProjectionIdentity | None:
        return self.recorded


def _from_store(
    job: Prepared,
    candidates: Sequence[Candidate],
    stored: dict[str, StoredGradients],
    known: Mapping[str, Draws] | None,
) -> RankingResult:
    """The ranking from stored gradients alone: no student is loaded, no gradient computed."""
    everything = np.arange(len(job.prompts))
    evidence = {}
    for i, cand in enumerate(candidates):
        m = len(job.generated[i].texts[0])
        evidence[cand.name] = _evidence(
            job, i, stored[cand.name].rows(prompt_rows(everything, m)), everything
        )
        job.report(ProgressEvent("gradients", len(everything) * m, len(everything) * m, cand.name))
    first = stored[candidates[0].name]
    projection = _StoredProjection(job.cfg.dim, first.grad_dim, first.identity)
    fmt = replace(job.cfg.student_format, max_length=first.max_length)
    truncated = {name: s.truncated for name, s in stored.items()}
    return _scored(job, candidates, evidence, truncated, projection, fmt, known=known)


def _evidence(job: Prepared, i: int, grads: GradientResult, prompts: npt.NDArray[np.int64]) -> Evidence:
    """Candidate ``i``'s evidence on ``prompts`` from its gradient rows there (raw, as computed)."""
    cfg, texts = job.cfg, job.generated[i].texts
    g = grads.gradients.astype(np.float64)
    if cfg.length_factor:
        g *= log_length_factor(grads.n_tokens)[:, None]
    return Evidence(
        g,
        grads.losses,
        grads.n_tokens.astype(np.float64),
        grads.rank_sums,
        response_correct([texts[p] for p in prompts], [job.prompts[p].answer for p in prompts]),
        len(texts[0]),
        prompts,
    )


def _uncertainty(
    job: Prepared,
    candidates: Sequence[Candidate],
    evidence: dict[str, Evidence],
    point: dict[str, float],
    known: Mapping[str, Draws] | None = None,
    *,
    confidence: float | None = None,
    ticks: Mapping[str, Callable[[], None]] | None = None,
) -> Uncertainty:
    """The uncertainty of the job's ranking (its subsamples, confidence unless one is given, and
    seed; copies looked for in the candidates' responses); ``known``: candidates' draws from the
    same job (:func:`~grace_engine.science.uncertainty.rank_uncertainty`); ``ticks``: per
    candidate, its ``uncertainty`` stage's :class:`_StageTicks`."""
    cfg = job.cfg
    texts = {c.name: g.texts for c, g in zip(candidates, job.generated, strict=True) if c.name in evidence}
    return rank_uncertainty(
        evidence,
        cfg.ranking_score,
        point,
        settings=cfg.grace_settings,
        texts=texts,
        n_subsamples=cfg.bootstrap,
        confidence=cfg.confidence if confidence is None else confidence,
        seed=cfg.seed,
        known=known,
        ticks=ticks,
    )


class _StageTicks:
    """One candidate's ``score`` stage (before each of GRACE's splits) or ``uncertainty`` stage
    (before each split of its subsamples, or each subsample of another score): called from the
    threads that run them, it reports ``done`` of ``total`` and polls for cancellation, so a long
    bootstrap says where it is and stops when told within one split's work. Calls are serialised:
    the job's progress sink and cancel poll are not thread-safe."""

    def __init__(self, job: Prepared, stage: Stage, candidate: str, total: int) -> None:
        self.job, self.stage, self.candidate, self.total = job, stage, candidate, max(total, 1)
        self.done = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.done += 1
            # Every percent, not every split: a bootstrap makes thousands of them.
            if self.done <= self.total and (
                self.done == self.total or self.done % max(1, self.total // 100) == 0
            ):
                self.job.report(ProgressEvent(self.stage, self.done, self.total, self.candidate))
            check_cancel(self.job.ctx.should_cancel)


class Collector:
    """Computes one candidate's evidence on chosen prompts through the job's one computer, in
    batches the budget allows, reporting each candidate's gradients done so far. A candidate in
    ``stored`` (what :func:`_stored_gradients` found) is not computed; with a ``store`` (and each
    candidate's content address in ``keys``), gradients computed for all of a candidate's rows at
    once are stored."""

    def __init__(
        self,
        job: Prepared,
        candidates: Sequence[Candidate],
        computer: GradientComputer,
        store: GradientStore | None = None,
        keys: dict[str, str] | None = None,
        stored: dict[str, StoredGradients | None] | None = None,
    ) -> None:
        self.job, self.computer = job, computer
        self.store, self.keys, self.stored = store, keys or {}, stored or {}
        tokenizer = job.student.tokenizer
        self.pad_id = pad_token_id(tokenizer)
        self.index = {c.name: i for i, c in enumerate(candidates)}
        self.encoded = [
            student_examples(tokenizer, job.prompts, g.texts, job.fmt, i) for i, g in enumerate(job.generated)
        ]
        self.plan = job.budget.plan(job.resident(), job.cost, stage="gradient")
        self.plan.require(max(len(e.input_ids) for examples in self.encoded for e in examples))
        self.done = {c.name: 0 for c in candidates}

    def m(self, name: str) -> int:
        return len(self.job.generated[self.index[name]].texts[0])

    def total(self, name: str) -> int:
        return len(self.encoded[self.index[name]])

    def truncated(self, name: str) -> int:
        return sum(e.truncated for e in self.encoded[self.index[name]])

    def __call__(self, name: str, prompts: npt.NDArray[np.int64]) -> Evidence:
        job, i = self.job, self.index[name]
        m, total, base = self.m(name), self.total(name), self.done[name]
        rows = prompt_rows(prompts, m)
        if base == 0:
            job.report(ProgressEvent("gradients", 0, total, name))
        stored = self.stored.get(name)
        if stored is not None:
            grads = stored.rows(rows)
            job.report(ProgressEvent("gradients", base + len(rows), total, name))
        else:

            def report(done: int, _total: int) -> None:
                job.report(ProgressEvent("gradients", base + done, total, name))

            grads = compute_gradients(
                job.student.model,
                self.computer,
                [self.encoded[i][r] for r in rows],
                pad_id=self.pad_id,
                plan=self.plan,
                max_tokens=job.ctx.max_tokens_per_batch,
                max_batch=job.ctx.max_batch,
                progress=lambda done, _total: job.report(
                    ProgressEvent("gradients", base + done, total, name)
                ),
                should_cancel=job.ctx.should_cancel,
            )
            if self.store is not None and name in self.keys and len(rows) == total:
                record = StoredGradients.of(
                    grads,
                    truncated=self.truncated(name),
                    identity=self.computer.identity(),
                    grad_dim=self.computer.grad_dim,
                    max_length=job.fmt.max_length,
                )
                self.store.put(self.keys[name], record)
        self.done[name] += len(rows)
        return _evidence(job, i, grads, prompts)


def _scored(
    job: Prepared,
    candidates: Sequence[Candidate],
    evidence: dict[str, Evidence],
    truncated: dict[str, int],
    computer: Projection,
    fmt: StudentFormat,
    adaptive: tuple[Uncertainty, BudgetReport] | None = None,
    known: Mapping[str, Draws] | None = None,
) -> RankingResult:
    """Every requested predictor of every candidate, the ranking, its uncertainty and warnings.
    ``computer``: the job's projection (built, or as stored); ``fmt``: the student format applied;
    ``known``: uncertainty draws already computed (:func:`rank_teachers`)."""
    cfg = job.cfg
    settings = cfg.grace_settings
    graces: dict[str, GraceResult] = {}
    values: dict[str, dict[str, float | None]] = {}
    bootstrapped = adaptive is None and cfg.bootstrap > 0
    splits = {name: _StageTicks(job, "score", name, settings.n_splits) for name in evidence}
    draws = {
        name: _StageTicks(
            job,
            "uncertainty",
            name,
            draws_steps(ev, cfg.ranking_score, settings, n_subsamples=cfg.bootstrap, seed=cfg.seed),
        )
        for name, ev in evidence.items()
        if bootstrapped and (known is None or name not in known)
    }
    for name, ev in evidence.items():
        if "grace" in cfg.predictors:
            workers = grace_workers(job.budget, job.resident(), ev.gradients.shape)
            graces[name] = grace_of(ev, settings, max_workers=workers, tick=splits[name])
        values[name] = {  # in the registry's order, whatever order the job listed them in
            p: graces[name].score if p == "grace" else value(p, ev, settings)
            for p in PREDICTORS
            if p in cfg.predictors
        }
    score = cfg.ranking_score
    point = {name: v[score] for name, v in values.items()}
    missing = [name for name, v in point.items() if v is None]
    if missing:
        raise InvalidInput(
            f"cannot rank by {score}: it has no value for {missing[0]!r} (teacher_accuracy needs "
            "prompts with answers)",
            field="rank_by",
        )
    ranked_values = {name: float(v) for name, v in point.items() if v is not None}
    uncertainty = None
    if adaptive is not None:
        uncertainty = adaptive[0]
    elif cfg.bootstrap > 0:
        uncertainty = _uncertainty(job, candidates, evidence, ranked_values, known, ticks=draws)
    results = {}
    teachers = _teachers(candidates, job.sources)
    for i, cand in enumerate(candidates):
        ev, v, generated = evidence[cand.name], values[cand.name], job.generated[i]
        # A candidate dropped by a budget-aware ranking is out of the last round's uncertainty.
        u = None if uncertainty is None else uncertainty.candidates.get(cand.name)
        examples = ev.losses.shape[0]
        results[cand.name] = CandidateResult(
            name=cand.name,
            grace=graces.get(cand.name),
            values=v,
            p_top1=(0.0 if adaptive is not None else None) if u is None else u.p_top1,
            uncertainty=u,
            responses_per_prompt=ev.m,
            n_responses=examples,
            n_truncated=truncated[cand.name],
            n_at_max_tokens=None if job.origins[i] == "provided" else generated.n_at_cap,
            max_tokens=None if cand.model is None else cand.max_tokens,
            mean_response_tokens=float(np.mean(ev.n_tokens)),
            response_source=job.origins[i],
            responses=generated.texts,
            teacher=teachers.get(i),
        )
    ranking = _ranking(ranked_values, score, graces, None if adaptive is None else adaptive[1])
    job.report(ProgressEvent("score", len(candidates), len(candidates)))
    warnings = _job_warnings(job.prompts, candidates, cfg, results, fmt, gradients=computer.d > 0)
    warnings += _predictor_warnings(score, ranking[0].name, ranked_values, values, results)
    if uncertainty is not None:
        n_responses = {c: r.n_responses for c, r in results.items()}
        warnings += caveats.present(caveats.unsettled(uncertainty), *caveats.copies(uncertainty, n_responses))
    return RankingResult(
        job.student_source.location,
        ranking,
        results,
        cfg,
        computer.grad_dim,
        len(job.prompts),
        warnings=warnings,
        memory_budget_gb=job.budget.gb,
        uncertainty=uncertainty,
        projection=_identity(computer, cfg.dim),
        evidence=evidence,
        budget=None if adaptive is None else adaptive[1],
        mixed=route_by_grace(
            evidence,
            job.prompts,
            {c.name: g.texts for c, g in zip(candidates, job.generated, strict=True)},
            smoothing=cfg.smoothing,
        )
        if computer.d > 0
        else [],
    )


def _teachers(candidates: Sequence[Candidate], sources: Mapping[int, ModelSource]) -> dict[int, Teacher]:
    """What generated each generating candidate (by index; ``sources`` holds those alone): its
    model and temperature, and the family and size read from the model's files once per model,
    however many temperatures it was sampled at."""
    facts = {source: model_facts(source) for source in set(sources.values())}
    return {
        i: Teacher(str(candidates[i].model), candidates[i].temperature, facts[s].family, facts[s].params)
        for i, s in sources.items()
    }


def _identity(computer: Projection, scored_dim: int) -> ProjectionIdentity | None:
    """The computer's projection, with the d its gradients were folded to when that differs."""
    identity = computer.identity()
    if identity is None or identity.d == scored_dim:
        return identity
    return replace(identity, folded_to=scored_dim)


def _ranking(
    values: dict[str, float], score: str, graces: dict[str, GraceResult], spent: BudgetReport | None
) -> list[RankedCandidate]:
    """Best first. After a budget-aware run the candidates still in the race come first; those
    dropped follow, the later a candidate left the better, and its value is on fewer prompts."""
    if spent is None or not spent.dropped:
        return rank_candidates(values, score, graces)
    stayed = rank_candidates({c: v for c, v in values.items() if c not in spent.dropped}, score, graces)
    by_round = sorted(set(spent.dropped.values()), reverse=True)
    for r in by_round:
        group = rank_candidates({c: values[c] for c, k in spent.dropped.items() if k == r}, score, graces)
        stayed += [
            replace(x, rank=len(stayed) + 1 + j, agreement_with_next=None) for j, x in enumerate(group)
        ]
    return stayed
