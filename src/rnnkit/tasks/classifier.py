"""Many→one: read a whole sequence, predict one label (the lecture's name → language demo)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.data.batching import Batch
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.registry import build_core

__all__ = ["SequenceClassifier"]


class SequenceClassifier(nn.Module):
    """Embedding (tokens) → recurrent core → last valid state of every direction → linear head over C classes.

    ``forward(batch) -> (logits (B, C), loss)``; ``loss`` is the mean cross-entropy over the batch, None when
    ``batch.targets`` is None. Padding never changes a result: the core runs with ``batch.lengths`` and the state
    taken is each sequence's last valid one (the reverse direction's after it has read the first element).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got num_classes={config.num_classes}")
        self.config = config
        tokens = config.vocab_size > 0
        if not tokens and config.input_features <= 0:
            raise ValueError("set vocab_size (token inputs) or input_features (real-valued inputs)")
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0) if tokens else None
        in_size = config.embed_dim if tokens else config.input_features
        self.core = build_core(
            config.model, in_size, config.hidden_size, config.num_layers, config.dropout, config.bidirectional
        )
        self.directions = 2 if config.bidirectional else 1
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.directions * config.hidden_size, config.num_classes)

    def encode(self, batch: Batch) -> Tensor:
        """The sequence summary fed to the head: ``(B, D·H)``."""
        x = self.embed(batch.inputs) if self.embed is not None else batch.inputs  # (B, T, E|F)
        x = self.drop(x)
        _, h_n = self.core(x, lengths=batch.lengths)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # (L·D, B, H)
        last = h_n[-self.directions :]  # (D, B, H): the top layer's directions
        return last.transpose(0, 1).reshape(last.shape[1], -1)  # (B, D·H)

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        logits = self.head(self.drop(self.encode(batch)))  # (B, C)
        loss = None
        if batch.targets is not None:
            loss = nn.functional.cross_entropy(logits, batch.targets)
        return logits, loss

    @torch.no_grad()
    def predict_proba(self, batch: Batch) -> Tensor:
        """Class probabilities ``(B, C)`` in eval mode (the module's mode is restored)."""
        was = self.training
        self.eval()
        try:
            return torch.softmax(self(batch)[0], dim=-1)
        finally:
            self.train(was)
