"""Input-gated recurrences: minGRU, minLSTM (Feng et al. 2024) and the diagonal linear recurrence they reduce to.

Shape symbols: T time, B batch, I input features, H hidden size, L layers, D directions (1 or 2).

In these cells no gate reads the previous state, so the recurrence is diagonal and linear,
``h_t = a_t ⊙ h_{t−1} + b_t``, with ``a_t``, ``b_t`` functions of ``x_t`` alone. A layer computes them for all
``T`` steps with one matrix product and runs the recurrence on :func:`rnnkit.engine.scan.linear_scan` (a compiled
loop on the CPU, a log-space parallel scan on accelerators, a PyTorch loop as fallback); ``step`` runs the cell
one step at a time in O(1) memory for sampling and streaming. The layers are :class:`~rnnkit.layers.Recurrent`
layers, so stacking, bidirectionality, dropout between layers, unsorted ``lengths`` (a padded step sets ``a = 1``,
``b = 0``: the state is carried), explicit state in and out, ``forward_states`` and ``step`` work as for the
other layers.

The candidate activation is the papers' ``g(x) = x + ½`` for ``x ≥ 0``, ``σ(x)`` for ``x < 0`` (continuous,
positive, so the states stay positive from a zero start as in the papers' log-space models).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnkit.engine.loop import run_loop
from rnnkit.engine.scan import SCAN_METHODS, fused_min_scan, fused_min_step, linear_scan, resolve_method
from rnnkit.layers.recurrent import Recurrent

__all__ = [
    "LinearRecurrence",
    "LinearRecurrenceCell",
    "MinGRU",
    "MinGRUCell",
    "MinLSTM",
    "MinLSTMCell",
    "g",
]

_METHODS = (*SCAN_METHODS, "loop")


def g(x: Tensor) -> Tensor:
    """The papers' candidate activation: ``x + ½`` for ``x ≥ 0``, ``σ(x)`` below (positive, continuous)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


