"""An ensemble of K task models of one config: probabilities (classify) or predictions (regress, forecast)
averaged over the members.

Built by :func:`rnnkit.tasks.build_model` when ``ModelConfig.ensemble = K > 1``; ``rnnkit train --ensemble K``
trains member ``i`` from seed ``seed + i`` (see :mod:`rnnkit.runs.kind`) and saves them as one
``model.safetensors`` (keys ``members.<i>.<the member's own keys>``), so that loading, ``evaluate``, ``predict``
and ``serve`` treat an ensemble as one model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor, nn

from rnnkit.data.batching import Batch
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.modes import eval_mode

__all__ = ["ENSEMBLE_TASKS", "Ensemble"]

ENSEMBLE_TASKS = ("classify", "regress", "forecast")
"""Tasks whose models give one output per sequence, which an ensemble averages."""


class Ensemble(nn.Module):
    """``members`` (K models built from ``config`` with ``ensemble=1``); ``forward(batch) -> (outputs, loss)``.

    classify: ``outputs = log(mean_k softmax(logits_k))`` ``(B, C)`` (so ``softmax(outputs)`` is the mean of the
    members' probabilities, and ``argmax`` the ensemble's class), ``loss`` the mean cross-entropy of those mean
    probabilities. regress / forecast: ``outputs = mean_k predictions_k`` ``(B, K)``, ``loss`` their MSE.
    """

    def __init__(self, config: ModelConfig, build: Callable[[ModelConfig], nn.Module]) -> None:
        super().__init__()
        if config.task not in ENSEMBLE_TASKS:
            raise ValueError(
                f"an ensemble averages one output per sequence ({', '.join(ENSEMBLE_TASKS)}), "
                f"not the {config.task} task"
            )
        if config.ensemble < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got ensemble={config.ensemble}")
        self.config = config
        member = replace(config, ensemble=1)
        self.members = nn.ModuleList(build(member) for _ in range(config.ensemble))

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        outs = [m(replace(batch, targets=None))[0] for m in self.members]  # K × (B, C | K)
        if self.config.task == "classify":
            logp = torch.stack([torch.log_softmax(o, dim=-1) for o in outs])  # (K, B, C)
            out = torch.logsumexp(logp, dim=0) - math.log(len(outs))  # (B, C): log of the mean probability
            loss = None if batch.targets is None else nn.functional.nll_loss(out, batch.targets)
        else:
            out = torch.stack(outs).mean(0)  # (B, K)
            loss = None if batch.targets is None else nn.functional.mse_loss(out, batch.targets.to(out.dtype))
        return out, loss

    @torch.no_grad()
    def predict_proba(self, batch: Batch) -> Tensor:
        """classify: the mean class probabilities ``(B, C)`` in eval mode (the module's mode is restored)."""
        with eval_mode(self):
            return torch.softmax(self(batch)[0], dim=-1)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        """regress / forecast: the mean predictions ``(B, K)`` in eval mode."""
        with eval_mode(self):
            return self(batch)[0]
