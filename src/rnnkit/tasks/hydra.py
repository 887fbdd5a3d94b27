"""Competing convolution kernels: Hydra's transform (Dempster, Schmidt and Webb, "Hydra: competing convolutional
kernels for fast and accurate time series classification", DMKD 2023), written here from the paper's description.
The kernel ridge of a series classifier (:class:`rnnkit.tasks.kernels.KernelRidge`) reads these features beside
MiniRocket's (``--hydra G``).

- **Groups of competing kernels**: ``G`` groups of ``k = 8`` kernels of length 9, weights drawn from N(0, 1), then
  centred and scaled to unit L1 norm; half the groups read the series, half its first difference
  ``x_{t+1} − x_t``;
- **dilations** ``2^e`` for ``e = 0 … ⌊log2((L̄ − 1) / 8)⌋`` (``L̄`` the mean training length), every group
  drawn anew for each dilation, "same" zero padding;
- **channels** (multichannel series): each group reads the sum of a random subset of ``⌊2^u⌋`` channels,
  ``u ~ U(0, log2(min(C, 9) + 1))`` (the rule of the random kernels beside it);
- **features**: at every step the kernels of a group compete: the one with the largest response adds that
  response to its *soft* count, the one with the smallest adds 1 to its *hard* count, over the steps of the
  series (unequal lengths: a padded series gives the features it gives alone). ``2 · k`` counts per group and
  dilation: ``F = 2 · k · G · D``;
- **scaling** (fitted on the training series): ``√max(f, 0)``, then ``(f − μ) / (σ + ε)`` where ``f ≠ 0`` and 0
  where ``f = 0`` (a kernel that never wins stays exactly 0), ``ε = (share of zeros)⁴ + 10⁻⁸``.

Shape symbols: B batch, T steps, C channels, G groups, k kernels per group, D dilations, F features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.tasks.kernel_inputs import KERNEL_LENGTH, padded_chunks, random_channels

__all__ = ["CompetingKernels"]

PER_GROUP = 8


class CompetingKernels(nn.Module):
    """Hydra's transform (module docstring): ``forward(x (B, T, C), lengths (B,) | None) -> (B, F)``.

    Built empty for ``channels`` and ``groups`` (even, at least 2); :meth:`fit` draws the kernels and channel
    subsets (seeded) and fits the scaling on training series. Everything lives in buffers, so ``state_dict`` saves
    and restores a fitted transform (:meth:`from_state` rebuilds the shapes).
    """

    def __init__(self, channels: int, groups: int = 64, per_group: int = PER_GROUP) -> None:
        super().__init__()
        if groups < 2 or groups % 2:
            raise ValueError(f"competing kernels need an even number of groups >= 2, got {groups}")
        if per_group < 2:
            raise ValueError(f"competing kernels need at least 2 kernels per group, got {per_group}")
        self.channels, self.half, self.per_group = int(channels), int(groups) // 2, int(per_group)
        self.register_buffer("dilations", torch.zeros(0, dtype=torch.long))  # (D,)
        # (2·D, G/2·k, 1, 9): for dilation i, input j (0 series, 1 difference) at index 2·i + j
        self.register_buffer("weight", torch.zeros(0, self.half * self.per_group, 1, KERNEL_LENGTH))
        self.register_buffer("channel_mask", torch.zeros(0, self.half, self.channels))  # (2·D, G/2, C)
        self.register_buffer("mu", torch.zeros(0))  # (F,)
        self.register_buffer("sigma", torch.ones(0))  # (F,)

    @property
    def groups(self) -> int:
        return 2 * self.half

    @property
    def num_features(self) -> int:
        """F = 2 · k · G · D (0 before :meth:`fit`)."""
        return 2 * self.per_group * self.groups * int(self.dilations.numel())

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> CompetingKernels:
        """A module shaped for a saved ``state_dict`` (then ``load_state_dict`` fills it)."""
        n, half, C = state["channel_mask"].shape
        mod = cls(int(C), 2 * int(half), int(state["weight"].shape[1]) // int(half))
        mod.dilations = torch.zeros(int(state["dilations"].numel()), dtype=torch.long)
        mod.weight = torch.zeros(tuple(state["weight"].shape))
        mod.channel_mask = torch.zeros(int(n), int(half), int(C))
        mod.mu = torch.zeros(int(state["mu"].numel()))
        mod.sigma = torch.ones(int(state["sigma"].numel()))
        return mod

    def plan(self) -> list[int]:
        """The dilations as Python ints (a fixed loop for ``torch.export``)."""
        return [int(d) for d in self.dilations.tolist()]

    @torch.no_grad()
    def fit(self, series: Sequence[np.ndarray], seed: int = 0) -> CompetingKernels:
        """Draw the kernels (:meth:`draw`) and fit the scaling on the training ``series`` (each ``(L_i, C)``,
        already standardized as the transform will read them); returns ``self``."""
        self.draw(series, seed)
        raw = [self(x, n) for x, n in padded_chunks(series, self.channels)]
        self.fit_scaling(torch.cat(raw))
        return self

    @torch.no_grad()
    def draw(self, series: Sequence[np.ndarray], seed: int = 0) -> CompetingKernels:
        """The kernels and channel subsets from ``seed`` and the dilations from the ``series``' mean length, and no
        scaling yet (:meth:`forward` gives the unscaled features until :meth:`fit_scaling`); returns ``self``."""
        if not series:
            raise ValueError("competing kernels need at least one training series")
        mean_len = float(np.mean([len(s) for s in series]))
        top = math.floor(math.log2((mean_len - 1) / (KERNEL_LENGTH - 1))) if mean_len > KERNEL_LENGTH else 0
        D, h, k, C = top + 1, self.half, self.per_group, self.channels
        gen = torch.Generator().manual_seed(int(seed))
        w = torch.randn(2 * D, h * k, 1, KERNEL_LENGTH, generator=gen, dtype=torch.float64)
        w = w - w.mean(-1, keepdim=True)
        w = w / w.abs().sum(-1, keepdim=True)
        rng = np.random.default_rng([int(seed), 1])
        mask = torch.zeros(2 * D, h, C)
        for i in range(2 * D):
            for g in range(h):
                mask[i, g, random_channels(rng, C)] = 1.0
        self.dilations = 2 ** torch.arange(D, dtype=torch.long)
        self.weight = w.float()
        self.channel_mask = mask
        self.mu, self.sigma = torch.zeros(0), torch.ones(0)
        return self

    @torch.no_grad()
    def fit_scaling(self, raw: Tensor) -> Tensor:
        """Fit the scaling on the unscaled features ``raw`` ``(N, F)`` of the training series (what this module
        gives before it has a scaling) and return them scaled, as :meth:`forward` gives them from now on."""
        zeros = (raw == 0).to(raw.dtype).mean(0)
        self.mu = raw.mean(0).float()
        self.sigma = (raw.std(0, unbiased=False) + zeros**4 + 1e-8).float()
        return (raw - self.mu.to(raw.dtype)) * (raw != 0).to(raw.dtype) / self.sigma.to(raw.dtype)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Features ``(B, F)`` of ``x`` ``(B, T, C)`` (steps past ``lengths`` ignored); scaled once fitted."""
        if self.dilations.numel() == 0:
            raise RuntimeError("CompetingKernels.fit has not run: the transform has no kernels")
        return self.features(x, lengths, self.plan())

    def features(self, x: Tensor, lengths: Tensor | None, plan: list[int]) -> Tensor:
        """:meth:`forward` with the dilations given as Python ints (:meth:`plan`)."""
        B, T, _ = x.shape
        h, k = self.half, self.per_group
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=x.device)
        steps = torch.arange(T, device=x.device).view(1, T)
        inside = (steps < lengths.view(-1, 1)).to(x.dtype)  # (B, T)
        within = (steps < (lengths - 1).view(-1, 1)).to(x.dtype)  # (B, T): where x_{t+1} − x_t is defined
        xs = (x * inside.unsqueeze(-1)).transpose(1, 2)  # (B, C, T), zeros past each end
        dx = nn.functional.pad(xs[:, :, 1:] - xs[:, :, :-1], (0, 1)) * within.unsqueeze(1)  # (B, C, T)
        out = []
        for i, d in enumerate(plan):
            for j, (inp, valid) in enumerate(((xs, inside), (dx, within))):
                w = self.weight[2 * i + j].to(x.dtype)  # (G/2·k, 1, 9)
                pad = (KERNEL_LENGTH - 1) // 2 * d
                if self.channels == 1:  # every group reads the one channel: one convolution, no copies of it
                    z = nn.functional.conv1d(inp, w, dilation=d, padding=pad)
                else:  # each group reads the sum of its channels
                    z = torch.einsum("bct,gc->bgt", inp, self.channel_mask[2 * i + j].to(x.dtype))  # (B, G/2, T)
                    z = nn.functional.conv1d(z, w, groups=h, dilation=d, padding=pad)
                z = z.view(B, h, k, T)
                v = valid.unsqueeze(1).expand(B, h, T)  # (B, G/2, T)
                top, winner = z.max(2)  # (B, G/2, T) each
                loser = z.min(2)[1]  # (min's indices: several times faster than argmin over this dim)
                soft = x.new_zeros(B, h, k).scatter_add(2, winner, top * v)  # (B, G/2, k)
                hard = x.new_zeros(B, h, k).scatter_add(2, loser, v)
                out.append(torch.cat([soft, hard], 2).reshape(B, 2 * h * k))
        f = torch.cat(out, 1).clamp(min=0).sqrt()  # (B, F)
        if self.mu.numel() == 0:
            return f
        return (f - self.mu.to(x.dtype)) * (f != 0).to(x.dtype) / self.sigma.to(x.dtype)
