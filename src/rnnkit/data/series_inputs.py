"""What a series classifier reads: every series ``(L_i, C)`` downsampled, normalised on its own, and (training
only) augmented. Used by :mod:`rnnkit.runs.classify_series` at training and prediction alike, so both read the
same inputs.

- :func:`downsample_series` (piecewise aggregate approximation) and the default factor's rule
  :func:`auto_downsample` (``--downsample``);
- :func:`zscore_each` and :func:`model_inputs` (``--series-norm``, after the downsampling);
- :func:`augment_batch` and :func:`augmented_epochs` (``--augment``: scale and jitter of training batches).

Shape symbols: B batch, T steps, C channels (C' = what the model reads), L_i the length of series i.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from rnnkit.data.arrays import SeriesSet, as_sequences, channel_scale
from rnnkit.data.batching import Batch

__all__ = [
    "DOWNSAMPLE_LONGEST",
    "DOWNSAMPLE_SHORTEST",
    "DOWNSAMPLE_TARGET",
    "SERIES_NORMS",
    "augment_batch",
    "augmented_epochs",
    "auto_downsample",
    "downsample_series",
    "model_inputs",
    "zscore_each",
]

SERIES_NORMS = ("none", "zscore", "both")
"""``--series-norm`` choices (:func:`model_inputs`)."""

DOWNSAMPLE_TARGET = 64
"""``--downsample 0`` (the default) averages every ``f = ⌈L̄ / DOWNSAMPLE_TARGET⌉`` steps into one
(:func:`auto_downsample`, ``L̄`` the training part's mean length): the model reads at most about this many steps.
The board7 sweep (docs/leaderboard.md, 3 seeds): ArrowHead 0.535 as it is, 0.575 at f = 2, 0.604 at f = 4;
PickupGestureWiimoteZ 0.620, 0.660 at f = 2, 0.740 at f = 3; OSULeaf 0.664, 0.837 at f = 4, 0.825 at f = 7."""
DOWNSAMPLE_SHORTEST = 128
"""Series of at most this many steps (mean length) are read as they are by ``--downsample 0``: Covid3Month_disc
(84 steps) lost at f = 2 (0.601 against 0.618, 3 seeds), BasicMotions (100) stayed at 1.000."""
DOWNSAMPLE_LONGEST = 1000
"""Series longer than this (mean length of the training part) are read as they are by ``--downsample 0``: on ACSF1
(1,460 steps) averaging lost accuracy (seeds 0 and 1: f = 4 0.53, 0.52; f = 12 0.53, 0.42; as they are 0.58,
0.62), the fine detail of such long recordings matters (board7 sweep, docs/leaderboard.md)."""


def auto_downsample(train: SeriesSet) -> int:
    """The factor ``--downsample 0`` picks from ``L̄``, the mean length of ``train``'s series:
    ``⌈L̄ / DOWNSAMPLE_TARGET⌉`` when ``DOWNSAMPLE_SHORTEST < L̄ ≤ DOWNSAMPLE_LONGEST``, else 1 (PickupGestureWiimoteZ
    146 → 3, ArrowHead 251 → 4, OSULeaf 427 → 7; UnitTest, Covid3Month_disc, BasicMotions (≤ 100 steps) and
    ACSF1 (1,460) are read as they are)."""
    seqs = as_sequences(train.X)
    mean_len = sum(len(x) for x in seqs) / max(1, len(seqs))
    if mean_len <= DOWNSAMPLE_SHORTEST or mean_len > DOWNSAMPLE_LONGEST:
        return 1
    return math.ceil(mean_len / DOWNSAMPLE_TARGET)


def downsample_series(sequences: Sequence[np.ndarray], factor: int) -> list[np.ndarray]:
    """Piecewise aggregate approximation: series ``(L_i, C)`` → ``(⌈L_i / f⌉, C)``, every ``f`` consecutive steps
    averaged into one (the last window over the steps it has). ``f = 1`` returns the series unchanged (as float64)."""
    out = []
    for s in sequences:
        a = np.asarray(s, dtype=np.float64)  # (L, C)
        if factor <= 1:
            out.append(a)
            continue
        n = -(-a.shape[0] // factor)  # ⌈L / f⌉ windows
        starts = np.arange(0, a.shape[0], factor)  # (n,)
        sums = np.add.reduceat(a, starts, axis=0)  # (n, C)
        counts = np.minimum(starts + factor, a.shape[0]) - starts  # (n,)
        out.append(sums / counts[:n, None])
    return out


_SQUARE_SAFE = 1e150
"""Magnitudes up to which squaring (a variance) stays inside float64's range with room to sum many steps."""


def zscore_each(sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every series ``(L_i, C)`` z-normalised on its own, per channel: ``(x − μ_i) / σ_i`` over its ``L_i`` steps.

    A constant channel (``σ_i ≤ 1e-12·max(1, |μ_i|)``) is only centred, as :class:`Standardizer` does."""
    out = []
    for s in sequences:
        a = np.asarray(s, dtype=np.float64)  # (L_i, C)
        big = np.abs(a).max(axis=0, initial=0.0)  # (C,)
        if np.isfinite(big).all() and (big > _SQUARE_SAFE).any():
            # the variance would square values past float64's range (std inf, every z 0): moments of a / big
            unit = np.where(big > 0, big, 1.0)
            mean, std = (a / unit).mean(axis=0) * unit, (a / unit).std(axis=0) * unit
        else:
            mean, std = a.mean(axis=0), a.std(axis=0)  # (C,)
        std = channel_scale(mean, std)
        out.append((a - mean) / std)
    return out


def model_inputs(sequences: Sequence[np.ndarray], series_norm: str = "none", downsample: int = 1) -> list[np.ndarray]:
    """What the model reads before the per-channel :class:`Standardizer`: series ``(L_i, C)`` → ``(L_i', C')``.

    ``downsample`` ``f``: first every ``f`` steps averaged into one (:func:`downsample_series`, ``L_i' = ⌈L_i / f⌉``;
    ``1``, runs saved before the option: ``L_i' = L_i``).

    ``series_norm`` (:data:`SERIES_NORMS`): ``"none"`` the series as they are (``C' = C``, runs saved before the
    option); ``"zscore"`` each series z-normalised on its own (:func:`zscore_each`, ``C' = C``: shape only, the
    level and scale of a series are dropped); ``"both"`` the z-normalised channels beside the raw ones (``C' = 2C``:
    the shape, and the level and scale, which the per-channel standardizer then puts on one scale)."""
    sequences = downsample_series(sequences, downsample)
    if series_norm == "none":
        return sequences
    if series_norm == "zscore":
        return zscore_each(sequences)
    if series_norm == "both":
        return [
            np.concatenate([z, np.asarray(s, dtype=np.float64)], axis=1)
            for z, s in zip(zscore_each(sequences), sequences, strict=True)
        ]
    raise ValueError(f"--series-norm {series_norm!r} is unknown; choose one of: {', '.join(SERIES_NORMS)}")


def augment_batch(batch: Batch, strength: float, generator: torch.Generator) -> Batch:
    """A training batch with every series scaled and jittered: ``x'[b, t, c] = x[b, t, c] · a[b, c] + ε[b, t, c]``
    with ``a ~ N(1, strength²)`` per series and channel and ``ε ~ N(0, (strength / 2)²)`` per value, padded steps
    kept zero. ``inputs`` ``(B, T, C')`` are the normalised model inputs; ``strength = 0`` returns ``batch``."""
    if strength == 0:
        return batch
    x = batch.inputs  # (B, T, C')
    B, T, C = x.shape
    scale = 1.0 + strength * torch.randn(B, 1, C, generator=generator, dtype=x.dtype)  # (B, 1, C')
    noise = 0.5 * strength * torch.randn(B, T, C, generator=generator, dtype=x.dtype)  # (B, T, C')
    mask = (torch.arange(T).unsqueeze(0) < batch.lengths.unsqueeze(1)).unsqueeze(2).to(x.dtype)  # (B, T, 1)
    return replace(batch, inputs=(x * scale + noise) * mask)


def augmented_epochs(epoch: Callable[[int], list[Batch]], strength: float, seed: int) -> Callable[[int], list[Batch]]:
    """Training batches of epoch ``e`` (``epoch(e)``) passed through :func:`augment_batch`, the draws a function of
    ``(seed, e)`` only, so a resumed run sees the batches it would have seen."""
    if strength == 0:
        return epoch

    def batches(e: int) -> list[Batch]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + e)
        return [augment_batch(b, strength, g) for b in epoch(e)]

    return batches
