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
from rnnkit.cells import CELLS, CellSpec, _CellBase, _check_size, _find_spec, note_quantization
from rnnkit.layers.recurrent import Engine, Recurrent, State, _permute

__all__ = ["GRU", "LSTM", "RNN", "layer_for", "to_torch"]


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
        proj_size: int,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        engine: Engine,
    ) -> None:
        # torch.nn.RNNBase's argument checks, with its exception types (module_db's error samples test them)
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
        _check_size("input_size", input_size)
        _check_size("hidden_size", hidden_size)
        if isinstance(proj_size, bool) or not isinstance(proj_size, int):
            raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
        if proj_size < 0:
            raise ValueError(f"proj_size should be a positive integer or zero to disable projections, got {proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size has to be smaller than hidden_size, got {proj_size} >= {hidden_size}")
        self.proj_size = proj_size  # before the engine is set: "own" refuses projections
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
        self.bias = bias
        kw = {"device": device, "dtype": dtype}
        G = self.cell_spec.num_gates * hidden_size
        H_out = proj_size or hidden_size  # what h carries: P with a projection, else H
        self._flat_weights_names: list[str] = []
        for k in range(num_layers):
            for d in range(self.num_directions):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                shapes = [("weight_ih", (G, self._layer_input_size(k))), ("weight_hh", (G, H_out))]
                if bias:
                    shapes += [("bias_ih", (G,)), ("bias_hh", (G,))]
                if proj_size:
                    shapes += [("weight_hr", (proj_size, hidden_size))]  # torch.nn's name, shape and place
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
        n = (4 if self.bias else 2) + (1 if self.proj_size else 0)
        flat = self._flat_weights
        return [flat[i : i + n] for i in range(0, len(flat), n)]

    @property
    def _flat_weights(self) -> list[Tensor]:
        """The parameters in torch.nn's flat order (per layer, per direction: w_ih, w_hh[, b_ih, b_hh][, w_hr]),
        read afresh on every access, so it follows ``load_state_dict``, ``.to()`` and ``functional_call``."""
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def mode(self) -> str:
        """torch.nn's mode string: ``RNN_TANH``, ``RNN_RELU``, ``LSTM``, ``GRU`` (``GRU_BEFORE``: no torch peer)."""
        return self.cell_spec.kind.upper()

    def flatten_parameters(self) -> None:
        """No-op kept for torch.nn compatibility (the fused call takes the parameters as they are)."""

    # The layers subclass torch.nn.RNN/LSTM/GRU so that isinstance checks pass, but keep no cached flat-weight list
    # (``_flat_weights`` is read afresh): torch.nn.RNNBase's cache upkeep is replaced by nn.Module's plain versions.
    def __setattr__(self, name: str, value: Any) -> None:
        if name == "qconfig":  # only torch.ao.quantization sets it, and it will leave this layer in float
            note_quantization(self)
        nn.Module.__setattr__(self, name, value)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> nn.Module:
        return nn.Module._apply(self, fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        nn.Module.__setstate__(self, state)

    def _replicate_for_data_parallel(self) -> nn.Module:
        return nn.Module._replicate_for_data_parallel(self)

    # torch.nn.RNNBase's checking helpers, same names, arguments and exception types (some torch code calls them)
    def check_input(self, input: Tensor, batch_sizes: Tensor | None) -> None:
        w = self._flat_weights[0]
        if input.dtype != w.dtype and not torch._C._is_any_autocast_enabled():
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({w.dtype}). "
                f"Convert input: input.to({w.dtype}), or convert model: model.to({input.dtype})"
            )
        expected_input_dim = 2 if batch_sizes is not None else 3
        if input.dim() != expected_input_dim:
            raise RuntimeError(f"input must have {expected_input_dim} dimensions, got {input.dim()}")
        if self.input_size != input.size(-1):
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {input.size(-1)}"
            )

    def get_expected_hidden_size(self, input: Tensor, batch_sizes: Tensor | None) -> tuple[int, int, int]:
        if batch_sizes is not None:
            mini_batch = int(batch_sizes[0])
        else:
            mini_batch = input.size(0) if self.batch_first else input.size(1)
        return (self.num_layers * self.num_directions, mini_batch, self.proj_size or self.hidden_size)

    def check_hidden_size(
        self, hx: Tensor, expected_hidden_size: tuple[int, int, int], msg: str = "Expected hidden size {}, got {}"
    ) -> None:
        if hx.size() != expected_hidden_size:
            raise RuntimeError(msg.format(expected_hidden_size, list(hx.size())))

    def check_forward_args(self, input: Tensor, hidden: State, batch_sizes: Tensor | None) -> None:
        self.check_input(input, batch_sizes)
        expected = self.get_expected_hidden_size(input, batch_sizes)
        if isinstance(hidden, tuple):  # LSTM: (h, c); c is (L·D, B, H) even with a projection
            self.check_hidden_size(hidden[0], expected, "Expected hidden[0] size {}, got {}")
            self.check_hidden_size(hidden[1], (*expected[:2], self.hidden_size), "Expected hidden[1] size {}, got {}")
        else:
            self.check_hidden_size(hidden, expected)

    def permute_hidden(self, hx: State, permutation: Tensor | None) -> State:
        """``hx`` with its batch axis reordered by ``permutation`` (None: unchanged), as torch.nn's."""
        if permutation is None:
            return hx
        return _permute(hx, permutation)

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

    def _builtin_kind(self, layer: int, direction: int) -> str | None:
        # the own BPTT kernels have no projection: with proj_size the rnnkit paths run the autograd loop
        return None if self.proj_size else self.cell_spec.kind

    def _layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else (self.proj_size or self.hidden_size) * self.num_directions

    def _state_sizes(self) -> tuple[int, ...]:
        H_out = self.proj_size or self.hidden_size
        return (H_out, self.hidden_size)[: self._state_arity]

    def _fused_kind(self) -> str | None:
        kind = self.cell_spec.kind
        return kind if kind in _engine.FUSED_KINDS else None

    def _step_fn(self, layer: int, direction: int) -> Callable[[Tensor, State], State]:
        params = self._cell_params(layer, direction)
        if self.proj_size:
            sfx = f"_l{layer}" + ("_reverse" if direction else "")
            params = (*params, getattr(self, "weight_hr" + sfx))  # lstm_step's w_hr: h = W_hr (o ⊙ tanh c)
        return _engine.bind_step(self.cell_spec.step, params)

    def _fused_args(self) -> tuple[Any, ...]:
        # torch's kernel tells a projection from the number of weights per layer (w_hr last), as torch.nn does
        return self._flat_weights, self.bias, self.num_layers, self.dropout, self.training, self.bidirectional

    def _zero_state(self, batch: int, ref: Tensor) -> State:
        w = self.weight_hh_l0
        sizes = self._state_sizes()
        if self._state_arity == 1:
            return w.new_zeros(batch, sizes[0])
        return tuple(w.new_zeros(batch, n) for n in sizes)

    def to_torch(self) -> nn.Module:
        """The torch.nn layer computing exactly this one, sharing its parameters (same tensors, so training either
        trains both). For TorchScript and torch.ao quantization, which know torch.nn's classes only.

        Raises ``ValueError`` for a configuration torch.nn does not have (``GRU(reset="before")``).
        """
        spec = self.cell_spec
        if spec.torch_layer is None:
            raise ValueError(f"{type(self).__name__} of kind {spec.kind!r} has no torch.nn counterpart")
        kw: dict[str, Any] = dict(spec.torch_options)
        if self.proj_size:
            kw["proj_size"] = self.proj_size
        args = (self.input_size, self.hidden_size, self.num_layers)
        flags = {"bias": self.bias, "batch_first": self.batch_first, "bidirectional": self.bidirectional}
        peer = spec.torch_layer(*args, **flags, dropout=self.dropout, device="meta", **kw)  # no storage: replaced
        for name in self._flat_weights_names:
            setattr(peer, name, getattr(self, name))  # torch.nn.RNNBase.__setattr__ refreshes its _flat_weights
        return peer.train(self.training)

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script calls this on every submodule: rnnkit's forward (lengths=, engines, PackedSequence
        # dispatch in Python) is not TorchScript, so the script holds the equal torch.nn layer with these parameters
        return self.to_torch()

    def extra_repr(self) -> str:  # torch.nn.RNNBase.extra_repr, then rnnkit's own options
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self._engine != "auto":
            s += f", engine={self._engine!r}"
        return s


