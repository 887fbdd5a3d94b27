"""One time step of each recurrent cell, written from the lecture's equations in torch.nn's convention, and
ONE table of the built-in cells (:data:`CELLS`) that the layers, engine, export, convert and bench read.

Shape symbols: B batch, I input features, H hidden size, G gates. A cell maps ``(x_t, state) -> state``; the layer
in :mod:`rnnkit.layers` runs it over time. Each cell is also a plain function (``rnn_step``, ``lstm_step``,
``gru_step``) that takes the weights explicitly: the cell modules, the layers' autograd loop and export's ONNX
step all call these very functions (``CellSpec.step``), so the arithmetic of a step is written once. The engine's
own BPTT (:mod:`rnnkit.engine`) keeps its own in-place forward and hand-written backward for speed; tests walk
:data:`CELLS` and prove, in float64, forward and backward (gradcheck included), that it agrees with ``step``.

Weights follow torch.nn exactly: ``weight_ih`` ``(G·H, I)``, ``weight_hh`` ``(G·H, H)``, ``bias_ih`` and
``bias_hh`` ``(G·H,)`` with ``G`` gates packed in torch's order (LSTM ``i, f, g, o``; GRU ``r, z, n``), all
initialised from ``U(−1/√H, 1/√H)``. So ``cell.load_state_dict(torch.nn.LSTMCell(...).state_dict())`` works.

Adding a built-in cell (a new kind in an existing family, e.g. another nonlinearity or GRU form):

1. write its step function here (``step(x, state, w_ih, w_hh, b_ih, b_hh) -> state``) and accept its option in
   the family's cell and layer constructors (``RNNCell``/``RNN`` ``nonlinearity``, ``GRUCell``/``GRU`` ``reset``);
2. add one :class:`CellSpec` to :data:`CELLS`. Layers (loop path), cells, export (ONNX), convert (Keras), bench
   and the table-walking tests pick it up from there;
3. only if it should be fast: an own-BPTT kernel in :mod:`rnnkit.engine` (``OWN_KERNELS[kind]``); without one,
   ``engine="auto"``/``"own"`` run the autograd loop over ``step``. Name a ``fused`` torch kernel only where the
   math is exactly torch.nn's.

A new *family* (a new layer class) also needs its cell class here and its layer class in :mod:`rnnkit.layers`
(a subclass of the torch-layout base, a few lines), and a ``--model`` entry in :mod:`rnnkit.tasks.registry`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

__all__ = [
    "CELLS",
    "ArgTypeError",
    "CellSpec",
    "GRUCell",
    "LSTMCell",
    "OutputLayer",
    "RNNCell",
    "ShapeError",
    "gru_step",
    "lstm_step",
    "note_quantization",
    "rnn_step",
    "spec_of",
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
    w_hr: Tensor | None = None,
) -> LSTMState:
    """LSTM step; x ``(B, I)``, state ``(h, c)`` each ``(B, H)`` → ``(h', c')``. Gates packed ``i, f, g, o``.

    With torch.nn's projection ``w_hr`` ``(P, H)`` (``LSTM(proj_size=P)``): ``h' = W_hr (o ⊙ tanh(c'))`` and ``h``
    is ``(B, P)``, so ``w_hh`` is ``(4H, P)``.
    """
    h, c = state
    gates = nn.functional.linear(x, w_ih, b_ih) + nn.functional.linear(h, w_hh, b_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # 4 × (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)  # (B, H)
    if w_hr is not None:
        h = nn.functional.linear(h, w_hr)  # (B, P)
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


def note_quantization(module: nn.Module) -> None:
    """Say, in one line, that torch.ao quantization leaves ``module`` (an rnnkit cell or layer) in float.

    torch's ``quantize_dynamic``/``prepare`` pick modules by their exact class (``type(m) in spec``, and
    ``from_float`` accepts only ``type(m) is nn.LSTM``), so every subclass stays float without a word, and they call
    no code of the module except setting its ``qconfig``: that assignment is where rnnkit says so.
    """
    warnings.warn(
        f"rnnkit.{type(module).__name__} stays in float under torch.ao.quantization, which matches torch.nn's "
        "classes exactly: quantize rnnkit.layers.to_torch(model) instead",
        UserWarning,
        stacklevel=4,
    )


class _CellBase(nn.Module):
    """Shared parameters and checks of the built-in cells (``G`` gates of size ``H``, from :data:`CELLS`)."""

    _family: str = ""  # CellSpec.family: the table entries this class can be

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "qconfig":  # only torch.ao.quantization sets it: see note_quantization
            note_quantization(self)
        super().__setattr__(name, value)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        nn.Module.__init__(self)  # not super(): the cells also subclass torch.nn's (isinstance) and build their own
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

    @property
    def cell_spec(self) -> CellSpec:
        """This cell's entry in :data:`CELLS` (from its class and options such as ``reset``)."""
        return _find_spec(self._family, self)

    @property
    def num_gates(self) -> int:
        """G: gate blocks packed in the weights."""
        return self.cell_spec.num_gates

    def reset_parameters(self) -> None:
        """torch.nn's init: every weight and bias from ``U(−1/√H, 1/√H)``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def initial_state(self, batch_size: int) -> Tensor | tuple[Tensor, ...]:
        """Zero state: ``h`` ``(B, H)``, or a tuple of them (LSTM's ``(h, c)``), on the parameters' device/dtype."""
        z = self.weight_hh.new_zeros(batch_size, self.hidden_size)
        arity = self.cell_spec.state_arity
        return z if arity == 1 else (z, *(z.clone() for _ in range(arity - 1)))

    def forward(self, x: Tensor, state: Tensor | tuple[Tensor, ...] | None = None):
        """One step through the table's step function: ``x`` ``(B, I)`` or unbatched ``(I,)``, state (None: zeros)
        shaped like ``x`` (``(B, H)`` or ``(H,)``) → new state of that shape, as torch.nn's cells."""
        unbatched = self._check_input(x, state)
        if unbatched:  # torch.nn's cells take one example as (I,) with (H,) states
            x = x.unsqueeze(0)  # (1, I)
            if state is not None:
                state = tuple(s.unsqueeze(0) for s in state) if isinstance(state, tuple) else state.unsqueeze(0)
        if state is None:
            state = self.initial_state(x.shape[0])
        new = self.cell_spec.step(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        if unbatched:
            return tuple(s.squeeze(0) for s in new) if isinstance(new, tuple) else new.squeeze(0)
        return new

    def _check_input(self, x: Tensor, state: Tensor | tuple[Tensor, ...] | None) -> bool:
        """Check shapes as torch.nn's cells do (same exception types); returns whether ``x`` is unbatched."""
        name = type(self).__name__
        if x.dim() not in (1, 2):
            raise ValueError(
                f"{name}: expected input of shape (B, {self.input_size}) or unbatched ({self.input_size},), "
                f"got {tuple(x.shape)} ({x.dim()}-D)"
            )
        if x.shape[-1] != self.input_size:
            raise ShapeError(
                f"{name}: expected input of shape (B, {self.input_size}) or unbatched ({self.input_size},), "
                f"got {tuple(x.shape)}"
            )
        want = (x.shape[0], self.hidden_size) if x.dim() == 2 else (self.hidden_size,)
        for s in state if isinstance(state, (tuple, list)) else (state,):
            if s is None:
                continue
            if s.dim() not in (1, 2):
                raise ValueError(f"{name}: expected state of shape {want}, got {tuple(s.shape)} ({s.dim()}-D)")
            if tuple(s.shape) != want:
                raise ShapeError(f"{name}: expected state of shape {want}, got {tuple(s.shape)}")
        return x.dim() == 1

    def to_torch(self) -> nn.Module:
        """The torch.nn cell computing exactly this one, sharing its parameters (for TorchScript, quantization).
        ``ValueError`` where torch.nn has none (``GRUCell(reset="before")``)."""
        spec = self.cell_spec
        if spec.torch_cell is None:
            raise ValueError(f"{type(self).__name__} of kind {spec.kind!r} has no torch.nn counterpart")
        peer = spec.torch_cell(self.input_size, self.hidden_size, self.bias, device="meta", **dict(spec.torch_options))
        for name, p in self.named_parameters(recurse=False):
            setattr(peer, name, p)
        return peer.train(self.training)

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script calls this: the step functions are plain Python (partial, Optional unions), so the
        # script holds the equal torch.nn cell with these very parameters
        return self.to_torch()

    def step(self, x: Tensor, state=None):
        """Alias of ``forward``: one time step, for streaming and sampling."""
        return self(x, state)

    def extra_repr(self) -> str:  # torch.nn's RNNCellBase.extra_repr
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class RNNCell(_CellBase, nn.RNNCell):
    r"""The lecture's vanilla RNN step (one gate, ``G = 1``).

    .. math:: h_l = \tanh(W_x x_l + b_x + W_h h_{l-1} + b_h)

    ``W_x`` is ``weight_ih`` ``(H, I)``, ``W_h`` is ``weight_hh`` ``(H, H)``; the lecture's single ``b_h`` is
    split into ``bias_ih + bias_hh`` as in torch.nn. ``nonlinearity="relu"`` uses ReLU instead of tanh.
    The output layer ``y_l = W_y h_l + b_y`` is :class:`OutputLayer`.

    Args:
        input_size: I. hidden_size: H. bias: add ``bias_ih`` and ``bias_hh``. nonlinearity: ``"tanh"|"relu"``.

    Shapes: ``x`` ``(B, I)``, ``h`` ``(B, H)`` or None (zeros) → ``h'`` ``(B, H)``. Unbatched: ``(I,)``, ``(H,)``.
    Init: ``U(−1/√H, 1/√H)`` for every parameter.
    """

    _family = "rnn"

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
        return super().forward(x, h)


class LSTMCell(_CellBase, nn.LSTMCell):
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
    Unbatched: ``(I,)``, ``(H,)`` each.
    Init: ``U(−1/√H, 1/√H)`` for every parameter.
    """

    _family = "lstm"

    def forward(self, x: Tensor, state: LSTMState | None = None) -> LSTMState:
        return super().forward(x, state)


class GRUCell(_CellBase, nn.GRUCell):
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

    Shapes: ``x`` ``(B, I)``, ``h`` ``(B, H)`` or None (zeros) → ``h'`` ``(B, H)``. Unbatched: ``(I,)``, ``(H,)``.
    Init: ``U(−1/√H, 1/√H)`` for every parameter.
    """

    _family = "gru"

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
        return super().forward(x, h)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.reset == "after" else f", reset={self.reset!r}")


# ---------------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class CellSpec:
    """One built-in cell kind: everything the layers, engine, export, convert and bench need to know about it.

    Attributes:
        kind: the key in :data:`CELLS` and the engine's name (``rnn_tanh``, ``rnn_relu``, ``lstm``, ``gru``,
            ``gru_before``).
        family: ``rnn`` | ``lstm`` | ``gru``: the cell class (``RNNCell``…), the layer class (``RNN``…; torch.nn
            uses the same names) and the Keras family.
        model: the ``--model`` / bench name (``rnn``, ``lstm``, ``gru``, ``gru-before``), None if not offered.
        gates: gate blocks in torch's packing order of ``weight_ih`` ``(G·H, I)``/``weight_hh``/biases; G = len.
        state: names of the state tensors, each ``(B, H)``: ``("h",)`` or ``("h", "c")`` (also export's names).
        options: the rnnkit cell/layer constructor options that select this kind, as ``(name, value)`` pairs.
        cell: the rnnkit cell class.
        step: ``step(x (B, I), state, w_ih, w_hh, b_ih, b_hh) -> state``: THE arithmetic of one step.
        torch_layer, torch_cell: the torch.nn classes computing exactly this (None: torch.nn has none).
        torch_options: the torch.nn constructor/attribute options that select this kind.
        fused: name of the exact ``torch._VF`` kernel (``rnn_tanh``, ``lstm``, …), None if there is none.
        hidden_bias_gated: the last gate's hidden bias is multiplied by a gate (GRU reset-after: ``r ⊙ (W_hn h +
            b_hn)``), so ``b_ih + b_hh`` cannot be folded there and Keras keeps two biases.
        keras: the Keras 3 layer class; keras_gates: Keras' gate order, in torch's gate names;
            keras_config: the Keras layer arguments fixed by the kind (activations, ``reset_after``).
    """

    kind: str
    family: str
    model: str | None
    gates: tuple[str, ...]
    state: tuple[str, ...]
    options: tuple[tuple[str, Any], ...]
    cell: type[_CellBase]
    step: Callable[..., Tensor | tuple[Tensor, ...]]
    torch_layer: type[nn.Module] | None
    torch_cell: type[nn.Module] | None
    torch_options: tuple[tuple[str, Any], ...]
    fused: str | None
    hidden_bias_gated: bool
    keras: str
    keras_gates: tuple[str, ...]
    keras_config: tuple[tuple[str, Any], ...]

    @property
    def num_gates(self) -> int:
        """G: how many ``H``-row gate blocks the packed weights hold."""
        return len(self.gates)

    @property
    def state_arity(self) -> int:
        """1 for ``h``, 2 for ``(h, c)``."""
        return len(self.state)


def _rnn_spec(nonlinearity: str, model: str | None) -> CellSpec:
    return CellSpec(
        kind="rnn_" + nonlinearity,
        family="rnn",
        model=model,
        gates=("h",),
        state=("h",),
        options=(("nonlinearity", nonlinearity),),
        cell=RNNCell,
        step=partial(rnn_step, nonlinearity=nonlinearity),
        torch_layer=nn.RNN,
        torch_cell=nn.RNNCell,
        torch_options=(("nonlinearity", nonlinearity),),
        fused="rnn_" + nonlinearity,
        hidden_bias_gated=False,
        keras="SimpleRNN",
        keras_gates=("h",),
        keras_config=(("activation", nonlinearity),),
    )


def _gru_spec(reset: str) -> CellSpec:
    after = reset == "after"
    return CellSpec(
        kind="gru" if after else "gru_before",
        family="gru",
        model="gru" if after else "gru-before",
        gates=("r", "z", "n"),
        state=("h",),
        options=(("reset", reset),),
        cell=GRUCell,
        step=partial(gru_step, reset=reset),
        torch_layer=nn.GRU if after else None,
        torch_cell=nn.GRUCell if after else None,
        torch_options=(),
        fused="gru" if after else None,
        hidden_bias_gated=after,
        keras="GRU",
        keras_gates=("z", "r", "n"),
        keras_config=(("activation", "tanh"), ("recurrent_activation", "sigmoid"), ("reset_after", after)),
    )


CELLS: dict[str, CellSpec] = {
    spec.kind: spec
    for spec in (
        _rnn_spec("tanh", "rnn"),
        _rnn_spec("relu", None),
        CellSpec(
            kind="lstm",
            family="lstm",
            model="lstm",
            gates=("i", "f", "g", "o"),
            state=("h", "c"),
            options=(),
            cell=LSTMCell,
            step=lstm_step,
            torch_layer=nn.LSTM,
            torch_cell=nn.LSTMCell,
            torch_options=(),
            fused="lstm",
            hidden_bias_gated=False,
            keras="LSTM",
            keras_gates=("i", "f", "g", "o"),  # Keras calls g "c"
            keras_config=(("activation", "tanh"), ("recurrent_activation", "sigmoid")),
        ),
        _gru_spec("after"),
        _gru_spec("before"),
    )
}
"""The built-in cells by kind, in report order. Read by layers, engine, export, convert, bench and the tests."""


def _find_spec(family: str, module: Any) -> CellSpec:
    """The entry of ``family`` whose options ``module`` has (as attributes, e.g. ``module.reset == "before"``)."""
    for spec in CELLS.values():
        if spec.family == family and all(getattr(module, k, None) == v for k, v in spec.options):
            return spec
    opts = ", ".join(
        f"{k}={getattr(module, k, None)!r}" for s in CELLS.values() if s.family == family for k, _ in s.options
    )
    raise ValueError(f"no built-in {family} cell with {opts or 'these options'}")


def spec_of(module: Any) -> CellSpec | None:
    """The :data:`CELLS` entry that ``module`` computes, or None.

    ``module`` is an rnnkit built-in cell or layer (it names its entry: ``cell_spec``) or a torch.nn
    ``RNN``/``LSTM``/``GRU`` layer or cell (matched by class and ``torch_options``; subclasses included).
    """
    spec = getattr(module, "cell_spec", None)
    if isinstance(spec, CellSpec):
        return spec
    for spec in CELLS.values():
        classes = tuple(c for c in (spec.torch_layer, spec.torch_cell) if c is not None)
        matches = all(getattr(module, k, None) == v for k, v in spec.torch_options)
        if classes and isinstance(module, classes) and matches:
            return spec
    return None


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


class ShapeError(ValueError, RuntimeError):
    """A tensor of the wrong shape. torch.nn raises ``RuntimeError`` there and rnnkit's contract (DESIGN.md §2)
    ``ValueError``: this is both, so code written for either catches it."""


class ArgTypeError(TypeError, ValueError):
    """An argument of the wrong type (``LSTM(3.0, 5)``, float64 input to float32 weights): torch.nn raises
    ``TypeError`` for the first, ``ValueError`` for the second; rnnkit raised the other one before, so this is both
    and code written against either keeps working."""


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgTypeError(f"{name} should be of type int, got: {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer (greater than zero), got {value!r}")
