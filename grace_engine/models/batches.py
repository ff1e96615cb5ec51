"""The student's examples as tensors: right-padded batches for its forward and backward passes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from grace_engine.models.data import IGNORE_INDEX, StudentExample


@dataclass(frozen=True)
class StudentBatch:
    """Right-padded batch: ``input_ids``, ``attention_mask``, ``labels`` all ``(batch, seq_len)`` int64."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """``(batch,)`` number of real (non-pad) tokens per row."""
        return self.attention_mask.sum(dim=1)

    def to(self, device: torch.device | str) -> StudentBatch:
        return StudentBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def collate(examples: Sequence[StudentExample], pad_id: int) -> StudentBatch:
    """Right-pad examples to the longest one; pads get attention 0 and label -100."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(e.labels)
    return StudentBatch(ids, mask, labels)
