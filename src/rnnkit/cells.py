"""One time step of each recurrent cell, written from the lecture's equations in torch.nn's convention.

Shape symbols: B batch, I input features, H hidden size. A cell maps ``(x_t, state) -> state``; the layer in
:mod:`rnnkit.layers` runs it over time. Each cell is also a plain function (``rnn_step``, ``lstm_step``,
``gru_step``) that takes the weights explicitly, so layers that hold torch.nn-named flat parameters and the
cell modules share one definition of the arithmetic.

Weights follow torch.nn exactly: ``weight_ih`` ``(G·H, I)``, ``weight_hh`` ``(G·H, H)``, ``bias_ih`` and
``bias_hh`` ``(G·H,)`` with ``G`` gates packed in torch's order (LSTM ``i, f, g, o``; GRU ``r, z, n``), all
initialised from ``U(−1/√H, 1/√H)``. So ``cell.load_state_dict(torch.nn.LSTMCell(...).state_dict())`` works.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

__all__ = [
    "GRUCell",
    "LSTMCell",
    "OutputLayer",
    "RNNCell",
    "gru_step",
    "lstm_step",
    "rnn_step",
]

LSTMState = tuple[Tensor, Tensor]


def rnn_step(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """Vanilla RNN step ``h_l = act(W_x x_l + b_x + W_h h_{l−1} + b_h)``; x ``(B, I)``, h ``(B, H)`` → ``(B, H)``."""
    a = nn.functional.linear(x, w_ih, b_ih) + nn.functional.linear(h, w_hh, b_hh)  # (B, H)
    return torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)


def lstm_step(
    x: Tensor,
    state: LSTMState,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
) -> LSTMState:
    """LSTM step; x ``(B, I)``, state ``(h, c)`` each ``(B, H)`` → ``(h', c')``. Gates packed ``i, f, g, o``."""
    h, c = state
    gates = nn.functional.linear(x, w_ih, b_ih) + nn.functional.linear(h, w_hh, b_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # 4 × (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def gru_step(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    reset: str = "after",
) -> Tensor:
    """GRU step; x ``(B, I)``, h ``(B, H)`` → ``(B, H)``. Gates packed ``r, z, n``; see :class:`GRUCell`."""
    gi = nn.functional.linear(x, w_ih, b_ih)  # (B, 3H)
    gi_r, gi_z, gi_n = gi.chunk(3, dim=1)
    H = h.shape[1]
    if reset == "after":
        gh = nn.functional.linear(h, w_hh, b_hh)  # (B, 3H)
        gh_r, gh_z, gh_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(gi_r + gh_r)
        z = torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + r * gh_n)
    else:
        b_rz, b_n = (None, None) if b_hh is None else (b_hh[: 2 * H], b_hh[2 * H :])
        gh = nn.functional.linear(h, w_hh[: 2 * H], b_rz)  # (B, 2H)
        gh_r, gh_z = gh.chunk(2, dim=1)
        r = torch.sigmoid(gi_r + gh_r)
        z = torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + nn.functional.linear(r * h, w_hh[2 * H :], b_n))
    return (1 - z) * n + z * h


class _CellBase(nn.Module):
    """Shared parameters and checks of the built-in cells (``G`` gates of size ``H``)."""

    num_gates: int = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_size("input_size", input_size)
        _check_size("hidden_size", hidden_size)
        kw = {"device": device, "dtype": dtype}
        G = self.num_gates
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = nn.Parameter(torch.empty(G * hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(G * hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G * hidden_size, **kw))
            self.bias_hh = nn.Parameter(torch.empty(G * hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch.nn's init: every weight and bias from ``U(−1/√H, 1/√H)``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def initial_state(self, batch_size: int) -> Tensor:
        """Zero state ``(B, H)`` on the parameters' device and dtype."""
        return self.weight_hh.new_zeros(batch_size, self.hidden_size)

    def _check_input(self, x: Tensor, state: Tensor | tuple[Tensor, ...] | None) -> None:
        name = type(self).__name__
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"{name}: expected input of shape (B, {self.input_size}), got {tuple(x.shape)}")
        want = (x.shape[0], self.hidden_size)
        for s in state if isinstance(state, tuple) else (state,):
            if s is not None and tuple(s.shape) != want:
                raise ValueError(f"{name}: expected state of shape {want}, got {tuple(s.shape)}")

    def step(self, x: Tensor, state=None):
        """Alias of ``forward``: one time step, for streaming and sampling."""
        return self(x, state)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        return s if self.bias else s + ", bias=False"


class RNNCell(_CellBase):
    r"""The lecture's vanilla RNN step (one gate, ``G = 1``).

    .. math:: h_l = \tanh(W_x x_l + b_x + W_h h_{l-1} + b_h)

    ``W_x`` is ``weight_ih`` ``(H, I)``, ``W_h`` is ``weight_hh`` ``(H, H)``; the lecture's single ``b_h`` is
    split into ``bias_ih + bias_hh`` as in torch.nn. ``nonlinearity="relu"`` uses ReLU instead of tanh.
    The output layer ``y_l = W_y h_l + b_y`` is :class:`OutputLayer`.

    Args:
        input_size: I. hidden_size: H. bias: add ``bias_ih`` and ``bias_hh``. nonlinearity: ``"tanh"|"relu"``.

    Shapes: ``x`` ``(B, I)``, ``h`` ``(B, H)`` or None (zeros) → ``h'`` ``(B, H)``.
    Init: ``U(−1/√H, 1/√H)`` for every parameter.
    """

    num_gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        self._check_input(x, h)
        if h is None:
            h = self.initial_state(x.shape[0])
        return rnn_step(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.nonlinearity)


