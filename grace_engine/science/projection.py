"""Seeded random projections of per-example gradients to ``d`` dimensions.

Two maps, both deterministic functions of ``(seed, layout)`` so every candidate of a job (and every
re-run) sees the same one:

* :class:`DenseProjector` -- the released method's map: ``y = g @ R / sqrt(D)`` with ``R`` a
  ``(D, d)`` matrix of independent ±1 entries, generated block by block and never stored whole.
  ``E<y, y'> = (d / D) <g, g'>``.
* :class:`FactorizedProjector` -- the fast path's map. Each parameter block ``G`` (``rows x cols``) is
  first compressed with a Kronecker pair, ``Z = P_r G P_c^T`` (``P`` with ±1/sqrt(k) entries, or the
  identity when the side is already at most ``factor_dim`` long), then every block's ``Z`` is hashed
  into the same ``d`` buckets with random signs (CountSketch) and the sum is scaled by
  ``sqrt(d / D)``. Each stage is unbiased for inner products, so ``E<y, y'> = (d / D) <g, g'>`` too:
  both paths produce GRACE values in the same units. The Kronecker structure is what lets the fast
  path project activations and output-gradients before they are ever multiplied together.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

DENSE_BLOCK_ROWS = 8192  # rows of R generated at once: 8192 x 512 signs = 16 MB in float32


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit generator seed derived from ``(seed, stream)``, stable across processes and machines."""
    digest = hashlib.blake2b(f"{seed}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _generator(seed: int, stream: str) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(stream_seed(seed, stream))


def rademacher(shape: tuple[int, ...], *, seed: int, stream: str) -> torch.Tensor:
    """``shape`` float32 tensor of independent ±1 entries, generated on the CPU from ``(seed, stream)``."""
    signs = torch.randint(0, 2, shape, generator=_generator(seed, stream), dtype=torch.int8)
    return signs.to(torch.float32).mul_(2.0).sub_(1.0)


@dataclass(frozen=True)
class ProjectionIdentity:
    """What makes two results' projections the same map: recorded in every result.

    ``checksum`` hashes the map applied to a fixed probe, computed in float64 on the CPU from the
    projector's own tensors, so two runs agree on it exactly when their maps are equal, whatever
    device each ran on (every random number is drawn on a CPU generator and then moved).
    ``folded_to``: the dimension the ``d``-dim projections were folded to before scoring
    (coordinate b to b mod ``folded_to``, as a budget-aware ranking does); None: scored as projected.
    """

    kind: Literal["factorized", "dense"]
    seed: int
    d: int
    grad_dim: int
    factor_dim: int | None
    checksum: str
    folded_to: int | None = None


def _checksum(probe: torch.Tensor) -> str:
    # 12 significant digits absorb nothing but summation-order noise in the last bits.
    text = ",".join(f"{v:.12g}" for v in probe.double().cpu().tolist())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Block:
    """One parameter block of a gradient space, in the parameter's own layout."""

    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


class DenseProjector:
    """Reference projection ``(B, D) -> (B, d)``: ``g @ R / sqrt(D)``, ``R`` in {±1}^(D x d).

    ``R`` is produced in blocks of :data:`DENSE_BLOCK_ROWS` rows, block ``b`` from stream
    ``dense/b``, so memory stays at one block whatever ``D`` is.
    """

    def __init__(self, grad_dim: int, d: int, seed: int) -> None:
        self.grad_dim, self.d, self.seed = grad_dim, d, seed

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        if flat.shape[-1] != self.grad_dim:
            raise ValueError(f"expected gradients of dimension {self.grad_dim}, got {flat.shape[-1]}")
        out = torch.zeros(flat.shape[0], self.d, dtype=torch.float32, device=flat.device)
        for index, start in enumerate(range(0, self.grad_dim, DENSE_BLOCK_ROWS)):
            stop = min(start + DENSE_BLOCK_ROWS, self.grad_dim)
            r = rademacher((stop - start, self.d), seed=self.seed, stream=f"dense/{index}").to(flat.device)
            out.addmm_(flat[:, start:stop].float(), r)
        return out.div_(math.sqrt(self.grad_dim))

    def identity(self) -> ProjectionIdentity:
        """The identity of this map; the probe is the sum of the first and last rows of ``R``."""
        first = rademacher((1, self.d), seed=self.seed, stream="dense/0")[0]
        last_block = (self.grad_dim - 1) // DENSE_BLOCK_ROWS
        rows = self.grad_dim - last_block * DENSE_BLOCK_ROWS
        last = rademacher((rows, self.d), seed=self.seed, stream=f"dense/{last_block}")[-1]
        probe = first + last if self.grad_dim > 1 else first
        return ProjectionIdentity("dense", self.seed, self.d, self.grad_dim, None, _checksum(probe))


@dataclass(frozen=True)
class _BlockMap:
    row: torch.Tensor | None  # (k_r, rows) or None for the identity
    col: torch.Tensor | None  # (k_c, cols) or None; absent for 1-D blocks
    bucket: torch.Tensor  # (k_r * k_c,) int64 in [0, d)
    sign: torch.Tensor  # (k_r * k_c,) float32 ±1


class FactorizedProjector:
    """Fast-path projection over named parameter blocks (see the module docstring).

    Args:
        blocks: the gradient space, in a fixed order; 2-D blocks get a Kronecker pair, 1-D blocks
            (biases, norm weights) a single factor that is the identity up to ``factor_dim**2``.
        d: output dimension.
        seed: projection seed; factors and hashes of block ``name`` come from streams named after it.
        factor_dim: ``k``, the largest side kept as is; longer sides are projected to ``k``.
    """

    def __init__(
        self,
        blocks: Sequence[Block],
        d: int,
        seed: int,
        *,
        factor_dim: int = 64,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if d < 1 or factor_dim < 1:
            raise ValueError("d and factor_dim must be positive")
        self.blocks = list(blocks)
        self.d, self.seed, self.factor_dim = d, seed, factor_dim
        self.grad_dim = sum(b.numel for b in self.blocks)
        self.scale = math.sqrt(d / self.grad_dim)
        self.device, self.dtype = torch.device(device), dtype
        self._maps = {b.name: self._block_map(b) for b in self.blocks}

    def _factor(self, length: int, limit: int, stream: str) -> torch.Tensor | None:
        if length <= limit:
            return None
        k = limit
        factor = rademacher((k, length), seed=self.seed, stream=stream) / math.sqrt(k)
        return factor.to(device=self.device, dtype=self.dtype)

    def _block_map(self, block: Block) -> _BlockMap:
        if len(block.shape) == 2:
            row = self._factor(block.shape[0], self.factor_dim, f"{block.name}/row")
            col = self._factor(block.shape[1], self.factor_dim, f"{block.name}/col")
            size = (block.shape[0] if row is None else row.shape[0]) * (
                block.shape[1] if col is None else col.shape[0]
            )
        elif len(block.shape) == 1:
            row, col = self._factor(block.shape[0], self.factor_dim**2, f"{block.name}/row"), None
            size = block.shape[0] if row is None else row.shape[0]
        else:
            raise ValueError(f"block {block.name} has unsupported shape {block.shape}")
        gen = _generator(self.seed, f"{block.name}/sketch")
        bucket = torch.randint(0, self.d, (size,), generator=gen)
        sign = torch.randint(0, 2, (size,), generator=gen).to(self.dtype).mul_(2.0).sub_(1.0)
        return _BlockMap(row, col, bucket.to(self.device), sign.to(self.device))

    def identity(self) -> ProjectionIdentity:
        """The identity of this map. The probe puts, in every block, the outer product of its
        first row and first column unit vectors through the whole map (Kronecker factors, buckets
        and signs), in float64 on the CPU."""
        out = torch.zeros(self.d, dtype=torch.float64)
        for block in self.blocks:
            m = self._maps[block.name]
            row = torch.eye(1, block.shape[0], dtype=torch.float64)[0] if m.row is None else m.row[:, 0]
            z = row.double().cpu()
            if len(block.shape) == 2:
                col = torch.eye(1, block.shape[1], dtype=torch.float64)[0] if m.col is None else m.col[:, 0]
                z = torch.outer(z, col.double().cpu())
            out.index_add_(0, m.bucket.cpu(), z.reshape(-1) * m.sign.double().cpu())
        return ProjectionIdentity(
            "factorized", self.seed, self.d, self.grad_dim, self.factor_dim, _checksum(out * self.scale)
        )

    def row_factor(self, name: str) -> torch.Tensor | None:
        """``(k_r, rows)`` factor applied to the vectors indexing the block's rows (None: identity)."""
        return self._maps[name].row

    def col_factor(self, name: str) -> torch.Tensor | None:
        """``(k_c, cols)`` factor applied to the vectors indexing the block's columns (None: identity)."""
        return self._maps[name].col

    def combine(self, compressed: Mapping[str, torch.Tensor], batch: int) -> torch.Tensor:
        """Sketch and sum compressed blocks: ``{name: (B, k_r, k_c) or (B, k)}`` -> ``(B, d)``.

        Blocks missing from ``compressed`` contribute zero (e.g. LoRA ``A`` blocks, whose gradient
        vanishes while ``B = 0``).
        """
        out = torch.zeros(batch, self.d, dtype=self.dtype, device=self.device)
        for name, z in compressed.items():
            m = self._maps[name]
            out.index_add_(1, m.bucket, z.reshape(batch, -1) * m.sign)
        return out.mul_(self.scale)

    def compress(self, name: str, grads: torch.Tensor) -> torch.Tensor:
        """Compress explicit per-example gradients of one block: ``(B, *shape) -> (B, k_r, k_c)``."""
        m = self._maps[name]
        z = grads.to(self.dtype)
        if m.row is not None:
            z = torch.einsum("kr,br...->bk...", m.row, z)
        if m.col is not None:
            z = z @ m.col.T
        return z

    def project_flat(self, flat: torch.Tensor) -> torch.Tensor:
        """Apply the whole map to explicit flattened gradients ``(B, D)`` laid out block after block."""
        if flat.shape[-1] != self.grad_dim:
            raise ValueError(f"expected gradients of dimension {self.grad_dim}, got {flat.shape[-1]}")
        compressed, offset = {}, 0
        for block in self.blocks:
            piece = flat[:, offset : offset + block.numel].reshape(flat.shape[0], *block.shape)
            compressed[block.name] = self.compress(block.name, piece.to(self.device))
            offset += block.numel
        return self.combine(compressed, flat.shape[0])
