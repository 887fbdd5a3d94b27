"""What every task model puts in front of its recurrent core: one sequence element → one input vector.

A sequence element is a token (an id, embedded), a real vector (used as it is, standardized beforehand by the
data pipeline), or a whole tensor such as a video frame (read by a per-step encoder; see ``frame_encoder`` in
:class:`~rnnkit.tasks.config.ModelConfig`). :class:`InputEncoder` turns ``batch.inputs`` into ``(B, T, I)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from rnnkit.data.vocab import PAD
from rnnkit.tasks.config import ModelConfig

__all__ = ["InputEncoder"]


class InputEncoder(nn.Module):
    """``(B, T)`` token ids → embeddings ``(B, T, E)``; ``(B, T, F)`` reals → unchanged; then dropout.

    ``size`` is the resulting ``I``, the input size of the recurrent core.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tokens = config.vocab_size > 0
        if not self.tokens and config.input_features <= 0 and not config.frame_encoder:
            raise ValueError("set vocab_size (token inputs) or input_features (real-valued inputs)")
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD) if self.tokens else None
        self.size = config.embed_dim if self.tokens else config.input_features
        self.drop = nn.Dropout(config.dropout)

    def forward(self, inputs: Tensor) -> Tensor:
        if self.embed is not None:
            if inputs.dim() != 2 or inputs.is_floating_point():
                raise ValueError(f"token inputs must be ids of shape (B, T), got {tuple(inputs.shape)}")
            x = self.embed(inputs)  # (B, T, E)
        else:
            if inputs.dim() != 3 or inputs.shape[2] != self.size:
                raise ValueError(f"real-valued inputs must have shape (B, T, {self.size}), got {tuple(inputs.shape)}")
            x = inputs  # (B, T, F)
        return self.drop(x)