class LSTMCell(_CellBase):
    r"""LSTM step, the lecture's equations in torch.nn's packing (``G = 4``, gate order ``i, f, g, o``).

    .. math::
        i &= \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \qquad
        f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g &= \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \qquad
        o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' &= f \odot c + i \odot g \qquad h' = o \odot \tanh(c')

    The lecture writes each gate on the concatenation ``[h, x]``: its ``W_f [h, x] + b_f`` is
    ``W_hf h + W_if x + (b_if + b_hf)`` here, and its ``C̃`` is ``g``.

    Shapes: ``x`` ``(B, I)``, state ``(h, c)`` each ``(B, H)`` or None (zeros) → ``(h', c')``.
    Init: ``U(−1/√H, 1/√H)`` for every parameter.
    """

    num_gates = 4

    def initial_state(self, batch_size: int) -> LSTMState:
        """Zero ``(h, c)``, each ``(B, H)``."""
        z = self.weight_hh.new_zeros(batch_size, self.hidden_size)
        return z, z.clone()

    def forward(self, x: Tensor, state: LSTMState | None = None) -> LSTMState:
        self._check_input(x, state)
        if state is None:
            state = self.initial_state(x.shape[0])
        return lstm_step(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class GRUCell(_CellBase):
    r"""GRU step in torch.nn's convention (``G = 3``, gate order ``r, z, n``), with the reset in two places.

    .. math::
        r &= \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \qquad
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n &= \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \quad \text{(reset="after", torch.nn)} \\
        n &= \tanh(W_{in} x + b_{in} + W_{hn} (r \odot h) + b_{hn}) \quad \text{(reset="before", Cho et al. 2014)} \\
        h' &= (1 - z) \odot n + z \odot h

    The lecture's GRU is the ``reset="before"`` form written without biases on the concatenation ``[h, x]``
    and with the update gate flipped:

    ``z_t = σ(W_z [h, x])``, ``r_t = σ(W_r [h, x])``, ``h̃_t = tanh(W [r ⊙ h, x])``,
    ``h_t = (1 − z_t) ⊙ h + z_t ⊙ h̃_t``.

    Mapping (``bias=False``): ``W_r = [W_hr, W_ir]``, ``W = [W_hn, W_in]``, and the lecture's ``W_z`` is
    ``−[W_hz, W_iz]`` because its ``z_t`` is torch's ``1 − z`` (σ(−a) = 1 − σ(a)); ``h̃_t`` is ``n``.

    Args:
        reset: ``"after"`` (default; torch.nn.GRU, cuDNN) or ``"before"`` (the lecture / Cho et al.).

    Shapes: ``x`` ``(B, I)``, ``h`` ``(B, H)`` or None (zeros) → ``h'`` ``(B, H)``.
    Init: ``U(−1/√H, 1/√H)`` for every parameter.
    """

    num_gates = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        reset: Literal["after", "before"] = "after",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if reset not in ("after", "before"):
            raise ValueError(f"reset must be 'after' or 'before', got {reset!r}")
        self.reset = reset
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        self._check_input(x, h)
        if h is None:
            h = self.initial_state(x.shape[0])
        return gru_step(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.reset)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reset={self.reset!r}"


class OutputLayer(nn.Module):
    r"""The lecture's vanilla RNN with its output layer: ``(y_l, h_l) = f_θ(x_l, h_{l−1})``, ``y_l = W_y h_l + b_y``.

    Wraps a cell (``forward(x_t, state)``) or a layer (``forward(x, hx)`` over a sequence) and applies a
    ``torch.nn.Linear`` head to its hidden output. It always returns ``(y, state)``:

    - around a cell: ``x_t`` ``(B, I)`` → ``y_t`` ``(B, O)`` and the cell's new state;
    - around a layer: ``x`` ``(T, B, I)`` (or batch-first) → ``y`` ``(T, B, O)`` and the layer's final state.

    Args:
        core: an rnnkit/torch.nn cell or layer. out_features: O. bias: learn ``b_y``.
    """

    def __init__(
        self,
        core: nn.Module,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_size("out_features", out_features)
        hidden = getattr(core, "hidden_size", None)
        if not isinstance(hidden, int):
            raise TypeError("OutputLayer: core must expose an integer `hidden_size`")
        directions = 2 if getattr(core, "bidirectional", False) else 1
        self.core = core
        self.head = nn.Linear(hidden * directions, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: Tensor, state=None, **kwargs):
        out = self.core(x, state, **kwargs)
        if _is_layer(self.core):
            h_seq, final = out  # (T, B, D·H) or a PackedSequence, final state
            if isinstance(h_seq, PackedSequence):
                return h_seq._replace(data=self.head(h_seq.data)), final
            return self.head(h_seq), final  # (T, B, O)
        new_state = out
        h = new_state[0] if isinstance(new_state, tuple) else new_state  # (B, H)
        return self.head(h), new_state  # (B, O)


def _is_layer(module: nn.Module) -> bool:
    return hasattr(module, "num_layers")


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
