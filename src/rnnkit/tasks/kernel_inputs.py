"""What the two random-kernel transforms of a series ridge share (:mod:`rnnkit.tasks.kernels`, MiniRocket's, and
:mod:`rnnkit.tasks.hydra`, Hydra's): the kernel length, series batched for a transform, and the random channel
subset a kernel (or a group of kernels) of a multichannel series reads.

Shape symbols: N series, B batch, T steps, C channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.batching import check_float32

__all__ = ["KERNEL_LENGTH", "padded_chunks", "random_channels"]

KERNEL_LENGTH = 9
_CHUNK = 32  # series per transform batch: bounds the (B, 84, T, n) comparison tensor of MiniRocket's features


def padded_chunks(
    series: Sequence[np.ndarray], channels: int, shift: np.ndarray | None = None, scale: np.ndarray | None = None
) -> list[tuple[Tensor, Tensor]]:
    """``series`` ``N × (L_i, C)`` as float32 batches of at most 32: ``(x (B, T, C) zero-padded, lengths (B,))``,
    each channel first mapped to ``(x − shift) / scale`` in float64 (when given). A value the cast to float32
    cannot hold is refused (:class:`~rnnkit.data.batching.NonFiniteValues`, a ``ValueError``)."""
    out = []
    for i in range(0, len(series), _CHUNK):
        part = [np.asarray(s, dtype=np.float64).reshape(len(s), channels) for s in series[i : i + _CHUNK]]
        if shift is not None and scale is not None:
            part = [(s - shift) / scale for s in part]
        for j, s in enumerate(part):
            check_float32(s, f"series {i + j} (scaled as the kernel ridge reads it)")
        x = torch.zeros(len(part), max(len(s) for s in part), channels)
        for j, s in enumerate(part):
            x[j, : len(s)] = torch.from_numpy(s.astype(np.float32))
        out.append((x, torch.tensor([len(s) for s in part])))
    return out


def random_channels(rng: np.random.Generator, channels: int) -> np.ndarray:
    """The channels one kernel reads, summed: ``⌊2^u⌋`` of the ``C`` (at least 1), ``u ~ U(0, log2(min(C, 9) + 1))``,
    drawn without replacement (MiniRocket's rule; one ``uniform`` then one ``choice`` from ``rng``)."""
    top = math.log2(min(channels, KERNEL_LENGTH) + 1)
    n = min(channels, int(2.0 ** rng.uniform(0.0, top)))
    return rng.choice(channels, size=max(1, n), replace=False)
