"""Many→K real values: read a whole sequence, predict a vector (regression; forecasting builds on it)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.data.batching import Batch
from rnnkit.tasks.base import RecurrentTaskModel
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.modes import eval_mode

__all__ = ["SequenceRegressor"]


class SequenceRegressor(RecurrentTaskModel):
    """Inputs → recurrent core → last valid state of every direction → linear head with ``K = num_outputs``.

    ``forward(batch) -> (predictions (B, K), loss)``; ``batch.targets`` is ``(B, K)`` float (or None) and
    ``loss`` is the mean squared error over all ``B·K`` values. Padding never changes a result (the state taken is
    each sequence's last valid one). A window core regresses from its last window.

    Inputs are token ids, real vectors or per-step tensors such as video frames (``config.frame_encoder="cnn"``
    or any ``(N, *S) → (N, E)`` module passed as ``frame_module``; see :class:`~rnnkit.tasks.inputs.InputEncoder`).
    """

    def __init__(self, config: ModelConfig, frame_module: nn.Module | None = None) -> None:
        if config.num_outputs < 1:
            raise ValueError(f"a regressor predicts at least 1 value, got num_outputs={config.num_outputs}")
        super().__init__(config, config.num_outputs, frame_module)

    def encode(self, batch: Batch) -> Tensor:
        """The sequence summary fed to the head: ``(B, D·H)``."""
        if not getattr(self.core, "per_step_readout", False):
            return self.last_states(batch)  # (B, D·H)
        out, _ = self.core(self.inputs(batch.inputs, batch.lengths), lengths=batch.lengths)  # (B, T, H)
        last = (batch.lengths.to(out.device) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
        return out.gather(1, last).squeeze(1)  # (B, H): the window ending at the last valid step

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        pred = self.head(self.drop(self.encode(batch)))  # (B, K)
        loss = None
        if batch.targets is not None:
            if batch.targets.shape != pred.shape:
                raise ValueError(f"targets must have shape {tuple(pred.shape)}, got {tuple(batch.targets.shape)}")
            loss = nn.functional.mse_loss(pred, batch.targets.to(pred.dtype))
        return pred, loss

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        """Predictions ``(B, K)`` in eval mode (the module's mode is restored)."""
        with eval_mode(self):
            return self(batch)[0]
