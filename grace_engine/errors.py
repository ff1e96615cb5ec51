"""Typed exceptions of the engine.

The web layer maps these to problem+json responses and the worker to failed jobs with a stable
``code``; the CLI prints them on one line and exits with status 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class GraceError(Exception):
    """Base class: every error the engine raises on purpose."""

    code = "grace_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidInput(GraceError):
    """The caller's data cannot be scored as given; ``field`` names the offending input."""

    code = "invalid_input"


class ModelNotAllowed(GraceError):
    """A model reference points outside the configured roots and allowed hub ids."""

    code = "model_not_allowed"


class ModelNotFound(GraceError):
    """A model reference is allowed but nothing loadable is there."""

    code = "model_not_found"


class UnsupportedModel(GraceError):
    """The model loads but the requested gradient path cannot handle one of its layers."""

    code = "unsupported_model"


class Cancelled(GraceError):
    """The cancellation hook asked the pipeline to stop; raised at a batch boundary."""

    code = "cancelled"

    def __init__(self, message: str = "cancelled at a batch boundary") -> None:
        super().__init__(message)


@contextmanager
def as_candidate(index: int) -> Iterator[None]:
    """Work done on one candidate alone, where it is ``candidates[0]``, names its fields by the
    candidate's place in the job (``candidates[index]``): a fanned-out unit's errors must point
    the caller at what they sent."""
    try:
        yield
    except GraceError as exc:
        alone = "candidates[0]"
        if exc.field is not None and exc.field.startswith(alone):
            exc.field = f"candidates[{index}]{exc.field[len(alone) :]}"
        raise
