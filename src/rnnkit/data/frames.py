"""Sequences of tensors (video-like data): a synthetic moving-square task and the collate that pads frames.

:func:`make_moving_squares` draws short noisy "videos" of a bright square that moves one pixel per frame
left, right, up or down; the label is the direction. A single frame says nothing about the direction (the
square sits anywhere), so a model must compare frames over time: a per-step CNN
(:class:`~rnnkit.tasks.frames.FrameCNN`) in front of a recurrent core. :func:`collate_frames` pads a list of
``(L_i, *S)`` arrays into the one batch format, ``inputs (B, T, *S)``.

Shape symbols: T time, B batch, C channels, H height, W width (``S`` the shape of one frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.batching import Batch, _condition_tensor, _sequence_targets

__all__ = ["DIRECTIONS", "collate_frames", "make_moving_squares"]

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
"""Class names of :func:`make_moving_squares`, in label order."""

_STEPS = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}  # label -> (row step, column step) per frame


def make_moving_squares(
    n: int,
    seed: int = 0,
    size: int = 8,
    square: int = 2,
    min_len: int = 3,
    max_len: int = 6,
    noise: float = 0.2,
) -> tuple[list[np.ndarray], list[int]]:
    """``n`` noisy videos of a square moving one pixel per frame, labelled with its direction.

    Every video has a length ``L`` drawn uniformly from ``[min_len, max_len]``, a direction (label: the index
    in :data:`DIRECTIONS`) drawn uniformly, and a start position drawn uniformly among those that keep the
    ``square × square`` block inside the ``size × size`` frame for all ``L`` frames. A frame is 1.0 on the
    square, 0.0 elsewhere, plus Gaussian noise of standard deviation ``noise``.

    Args:
        n: number of videos.
        seed: seed of a NumPy generator (the result is a function of the arguments only).
        size: height and width of a frame.
        square: side of the square.
        min_len, max_len: range of the number of frames.
        noise: standard deviation of the pixel noise.

    Returns:
        ``(videos, labels)``: ``n`` float32 arrays ``(L_i, 1, size, size)`` and ``n`` ints in ``[0, 4)``.
    """
    for name, v in (("n", n), ("size", size), ("square", square), ("min_len", min_len), ("max_len", max_len)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if min_len > max_len:
        raise ValueError(f"min_len={min_len} is larger than max_len={max_len}")
    if square + max_len - 1 > size:
        raise ValueError(
            f"a {square}-pixel square moving for {max_len} frames needs frames of at least "
            f"{square + max_len - 1} pixels, got size={size}; lower max_len or raise size"
        )
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    videos, labels = [], []
    for _ in range(n):
        label = int(rng.integers(4))
        length = int(rng.integers(min_len, max_len + 1))
        dr, dc = _STEPS[label]
        # the start must keep every frame's square inside: the moving axis has `length - 1` pixels less room
        room = size - square + 1
        r0 = int(rng.integers(room - (length - 1) * abs(dr)))
        c0 = int(rng.integers(room - (length - 1) * abs(dc)))
        if dr < 0:
            r0 += length - 1
        if dc < 0:
            c0 += length - 1
        video = rng.normal(0.0, noise, size=(length, 1, size, size)).astype(np.float32)  # (L, 1, H, W)
        for t in range(length):
            r, c = r0 + t * dr, c0 + t * dc
            video[t, 0, r : r + square, c : c + square] += 1.0
        videos.append(video)
        labels.append(label)
    return videos, labels


def collate_frames(
    videos: Sequence[Any],
    targets: Any = None,
    conditions: Any = None,
) -> Batch:
    """Pad sequences of tensors (``B`` arrays ``(L_i, *S)``) into ``Batch(inputs (B, T, *S) float32, ...)``.

    Args:
        videos: ``B`` NumPy arrays or tensors ``(L_i, *S)``, ``L_i >= 1``, all with the same ``S``
            (e.g. frames ``(C, H, W)``).
        targets: ``None``; one class id per sequence (``(B,)`` long); or one per step (``B`` int arrays of
            length ``L_i`` → ``(B, T)`` long padded with ``IGNORE_INDEX``); floats give regression targets
            (see :func:`~rnnkit.data.batching.collate_sequences`).
        conditions: ``None``, ``B`` category ids, or a ``(B, C)`` array of vectors.

    Returns:
        ``Batch(inputs (B, T, *S) float32 zero-padded, lengths (B,) long, targets, condition)``.

    Raises:
        ValueError: an empty batch or video, frames of different shapes, NaN/inf values.
        TypeError: a non-numeric array.
    """
    if isinstance(videos, (Tensor, np.ndarray)) and videos.ndim >= 2:
        videos = list(videos)  # one equal-length array (B, T, *S)
    arrays: list[np.ndarray] = []
    for i, v in enumerate(videos):
        a = v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)
        if a.dtype == object or not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"video {i} is not numeric (dtype {a.dtype})")
        if a.ndim < 2:
            raise ValueError(f"video {i} has shape {a.shape}; expected (L, *S), e.g. (L, C, H, W) frames")
        if a.shape[0] == 0:
            raise ValueError(f"video {i} is empty (0 frames); every sequence needs at least one")
        if not np.isfinite(a).all():
            raise ValueError(f"video {i} contains NaN or inf; fill or drop those frames first")
        arrays.append(a)
    if not arrays:
        raise ValueError("cannot collate an empty batch")
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"videos have different frame shapes {sorted(shapes)}; every frame must have one shape S")
    lengths = [a.shape[0] for a in arrays]
    T = max(lengths)
    inputs = torch.zeros(len(arrays), T, *arrays[0].shape[1:], dtype=torch.float32)  # (B, T, *S)
    for b, a in enumerate(arrays):
        inputs[b, : a.shape[0]] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return Batch(
        inputs=inputs,
        lengths=torch.tensor(lengths, dtype=torch.long),  # (B,)
        targets=_sequence_targets(targets, lengths, T),
        condition=_condition_tensor(conditions, len(arrays)),
    )