class _MinCell(nn.Module):
    """Shared parts of the minimal cells: one input projection ``weight_ih`` ``(G·H, I)``, ``bias_ih`` ``(G·H)``."""

    gates = 2
    fused: str | None = None  # read from the class itself only (a subclass may change the gate math)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(self.gates * hidden_size, input_size, **kw))
        self.bias_ih = nn.Parameter(torch.empty(self.gates * hidden_size, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's RNN init: every weight and bias uniform in ``(−1/√H, 1/√H)``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def coefficients(self, x: Tensor, log_space: bool = False) -> tuple[Tensor, Tensor]:
        """``(a, b)`` of ``h_t = a ⊙ h_{t−1} + b`` for inputs ``x`` ``(..., I)``, each ``(..., H)``.

        With ``log_space``, ``log a`` in its stable form instead of ``a`` (for the log-space scan).
        """
        raise NotImplementedError

    def forward(self, x_t: Tensor, h: Tensor | None = None) -> Tensor:
        """One step: ``x_t`` ``(B, I)``, ``h`` ``(B, H)`` or None (zeros) → ``h_t`` ``(B, H)``."""
        a, b = self.coefficients(x_t)
        if h is None:
            return b
        return a * h + b

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}"


class MinGRUCell(_MinCell):
    r"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"), one step; the update gate reads the input only.

    .. math::
        z_t = σ(W_z x_t + b_z), \quad \tilde h_t = g(W_h x_t + b_h), \quad
        h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ \tilde h_t

    so ``a_t = 1 − z_t`` (``log a_t = −softplus(k_t)`` in log space) and ``b_t = z_t ⊙ \tilde h_t``.

    Args: input_size I, hidden_size H, bias (``bias_ih``; there is no recurrent weight), device, dtype.
    Parameters: ``weight_ih`` ``(2H, I)``, gate order ``[z, h̃]``; ``bias_ih`` ``(2H,)``; init uniform ±1/√H.
    Shapes: ``x_t`` ``(B, I)``, ``h`` ``(B, H)`` or None → ``h_t`` ``(B, H)``.
    """

    gates = 2
    fused = "mingru"  # the compiled loop's fused kernel (rnnkit.engine.scan.fused_min_scan)

    def coefficients(self, x: Tensor, log_space: bool = False) -> tuple[Tensor, Tensor]:
        k, c = F.linear(x, self.weight_ih, self.bias_ih).chunk(2, dim=-1)  # (..., H) each
        z = torch.sigmoid(k)
        a = -F.softplus(k) if log_space else 1 - z
        return a, z * g(c)


class MinLSTMCell(_MinCell):
    r"""minLSTM (Feng et al. 2024), one step: forget and input gates read the input only and are normalised.

    .. math::
        f_t = σ(W_f x_t + b_f), \quad i_t = σ(W_i x_t + b_i), \quad \tilde h_t = g(W_h x_t + b_h),

        f'_t = \frac{f_t}{f_t + i_t}, \quad i'_t = \frac{i_t}{f_t + i_t}, \quad
        h_t = f'_t ⊙ h_{t−1} + i'_t ⊙ \tilde h_t

    computed stably as ``d = softplus(−k_f) − softplus(−k_i)`` (``= log i − log f``), ``f' = σ(−d)``,
    ``i' = σ(d)``, ``log f' = −softplus(d)``. So ``a_t = f'_t`` and ``b_t = i'_t ⊙ \tilde h_t``.

    Parameters: ``weight_ih`` ``(3H, I)``, gate order ``[f, i, h̃]``; ``bias_ih`` ``(3H,)``; init uniform ±1/√H.
    Shapes: ``x_t`` ``(B, I)``, ``h`` ``(B, H)`` or None → ``h_t`` ``(B, H)``.
    """

    gates = 3
    fused = "minlstm"

    def coefficients(self, x: Tensor, log_space: bool = False) -> tuple[Tensor, Tensor]:
        kf, ki, c = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, dim=-1)  # (..., H) each
        d = F.softplus(-kf) - F.softplus(-ki)  # log i − log f
        a = -F.softplus(d) if log_space else torch.sigmoid(-d)
        return a, torch.sigmoid(d) * g(c)


class LinearRecurrenceCell(nn.Module):
    """A step of ``h_t = a_t ⊙ h_{t−1} + b_t`` from a user's module computing ``(a_t, b_t)`` from ``x_t``.

    Args:
        coefficients: a module with ``forward(x (..., I)) -> (a, b)``, each ``(..., H)``, applied to whole
            sequences at once by the layer (so it must act on the last axis only). ``a`` may have any sign on
            every path (the parallel scan runs on ``log |a|`` with the signs carried apart where some ``a ≤ 0``).
        hidden_size: H.
    """

    log_space = False  # no stable log form: the layer gives the scan ``a`` itself (rnnkit.engine.scan.linear_scan)

    def __init__(self, coefficients: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.coefficient_net = coefficients
        self.hidden_size = hidden_size

    def coefficients(self, x: Tensor, log_space: bool = False) -> tuple[Tensor, Tensor]:
        a, b = self.coefficient_net(x)
        return (torch.log(a) if log_space else a), b

    def forward(self, x_t: Tensor, h: Tensor | None = None) -> Tensor:
        a, b = self.coefficient_net(x_t)
        return b if h is None else a * h + b


class LinearRecurrence(Recurrent):
    """A stack of diagonal linear recurrences ``h_t = a_t ⊙ h_{t−1} + b_t``, ``(a_t, b_t)`` functions of ``x_t``.

    Args:
        input_size: I. hidden_size: H.
        coefficients: ``coefficients(input_size, hidden_size, device=..., dtype=...)`` builds, per layer and
            direction, either a cell with ``coefficients(x, log_space) -> (a or log a, b)`` and a step
            ``forward(x_t, h) -> h`` (as :class:`MinGRUCell`), or any module ``x (..., I_l) -> (a, b)``
            (wrapped in :class:`LinearRecurrenceCell`).
        num_layers, batch_first, dropout, bidirectional, device, dtype: as :class:`~rnnkit.layers.Recurrent`.
        method: ``"auto"`` (the fastest exact path for the device: compiled loop on the CPU, log-space scan on
            accelerators), ``"compiled"``, ``"sequential"`` (PyTorch loop), ``"scan"`` (log-space parallel
            scan; any sign of ``a``), or ``"loop"`` (autograd through the cell stepped one step at a time — the
            reference). See :mod:`rnnkit.engine.scan`.

    Shapes (time-major; swap T and B with ``batch_first``): input ``(T, B, I)``, unbatched ``(T, I)`` or a
    PackedSequence; ``hx`` ``(L·D, B, H)`` or None (zeros); ``lengths`` ``(B,)`` in any order. Returns
    ``(output (T, B, D·H), h_n (L·D, B, H))``; ``h_n`` is each sequence's state at its last valid step.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        coefficients: Callable[..., nn.Module],
        num_layers: int = 1,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        method: str = "auto",
    ) -> None:
        def factory(i: int, h: int, device=None, dtype=None) -> nn.Module:
            made = coefficients(i, h, device=device, dtype=dtype)
            return made if hasattr(made, "coefficients") else LinearRecurrenceCell(made, h)

        super().__init__(factory, input_size, hidden_size, num_layers, batch_first, dropout, bidirectional, device,
                         dtype)  # fmt: skip
        self.method = method

    @property
    def method(self) -> str:
        """The path that runs whole sequences: one of ``auto``, ``compiled``, ``sequential``, ``scan``, ``loop``."""
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        if value not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {value!r}")
        self._method = value

    def _run_direction(
        self, k: int, d: int, x: Tensor, state0: Tensor, mask: Tensor | None, record: list | None
    ) -> tuple[Tensor, Tensor]:
        """One direction of one layer over time-major ``x`` ``(T, B, I_l)``: ``(hs (T, B, H), h_T (B, H))``."""
        cell = self.cells[k * self.num_directions + d]
        if record is not None or self._method == "loop" or self._engine == "loop":  # engine="loop" as elsewhere
            seq: list | None = None if record is None else []
            hs, final = run_loop(cell, x, state0, mask, seq)
            if record is not None:
                record[k].append(seq)
            return hs, final
        path = resolve_method(self._method, x.device, x.dtype)
        fused = type(cell).__dict__.get("fused")  # the class itself: a subclass may change the gate math
        if path == "compiled" and fused is not None and not torch.compiler.is_compiling():
            # the gate math inside the C++ loop: one matrix product, then one pass forward and one backward
            hs = fused_min_scan(fused, x, cell.weight_ih, cell.bias_ih, state0, mask)  # (T, B, H)
            return hs, hs[-1]
        log_space = path == "scan" and getattr(cell, "log_space", True)  # else the scan takes a of any sign
        a, b = cell.coefficients(x, log_space)  # (T, B, H) each: one matrix product over all T·B rows
        if mask is not None:  # a padded step carries the state: a = 1 (log a = 0), b = 0
            a = torch.where(mask > 0, a, 0.0 if log_space else 1.0)
            b = b * mask
        hs = linear_scan(a, b, state0, path, log_a=log_space)  # (T, B, H)
        return hs, hs[-1]

    def step(self, x_t: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step of the whole stack (unidirectional): ``x_t`` ``(B, I)``, ``state`` ``(L, B, H)`` or None.

        Returns ``(y_t (B, H), state (L, B, H))``, as :meth:`Recurrent.step`. For minGRU/minLSTM on the CPU without
        autograd (sampling, streaming under ``torch.no_grad()``) the whole stack's step is one C++ call (a matrix
        product and the fused gates per layer), with the same numbers as the cell's step and the whole sequence to
        rounding (tested): the gate and recurrence code and its order are the whole sequence's; only the BLAS may
        compute a product of a few rows (``B`` small) with another kernel than the sequence's ``T·B`` rows, about one
        float32 ulp of the projection apart (float64: equal to 1e-10).
        """
        fused = self._step_kind(x_t, state)
        if fused is None:
            return super().step(x_t, state)
        cells = self.cells
        if state is None:
            state = x_t.new_zeros(self.num_layers, x_t.shape[0], self.hidden_size)
        new = fused_min_step(fused, x_t, [c.weight_ih for c in cells], [c.bias_ih for c in cells], state)
        return new[-1], new

    def _step_kind(self, x_t: Tensor, state: Tensor | None) -> str | None:
        """The fused kernel that can run this step, or None (the generic step: autograd, dropout, checks)."""
        if torch.is_grad_enabled() and (x_t.requires_grad or any(p.requires_grad for p in self.parameters())):
            return None
        if self.bidirectional or (self.training and self.dropout > 0 and self.num_layers > 1):
            return None
        kinds = {type(c).__dict__.get("fused") for c in self.cells}
        if len(kinds) != 1 or None in kinds or self._engine == "loop" or self._method not in ("auto", "compiled"):
            return None
        if not isinstance(x_t, Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.input_size:
            return None  # the generic step says what is wrong
        if x_t.dtype != self.cells[0].weight_ih.dtype or torch.compiler.is_compiling():
            return None
        if state is not None and (
            not isinstance(state, Tensor)
            or tuple(state.shape) != (self.num_layers, x_t.shape[0], self.hidden_size)
            or state.dtype != x_t.dtype
        ):
            return None
        if resolve_method("auto", x_t.device, x_t.dtype) != "compiled":
            return None
        return kinds.pop()

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", method={self._method!r}" if self._method != "auto" else "")


class MinGRU(LinearRecurrence):
    """minGRU layers (:class:`MinGRUCell` per layer and direction); the API of :class:`LinearRecurrence`.

    ``MinGRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None, *, method="auto")``. Parameters ``cells.{l·D+d}.weight_ih``
    ``(2H, I_l)`` and ``.bias_ih`` (gate order ``[z, h̃]``); ``I_l`` is I for the first layer, D·H above.
    """

    cell_class: type[_MinCell] = MinGRUCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        method: str = "auto",
    ) -> None:
        cls = self.cell_class

        def cell(i: int, h: int, device=None, dtype=None) -> nn.Module:
            return cls(i, h, bias, device=device, dtype=dtype)

        super().__init__(input_size, hidden_size, cell, num_layers, batch_first, dropout, bidirectional, device,
                         dtype, method=method)  # fmt: skip
        self.bias = bool(bias)


class MinLSTM(MinGRU):
    """minLSTM layers (:class:`MinLSTMCell` per layer and direction); the API of :class:`MinGRU`.

    Parameters ``cells.{l·D+d}.weight_ih`` ``(3H, I_l)`` and ``.bias_ih``, gate order ``[f, i, h̃]``. The state is
    ``h`` alone (minLSTM has no separate cell state).
    """

    cell_class = MinLSTMCell
