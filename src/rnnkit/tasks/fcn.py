"""LSTM-FCN and MLSTM-FCN (Karim et al. 2017, 2019): a recurrent branch beside a 1-D convolutional branch.

Registered in :mod:`rnnkit.tasks.registry` as ``lstm-fcn`` (no squeeze-and-excitation, the 2017 model) and
``mlstm-fcn`` (squeeze-and-excitation after the first two convolution blocks, the 2019 model). They are *summary*
cores: a classifier or regressor reads :meth:`LSTMFCN.summary` ``(B, S)`` instead of the last recurrent state, and
the head has ``S = summary_size = D·H + 128`` inputs. Taggers and generators need one output per step and refuse
them (:func:`check_summary_core`).

Architecture (shape symbols: B batch, T steps, I input size, H hidden, D directions, C conv channels)::

    x (B, T, I) ─┬─► LSTM (L layers, D directions) ─► last valid state (B, D·H) ──────────────┐
                 └─► [conv k8 → BN → ReLU] (B, 128, T) → SE* → [conv k5 → BN → ReLU] (B, 256, T) │
                     → SE* → [conv k3 → BN → ReLU] (B, 128, T) → masked mean over T (B, 128) ─────┴─► cat (B, D·H+128)

    * mlstm-fcn only: squeeze-and-excitation with reduction 16, ``x · σ(W₂ ReLU(W₁ mean_t x))`` (no biases).

Differences from the papers, and why:

- **No dimension shuffle.** The original LSTM branch reads the univariate series as ONE step of T features (the
  "dimension shuffle"); that needs every series to have the same length T and gives the LSTM a fixed-width input.
  Here the LSTM reads the series step by step, as every rnnkit core does, so that series of unequal lengths work
  through the masks (the papers' "no shuffle" variant).
- **Unequal lengths, padding never changes a result.** Padded steps are zeroed before every convolution, so a
  series padded at its end sees exactly the zeros that the convolution's own ``same`` padding gives it alone.
  Batch normalisation takes its statistics over the *valid* steps only (:class:`MaskedBatchNorm1d`): in training
  the batch statistics ignore padding, in eval mode the running statistics are per channel anyway. Squeeze and
  global average pooling are means over the valid steps. So a padded batch gives the same logits as each series
  run alone (eval mode), and in training the same as the batch padded to any other length.
- The LSTM's size is ``hidden_size`` (the papers tune 8–128 cells); the task model's ``dropout`` acts on the whole
  summary before the head (the papers put 0.8 on the LSTM's output only); the convolution widths are fixed at
  128/256/128 with kernels 8/5/3, as in the papers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.layers import LSTM
from rnnkit.masks import length_mask

__all__ = [
    "CONV_CHANNELS",
    "CONV_KERNELS",
    "LSTMFCN",
    "SE_REDUCTION",
    "ConvBlock",
    "MaskedBatchNorm1d",
    "SqueezeExcite",
    "check_summary_core",
    "masked_mean",
]

CONV_CHANNELS = (128, 256, 128)
CONV_KERNELS = (8, 5, 3)
SE_REDUCTION = 16


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the valid steps: ``x`` ``(B, C, T)``, ``mask`` ``(B, T)`` bool → ``(B, C)``.

    A sequence without valid steps gives zeros (its count is clamped to 1)."""
    m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
    n = m.sum(2).clamp(min=1.0)  # (B, 1)
    return (x * m).sum(2) / n  # (B, C)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over ``(B, C, T)`` whose statistics count the valid steps only.

    ``forward(x (B, C, T), mask (B, T) | None) -> (B, C, T)``. Training: ``μ_c`` and the biased ``σ²_c`` over the
    ``N = Σ_b lengths[b]`` valid positions; the running statistics are updated as torch's (momentum, the unbiased
    variance ``σ²·N/(N−1)``). Eval: the running statistics. Positions outside ``mask`` are set to zero. Without a
    mask (or a full one) it equals ``nn.BatchNorm1d`` exactly (tested).
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if mask is None:
            return super().forward(x)
        m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        if self.training:
            n = m.sum()  # N valid positions
            if n < 2:
                raise ValueError(f"batch norm in training needs at least 2 valid steps in the batch, got {int(n)}")
            mean = (x * m).sum((0, 2)) / n  # (C,)
            var = (((x - mean.view(1, -1, 1)) * m) ** 2).sum((0, 2)) / n  # (C,) biased
            if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    mom = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                    self.running_mean.mul_(1 - mom).add_(mom * mean.detach())
                    self.running_var.mul_(1 - mom).add_(mom * var.detach() * n / (n - 1))
        else:
            mean, var = self.running_mean, self.running_var
        assert mean is not None and var is not None
        y = (x - mean.view(1, -1, 1)) / torch.sqrt(var.view(1, -1, 1) + self.eps)  # (B, C, T)
        if self.affine:
            y = y * self.weight.view(1, -1, 1) + self.bias.view(1, -1, 1)
        return y * m


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation over channels (Hu et al. 2018, as MLSTM-FCN uses it).

    ``forward(x (B, C, T), mask (B, T)) -> (B, C, T)``: ``s = σ(W₂ ReLU(W₁ z))`` with ``z`` the mean of ``x`` over
    the valid steps ``(B, C)``, ``W₁`` ``(C/r, C)``, ``W₂`` ``(C, C/r)`` (no biases, as the paper's code), and
    ``x · s`` per channel.
    """

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.reduce = nn.Linear(channels, hidden, bias=False)
        self.expand = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        z = masked_mean(x, mask)  # (B, C)
        s = torch.sigmoid(self.expand(torch.relu(self.reduce(z))))  # (B, C)
        return x * s.unsqueeze(2)  # (B, C, T)


class ConvBlock(nn.Module):
    """``Conv1d(k)`` with "same" zero padding → :class:`MaskedBatchNorm1d` → ReLU, padded steps zero before and after.

    ``forward(x (B, C_in, T), mask (B, T)) -> (B, C_out, T)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel)
        self.norm = MaskedBatchNorm1d(out_channels)
        # "same" padding as torch's padding="same" splits it (left (k-1)//2, the rest right), padded here once
        # so that even kernels need no copy inside conv1d
        self.pad = ((kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        y = self.conv(nn.functional.pad(x * m, self.pad))  # (B, C_out, T): padded steps read as the "same" zeros
        return torch.relu(self.norm(y, mask)) * m


class LSTMFCN(nn.Module):
    """The LSTM-FCN core (module docstring): ``summary(x (B, T, I), lengths (B,)) -> (B, D·H + 128)``.

    Args:
        input_size: I. hidden_size: H of the LSTM branch. num_layers: its layers. dropout: between its layers
        (the task model passes it only when ``num_layers > 1``). bidirectional: D = 2.
        squeeze_excite: MLSTM-FCN's squeeze-and-excitation after the first two convolution blocks.

    The task model's dropout (before its head) acts on the whole summary, both branches.

    ``forward(x, hx=None, lengths=None)`` is the recurrent branch alone (``(output (B, T, D·H), (h_n, c_n))``, the
    registry's core contract, for tools that read states); task models call :meth:`summary`.
    """

    summary_only = True  # read by check_summary_core: per-step outputs would ignore the convolutional branch

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        squeeze_excite: bool = False,
    ) -> None:
        super().__init__()
        self.lstm = LSTM(
            input_size, hidden_size, num_layers, batch_first=True, dropout=dropout, bidirectional=bidirectional
        )
        self.directions = 2 if bidirectional else 1  # D
        self.hidden_size = hidden_size
        blocks, se = [], []
        c_in = input_size
        for i, (c_out, k) in enumerate(zip(CONV_CHANNELS, CONV_KERNELS, strict=True)):
            blocks.append(ConvBlock(c_in, c_out, k))
            se.append(SqueezeExcite(c_out) if squeeze_excite and i < 2 else nn.Identity())
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.excite = nn.ModuleList(se)
        self.summary_size = self.directions * hidden_size + CONV_CHANNELS[-1]  # S

    def forward(self, x: Tensor, hx=None, lengths: Tensor | None = None):
        return self.lstm(x, hx, lengths=lengths)

    def conv_features(self, x: Tensor, mask: Tensor) -> Tensor:
        """The convolutional branch: ``x`` ``(B, T, I)``, ``mask`` ``(B, T)`` → pooled features ``(B, 128)``."""
        h = x.transpose(1, 2)  # (B, I, T)
        for block, se in zip(self.blocks, self.excite, strict=True):
            h = block(h, mask)  # (B, C, T)
            if isinstance(se, SqueezeExcite):
                h = se(h, mask)  # (B, C, T)
        return masked_mean(h, mask)  # (B, 128)

    def summary(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(B, D·H + 128)``: the LSTM's last valid state of every direction beside the pooled conv features."""
        B, T = x.shape[0], x.shape[1]
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        mask = length_mask(lengths, T, device=x.device)  # (B, T)
        _, (h_n, _) = self.lstm(x, lengths=lengths)  # h_n (L·D, B, H)
        last = h_n[-self.directions :].transpose(0, 1).reshape(B, -1)  # (B, D·H)
        return torch.cat([last, self.conv_features(x, mask)], dim=1)  # (B, D·H + 128)


def check_summary_core(core: nn.Module, task: str) -> None:
    """Refuse a summary core (LSTM-FCN) where a task needs one output per step (tag, generate)."""
    if getattr(core, "summary_only", False):
        raise ValueError(
            f"{type(core).__name__} reads a whole series into one summary: it classifies or regresses series; "
            f"the {task} task needs an output per step, choose another --model"
        )
