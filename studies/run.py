"""Shared driver of the validation studies: write the inputs, run ``grace validate``, keep the JSON.

``python -m studies.A`` / ``python -m studies.B`` call :func:`run_study` with their own inputs; the
result lands in ``studies/<X>/results.json`` and the table is printed (and kept as ``report.txt``).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from grace_cli.main import main as grace

HERE = Path(__file__).resolve().parent


def write_candidates(path: Path, candidates: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"candidates": candidates}, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return path


def run_study(study: str, args: list[str], name: str = "results") -> dict[str, Any]:
    """``grace validate ARGS --out studies/<study>/<name>.json``; returns the result and writes
    the printed report next to it (``report.txt``, or ``report-<x>.txt`` for ``results-<x>``), with
    the wall time."""
    out = HERE / study / f"{name}.json"
    report = io.StringIO()
    started = time.perf_counter()

    class Tee(io.TextIOBase):
        def write(self, text: str) -> int:
            sys.__stdout__.write(text)  # type: ignore[union-attr]
            return report.write(text)

    with contextlib.redirect_stdout(Tee()):
        status = grace(["validate", *args, "--out", str(out)])
    if status != 0:
        raise SystemExit(status)
    seconds = time.perf_counter() - started
    data: dict[str, Any] = json.loads(out.read_text("utf-8"))
    data["protocol"]["wall_seconds"] = round(seconds, 1)
    data["protocol"]["command"] = f"python -m studies.{study}"
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
    text = report.getvalue().replace(str(out), f"studies/{study}/{name}.json")
    report_name = name.replace("results", "report")
    (HERE / study / f"{report_name}.txt").write_text(f"{text}wall time {seconds:.0f} s\n", "utf-8")
    return data
