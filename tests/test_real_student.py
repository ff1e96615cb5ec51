"""README "A real student on one machine", small: SmolLM2-135M ranks GSM8K candidates inside 4 GB.

The same commands as the README (``grace gsm8k``, ``grace rank``), run as a user would, in a child
process whose own peak RSS is read when it ends: ``VmHWM`` of its address space. (``ru_maxrss`` will
not do: Linux carries the parent's high-water mark across fork and exec, and pytest's is large.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test.jsonl"
BUDGET_GB = 4.0
# The budget plans 90% of itself; allocator slack on top stays within the last 10%.
PEAK_LIMIT_GB = 1.1 * BUDGET_GB

_MEASURED = """
import sys
from grace_cli.main import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(f"peak_rss_bytes={hwm_kb * 1024}", file=sys.stderr)
sys.exit(code)
"""


def _grace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True, timeout=900, check=False
    )


def _rank_gsm8k(student: Path, work: Path, n_prompts: int, *options: str) -> subprocess.CompletedProcess[str]:
    """``grace gsm8k`` (m = 1), then ``grace rank`` on what it wrote."""
    source = ["--source", str(GSM8K)] if GSM8K.is_file() else []
    made = _grace("gsm8k", str(work), "-n", str(n_prompts), "-m", "1", *source)
    assert made.returncode == 0, made.stderr
    return _grace(
        "rank",
        "--student",
        str(student),
        "--prompts",
        str(work / "prompts.jsonl"),
        "--candidates",
        str(work / "candidates.json"),
        "-m",
        "1",
        "--quiet",
        *options,
    )


@pytest.mark.slow
def test_smollm2_ranks_gsm8k_inside_a_4_gb_budget(smollm2_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    run = _rank_gsm8k(smollm2_dir, tmp_path / "data", 4, "--memory-budget", str(BUDGET_GB), "--out", str(out))
    assert run.returncode == 0, run.stderr
    peak = int(run.stderr.rsplit("peak_rss_bytes=", 1)[1].split()[0]) / 1e9
    result = json.loads(out.read_text())
    print(f"\nSmolLM2, 4 prompts x 3 candidates: peak RSS {peak:.2f} GB under a {BUDGET_GB:g} GB budget")
    print(run.stdout)
    assert peak <= PEAK_LIMIT_GB
    assert result["memory_budget_gb"] == BUDGET_GB
    assert sorted(r["name"] for r in result["ranking"]) == ["reference", "shuffled", "terse"]
    assert all(c["n_responses"] == 4 for c in result["candidates"].values())
    assert result["grad_dim"] == 134_515_008
    codes = {w["code"] for w in result["warnings"]}
    assert {"few_prompts", "small_sample"} <= codes  # 4 prompts, 3 training rows per split, d = 512
    assert "warning [small_sample]" in run.stdout


def test_a_budget_below_the_model_is_refused_with_its_minimum(smollm2_dir: Path, tmp_path: Path) -> None:
    run = _rank_gsm8k(smollm2_dir, tmp_path / "data", 2, "--memory-budget", "1.5")
    assert run.returncode == 2
    error = next(line for line in run.stderr.splitlines() if line.startswith("grace: error:"))
    assert "memory_budget: a memory budget of 1.50 GB cannot hold" in error
    need = float(error.split("needs at least ")[1].split(" GB")[0])
    assert 1.5 < need < 4.0
