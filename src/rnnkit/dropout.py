"""Dropout with a cheaper mask on CPU: the same distribution as :func:`torch.nn.functional.dropout`.

PyTorch's CPU dropout draws its mask with ``bernoulli_``, about 12 ns per element on 2 cores: a tenth of a default
``rnnkit train --task generate`` step (three dropouts of ``(B, T, ≤384)`` per step). Here each element keeps its
value when a uniform 32-bit word from the same generator (``torch.manual_seed`` seeds it; a resumed run restores
it) is at least ``round(p · 2³²) − 2³¹``: one 64-bit draw gives two elements their words, so the mask costs about a
fifth. The keep probability is ``1 − p`` to within 2⁻³³ (a float32 ``torch.rand`` resolves 2⁻²⁴), the kept
values are scaled by ``1/(1 − p)`` as in PyTorch, and the gradient flows through the same mask. Other devices (CUDA
draws its masks with Philox at memory speed) and ``p`` of 0 or 1 use PyTorch's own.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["Dropout", "dropout", "keep_mask"]


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> Tensor:
    """A bool tensor of ``shape``: each element True with probability ``1 − p`` (to 2⁻³³), independently.

    Drawn from the default generator of ``device`` as full-range 64-bit integers, each split into two 32-bit words.
    """
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=device).random_(-(2**63), None)
    threshold = round(p * 2**32) - 2**31  # P(word ≥ threshold) = 1 − round(p·2³²)/2³²
    return words.view(torch.int32)[:n].view(shape) >= threshold


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """:func:`torch.nn.functional.dropout` (not in place): zero each element with probability ``p`` and scale the
    rest by ``1/(1 − p)`` while ``training``; on CPU with the cheaper mask of :func:`keep_mask`."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or not x.is_floating_point() or not 0 < p < 1 or round(p * 2**32) >= 2**32:
        return nn.functional.dropout(x, p, training)
    mask = keep_mask(x.shape, p, x.device).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * mask


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` (same arguments, ``repr`` and no state) computed by :func:`dropout`."""

    def forward(self, input: Tensor) -> Tensor:
        if self.inplace:
            return super().forward(input)
        return dropout(input, self.p, self.training)
