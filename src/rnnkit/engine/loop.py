"""The autograd loop over a step function (the reference path, and any user's cell), and the layer stack.

Shape symbols: T time, B batch, I input, H hidden, L layers, D directions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from rnnkit.masks import length_mask

__all__ = ["bind_step", "run_loop", "run_stack"]

State = Tensor | tuple[Tensor, ...]


def run_loop(
    step: Callable[[Tensor, State], State],
    x: Tensor,
    state0: State,
    mask: Tensor | None = None,
    record: list[State] | None = None,
) -> tuple[Tensor, State]:
    """One direction of one layer as a plain autograd loop over ``step(x_t (B, I), state) -> state``.

    The reference the other paths are tested against, and the path for any cell (a user's own included).
    ``mask`` ``(T, B, 1)`` as in :func:`run_own`; ``record``, if given, receives every step's state (graph
    nodes, for the gradient diagnostics). Returns ``(hs (T, B, H), final state)``.
    """
    state = state0
    hs: list[Tensor] = []
    keep = None if mask is None else mask > 0  # (T, B, 1)
    for t, x_t in enumerate(x.unbind(0)):  # unbind once: no per-step indexing of a grad-requiring tensor
        new = step(x_t, state)
        if keep is not None:
            if isinstance(new, tuple):
                new = tuple(torch.where(keep[t], a, b) for a, b in zip(new, state, strict=True))
            else:
                new = torch.where(keep[t], new, state)
        state = new
        if record is not None:
            record.append(state)
        hs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(hs), state  # (T, B, H)


def _call_step(fn: Callable[..., State], params: tuple, x_t: Tensor, state: State) -> State:
    return fn(x_t, state, *params)


def bind_step(step: Callable[..., State], params: tuple) -> Callable[[Tensor, State], State]:
    """``step(x, state, *params)`` as a function of ``(x_t, state)`` (a table step with one direction's weights)."""
    return partial(_call_step, step, params)


RunDirection = Callable[[int, int, Tensor, State, "Tensor | None", "list | None"], tuple[Tensor, State]]


def run_stack(
    run_direction: RunDirection,
    x: Tensor,
    states: list[State],
    lens: Tensor | None,
    num_layers: int,
    num_directions: int,
    dropout: float = 0.0,
    record: list | None = None,
) -> tuple[Tensor, list[State]]:
    """Layers × directions over time-major ``x`` ``(T, B, I)``. Returns ``(output (T, B, D·H), finals)``.

    ``run_direction(k, d, x, state0, mask, record)`` runs layer ``k``, direction ``d`` on its input in processing
    order and returns ``(hs (T, B, H), final)``. ``lens`` ``(B,)`` or None; the reverse direction reads each
    sequence reversed within its own length, so padding stays in place. ``dropout`` (already 0 outside training)
    acts between layers. Output past each sequence's end is zero; ``finals`` in layer-major order.
    """
    T = x.shape[0]
    D = num_directions
    mask = None
    rev_idx = None
    if lens is not None:
        valid = length_mask(lens, T, time_major=True, device=x.device)  # (T, B)
        mask = valid.to(x.dtype).unsqueeze(-1)  # (T, B, 1)
        if D == 2:
            steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
            rev_idx = torch.where(valid, lens - 1 - steps, steps)  # (T, B)
    finals: list[State] = []
    layer_in = x
    for k in range(num_layers):
        outs = []
        if record is not None:
            record.append([])
        for d in range(D):
            inp = layer_in if d == 0 else _reverse_time(layer_in, rev_idx)
            hs, final = run_direction(k, d, inp, states[k * D + d], mask, record)
            outs.append(hs if d == 0 else _reverse_time(hs, rev_idx))
            finals.append(final)
        out = outs[0] if D == 1 else torch.cat(outs, dim=2)  # (T, B, D·H)
        if k < num_layers - 1 and dropout > 0:
            out = nn.functional.dropout(out, dropout, True)
        layer_in = out
    if mask is not None:
        layer_in = layer_in * mask  # zero past each sequence's end
    return layer_in, finals


def _reverse_time(x: Tensor, rev_idx: Tensor | None) -> Tensor:
    """Reverse ``x`` ``(T, B, F)`` in time; with ``rev_idx`` ``(T, B)`` each row only within its own length."""
    if rev_idx is None:
        return x.flip(0)
    return x.gather(0, rev_idx.unsqueeze(-1).expand_as(x))