class RNN(_TorchLayout, nn.RNN):
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
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, device, dtype)
        super().__init__(*args, engine)


class LSTM(_TorchLayout, nn.LSTM):
    """LSTM layer, drop-in for ``torch.nn.LSTM`` (``proj_size`` included); gates packed ``i, f, g, o``.

    Equations: :class:`~rnnkit.cells.LSTMCell`. Parameters ``weight_ih_l{k}[_reverse]`` ``(4H, I_k)``,
    ``weight_hh_l{k}`` ``(4H, H)``, biases ``(4H,)``. ``hx`` and ``h_n`` are tuples ``(h, c)`` of ``(L·D, B, H)``.
    Args and shapes: as :class:`RNN` without ``nonlinearity``, in torch.nn.LSTM's positional order
    ``(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size, device, dtype)``.

    ``proj_size`` P > 0 (torch.nn's LSTMP): ``h_t = W_hr (o_t ⊙ tanh(c_t))`` with ``weight_hr_l{k}`` ``(P, H)``;
    ``h`` is ``(L·D, B, P)``, ``c`` stays ``(L·D, B, H)``, ``weight_hh`` is ``(4H, P)``, the next layer's input and
    the output are ``D·P`` wide. Engines: ``auto``/``fused`` run torch's kernel (it has the projection), ``loop``
    the autograd loop over :func:`~rnnkit.cells.lstm_step` with ``w_hr``; ``own`` refuses (its hand-written
    backward has no projection).
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
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        engine: Engine = "auto",
    ) -> None:
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size)
        super().__init__(*args, device, dtype, engine)


class GRU(_TorchLayout, nn.GRU):
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
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0, device, dtype)
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


def to_torch(model: nn.Module) -> nn.Module:
    """``model`` with every rnnkit built-in layer and cell replaced, in place, by the torch.nn module computing
    exactly it (parameters shared; see :meth:`RNN.to_torch`); returns ``model`` (or the replacement, if ``model``
    itself is one). Use it before APIs that match torch.nn's classes exactly, e.g.
    ``torch.ao.quantization.quantize_dynamic(to_torch(model), {nn.LSTM})`` (torch's ``from_float`` accepts only
    ``type(m) is nn.LSTM``, so subclasses such as rnnkit's are left in float otherwise)."""
    convert = getattr(model, "to_torch", None)
    if callable(convert) and isinstance(model, (_TorchLayout, _CellBase)):
        return convert()
    for name, child in model.named_children():
        setattr(model, name, to_torch(child))
    return model
