"""What the one-pass task models share: inputs → recurrent core → dropout → a linear head.

:class:`SequenceClassifier` (many→one), :class:`SequenceRegressor` (many→K values) and :class:`SequenceTagger`
(synced many→many) differ only in what they read off the core and in their loss; the parts and their names
(``inputs``, ``core``, ``drop``, ``head``: the keys of a run's weights) are built here once.
"""

from __future__ import annotations

from torch import Tensor, nn

from rnnkit.data.batching import Batch
from rnnkit.dropout import Dropout
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.inputs import InputEncoder
from rnnkit.tasks.registry import build_core

__all__ = ["RecurrentTaskModel"]


class RecurrentTaskModel(nn.Module):
    """``inputs`` (:class:`InputEncoder`) → ``core`` (from the registry) → ``drop`` → ``head`` ``(D·H → outputs)``.

    Args:
        config: the task's :class:`ModelConfig`.
        num_outputs: the head's output size (classes, values or tags).
        frame_module: optional per-step encoder ``(N, *S) → (N, E)`` for tensor-valued steps.
    """

    def __init__(self, config: ModelConfig, num_outputs: int, frame_module: nn.Module | None = None) -> None:
        super().__init__()
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
        self.directions = 2 if config.bidirectional else 1  # D
        self.drop = Dropout(config.dropout)
        # a summary core (LSTM-FCN) gives its own (B, S) summary instead of the last recurrent state
        self.summarizes = bool(getattr(self.core, "summary_only", False))
        size = self.core.summary_size if self.summarizes else self.directions * config.hidden_size
        self.head = nn.Linear(size, num_outputs)

    def last_states(self, batch: Batch) -> Tensor:
        """Each sequence's summary ``(B, D·H)``: the top layer's last valid state of every direction (the reverse
        direction's after it has read the first element); a summary core's own summary ``(B, S)``."""
        x = self.inputs(batch.inputs, batch.lengths)  # (B, T, I)
        if self.summarizes:
            return self.core.summary(x, batch.lengths)  # (B, S)
        _, h_n = self.core(x, lengths=batch.lengths)
        h_n = h_n[0] if isinstance(h_n, tuple) else h_n  # (L·D, B, H)
        last = h_n[-self.directions :]  # (D, B, H)
        return last.transpose(0, 1).reshape(last.shape[1], -1)  # (B, D·H)
