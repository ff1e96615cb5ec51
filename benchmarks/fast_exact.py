"""GRACE from the fast path against GRACE from the exact path, over random candidate sets.

    .venv/bin/python benchmarks/fast_exact.py            # tiny student and a ~5M student
    .venv/bin/python benchmarks/fast_exact.py tiny       # one of them

The fast path (factorised Kronecker sketch plus CountSketch, no per-example gradient) and the exact
path (each example's full gradient times a dense Rademacher map) are two random projections of the
same gradients. GRACE divides by the training spectrum's small eigenvalues, so projection noise
matters more for it than for inner products. Per student:

* a pool of 9 candidates (the 5 tiny teachers and 4 supplied GSM8K gold variants, as
  ``benchmarks/budget.py tiny``) on a pool of 48 GSM8K prompts x 4 responses;
* projected gradients of every row by both paths, each with projection seeds 0 and 1, at d = 16 (the
  ``auto`` d of 24 x 4 prompts) and d = 64 (close to the 88 training rows, where the spectrum is
  thinnest);
* 24 random candidate sets: 5 of the 9 candidates on 24 of the 48 prompts, each seeded.

For each set and d: Spearman of the 5 candidates' GRACE between fast and exact, whether they agree
on the top candidate, and the relative error ``|fast - exact| / exact`` per candidate. The same
numbers between exact with seed 1 and exact with seed 0 are the floor: what changing the random
map alone does, with no change of path.

Decision, fixed before the run: the fast path stays the default for small jobs when, at every d,
its mean Spearman with exact is within 0.05 of the exact path's with itself under another seed and
its top-1 agreement within 10 points; otherwise small jobs default to ``exact``.

The ~5M student is a 4-layer Llama (hidden 320) on the tiny student's tokenizer, trained like the
tiny student (plain GSM8K text) and cached under ``.grace/benchmarks/fast-exact``. The last line
printed is one JSON object; ``--out`` writes it too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.budget import WORK as BUDGET_WORK
from benchmarks.budget import setting
from grace_engine.models.candidates import Candidate
from grace_engine.models.data import Prompt, StudentFormat
from grace_engine.models.loading import ModelCache, ModelPolicy
from grace_engine.models.tiny_models import gsm8k_records
from grace_engine.pipelines.config import ScoringConfig
from grace_engine.pipelines.context import EngineContext, JobInputs
from grace_engine.pipelines.scoring import rank_teachers
from grace_engine.science.grace import grace
from grace_engine.science.ranking import spearman
from grace_engine.stores.response_store import DirectoryResponseStore
from studies import candidates as cands

WORK = Path(".grace/benchmarks/fast-exact")
POOL_PROMPTS = 48
SET_PROMPTS = 24
SET_CANDIDATES = 5
SETS = 24
DIMS = (16, 64)
M = 4
SPEARMAN_MARGIN = 0.05
TOP1_MARGIN = 0.10


def _student_5m(tiny_student: Path) -> Path:
    """A ~5M Llama on the tiny student's tokenizer, trained as the tiny student is (cached)."""
    path = WORK / "student-5m"
    if (path / "config.json").is_file():
        return path
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from grace_engine.models.data import clean_solution
    from grace_engine.models.tiny_models import N_DEMO_PROMPTS, train_lm

    tok = AutoTokenizer.from_pretrained(tiny_student)
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=320,
            intermediate_size=864,
            num_hidden_layers=4,
            num_attention_heads=5,
            num_key_value_heads=5,
            max_position_embeddings=512,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    train = gsm8k_records()[N_DEMO_PROMPTS:]
    plain = [r["question"] for r in train] + [clean_solution(r["answer"]) for r in train]
    loss = train_lm(model, tok, plain, steps=150, seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    n = sum(p.numel() for p in model.parameters())
    print(f"built the ~5M student: {n:,d} parameters, final loss {loss:.2f}", file=sys.stderr)
    return path


def _gradients(
    student: Path,
    root: Path,
    candidates: list[Candidate],
    prompts: list[Prompt],
    *,
    path: str,
    d: int,
    seed: int,
) -> dict[str, np.ndarray]:
    policy = ModelPolicy.from_paths([root, student.parent])
    result = rank_teachers(
        JobInputs(prompts, candidates, str(student)),
        ScoringConfig(
            responses_per_prompt=M,
            proj_dim=d,
            path=path,  # type: ignore[arg-type]
            seed=seed,
            bootstrap=0,
            predictors=("grace",),
            student_format=StudentFormat(truncate=True),
        ),
        EngineContext(
            policy=policy,
            models=ModelCache(policy, capacity=2),
            responses=DirectoryResponseStore(BUDGET_WORK / "responses"),
        ),
    )
    return {name: ev.gradients for name, ev in result.evidence.items()}


def _compare(a: dict[str, float], b: dict[str, float]) -> tuple[float, bool, list[float]]:
    names = list(a)
    rho = spearman([a[n] for n in names], [b[n] for n in names])
    top = min(a, key=a.__getitem__) == min(b, key=b.__getitem__)
    return rho, top, [abs(a[n] - b[n]) / abs(b[n]) for n in names]


def _summary(rows: list[tuple[float, bool, list[float]]]) -> dict[str, Any]:
    rhos = np.array([r for r, _, _ in rows])
    errors = np.concatenate([e for _, _, e in rows])
    return {
        "spearman_mean": float(rhos.mean()),
        "spearman_min": float(rhos.min()),
        "sets_with_rho_1": int((rhos > 1 - 1e-9).sum()),
        "top1_agreement": float(np.mean([t for _, t, _ in rows])),
        "relative_error_median": float(np.median(errors)),
        "relative_error_p90": float(np.quantile(errors, 0.9)),
    }


def run(name: str) -> dict[str, Any]:
    started = time.perf_counter()
    tiny_student, root, candidates, m = setting("tiny")
    assert m == M
    student = Path(tiny_student) if name == "tiny" else _student_5m(Path(tiny_student))
    prompts = [Prompt(cands.prompt_id(r), r["question"], r["answer"]) for r in gsm8k_records()[:POOL_PROMPTS]]
    ids = {p.id for p in prompts}
    candidates = [
        c if c.responses is None else replace(c, responses={k: v for k, v in c.responses.items() if k in ids})
        for c in candidates
    ]
    grads = {
        (path, d, seed): _gradients(student, root, candidates, prompts, path=path, d=d, seed=seed)
        for d in DIMS
        for path in ("fast", "exact")
        for seed in (0, 1)
    }
    names = [c.name for c in candidates]
    out: dict[str, Any] = {"student": name, "candidates": names, "sets": SETS, "by_d": {}}
    for d in DIMS:
        fast_exact, exact_exact, fast_fast = [], [], []
        for k in range(SETS):
            rng = np.random.default_rng([7, k])
            chosen = [names[i] for i in sorted(rng.choice(len(names), SET_CANDIDATES, replace=False))]
            rows = (
                np.sort(rng.choice(POOL_PROMPTS, SET_PROMPTS, replace=False))[:, None] * M + np.arange(M)
            ).ravel()

            def scores(
                key: tuple[str, int, int], chosen: list[str] = chosen, rows: Any = rows
            ) -> dict[str, float]:
                return {c: grace(grads[key][c][rows], M).score for c in chosen}

            fast0, exact0 = scores(("fast", d, 0)), scores(("exact", d, 0))
            fast_exact.append(_compare(fast0, exact0))
            exact_exact.append(_compare(scores(("exact", d, 1)), exact0))
            fast_fast.append(_compare(scores(("fast", d, 1)), fast0))
        fe, ee = _summary(fast_exact), _summary(exact_exact)
        out["by_d"][str(d)] = {
            "fast_vs_exact": fe,
            "exact_seed1_vs_exact": ee,
            "fast_seed1_vs_fast": _summary(fast_fast),
            "fast_within_floor": fe["spearman_mean"] >= ee["spearman_mean"] - SPEARMAN_MARGIN
            and fe["top1_agreement"] >= ee["top1_agreement"] - TOP1_MARGIN,
        }
    out["fast_stays_default"] = all(v["fast_within_floor"] for v in out["by_d"].values())
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("students", nargs="*", choices=["tiny", "5m"], default=["tiny", "5m"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {name: run(name) for name in args.students}
    for name, r in results.items():
        for d, v in r["by_d"].items():
            fe, ee = v["fast_vs_exact"], v["exact_seed1_vs_exact"]
            print(
                f"{name} d={d}: fast vs exact Spearman {fe['spearman_mean']:+.3f} "
                f"(min {fe['spearman_min']:+.2f}), "
                f"top-1 {fe['top1_agreement']:.0%}, rel. error median {fe['relative_error_median']:.1%} "
                f"p90 {fe['relative_error_p90']:.1%} | exact seed 1 vs 0: {ee['spearman_mean']:+.3f}, "
                f"top-1 {ee['top1_agreement']:.0%}, median {ee['relative_error_median']:.1%}",
                file=sys.stderr,
            )
    line = json.dumps(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(line)


if __name__ == "__main__":
    main()
