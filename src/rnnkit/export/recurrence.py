"""The recurrence as exportable ops: a torch.nn-layout core run over time with ``scan``, one step at a time.

Shapes as in :mod:`rnnkit.export`. :class:`_Recurrence` is what every graph of :mod:`rnnkit.export.graphs` runs;
its step function and state names come from :data:`rnnkit.cells.CELLS` (minGRU/minLSTM: their cells' step form).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from rnnkit.cells import CELLS, CellSpec, spec_of
from rnnkit.layers.minimal import MinGRU
from rnnkit.masks import length_mask

State = Tensor | tuple[Tensor, Tensor]


# --------------------------------------------------------------------------------------------------------------
# The recurrence as exportable ops


def _min_step(x_t: Tensor, h: Tensor, cell: nn.Module) -> Tensor:
    """One step of a minGRU/minLSTM cell (``h_t = a_t ⊙ h_{t−1} + b_t``, gates from ``x_t``): ``(B, H)``."""
    return cell(x_t, h)


# minGRU/minLSTM cores (rnnkit.layers.minimal) export through their cells' step form: one state ``h``
_MIN_SPEC = SimpleNamespace(step=_min_step, state_arity=1, state=("h",))


def _cell_spec(core: nn.Module) -> CellSpec:
    """``core``'s entry in :data:`rnnkit.cells.CELLS` (its step function, state names), or a clear refusal."""
    if isinstance(core, MinGRU):  # MinLSTM too
        return _MIN_SPEC
    spec = spec_of(core)
    if spec is None or getattr(core, "num_layers", None) is None:
        names = [s.model for s in CELLS.values() if s.model]
        models = ", ".join(names[:-1]) + " and " + names[-1]
        raise ValueError(
            f"ONNX export supports the recurrent cores {models}, not {type(core).__name__} "
            "(the window model is not exported)"
        )
    if getattr(core, "proj_size", 0):
        raise ValueError(f"an LSTM with proj_size={core.proj_size} cannot be exported: use proj_size=0")
    return spec


def _step_function(core: nn.Module) -> tuple[Callable[..., State], int]:
    """The one-step function of ``core``'s cells (called as ``fn(x_t, state, w_ih, w_hh, b_ih, b_hh)``), arity."""
    spec = _cell_spec(core)
    return spec.step, spec.state_arity


class _Recurrence(nn.Module):
    """A torch.nn-layout core (rnnkit or torch.nn RNN/LSTM/GRU) run over time with ``scan``, one step at a time.

    Equal to the core's ``forward(x, hx, lengths)`` (tested against it), written only with ops the ONNX exporter
    turns into a ``Scan`` with dynamic ``T`` and ``B``.
    """

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core
        self.fn, self.arity = _step_function(core)
        self.L, self.H = core.num_layers, core.hidden_size
        self.D = 2 if core.bidirectional else 1

    def params(self, k: int, d: int) -> tuple[Tensor | None, ...]:
        if isinstance(self.core, MinGRU):
            return (self.core.cells[k * self.D + d],)
        sfx = f"_l{k}" + ("_reverse" if d else "")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if self.core.bias else ("weight_ih", "weight_hh")
        found = tuple(getattr(self.core, n + sfx) for n in names)
        return found if self.core.bias else (*found, None, None)

    def zeros(self, ref: Tensor) -> list[State]:
        """Zero states for every (layer, direction), batch as ``ref``'s first dimension."""
        B = ref.shape[0]
        # distinct tensors: scan refuses an initial carry whose parts alias one another
        if self.arity == 1:
            return [ref.new_zeros(B, self.H) for _ in range(self.L * self.D)]  # (B, H) each
        return [(ref.new_zeros(B, self.H), ref.new_zeros(B, self.H)) for _ in range(self.L * self.D)]

    def split(self, state: tuple[Tensor, ...]) -> list[State]:
        """``(h,)`` or ``(h, c)``, each ``(L·D, B, H)`` → one state per (layer, direction)."""
        if self.arity == 1:
            return list(state[0].unbind(0))
        return list(zip(state[0].unbind(0), state[1].unbind(0), strict=True))

    def stack(self, states: list[State]) -> tuple[Tensor, ...]:
        """One state per (layer, direction) → ``(h,)`` or ``(h, c)``, each ``(L·D, B, H)``."""
        if self.arity == 1:
            return (torch.stack(states),)
        return torch.stack([s[0] for s in states]), torch.stack([s[1] for s in states])

    def step(self, x_t: Tensor, states: list[State]) -> tuple[Tensor, list[State]]:
        """One step through every layer (one direction): ``x_t`` ``(B, I)`` → top output ``(B, H)``, new states."""
        new = []
        inp = x_t
        for k in range(self.L):
            s = self.fn(inp, states[k], *self.params(k, 0))
            new.append(s)
            inp = s[0] if isinstance(s, tuple) else s  # (B, H)
        return inp, new

    def forward(self, x: Tensor, lengths: Tensor, states: list[State]) -> tuple[Tensor, list[State]]:
        """``x`` ``(T, B, I)`` time-major → ``(output (T, B, D·H), final states)``; output is zero past each end."""
        from torch._higher_order_ops.scan import scan

        T = x.shape[0]
        valid = length_mask(lengths, T, time_major=True, device=x.device)  # (T, B)
        keep = valid.unsqueeze(-1)  # (T, B, 1)
        rev = None
        if self.D == 2:
            steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
            rev = torch.where(valid, lengths.unsqueeze(0) - 1 - steps, steps)  # (T, B)
        finals: list[State] = []
        layer_in = x
        for k in range(self.L):
            outs = []
            for d in range(self.D):
                inp = layer_in if d == 0 else _gather_time(layer_in, rev)
                params = self.params(k, d)

                def body(state: State, xs: tuple[Tensor, Tensor], params=params) -> tuple[State, Tensor]:
                    x_t, keep_t = xs  # (B, I), (B, 1)
                    new = self.fn(x_t, state, *params)
                    if isinstance(new, tuple):  # past a sequence's end the state is carried unchanged
                        new = tuple(torch.where(keep_t, a, b) for a, b in zip(new, state, strict=True))
                        return new, new[0].clone()
                    new = torch.where(keep_t, new, state)
                    return new, new.clone()

                final, hs = scan(body, states[k * self.D + d], (inp, keep))  # hs (T, B, H)
                outs.append(hs if d == 0 else _gather_time(hs, rev))
                finals.append(final)
            layer_in = outs[0] if self.D == 1 else torch.cat(outs, dim=2)  # (T, B, D·H)
        return layer_in * keep.to(layer_in.dtype), finals


def _gather_time(x: Tensor, idx: Tensor) -> Tensor:
    """``x`` ``(T, B, F)`` reordered in time per row by ``idx`` ``(T, B)``."""
    return x.gather(0, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # (T, B, F)
