"""The whole stack through torch's fused kernels (oneDNN on CPU, cuDNN on CUDA), exactly as torch.nn calls them.

Shape symbols: T time, B batch, I input, H hidden, L layers, D directions. Which kinds have an exact kernel is
:attr:`rnnkit.cells.CellSpec.fused`.
"""

from __future__ import annotations

from torch import _VF, Tensor

from rnnkit.cells import CELLS

__all__ = ["FUSED_KINDS", "run_fused"]

FUSED_KINDS = {kind: getattr(_VF, spec.fused) for kind, spec in CELLS.items() if spec.fused is not None}
"""Kinds with an exact torch fused kernel."""


def run_fused(
    kind: str,
    input: Tensor,
    hx: Tensor | tuple[Tensor, Tensor],
    flat_weights: list[Tensor],
    bias: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    batch_sizes: Tensor | None = None,
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """The whole stack through torch's fused kernel, exactly as torch.nn does.

    Args:
        input: ``(T, B, I)`` time-major, or the ``data`` of a PackedSequence ``(ΣL, I)`` with ``batch_sizes``.
        hx: ``(L·D, B, H)`` (a tuple ``(h0, c0)`` for LSTM) in the input's batch order.
        flat_weights: torch.nn's ``_flat_weights`` order (per layer, per direction: w_ih, w_hh[, b_ih, b_hh]).
    Returns:
        ``(output, h_n)`` with ``output`` ``(T, B, D·H)`` (or packed data) and ``h_n`` like ``hx``.
    """
    fn = FUSED_KINDS[kind]
    if batch_sizes is None:
        result = fn(input, hx, flat_weights, bias, num_layers, dropout, training, bidirectional, False)
    else:
        result = fn(input, batch_sizes, hx, flat_weights, bias, num_layers, dropout, training, bidirectional)
    if CELLS[kind].state_arity == 2:
        return result[0], (result[1], result[2])
    return result[0], result[1]
