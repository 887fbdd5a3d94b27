"""Many→K real values: read a whole sequence, predict a vector (regression; forecasting builds on it)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.data.batching import Batch
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.inputs import InputEncoder
from rnnkit.tasks.registry import build_core

__all__ = ["SequenceRegressor"]


class SequenceRegressor(nn.Module):
    """Inputs → recurrent core → last valid state of every direction → linear head with ``K = num_outputs``.

    ``forward(batch) -> (predictions (B, K), loss)``; ``batch.targets`` is ``(B, K)`` float (or None) and
    ``loss`` is the mean squared error over all ``B·K`` values. Padding never changes a result (the state taken is
    each sequence's last valid one). A window core regresses from its last window.

    Inputs are token ids, real vectors or per-step tensors such as video frames (``config.frame_encoder="cnn"``
    or any ``(N, *S) → (N, E)`` module passed as ``frame_module``; see :class:`~rnnkit.tasks.inputs.InputEncoder`).
    """

    def __init__(self, config: ModelConfig, frame_module: nn.Module | None = None) -> None:
        super().__init__()
        if config.num_outputs < 1:
            raise ValueError(f"a regressor predicts at least 1 value, got num_outputs={config.num_outputs}")
        self.config = config
        self.inputs = InputEncoder(config, frame_module=frame_module)
        self.core = build_core(
            config.model,
            self.inputs.size,
            config.hidden_size,
            config.num_layers,
            config.dropout,
            config.bidirectional,
            window=config.window,
        )
        self.directions = 2 if config.bidirectional else 1
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.directions * config.hidden_size, config.num_outputs)

    def encode(self, batch: Batch) -> Tensor:
        """The sequence summary fed to the head: ``(B, D·H)``."""
        x = self.inputs(batch.inputs, batch.lengths)  # (B, T, I)
        if getattr(self.core, "per_step_readout", False):
            out, _ = self.core(x, lengths=batch.lengths)  # (B, T, H)
            last = (batch.lengths.to(out.device) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
            return out.gather(1, last).squeeze(1)  # (B, H): the window ending at the last valid step
        _, h_n = self.core(x, lengths=batch.lengths)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # (L·D, B, H)
        last = h_n[-self.directions :]  # (D, B, H)
        return last.transpose(0, 1).reshape(last.shape[1], -1)  # (B, D·H)

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
        was = self.training
        self.eval()
        try:
            return self(batch)[0]
        finally:
            self.train(was)
