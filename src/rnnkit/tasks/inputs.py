"""What every task model puts in front of its recurrent core: one sequence element → one input vector.

A sequence element is a token (an id, embedded), a real vector (used as it is, standardized beforehand by the
data pipeline), or a whole tensor such as a video frame (read by a per-step encoder; see ``frame_encoder`` in
:class:`~rnnkit.tasks.config.ModelConfig`). :class:`InputEncoder` turns ``batch.inputs`` into ``(B, T, I)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from rnnkit.data.vocab import PAD
from rnnkit.dropout import Dropout
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.frames import PerStepEncoder, build_frame_encoder

__all__ = ["InputEncoder"]


class InputEncoder(nn.Module):
    """``(B, T)`` token ids → embeddings ``(B, T, E)``; ``(B, T, F)`` reals → unchanged; ``(B, T, *S)`` tensors
    (e.g. frames ``(C, H, W)``) → a per-step encoder → ``(B, T, E)``; then dropout.

    Per-step tensors are read when ``config.frame_encoder == "cnn"`` (the built-in
    :class:`~rnnkit.tasks.frames.FrameCNN` over ``config.frame_shape``, ``E = embed_dim``) or when a module is
    given as ``frame_module`` (any ``(N, *S) → (N, E)`` module; ``S = config.frame_shape``). Only valid steps go
    through it: pass ``lengths`` to :meth:`forward` and padded frames never change a result.

    ``size`` is the resulting ``I``, the input size of the recurrent core.
    """

    def __init__(self, config: ModelConfig, frame_module: nn.Module | None = None) -> None:
        super().__init__()
        self.tokens = config.vocab_size > 0
        self.embed: nn.Embedding | None = None
        self.frames: PerStepEncoder | None = None
        if frame_module is not None or config.frame_encoder:
            if self.tokens:
                raise ValueError(
                    f"per-step tensor inputs (frame_encoder={config.frame_encoder!r}) cannot be token ids: set "
                    f"vocab_size=0, got {config.vocab_size}"
                )
            self.frames = build_frame_encoder(config, frame_module)
            self.size = self.frames.out_dim
        elif self.tokens:
            self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=PAD)
            self.size = config.embed_dim
        elif config.input_features > 0:
            self.size = config.input_features
        else:
            raise ValueError(
                "set vocab_size (token inputs), input_features (real-valued inputs) or frame_encoder (per-step "
                "tensors such as frames)"
            )
        self.drop = Dropout(config.dropout)

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``inputs`` → ``(B, T, I)``; ``lengths`` ``(B,)`` lets a per-step encoder skip padded steps."""
        if self.frames is not None:
            x = self.frames(inputs, lengths)  # (B, T, E)
        elif self.embed is not None:
            if inputs.dim() != 2 or inputs.is_floating_point():
                raise ValueError(f"token inputs must be ids of shape (B, T), got {tuple(inputs.shape)}")
            V = self.embed.num_embeddings
            if inputs.numel() and (int(inputs.min()) < 0 or int(inputs.max()) >= V):
                raise ValueError(f"token ids must lie in [0, {V}) (the vocabulary), got ids outside it")
            x = self.embed(inputs)  # (B, T, E)
        else:
            if inputs.dim() != 3 or inputs.shape[2] != self.size:
                raise ValueError(f"real-valued inputs must have shape (B, T, {self.size}), got {tuple(inputs.shape)}")
            if not inputs.is_floating_point():
                raise TypeError(f"real-valued inputs must be a floating-point tensor, got {inputs.dtype}")
            x = inputs  # (B, T, F)
        return self.drop(x)
