"""Which parameters the per-example gradients are taken over, and by which path: configuration
only, so that whatever checks a request (the API) can name it without loading torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from grace_engine.errors import InvalidInput

SpaceKind = Literal["full", "output_layer", "lora"]
PathKind = Literal["fast", "exact"]
SPACE_KINDS: tuple[SpaceKind, ...] = ("full", "output_layer", "lora")
PATH_KINDS: tuple[PathKind, ...] = ("fast", "exact")


@dataclass(frozen=True)
class GradientSpace:
    """Which parameters the per-example gradients are taken with respect to."""

    kind: SpaceKind = "full"
    lora_rank: int = 8
    lora_alpha: float = 16.0

    def __post_init__(self) -> None:
        if self.kind not in SPACE_KINDS:
            raise InvalidInput(f"must be one of {', '.join(SPACE_KINDS)}", field="gradient_space")
        if self.lora_rank < 1:
            raise InvalidInput("must be at least 1", field="lora_rank")
