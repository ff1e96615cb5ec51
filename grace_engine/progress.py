"""How a job reports progress and polls for cancellation: stages, events, and the helpers
that turn batch counts into events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from grace_engine.errors import Cancelled

Stage = Literal["generate", "validation", "gradients", "score", "uncertainty", "distil", "evaluate", "train"]


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` units of ``stage`` finished for ``candidate`` (None: the whole job)."""

    stage: Stage
    done: int
    total: int
    candidate: str | None = None


ProgressFn = Callable[[ProgressEvent], None]


def stage_progress(
    report: ProgressFn, stage: Stage, candidate: str | None = None
) -> Callable[[int, int], None]:
    """``report`` as a ``(done, total)`` callback of one stage (and candidate; None: the job)."""

    def update(done: int, total: int) -> None:
        report(ProgressEvent(stage, done, total, candidate))

    return update


def check_cancel(should_cancel: Callable[[], bool] | None) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled()
