"""Study D: every predictor against Studies A and B's ground truth (protocol.md).

python -m studies.D A|B
"""

from __future__ import annotations

import json
import sys

from studies.A.__main__ import prepare as prepare_a
from studies.B.__main__ import prepare as prepare_b
from studies.run import HERE, run_study


def main() -> None:
    study = sys.argv[1] if len(sys.argv) > 1 else ""
    prepare = {"A": prepare_a, "B": prepare_b}.get(study)
    if prepare is None:
        raise SystemExit("usage: python -m studies.D A|B")
    # argparse keeps the last occurrence: the study's own arguments, then the protocol's two changes.
    result = run_study("D", [*prepare(), "--proj-dim", "auto", "--mixed"], name=f"results-{study}")
    before = json.loads((HERE / study / "results.json").read_text("utf-8"))
    for name, c in result["candidates"].items():
        old, new = before["candidates"][name]["outcome"]["eval_nll"], c["outcome"]["eval_nll"]
        if old != new:
            print(f"note: {name}'s eval NLL differs from Study {study}'s: {new} vs {old}")
    print(f"results in {HERE / 'D' / f'results-{study}.json'}")


if __name__ == "__main__":
    main()
