"""The built-in layers RNN, LSTM, GRU: drop-in for torch.nn, everything cell-specific read from the cell table.

Shape symbols: T time, B batch, I input features, H hidden size, L layers, D directions, G gates. Gate count,
state arity, fused kernel and step function come from the layer's :data:`rnnkit.cells.CELLS` entry
(:attr:`cell_spec`), picked by the class (its family) and options (``nonlinearity``, ``reset``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from rnnkit import engine as _engine
from rnnkit.cells import CELLS, CellSpec, _find_spec
from rnnkit.layers.recurrent import Engine, Recurrent, State

__all__ = ["GRU", "LSTM", "RNN", "layer_for"]


class _TorchLayout(Recurrent):
    """Built-in layers: torch.nn's flat parameters and the fused fast path, all read from the cell's
    :data:`~rnnkit.cells.CELLS` entry (gate count, state arity, fused kernel, step function)."""

    _family: ClassVar[str] = ""  # CellSpec.family; the constructor's options (reset, nonlinearity) pick the entry

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        engine: Engine,
    ) -> None:
        super().__init__(
            None,
            input_size,
            hidden_size,
            num_layers,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
            engine=engine,
        )
        self.bias = bool(bias)
        self.proj_size = 0  # torch.nn attribute; projections are not supported
        kw = {"device": device, "dtype": dtype}
        G = self.cell_spec.num_gates * hidden_size
        self._flat_weights_names: list[str] = []
        for k in range(num_layers):
            for d in range(self.num_directions):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                shapes = [("weight_ih", (G, self._layer_input_size(k))), ("weight_hh", (G, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (G,)), ("bias_hh", (G,))]
                for name, shape in shapes:
                    self.register_parameter(name + sfx, nn.Parameter(torch.empty(shape, **kw)))
                    self._flat_weights_names.append(name + sfx)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's init: every weight and bias from ``U(−1/√H, 1/√H)``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @property
    def cell_spec(self) -> CellSpec:
        """This layer's entry in :data:`rnnkit.cells.CELLS` (from its class and options such as ``reset``)."""
        return _find_spec(self._family, self)

    @property
    def _state_arity(self) -> int:  # read by the task models too (2: LSTM's (h, c))
        return self.cell_spec.state_arity

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """Parameters grouped per (layer, direction), as torch.nn's ``all_weights``."""
        n = 4 if self.bias else 2
        flat = [getattr(self, name) for name in self._flat_weights_names]
        return [flat[i : i + n] for i in range(0, len(flat), n)]

    def flatten_parameters(self) -> None:
        """No-op kept for torch.nn compatibility (the fused call takes the parameters as they are)."""

    def _cell_params(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        if self.bias:
            return (
                getattr(self, "weight_ih" + sfx),
                getattr(self, "weight_hh" + sfx),
                getattr(self, "bias_ih" + sfx),
                getattr(self, "bias_hh" + sfx),
            )
        return getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx), None, None

    def _builtin_kind(self, layer: int, direction: int) -> str:
        return self.cell_spec.kind

    def _fused_kind(self) -> str | None:
        kind = self.cell_spec.kind
        return kind if kind in _engine.FUSED_KINDS else None

    def _step_fn(self, layer: int, direction: int) -> Callable[[Tensor, State], State]:
        return _engine.bind_step(self.cell_spec.step, self._cell_params(layer, direction))

    def _fused_args(self) -> tuple[Any, ...]:
        flat = [getattr(self, name) for name in self._flat_weights_names]
        return flat, self.bias, self.num_layers, self.dropout, self.training, self.bidirectional

    def _zero_state(self, batch: int, ref: Tensor) -> State:
        w = self.weight_hh_l0
        if self._state_arity == 1:
            return w.new_zeros(batch, self.hidden_size)
        return tuple(w.new_zeros(batch, self.hidden_size) for _ in range(self._state_arity))

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self.bias else s + ", bias=False"


class RNN(_TorchLayout):
    """Elman RNN layer, drop-in for ``torch.nn.RNN``: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)``.

    Args: as torch.nn.RNN — ``input_size`` I, ``hidden_size`` H, ``num_layers`` L, ``nonlinearity``
    (``"tanh"|"relu"``), ``bias``, ``batch_first``, ``dropout``, ``bidirectional``, ``device``, ``dtype`` — plus
    keyword ``engine`` (see the module docstring). Parameters ``weight_ih_l{k}[_reverse]`` ``(H, I_k)``,
    ``weight_hh_l{k}`` ``(H, H)``, ``bias_ih_l{k}``/``bias_hh_l{k}`` ``(H,)``. Shapes: see :class:`Recurrent`.
    """

    _family = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        engine: Engine = "auto",
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype)
        super().__init__(*args, engine)


class LSTM(_TorchLayout):
    """LSTM layer, drop-in for ``torch.nn.LSTM`` (no ``proj_size``); gates packed ``i, f, g, o``.

    Equations: :class:`~rnnkit.cells.LSTMCell`. Parameters ``weight_ih_l{k}[_reverse]`` ``(4H, I_k)``,
    ``weight_hh_l{k}`` ``(4H, H)``, biases ``(4H,)``. ``hx`` and ``h_n`` are tuples ``(h, c)`` of ``(L·D, B, H)``.
    Args and shapes: as :class:`RNN` without ``nonlinearity``.
    """

    _family = "lstm"

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
        engine: Engine = "auto",
    ) -> None:
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype)
        super().__init__(*args, engine)


class GRU(_TorchLayout):
    """GRU layer, drop-in for ``torch.nn.GRU``, with ``reset="before"`` for the lecture's (Cho et al.) GRU.

    Equations and the mapping to the lecture's notation: :class:`~rnnkit.cells.GRUCell`. Gates packed ``r, z, n``;
    parameters as torch.nn.GRU (``(3H, I_k)``, ``(3H, H)``, ``(3H,)``). ``reset="after"`` runs torch's fused kernel,
    ``reset="before"`` rnnkit's own BPTT. Args and shapes: as :class:`RNN` without ``nonlinearity``.
    """

    _family = "gru"

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
        reset: Literal["after", "before"] = "after",
        engine: Engine = "auto",
    ) -> None:
        if reset not in ("after", "before"):
            raise ValueError(f"reset must be 'after' or 'before', got {reset!r}")
        self.reset = reset
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype)
        super().__init__(*args, engine)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.reset == "after" else ", reset='before'")


def layer_for(kind: str, input_size: int, hidden_size: int, *args: Any, **kwargs: Any) -> _TorchLayout:
    """The built-in layer (:class:`RNN`, :class:`LSTM`, :class:`GRU`) that runs the :data:`~rnnkit.cells.CELLS`
    entry ``kind``, with its options set (e.g. ``layer_for("gru_before", I, H)`` is ``GRU(I, H, reset="before")``);
    other arguments as the layer's."""
    if kind not in CELLS:
        raise ValueError(f"unknown cell kind {kind!r}; expected one of {tuple(CELLS)}")
    spec = CELLS[kind]
    cls = next(c for c in (RNN, LSTM, GRU) if c._family == spec.family)
    return cls(input_size, hidden_size, *args, **dict(spec.options), **kwargs)
