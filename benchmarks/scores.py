"""GRACE and the baselines (G-Norm, G-Vendi) on n·m x d gradient matrices: milliseconds.

Scoring should never be the bottleneck next to computing the gradients.

    python benchmarks/scores.py          # 2048 x 512 (best of 5) and 8192 x 4096 (once)

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grace_engine.science.evidence import Evidence, GraceSettings
from grace_engine.science.grace import grace
from grace_engine.science.predictors import value


def gradients(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """Projected-gradient-like rows: a decaying spectrum plus noise, float32 as the engine emits them."""
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.sqrt(np.arange(1, dim + 1))
    return (rng.standard_normal((rows, dim)) * scales).astype(np.float32)


def best_ms(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--m", type=int, default=4, help="responses per prompt")
    args = parser.parse_args(argv)
    results = []
    for rows, dim, repeats in ((2048, 512, 5), (8192, 4096, 1)):
        g = gradients(rows, dim)
        grace(g, args.m)  # warm-up (BLAS threads, caches)
        grace_ms = best_ms(lambda g=g: grace(g, args.m), repeats)
        rows_ = g.shape[0]
        ev = Evidence(
            g.astype(np.float64), np.ones(rows_), np.ones(rows_), np.ones(rows_), np.ones(rows_), args.m
        )
        base_ms = best_ms(
            lambda ev=ev: [value(p, ev, GraceSettings()) for p in ("g_norm", "g_vendi")], repeats
        )
        results.append(
            {
                "rows": rows,
                "dim": dim,
                "grace_ms": grace_ms,
                "baselines_ms": base_ms,
                "total_ms": grace_ms + base_ms,
            }
        )
        print(
            f"{rows:>5} x {dim:<5} GRACE {grace_ms:9.1f} ms | G-Norm + G-Vendi {base_ms:8.1f} ms", flush=True
        )
    print(json.dumps({"results": results, "threads": os.cpu_count(), "m": args.m}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
