"""Lengths → step masks: the one place that turns per-sequence lengths into a padding mask.

Every layer, task model, exporter and data helper that needs "is step ``t`` inside sequence ``b``?" asks here,
so padding is defined once (a step is valid when ``t < lengths[b]``).

Symbols: ``B`` batch, ``T`` time steps.
"""

from __future__ import annotations

import torch
from torch import Tensor


def length_mask(lengths: Tensor, T: int, *, time_major: bool = False, device: torch.device | None = None) -> Tensor:
    """Boolean mask of the valid steps.

    Args:
        lengths: ``(B,)`` integer lengths (any order; each in ``0..T``).
        T: number of steps in the padded batch.
        time_major: False → ``(B, T)``; True → ``(T, B)``.
        device: where the mask lives (default: ``lengths``' device).

    Returns:
        ``(B, T)`` (or ``(T, B)``) bool, True where ``t < lengths[b]``.
    """
    device = lengths.device if device is None else device
    steps = torch.arange(T, device=device)  # (T,)
    lens = lengths.to(device)
    if time_major:
        return steps.unsqueeze(1) < lens.unsqueeze(0)  # (T, B)
    return steps.unsqueeze(0) < lens.unsqueeze(1)  # (B, T)
