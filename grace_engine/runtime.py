"""Facts about the process the engine runs in."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may use: sched_getaffinity respects cgroup/taskset limits (Linux only)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
