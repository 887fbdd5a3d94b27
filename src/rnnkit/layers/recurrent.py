"""The generic recurrent layer: any cell run over time, stacked, bidirectional, with lengths and packed input.

Shape symbols: T time, B batch, I input features, H hidden size, L layers, D directions (1 or 2). See
:mod:`rnnkit.layers` for the engines and streaming.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit import engine as _engine
from rnnkit.cells import ArgTypeError, ShapeError, _check_size, spec_of

__all__ = ["Engine", "Recurrent", "State", "StepStates"]

State = Tensor | tuple[Tensor, ...]
Engine = Literal["auto", "fused", "compiled", "own", "loop"]
_ENGINES = _engine.ENGINES


@dataclass
class StepStates:
    """Every layer's and direction's per-step states, as nodes of the autograd graph.

    ``h[l][d][s]`` is the hidden state ``(B, H)`` after step ``s`` of direction ``d`` in layer ``l`` (``c`` likewise
    for LSTM, else None). Steps are in the order the direction processes them: for ``d = 0`` step ``s`` is time
    ``s``; for the reverse direction it is time ``T−1−s`` (with ``lengths``, time ``lengths[b]−1−s`` of row ``b``).
    Past a sequence's end the state is carried unchanged. ``output`` and ``h_n`` equal :meth:`Recurrent.forward`'s
    and are computed from these very tensors, so ``torch.autograd.grad(loss, h[l][d])`` is the total derivative
    ``∂L/∂h_t`` through time.
    """

    output: Tensor
    h_n: State
    h: list[list[list[Tensor]]]
    c: list[list[list[Tensor]]] | None


class Recurrent(nn.Module):
    """Run a cell over sequences: ``L`` stacked layers, ``D`` directions, dropout between layers, lengths.

    Args:
        cell_factory: called as ``cell_factory(input_size, hidden_size, device=..., dtype=...)`` once per layer and
            direction; it returns a module with ``forward(x_t (B, I_l), state) -> state`` where ``state`` is a
            tensor ``(B, H)`` or a tuple whose first item is ``h`` ``(B, H)`` (e.g. ``(h, c)``). If the cell has
            ``initial_state(batch_size)`` it gives the zero state, else zeros ``(B, H)``. Built-in cells
            (:class:`~rnnkit.cells.RNNCell`, :class:`~rnnkit.cells.LSTMCell`, :class:`~rnnkit.cells.GRUCell`) run
            on rnnkit's own BPTT engine; any other cell on an autograd loop.
        input_size: I. hidden_size: H. num_layers: L ≥ 1. batch_first: input/output as ``(B, T, ·)``.
        dropout: probability in [0, 1] of dropping each output of every layer but the last (training only).
        bidirectional: add a reverse direction; outputs concatenate ``[forward, reverse]``.

    Shapes (time-major; swap T and B with ``batch_first``):
        input ``(T, B, I)`` or unbatched ``(T, I)``, or a PackedSequence; ``hx`` ``(L·D, B, H)`` (a tuple of them
        for tuple states) or None; ``lengths`` ``(B,)`` in any order, each in ``[1, T]``.
        Returns ``(output (T, B, D·H), h_n)`` with ``h_n`` like ``hx``: the state at each sequence's last valid step
        (the reverse direction's after it has read the first element). Output past a sequence's end is zero.
    """

    def __init__(
        self,
        cell_factory: Callable[..., nn.Module] | None,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        engine: Engine = "auto",
    ) -> None:
        # nn.Module's, not super()'s: the built-in layers also subclass torch.nn.RNN/LSTM/GRU (for isinstance) and
        # set up everything themselves, so torch.nn.RNNBase.__init__ must not run
        nn.Module.__init__(self)
        _check_size("input_size", input_size)
        _check_size("hidden_size", hidden_size)
        _check_size("num_layers", num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout={dropout} has no effect with num_layers=1: it acts between stacked layers",
                stacklevel=2,
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.engine = engine
        if cell_factory is not None:
            D = 2 if bidirectional else 1
            self.cells = nn.ModuleList(
                cell_factory(self._layer_input_size(k), hidden_size, device=device, dtype=dtype)
                for k in range(num_layers)
                for _ in range(D)
            )
            probe = self.cells[0]
            if getattr(probe, "hidden_size", hidden_size) != hidden_size:
                raise ValueError(
                    f"cell_factory made a cell with hidden_size={probe.hidden_size}, expected {hidden_size}"
                )
            init = getattr(probe, "initial_state", None)
            state = init(1) if callable(init) else None
            self._state_arity = len(state) if isinstance(state, tuple) else 1

    # ------------------------------------------------------------------ structure
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def engine(self) -> str:
        """Which engine runs the recurrence: ``"auto"``, ``"fused"``, ``"compiled"``, ``"own"`` or ``"loop"``."""
        return self._engine

    @engine.setter
    def engine(self, value: str) -> None:
        if value not in _ENGINES:
            raise ValueError(f"engine must be one of {_ENGINES}, got {value!r}")
        if value == "fused" and self._fused_kind() is None:
            raise ValueError(f"engine='fused': {type(self).__name__} has no exact torch fused kernel")
        if value in ("own", "compiled") and getattr(self, "proj_size", 0):
            raise ValueError(
                f"engine={value!r} has no projection (proj_size); use engine='auto'/'fused' (torch's kernel) or 'loop'"
            )
        self._engine = value

    def _runs_fused(self, kind: str, x: Tensor) -> bool:
        """Whether the whole stack runs torch's fused kernel ``kind`` on ``x`` (``fused``, or ``auto``'s choice)."""
        if self._engine == "fused":
            return True
        return self._engine == "auto" and _engine.auto_engine(kind, x, proj_size=getattr(self, "proj_size", 0)) == (
            "fused"
        )

    def _layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.hidden_size * self.num_directions

    def _fused_kind(self) -> str | None:
        """The torch fused kernel that is exactly this layer, or None."""
        return None

    def _builtin_kind(self, layer: int, direction: int) -> str | None:
        """The engine cell kind for (layer, direction), or None for a cell only the autograd loop can run."""
        cell = self.cells[layer * self.num_directions + direction]
        spec = spec_of(cell)
        # exactly the built-in class: a subclass may change forward, so only the autograd loop is safe for it
        return spec.kind if spec is not None and type(cell) is spec.cell else None

    def _cell_params(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        cell = self.cells[layer * self.num_directions + direction]
        return cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh

    def _step_fn(self, layer: int, direction: int) -> Callable[[Tensor, State], State]:
        """One step of (layer, direction) as a function ``(x_t, state) -> state``."""
        return self.cells[layer * self.num_directions + direction]

    def _state_sizes(self) -> tuple[int, ...]:
        """The last dimension of each state tensor (``H`` each; LSTM with ``proj_size``: ``(P, H)``)."""
        return (self.hidden_size,) * self._state_arity

    def _zero_state(self, batch: int, ref: Tensor) -> State:
        if self._state_arity == 1:
            return ref.new_zeros(batch, self.hidden_size)
        return tuple(ref.new_zeros(batch, self.hidden_size) for _ in range(self._state_arity))

    # ------------------------------------------------------------------ public API
    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: State | None = None,
        lengths: Sequence[int] | Tensor | None = None,
    ) -> tuple[Tensor | PackedSequence, State]:
        """Run the stack over ``input``; see the class docstring for shapes. Returns ``(output, h_n)``."""
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("lengths must be None when input is a PackedSequence (it carries its lengths)")
            return self._forward_packed(input, hx)
        if hx is None and lengths is None:
            fast = self._forward_compiled(input)
            if fast is not None:
                return fast
        x, unbatched = self._time_major(input)
        T, B = x.shape[0], x.shape[1]
        lens = _check_lengths(lengths, T, B, x.device)
        states = self._initial_states(hx, B, x, unbatched)
        kind = self._fused_kind()
        if kind is not None and self._runs_fused(kind, x):
            out, h_n = self._run_fused(kind, x, states, lens)
        else:
            out, finals = self._run_stack(x, states, lens)
            h_n = self._stack_finals(finals)
        return self._format_output(out, h_n, unbatched)

    def _forward_compiled(self, input: Tensor) -> tuple[Tensor, State] | None:
        """:meth:`forward`'s fast path on the compiled kernels for the common call — a batched ``(T, B, I)`` /
        ``(B, T, I)`` tensor, no ``hx``, no lengths, one direction — with the Python cut to the kernel calls (no
        state set-up, no per-direction dispatch; ``h_n`` of one layer a view, not a stack). The same kernels and
        numbers as the general path (tested); None wherever anything else must run (other engines, CUDA, other
        dtypes, bad input: the general path raises its error)."""
        if self._engine not in ("auto", "compiled") or getattr(self, "proj_size", 0) or self.bidirectional:
            return None
        cls = type(self)
        if cls._run_direction is not Recurrent._run_direction or cls._run_stack is not Recurrent._run_stack:
            return None  # a subclass with its own dispatch (rnnkit.layers.minimal) keeps it
        if not isinstance(input, Tensor) or input.dim() != 3 or input.shape[2] != self.input_size:
            return None
        L = self.num_layers
        if L > 1 and self.training and self.dropout > 0:
            return None
        x = input.transpose(0, 1) if self.batch_first else input  # (T, B, I)
        if x.shape[0] == 0 or torch.compiler.is_compiling():
            return None
        kinds = [self._builtin_kind(k, 0) for k in range(L)]
        if None in kinds or not _engine.runs_compiled(kinds[0], x):
            return None
        params = [self._cell_params(k, 0) for k in range(L)]
        if any(p[1].dtype != x.dtype for p in params):
            return None
        finals = []
        for kind, p in zip(kinds, params, strict=True):
            # x becomes hs (T, B, H): the next layer's input; one layer: its finals come (1, B, H), as h_n
            x, h_n, c_n = _engine.run_compiled_zero(kind, x, *p, lead=L == 1)
            finals.append(h_n if c_n is None else (h_n, c_n))
        out = x.transpose(0, 1) if self.batch_first else x
        return out, finals[0] if L == 1 else self._stack_finals(finals)

    def forward_states(
        self,
        input: Tensor,
        hx: State | None = None,
        lengths: Sequence[int] | Tensor | None = None,
    ) -> StepStates:
        """Like :meth:`forward` (padded input only), also returning every per-step state as a graph node.

        Runs the autograd loop so each state ``h_t`` is its own tensor whose gradient is the total derivative
        through all later steps (the gradient diagnostics need exactly that). Returns :class:`StepStates`.
        """
        if isinstance(input, PackedSequence):
            raise TypeError("forward_states takes a padded tensor and lengths, not a PackedSequence")
        x, unbatched = self._time_major(input)
        T, B = x.shape[0], x.shape[1]
        lens = _check_lengths(lengths, T, B, x.device)
        states = self._initial_states(hx, B, x, unbatched)
        record: list[list[list[State]]] = []
        out, finals = self._run_stack(x, states, lens, record=record)
        h_n = self._stack_finals(finals)
        out, h_n = self._format_output(out, h_n, unbatched)
        h = [[[s[0] if isinstance(s, tuple) else s for s in seq] for seq in layer] for layer in record]
        c = None
        if self._state_arity == 2:
            c = [[[s[1] for s in seq] for seq in layer] for layer in record]
        return StepStates(output=out, h_n=h_n, h=h, c=c)

    def step(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One time step of the whole stack, for streaming and sampling (unidirectional layers only).

        Args:
            x_t: ``(B, I)``. state: like ``forward``'s ``hx`` (``(L, B, H)`` or a tuple of them) or None.
        Returns:
            ``(y_t, state)``: the top layer's output ``(B, H)`` and the new state, in ``hx``'s format. Repeating
            ``step`` over a sequence gives ``forward``'s output and ``h_n`` (tested).
        """
        if self.bidirectional:
            raise ValueError("step() needs a unidirectional layer: a reverse direction must see the whole sequence")
        if x_t.dim() != 2 or x_t.shape[1] != self.input_size:
            raise ValueError(f"step: x_t must have shape (B, {self.input_size}), got {tuple(x_t.shape)}")
        fast = self._step_compiled(x_t, state)
        if fast is not None:
            return fast
        B = x_t.shape[0]
        states = self._initial_states(state, B, x_t, unbatched=False)
        new_states = []
        inp = x_t
        compiled = self._engine in ("auto", "compiled") and not getattr(self, "proj_size", 0)
        for k in range(self.num_layers):
            kind = self._builtin_kind(k, 0) if compiled else None
            if kind is not None and _engine.runs_compiled(kind, inp) and not torch.compiler.is_compiling():
                # one step of the compiled kernel: the sampling loop's per-step cost is C++, not Python ops
                s = _engine.run_compiled(kind, inp.unsqueeze(0), states[k], *self._cell_params(k, 0))[1]
            else:
                s = self._step_fn(k, 0)(inp, states[k])
            new_states.append(s)
            inp = s[0] if isinstance(s, tuple) else s  # (B, H)
            if k < self.num_layers - 1 and self.dropout > 0 and self.training:
                inp = nn.functional.dropout(inp, self.dropout, True)
        return inp, self._stack_finals(new_states)

    def _step_compiled(self, x_t: Tensor, state: State | None) -> tuple[Tensor, State] | None:
        """:meth:`step` without grad on the compiled kernels, Python cut to one kernel call per layer (sampling
        runs this per symbol); None where the general path must run (grad, dropout, other engines, bad ``state``)."""
        if torch.is_grad_enabled() or self._engine not in ("auto", "compiled") or getattr(self, "proj_size", 0):
            return None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            return None
        kinds = self.__dict__.get("_step_kinds")  # the cells' kinds never change after construction
        if kinds is None:
            kinds = self.__dict__["_step_kinds"] = [self._builtin_kind(k, 0) for k in range(self.num_layers)]
        if None in kinds or not _engine.runs_compiled(kinds[0], x_t) or torch.compiler.is_compiling():
            return None
        L, B, H = self.num_layers, x_t.shape[0], self.hidden_size
        arity = 2 if kinds[0] == "lstm" else 1
        parts = None if state is None else (tuple(state) if isinstance(state, (tuple, list)) else (state,))
        if parts is not None and (
            len(parts) != arity
            or any(not isinstance(p, Tensor) or p.shape != (L, B, H) or p.dtype != x_t.dtype for p in parts)
        ):
            return None  # the general path raises the error
        if self._cell_params(0, 0)[1].dtype != x_t.dtype:
            return None
        zero = x_t.new_zeros(B, H) if parts is None else None
        finals, inp = [], x_t
        for k, kind in enumerate(kinds):
            if parts is None:
                s0 = (zero, zero) if arity == 2 else zero
            else:
                s0 = (parts[0][k], parts[1][k]) if arity == 2 else parts[0][k]
            s = _engine.step_compiled(kind, inp, s0, *self._cell_params(k, 0))
            finals.append(s)
            inp = s[0] if arity == 2 else s  # (B, H)
        if arity == 1:
            return inp, torch.stack(finals)  # (L, B, H)
        return inp, (torch.stack([f[0] for f in finals]), torch.stack([f[1] for f in finals]))

    # ------------------------------------------------------------------ input handling
    def _time_major(self, input: Tensor) -> tuple[Tensor, bool]:
        return _time_major(input, self.input_size, self.batch_first, next(self.parameters(), None))

    def _initial_states(self, hx: State | None, B: int, ref: Tensor, unbatched: bool) -> list[State]:
        """``hx`` (torch.nn layout) → one state per (layer, direction), in layer-major order."""
        n = self.num_layers * self.num_directions
        if hx is None:
            return [self._zero_state(B, ref) for _ in range(n)]
        parts = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)  # torch.nn also takes [h0, c0]
        if len(parts) != self._state_arity:
            raise ValueError(f"hx must hold {self._state_arity} tensor(s), got {len(parts)}")
        fixed = []
        for p, size in zip(parts, self._state_sizes(), strict=True):
            if not isinstance(p, Tensor):
                raise TypeError(f"hx must hold tensors, got {type(p).__name__}")
            if unbatched and p.dim() == 2:
                p = p.unsqueeze(1)
            if tuple(p.shape) != (n, B, size):  # torch.nn raises RuntimeError here; ShapeError is also a ValueError
                raise ShapeError(f"hx must have shape {(n, B, size)}, got {tuple(p.shape)}")
            fixed.append(p)
        if self._state_arity == 1:
            return list(fixed[0].unbind(0))
        return [tuple(p[i] for p in fixed) for i in range(n)]

    def _stack_finals(self, finals: list[State]) -> State:
        if self._state_arity == 1:
            return torch.stack(finals)  # (L·D, B, H)
        return tuple(torch.stack([f[j] for f in finals]) for j in range(self._state_arity))

    def _format_output(self, out: Tensor, h_n: State, unbatched: bool) -> tuple[Tensor, State]:
        if unbatched:
            h_n = tuple(s.squeeze(1) for s in h_n) if isinstance(h_n, tuple) else h_n.squeeze(1)
            return out.squeeze(1), h_n
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    # ------------------------------------------------------------------ the stack on rnnkit's own paths
    def _run_stack(
        self, x: Tensor, states: list[State], lens: Tensor | None, record: list | None = None
    ) -> tuple[Tensor, list[State]]:
        """Layers × directions over time-major ``x`` ``(T, B, I)``. Returns ``(output (T, B, D·H), finals)``."""
        dropout = self.dropout if self.training else 0.0
        return _engine.run_stack(
            self._run_direction, x, states, lens, self.num_layers, self.num_directions, dropout, record
        )

    def _run_direction(
        self, k: int, d: int, x: Tensor, state0: State, mask: Tensor | None, record: list | None
    ) -> tuple[Tensor, State]:
        """One direction of one layer over time-major ``x``: ``(hs (T, B, H), final state)``."""
        kind = self._builtin_kind(k, d)
        if record is None and kind is not None and self._engine != "loop":
            if torch.compiler.is_compiling() and kind != "rnn_tanh" and kind != "rnn_relu":
                # the own LSTM/GRU kernels write gate slices through out= views, which torch.compile cannot trace,
                # nor the compiled (C++) kernels
                if self._engine in ("own", "compiled"):
                    raise ValueError(
                        f"engine={self._engine!r} cannot run under torch.compile (its LSTM/GRU kernels are C++ or "
                        "write into out= views); use engine='auto' (compiles the autograd loop) or 'loop'"
                    )
            elif self._engine != "own" and _engine.runs_compiled(kind, x) and not torch.compiler.is_compiling():
                # auto (the policy's "compiled": CPU float32/64 with the kernels built) or compiled
                return _engine.run_compiled(kind, x, state0, *self._cell_params(k, d), mask)
            else:  # own, or no compiled kernel for this input (CUDA, other dtypes, not built): own BPTT
                return _engine.run_own(kind, x, state0, *self._cell_params(k, d), mask)
        seq: list[State] | None = None if record is None else []
        hs, final = _engine.run_loop(self._step_fn(k, d), x, state0, mask, seq)
        if record is not None:
            record[k].append(seq)
        return hs, final  # (T, B, H)

    def _run_fused(self, kind: str, x: Tensor, states: list[State], lens: Tensor | None) -> tuple[Tensor, State]:
        hx = self._stack_finals(states)
        if lens is None:
            return _engine.run_fused(kind, x, hx, *self._fused_args())
        packed = pack_padded_sequence(x, lens.cpu(), enforce_sorted=False)
        out, h_n = self._fused_packed(kind, packed, hx)
        out, _ = pad_packed_sequence(out, total_length=x.shape[0])  # (T, B, D·H), original order
        return out, h_n

    def _fused_packed(self, kind: str, packed: PackedSequence, hx: State) -> tuple[PackedSequence, State]:
        """Packed data through the fused kernel; ``hx`` and the returned ``h_n`` are in the caller's order."""
        order, unorder = packed.sorted_indices, packed.unsorted_indices
        if order is not None:
            hx = _permute(hx, order)
        data, h_n = _engine.run_fused(kind, packed.data, hx, *self._fused_args(), batch_sizes=packed.batch_sizes)
        if unorder is not None:
            h_n = _permute(h_n, unorder)
        return PackedSequence(data, packed.batch_sizes, order, unorder), h_n

    def _fused_args(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _forward_packed(self, packed: PackedSequence, hx: State | None) -> tuple[PackedSequence, State]:
        if packed.data.dim() != 2 or packed.data.shape[1] != self.input_size:
            raise ValueError(
                f"packed input data must have shape (N, {self.input_size}), got {tuple(packed.data.shape)}"
            )
        B = int(packed.batch_sizes[0])
        states = self._initial_states(hx, B, packed.data, unbatched=False)
        kind = self._fused_kind()
        if kind is not None and self._runs_fused(kind, packed.data):
            return self._fused_packed(kind, packed, self._stack_finals(states))
        x, lens = pad_packed_sequence(packed)  # (T, B, I) and lengths, caller's order
        self._time_major(x)  # dtype checks
        out, finals = self._run_stack(x, states, _check_lengths(lens, x.shape[0], B, x.device))
        order = packed.sorted_indices
        if order is not None:
            out, lens = out.index_select(1, order), lens[order.cpu()]
        data = pack_padded_sequence(out, lens, enforce_sorted=True).data
        return PackedSequence(data, packed.batch_sizes, order, packed.unsorted_indices), self._stack_finals(finals)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self._engine != "auto":
            s += f", engine={self._engine!r}"
        return s


def _time_major(input: Tensor, input_size: int, batch_first: bool, w: Tensor | None) -> tuple[Tensor, bool]:
    """``input`` checked against the layer (feature size, its weight ``w``'s dtype) → ``(x (T, B, I), unbatched)``."""
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a Tensor or PackedSequence, got {type(input).__name__}")
    if input.dim() not in (2, 3):
        raise ValueError(
            f"input must be 3-D {'(B, T, I)' if batch_first else '(T, B, I)'} or unbatched 2-D (T, I), "
            f"got shape {tuple(input.shape)}"
        )
    if input.shape[-1] != input_size:
        raise ShapeError(
            f"input feature size must equal input_size={input_size}, got {input.shape[-1]} "
            f"(input shape {tuple(input.shape)})"
        )
    if not input.is_floating_point():
        raise TypeError(f"input must be a floating-point tensor, got {input.dtype}")
    if w is not None and input.dtype != w.dtype:  # torch.nn: ValueError; rnnkit raised TypeError: both
        raise ArgTypeError(
            f"RNN input dtype ({input.dtype}) does not match weight dtype ({w.dtype}): "
            f"convert input: input.to({w.dtype}), or convert model: model.to({input.dtype})"
        )
    x = input.unsqueeze(1) if input.dim() == 2 else (input.transpose(0, 1) if batch_first else input)
    if x.shape[0] == 0:
        raise ValueError(f"input must have at least one time step, got shape {tuple(input.shape)}")
    return x, input.dim() == 2


def _check_lengths(lengths: Sequence[int] | Tensor | None, T: int, B: int, device: torch.device) -> Tensor | None:
    """``lengths`` checked (1-D, integers in ``[1, T]``) → ``(B,)`` long on ``device``, or None if all are ``T``."""
    if lengths is None:
        return None
    lens = torch.as_tensor(lengths)
    if lens.dim() != 1 or lens.shape[0] != B:
        raise ValueError(f"lengths must be 1-D with one entry per sequence (B={B}), got shape {tuple(lens.shape)}")
    if lens.is_floating_point() or lens.dtype == torch.bool:
        raise ValueError(f"lengths must hold integers, got dtype {lens.dtype}")
    lens = lens.to(torch.long)
    lo, hi = int(lens.min()), int(lens.max())
    if lo < 1 or hi > T:
        raise ValueError(f"lengths must lie in [1, T={T}], got values from {lo} to {hi}")
    if lo == T:
        return None  # every sequence is full length: nothing to mask
    return lens.to(device)


def _permute(state: State, order: Tensor) -> State:
    if isinstance(state, tuple):
        return tuple(s.index_select(1, order) for s in state)
    return state.index_select(1, order)
