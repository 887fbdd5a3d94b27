"""Weight averaging: an exponential moving average (EMA) of a model's weights over the optimizer steps
(``TrainConfig.ema``, ``rnnkit train --ema DECAY``), which the trainer validates, keeps as the best epoch's weights
and saves instead of the raw weights.

After the ``n``-th optimizer step (``n = 1, 2, …``) every floating-point entry ``w`` of the model's ``state_dict``
(parameters and buffers alike) updates its average ``a``::

    a ← d_n · a + (1 − d_n) · w,      d_n = min(decay, (n − 1) / (n + 9))   (warm-up; d_1 = 0: a copy)

The warm-up (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``) makes the early average one of the
last ~10% of the steps rather than of the initial weights, so the first epochs' validation means something;
without it (``warmup=False``) ``d_n = decay`` from the second step on, which is exactly
``torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)`` (a test
asserts the two agree). Averaging the buffers too is AveragedModel's ``use_buffers=True`` rule: batch-norm running
statistics are averaged like the weights (no extra pass over the data as ``update_bn`` would need); integer
buffers (``num_batches_tracked``) take the model's latest value.

The average is kept in tensors beside the model (no copy of the module); :meth:`WeightAverage.swapped_in` puts it
into the model for validation and takes it out again, so any ``evaluate_fn`` and every wrapper of the model see the
averaged weights as the model's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["WeightAverage", "ema_decay"]


def ema_decay(decay: float, n: int, warmup: bool = True) -> float:
    """The decay ``d_n`` of the ``n``-th update (``n ≥ 1``): 0 for the first (a copy), then ``decay``, with the
    warm-up ``min(decay, (n − 1) / (n + 9))``."""
    if n <= 1:
        return 0.0
    return min(decay, (n - 1) / (n + 9)) if warmup else decay


class WeightAverage:
    """The exponential moving average of ``model``'s weights (see the module docstring).

    Args:
        model: the model whose ``state_dict`` is averaged; its tensors are read by reference, so in-place
            optimizer updates are seen without looking the entries up again.
        decay: in [0, 1); 0 keeps a copy of the latest weights.
        warmup: the ``(n − 1) / (n + 9)`` cap on the decay of the first updates.

    Attributes: ``decay``, ``warmup``, ``updates`` (steps averaged so far), ``averaged`` (name → tensor, the
    state_dict entries as averaged; before the first update, a copy of the model's).
    """

    def __init__(self, model: nn.Module, decay: float, *, warmup: bool = True) -> None:
        if isinstance(decay, bool) or not 0 <= decay < 1:
            raise ValueError(f"the weight-average decay must lie in [0, 1), got {decay!r}")
        self.decay, self.warmup, self.updates = float(decay), warmup, 0
        self._live = model.state_dict()  # detached tensors sharing the parameters' and buffers' storage
        self.averaged: dict[str, Tensor] = {k: v.detach().clone() for k, v in self._live.items()}

    @torch.no_grad()
    def update(self) -> None:
        """Average in the model's current weights (call after every optimizer step)."""
        self.updates += 1
        d = ema_decay(self.decay, self.updates, self.warmup)
        for name, avg in self.averaged.items():
            live = self._live[name]
            if d == 0.0 or not avg.is_floating_point():
                avg.copy_(live)
            else:
                avg.lerp_(live, 1.0 - d)  # a + (1 − d)(w − a) = d·a + (1 − d)·w

    def copy(self) -> dict[str, Tensor]:
        """A copy of the averaged ``state_dict`` (e.g. the best epoch's weights)."""
        return {k: v.clone() for k, v in self.averaged.items()}

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """Inside the block ``model`` holds the averaged weights; afterwards its own again (bit for bit)."""
        raw = {k: v.clone() for k, v in self._live.items()}
        model.load_state_dict(self.averaged)
        try:
            yield
        finally:
            model.load_state_dict(raw)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: ``{"updates": n, "tensors": averaged}`` (the settings are the run's)."""
        return {"updates": self.updates, "tensors": self.averaged}

    def load_state_dict(self, state: Mapping[str, Any], source: str = "the checkpoint") -> None:
        """Restore :meth:`state_dict`; ``ValueError`` naming ``source`` when its entries are not the model's."""
        tensors, updates = state.get("tensors"), state.get("updates")
        if not isinstance(tensors, Mapping) or isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise ValueError(f"{source}: the weight average is malformed")
        if set(tensors) != set(self.averaged):
            raise ValueError(f"{source}: the weight average's entries are not the model's")
        for name, t in tensors.items():
            own = self.averaged[name]
            if not isinstance(t, Tensor) or t.shape != own.shape or t.dtype != own.dtype:
                raise ValueError(f"{source}: the weight average's {name!r} does not fit the model")
        with torch.no_grad():
            for name, t in tensors.items():
                self.averaged[name].copy_(t)
        self.updates = updates
