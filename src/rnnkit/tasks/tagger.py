"""Synced many→many: one label per input step (the lecture's mode (5), "label each frame of the video").

Part-of-speech or entity tagging, per-frame video labels, running parity: ``x_1 … x_T → y_1 … y_T``. The model
reads the whole sequence (in both directions by default at the app level) and classifies every step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.data.batching import IGNORE_INDEX, Batch
from rnnkit.masks import length_mask
from rnnkit.tasks.base import RecurrentTaskModel
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.fcn import check_summary_core
from rnnkit.tasks.modes import eval_mode

__all__ = ["SequenceTagger"]


class SequenceTagger(RecurrentTaskModel):
    """Inputs → recurrent core → every step's output ``(B, T, D·H)`` → linear head over ``C = num_classes`` tags.

    ``forward(batch) -> (logits (B, T, C), loss)``: ``batch.targets`` is ``(B, T)`` long with
    :data:`~rnnkit.data.batching.IGNORE_INDEX` at padding (or None), and ``loss`` is the mean cross-entropy over
    the valid steps of the whole batch (every step weighs the same, whatever its sequence's length). Steps
    ``t >= lengths[b]`` never count, whatever their targets hold, and padding never changes a result: the core
    runs with ``batch.lengths`` (a bidirectional core's reverse direction starts at each sequence's last valid
    step). Logits at padded steps are the head applied to zeros; ignore them.

    Inputs are token ids, real vectors or per-step tensors such as video frames (``config.frame_encoder="cnn"``
    or any ``(N, *S) → (N, E)`` module passed as ``frame_module``; see :class:`~rnnkit.tasks.inputs.InputEncoder`).
    A window core (``model="window"``) tags step ``t`` from the window that ends at it.
    """

    def __init__(self, config: ModelConfig, frame_module: nn.Module | None = None) -> None:
        if config.num_classes < 2:
            raise ValueError(f"a tagger needs at least 2 tags, got num_classes={config.num_classes}")
        super().__init__(config, config.num_classes, frame_module)
        check_summary_core(self.core, "tag")

    def valid_mask(self, batch: Batch) -> Tensor:
        """``(B, T)`` bool: True at the steps ``t < lengths[b]``."""
        return length_mask(batch.lengths, batch.inputs.shape[1], device=batch.inputs.device)  # (B, T)

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        x = self.inputs(batch.inputs, batch.lengths)  # (B, T, I)
        out, _ = self.core(x, lengths=batch.lengths)  # (B, T, D·H)
        logits = self.head(self.drop(out))  # (B, T, C)
        loss = None
        if batch.targets is not None:
            t = batch.targets
            if t.shape != logits.shape[:2] or t.is_floating_point():
                raise ValueError(
                    f"tagging targets must be tag ids of shape (B, T) = {tuple(logits.shape[:2])}, got "
                    f"{tuple(t.shape)} {t.dtype}"
                )
            t = t.to(logits.device).masked_fill(~self.valid_mask(batch).to(logits.device), IGNORE_INDEX)  # (B, T)
            if not bool((t != IGNORE_INDEX).any()):
                raise ValueError("the batch has no step to score: every target is IGNORE_INDEX or padding")
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), t.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return logits, loss

    @torch.no_grad()
    def predict_proba(self, batch: Batch) -> Tensor:
        """Tag probabilities ``(B, T, C)`` in eval mode, zero at padded steps (the module's mode is restored)."""
        with eval_mode(self):
            probs = torch.softmax(self(batch)[0], dim=-1)  # (B, T, C)
            return probs * self.valid_mask(batch).unsqueeze(2).to(probs)

    @torch.no_grad()
    def predict(self, batch: Batch) -> list[list[int]]:
        """The most likely tag id of every valid step: ``B`` lists, list ``b`` of length ``lengths[b]``."""
        best = self.predict_proba(batch).argmax(-1).cpu()  # (B, T)
        return [row[: int(n)].tolist() for row, n in zip(best, batch.lengths.cpu(), strict=True)]
