"""Per-step tensor encoders: a module that reads every element of a sequence of tensors (e.g. video frames).

The lecture: "each element in a sequence could be any format including a vector, a discrete integer, or even a
full tensor itself (e.g., video processing)". A *frame encoder* maps one element ``(*S)`` — a frame
``(C, H, W)`` — to a vector ``(E,)``; :class:`PerStepEncoder` applies it to every valid step of a batch
``(B, T, *S)`` by folding ``B·T`` into the module's batch, and gives the recurrent core ``(B, T, E)``.
:class:`FrameCNN` is the built-in encoder (``ModelConfig.frame_encoder = "cnn"``), made of ``torch.nn`` conv
layers only; any module that maps ``(N, *S) → (N, E)`` can take its place (``frame_module=`` of the task models).

Shape symbols: T time, B batch, N frames folded together, C channels, H height, W width, E encoder output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rnnkit.masks import length_mask
from rnnkit.tasks.config import ModelConfig

__all__ = ["FRAME_ENCODERS", "FrameCNN", "PerStepEncoder", "build_frame_encoder", "frame_output_size"]

FRAME_ENCODERS = ("cnn", "custom")
"""Values of ``ModelConfig.frame_encoder`` besides ``""``: the built-in CNN, or a module passed as ``frame_module``."""


def _positive_ints(values: Sequence[int], name: str, count: int | None = None) -> tuple[int, ...]:
    try:
        out = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of positive ints, got {values!r}") from None
    if count is not None and len(out) != count:
        raise ValueError(f"{name} must have {count} entries, got {len(out)}: {list(out)}")
    if not out or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in out):
        raise ValueError(f"{name} must hold positive ints, got {list(out)}")
    return out


class FrameCNN(nn.Module):
    """A small CNN over one frame ``(C, H, W)`` → a vector ``(E,)``, for video-like sequences.

    ``[Conv2d 3×3 (padding 1) → ReLU → MaxPool2d 2 (ceil mode)] × len(channels) → flatten → Linear → E``.
    Each pooling halves the height and width (rounding up), so the flattened map is
    ``channels[-1] · ⌈H/2^k⌉ · ⌈W/2^k⌉`` for ``k = len(channels)``: the Linear layer still sees *where* things
    are in the frame, which motion tasks need (a global average pool would forget it).

    Args:
        frame_shape: ``(C, H, W)`` of one frame.
        out_dim: ``E``, the size of the vector per frame.
        channels: output channels of each conv block.

    ``forward(x (N, C, H, W)) -> (N, E)``.
    """

    def __init__(self, frame_shape: Sequence[int], out_dim: int, channels: Sequence[int] = (8, 16)) -> None:
        super().__init__()
        self.frame_shape = _positive_ints(frame_shape, "frame_shape", 3)
        self.out_dim = _positive_ints([out_dim], "out_dim")[0]
        chans = _positive_ints(channels, "channels")
        c, h, w = self.frame_shape
        blocks: list[nn.Module] = []
        for c_out in chans:
            blocks += [nn.Conv2d(c, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c, h, w = c_out, math.ceil(h / 2), math.ceil(w / 2)
        self.features = nn.Sequential(*blocks)
        self.proj = nn.Linear(c * h * w, self.out_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.frame_shape:
            shape = ", ".join(map(str, self.frame_shape))
            raise ValueError(f"FrameCNN reads frames of shape (N, {shape}), got {tuple(x.shape)}")
        f = self.features(x)  # (N, C_k, ⌈H/2^k⌉, ⌈W/2^k⌉)
        return self.proj(f.flatten(1))  # (N, E)


def frame_output_size(module: nn.Module, frame_shape: Sequence[int]) -> int:
    """``E`` of a frame encoder: its ``out_dim`` attribute, else the width of its output on two zero frames.

    The probe runs in eval mode without gradients (the module's mode is restored), so it changes nothing — not
    even a BatchNorm's running statistics.
    """
    dim = getattr(module, "out_dim", None)
    if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
        return dim
    p = next(module.parameters(), None)
    dtype, device = (p.dtype, p.device) if p is not None else (torch.float32, None)
    probe = torch.zeros(2, *frame_shape, dtype=dtype, device=device)  # (2, *S)
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(probe)
    finally:
        module.train(was)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"a frame module must map (N, {', '.join(map(str, frame_shape))}) to (N, E); on N=2 zero frames it "
            f"returned {shape} (end it with a flatten and a Linear layer)"
        )
    return int(out.shape[1])


class PerStepEncoder(nn.Module):
    """Apply ``module`` to every valid step of ``(B, T, *S)`` in one call: ``(N, *S) → (N, E)`` → ``(B, T, E)``.

    ``N = Σ lengths``: the valid steps of all sequences, folded into the module's batch dimension.

    Only the steps ``t < lengths[b]`` go through the module (all of them when ``lengths`` is None); padded steps
    come out as zero vectors. So padding frames never change a result, whatever they hold (even NaN), and a
    module with batch statistics (BatchNorm) never sees them.

    Args:
        module: maps ``(N, *S)`` to ``(N, E)``.
        step_shape: ``S``, the shape of one element (e.g. ``(C, H, W)``).
    """

    def __init__(self, module: nn.Module, step_shape: Sequence[int]) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"frame_module must be a torch.nn.Module, got {type(module).__name__}")
        self.step_shape = _positive_ints(step_shape, "frame_shape")
        self.module = module
        self.out_dim = frame_output_size(module, self.step_shape)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        S = self.step_shape
        if x.dim() != 2 + len(S) or tuple(x.shape[2:]) != S or not x.is_floating_point():
            raise ValueError(
                f"per-step tensor inputs must be floats of shape (B, T, {', '.join(map(str, S))}), got "
                f"{tuple(x.shape)} {x.dtype}"
            )
        B, T = x.shape[:2]
        flat = x.reshape(B * T, *S)  # (B·T, *S)
        if lengths is None:
            return self._checked(self.module(flat), B * T).view(B, T, -1)  # (B, T, E)
        valid = length_mask(lengths, T, device=x.device).reshape(-1)  # (B·T,)
        index = valid.nonzero().squeeze(1)  # (N,) the valid steps, N = Σ lengths
        enc = self._checked(self.module(flat.index_select(0, index)), index.numel())  # (N, E)
        out = enc.new_zeros(B * T, enc.shape[1]).index_put((index,), enc)  # (B·T, E), zeros at padding
        return out.view(B, T, -1)  # (B, T, E)

    def _checked(self, out: Tensor, n: int) -> Tensor:
        if out.dim() != 2 or out.shape[0] != n or out.shape[1] != self.out_dim:
            raise ValueError(
                f"the frame module returned {tuple(out.shape)} for {n} frames; expected ({n}, {self.out_dim})"
            )
        return out


def build_frame_encoder(config: ModelConfig, frame_module: nn.Module | None = None) -> PerStepEncoder:
    """The per-step encoder that ``config`` (``frame_encoder``, ``frame_shape``) and ``frame_module`` ask for.

    ``frame_encoder="cnn"`` builds :class:`FrameCNN` ``(frame_shape, out_dim=embed_dim)`` — plain JSON, so a run
    folder rebuilds it. A user module goes in ``frame_module`` (``frame_encoder`` then ``""`` or ``"custom"``;
    rebuilding such a model needs the same module passed again).
    """
    kind = config.frame_encoder
    if kind not in ("", *FRAME_ENCODERS):
        raise ValueError(f"frame_encoder must be '' or one of {FRAME_ENCODERS}, got {kind!r}")
    if not config.frame_shape:
        raise ValueError(
            f"frame inputs need config.frame_shape, the shape of one element (e.g. [1, 8, 8] for C, H, W), "
            f"got {config.frame_shape!r}"
        )
    if frame_module is not None:
        if kind == "cnn":
            raise ValueError("pass frame_module= or set frame_encoder='cnn', not both (use frame_encoder='custom')")
        return PerStepEncoder(frame_module, config.frame_shape)
    if kind == "":
        raise ValueError("config.frame_encoder is '' (no frames): set it to 'cnn' or pass frame_module=")
    if kind == "custom":
        raise ValueError(
            "this model reads frames with a custom module (frame_encoder='custom'): pass the same module again "
            "as frame_module= to rebuild it"
        )
    return PerStepEncoder(FrameCNN(config.frame_shape, config.embed_dim), config.frame_shape)
