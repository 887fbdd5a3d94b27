"""Streaming state helpers: cut a carried state from the graph, or restart some rows of a batch.

Shapes: a state in the layers' ``hx`` layout ``(L·D, B, H)``, or a tuple of them (LSTM's ``(h, c)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["detach_state", "reset_state"]


def detach_state(state: Any) -> Any:
    """``state`` cut from the autograd graph: a tensor, or tuples/lists of them (e.g. LSTM's ``(h, c)``), or None.

    Truncated BPTT carries the state from one chunk to the next this way: the values go on, gradients stop.
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(f"a recurrent state is a tensor or a tuple of tensors, got {type(state).__name__}")


def reset_state(state: Any, reset: Tensor | Sequence[bool], *, initial: Any = None, batch_dim: int = 1) -> Any:
    """Start the rows of ``state`` flagged in ``reset`` afresh; the other rows keep their state.

    Use it when a new stream (a new document, a new user) begins in some rows of a batch fed chunk by chunk.

    Args:
        state: a tensor in ``hx`` layout ``(L·D, B, H)``, a tuple/list of them (LSTM's ``(h, c)``), or None
            (every row is at the initial state already; returned as is).
        reset: ``(B,)`` booleans, True where the row starts afresh.
        initial: the state reset rows get, shaped like ``state``; None: zeros (the layers' initial state).
        batch_dim: the batch axis of every tensor in ``state`` (1 for the layers' ``hx``; 0 for a batch-first
            state such as the window model's context ``(B, W−1, I)``).

    Returns:
        A new state of the same structure (nothing is modified in place, so the autograd graph stays valid).
    """
    if state is None:
        return None
    flags = torch.as_tensor(reset)
    if flags.dtype != torch.bool or flags.dim() != 1:
        raise ValueError(
            f"reset must be a 1-D boolean tensor (B,), got dtype {flags.dtype}, shape {tuple(flags.shape)}"
        )
    if isinstance(state, Tensor):
        if state.dim() <= batch_dim or state.shape[batch_dim] != flags.shape[0]:
            raise ValueError(
                f"reset has {flags.shape[0]} rows but the state {tuple(state.shape)} has "
                f"{state.shape[batch_dim] if state.dim() > batch_dim else 'no'} rows on batch_dim={batch_dim}; "
                "give one flag per row (or the right batch_dim)"
            )
        shape = [1] * state.dim()
        shape[batch_dim] = flags.shape[0]
        keep = ~flags.to(state.device).view(shape)  # broadcastable over every axis but the batch
        fresh = state.new_zeros(()) if initial is None else initial
        if isinstance(fresh, Tensor) and fresh.dim() and tuple(fresh.shape) != tuple(state.shape):
            raise ValueError(f"initial has shape {tuple(fresh.shape)}, the state {tuple(state.shape)}")
        return torch.where(keep, state, fresh)
    if isinstance(state, (tuple, list)):
        inits = [None] * len(state) if initial is None else list(initial)
        if len(inits) != len(state):
            raise ValueError(f"initial holds {len(inits)} tensors, the state {len(state)}")
        parts = zip(state, inits, strict=True)
        return type(state)(reset_state(s, flags, initial=i, batch_dim=batch_dim) for s, i in parts)
    raise TypeError(f"a recurrent state is a tensor or a tuple of tensors, got {type(state).__name__}")
