"""ONNX export of a run's model: a whole-sequence graph and, for one-direction cores, a step graph with explicit state.

Shape symbols: B batch, T time, F real input features, L layers, D directions, H hidden size, C classes,
K regression outputs, V vocabulary, E condition features. ``B`` and ``T`` are dynamic in every graph; the others
are fixed by the run. All floats are float32, ids and lengths int64.

``rnnkit export RUN`` (or :func:`export_run`) writes three files, ``model.onnx`` by default (``--output`` names it):

``model.onnx`` — the whole-sequence graph. Inputs: ``ids`` ``(B, T)`` (token runs; ``inputs`` ``(B, T, F)`` for
real-valued ones), ``lengths`` ``(B,)`` (each in ``[1, T]``, padding on the right), and for a conditional
generator ``category`` ``(B,)`` (or ``condition`` ``(B, E)``). Outputs:

- classifier: ``logits`` ``(B, C)`` (regressor: ``outputs`` ``(B, K)``), from each sequence's last valid state
  of every top-layer direction (or the masked mean / max of its outputs, as the classifier's ``pool`` says) —
  exactly ``model(batch)``; for an LSTM-FCN / MLSTM-FCN (the series default) from
  that state beside the convolutional branch's pooled features; for an ensemble (``train --ensemble K``) the
  average of its K members in one graph: ``logits = log(mean_k softmax(logits_k))`` (their softmax is the mean
  of the members' probabilities, as ``rnnkit predict`` gives), ``outputs`` the mean of the members' outputs;
- generator: ``logits`` ``(B, T, V)`` for the next symbol after every position, and the state after each
  sequence's last valid step, ``h_n`` ``(L, B, H)`` (LSTM: also ``c_n``). Read ``[BOS, prefix...]`` with it, then
  continue with the step graph; as ``SequenceGenerator.sample`` does, never pick PAD, BOS or UNK (ids 0, 1, 3)
  and stop at EOS (2).

``model.step.onnx`` — one time step (not written for bidirectional cores, LSTM-FCN or ensembles: a reverse
direction, a convolution over time and K members' average read the whole sequence). Inputs: ``ids`` ``(B,)`` (or
``inputs`` ``(B, F)``), a generator's ``category`` / ``condition`` as above, ``h`` ``(L, B, H)`` (LSTM: and ``c``).
Outputs: ``logits`` ``(B, V)`` of the next symbol (generator) or ``(B, C)`` of the sequence read so far (classifier;
``outputs`` ``(B, K)`` for a regressor), and the new state ``h_out`` (LSTM: and ``c_out``). A classifier starts from
zero states; after the last element its logits equal the whole-sequence graph's.

``model.onnx.json`` — these names, dtypes and shapes per graph, the ONNX opset, the run's vocabulary (``specials``
are ids 0–3: PAD, BOS, EOS, UNK; ``symbols`` take ids 4, 5, ...) and classes, so the graphs can be used without
rnnkit. The graphs take the model's own inputs and give its raw outputs: standardisation that a task app applies
to real-valued data around the model is not part of them; for a series classifier the JSON's ``input_steps`` say
what to do to a raw series first (downsampling, per-series normalisation, per-channel standardisation).

How: the recurrence is written as ``torch._higher_order_ops.scan`` over the layers' one-step functions
(:mod:`rnnkit.cells`) and exported with ``torch.onnx.export(dynamo=True)`` to an ONNX ``Scan``; lengths mask the
state (``where``), and a reverse direction reads each sequence reversed within its own length. Found on torch
2.13: exporting the layers as they are fails — the dynamo exporter unrolls rnnkit's Python loops at the example's
T, and its ONNX LSTM/GRU for the fused kernel fails in onnxruntime at any other T; the TorchScript exporter
(``dynamo=False``) exports the fused kernel with a dynamic T, but turns rnnkit's own BPTT engine (``gru-before``)
into a graph that is wrong even at the example's shape. ``scan`` gives every core (rnn, lstm, gru, gru-before)
with dynamic B and T; minGRU/minLSTM cores (:mod:`rnnkit.layers.minimal`) go through the same ``scan`` with their
cells' step form (state ``h`` only); an LSTM-FCN's LSTM branch goes through it too, its convolutional branch
(masked convolutions, batch norm from the running statistics, masked means) exports as it is. The window model
and per-step frame encoders are not exported.

Why one module of ~700 lines: the graph modules, their specifications, the export and its onnxruntime check share
the private pieces above (``_Recurrence``, ``_specs``, ``_paths``); split, each part would import the others'
privates.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit import __version__
from rnnkit.cells import CELLS, CellSpec, spec_of
from rnnkit.checkpoint import write_bytes_atomic, write_json_atomic
from rnnkit.data.vocab import BOS
from rnnkit.layers.minimal import MinGRU
from rnnkit.masks import length_mask
from rnnkit.tasks.classifier import SequenceClassifier
from rnnkit.tasks.ensemble import Ensemble
from rnnkit.tasks.generator import SequenceGenerator
from rnnkit.tasks.regressor import SequenceRegressor

__all__ = ["EXPORT_FORMAT", "export_model", "export_run", "verify_export"]

EXPORT_FORMAT = "rnnkit-onnx"
ONNX_NOTE = "ONNX export needs the onnx extra: pip install 'rnnkit[onnx]'"

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


# --------------------------------------------------------------------------------------------------------------
# The graphs of each task model


def _input_stage(model: nn.Module) -> tuple[nn.Embedding | None, int]:
    """The token embedding (None for real-valued inputs) and ``F`` (0 for tokens) of a classifier/regressor."""
    enc = model.inputs
    if getattr(enc, "frames", None) is not None or model.config.frame_encoder:
        raise ValueError(
            "ONNX export does not cover per-step frame encoders (frame_encoder); export a token or real-valued model"
        )
    embed = getattr(enc, "embed", None)
    return embed, 0 if embed is not None else model.config.input_features


def _recurrent_core(model: nn.Module) -> nn.Module:
    """The layer whose recurrence is exported: the task model's core, or a summary core's (LSTM-FCN) LSTM branch."""
    return model.core.lstm if getattr(model, "summarizes", False) else model.core


def _no_step_reason(model: nn.Module) -> str | None:
    """Why ``model`` has no step graph (None when it has one)."""
    if isinstance(model, Ensemble):
        return "an ensemble's graph averages its members over whole sequences"
    if getattr(model, "summarizes", False):
        return "the LSTM-FCN's convolutional branch reads the whole sequence"
    if getattr(_recurrent_core(model), "bidirectional", False):
        return "a bidirectional model reads the whole sequence"
    return None


class _ManyToOneGraph(nn.Module):
    """Classifier / regressor over whole sequences: ``(inputs, lengths) -> (B, C | K)``.

    A summary core (LSTM-FCN, :mod:`rnnkit.tasks.fcn`): its LSTM branch runs as :class:`_Recurrence`, its
    convolutional branch as it is (eval mode: batch norm from the running statistics, padded steps masked), and
    the head reads both, ``(B, D·H + 128)``, as :meth:`~rnnkit.tasks.fcn.LSTMFCN.summary` gives them.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embed, _ = _input_stage(model)
        self.rec = _Recurrence(_recurrent_core(model))
        self.summary = model.core if getattr(model, "summarizes", False) else None
        self.pools = list(getattr(model, "pools", ["last"]))  # a classifier's ``pool`` parts, in their order

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        x = inputs if self.embed is None else self.embed(inputs)  # (B, T, I)
        out, finals = self.rec(x.transpose(0, 1), lengths, self.rec.zeros(x[:, 0]))  # out (T, B, D·H)
        top = finals[-self.rec.D :]  # the top layer's directions
        last = torch.cat([s[0] if isinstance(s, tuple) else s for s in top], dim=1)  # (B, D·H)
        parts = []
        for name in self.pools:  # as SequenceClassifier.encode: last states, masked mean, masked max over T
            if name == "last":
                parts.append(last)
            elif name == "mean":
                parts.append(out.sum(0) / lengths.unsqueeze(1).to(out.dtype))  # (B, D·H): out is 0 past each end
            else:
                valid = length_mask(lengths, out.shape[0], time_major=True, device=out.device).unsqueeze(2)
                parts.append(out.masked_fill(~valid, -float("inf")).amax(0))  # (B, D·H)
        h = torch.cat(parts, dim=1)  # (B, P·D·H)
        if self.summary is not None:  # LSTM-FCN: the pooled convolutional features beside the LSTM's state
            mask = length_mask(lengths, x.shape[1], device=x.device)  # (B, T)
            h = torch.cat([h, self.summary.conv_features(x, mask)], dim=1)  # (B, D·H + 128)
        return self.model.head(h)  # (B, C | K)


class _EnsembleGraph(nn.Module):
    """An ensemble's K members in one graph, ``(inputs, lengths) -> (B, C | K)``, as :class:`Ensemble` averages:
    classify ``log(mean_k softmax(logits_k))`` (its softmax is the mean of the members' probabilities), regress /
    forecast the mean of the members' outputs."""

    def __init__(self, model: Ensemble) -> None:
        super().__init__()
        self.members = nn.ModuleList(_ManyToOneGraph(m) for m in model.members)
        self.classify = model.config.task == "classify"

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        outs = [g(inputs, lengths) for g in self.members]  # K × (B, C | K)
        if self.classify:
            logp = torch.stack([torch.log_softmax(o, dim=-1) for o in outs])  # (K, B, C)
            return torch.logsumexp(logp, dim=0) - math.log(len(outs))  # (B, C)
        return torch.stack(outs).mean(0)  # (B, K)


class _ManyToOneStep(nn.Module):
    """Classifier / regressor, one element: ``(inputs_t, h[, c]) -> (B, C | K), h_out[, c_out]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embed, _ = _input_stage(model)
        self.rec = _Recurrence(model.core)

    def forward(self, inputs: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        x = inputs if self.embed is None else self.embed(inputs)  # (B, I)
        y, new = self.rec.step(x, self.rec.split(state))
        return (self.model.head(y), *self.rec.stack(new))  # (B, C | K), (L, B, H)...


class _GeneratorParts(nn.Module):
    """What the generator's sequence and step graphs share: the condition, the initial state, the inputs."""

    def __init__(self, model: SequenceGenerator) -> None:
        super().__init__()
        self.model = model
        self.rec = _Recurrence(model.core)
        self.conditional = model.cond is not None

    def condition(self, cond: Tensor | None) -> Tensor | None:
        return None if cond is None else self.model.cond(cond)  # (B, E)

    def initial(self, c: Tensor | None, ref: Tensor) -> list[State]:
        if self.model.init is None or c is None:
            return self.rec.zeros(ref)
        L, H = self.rec.L, self.rec.H
        # contiguous: scan needs the initial carry laid out like the step's result
        h0 = torch.tanh(self.model.init(c)).reshape(-1, L, H).transpose(0, 1).contiguous()  # (L, B, H)
        if self.rec.arity == 2:
            return [(h, torch.zeros_like(h)) for h in h0.unbind(0)]  # the cell starts empty
        return list(h0.unbind(0))

    def inputs(self, ids: Tensor, c: Tensor | None) -> Tensor:
        """``ids`` ``(B, T)`` → ``(B, T, I)``: embeddings, and the condition at every step where it enters there."""
        x = self.model.embed(ids)  # (B, T, E)
        if self.model.cond_input and c is not None:
            x = torch.cat([x, c.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=2)  # (B, T, 2E)
        return x


class _GeneratorGraph(_GeneratorParts):
    """``(ids, lengths[, category]) -> logits (B, T, V), h_n[, c_n]``."""

    def forward(self, ids: Tensor, lengths: Tensor, *cond: Tensor) -> tuple[Tensor, ...]:
        c = self.condition(cond[0] if cond else None)
        x = self.inputs(ids, c).transpose(0, 1)  # (T, B, I)
        out, finals = self.rec(x, lengths, self.initial(c, x[0]))  # (T, B, H)
        logits = self.model.head(out).transpose(0, 1)  # (B, T, V)
        return (logits, *self.rec.stack(finals))


class _GeneratorStep(_GeneratorParts):
    """``(ids_t[, category], h[, c]) -> logits (B, V), h_out[, c_out]``."""

    def forward(self, ids: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        cond, state = (rest[0], rest[1:]) if self.conditional else (None, rest)
        c = self.condition(cond)
        x = self.inputs(ids.unsqueeze(1), c)[:, 0]  # (B, I)
        y, new = self.rec.step(x, self.rec.split(state))
        return (self.model.head(y), *self.rec.stack(new))  # (B, V), (L, B, H)...


# --------------------------------------------------------------------------------------------------------------
# Graph specifications: names, dtypes, shapes


def _io(name: str, dtype: str, shape: list[int | str]) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def _specs(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per graph (``sequence``, ``step``): inputs and outputs as ``{"name", "dtype", "shape"}`` lists."""
    if isinstance(model, Ensemble):  # the members' inputs and outputs, one sequence graph
        return {"sequence": _specs(model.members[0])["sequence"]}
    cfg = model.config
    core = _recurrent_core(model)
    spec = _cell_spec(core)  # refuses cores that cannot be exported, with the reason
    L, H = core.num_layers, core.hidden_size
    state_in = [_io(name, "float32", [L, "B", H]) for name in spec.state]  # h (and c for an LSTM)
    state_out = [_io(s["name"] + "_out", "float32", s["shape"]) for s in state_in]
    if isinstance(model, SequenceGenerator):
        ids_seq, ids_step = _io("ids", "int64", ["B", "T"]), _io("ids", "int64", ["B"])
        cond: list[dict[str, Any]] = []
        if cfg.num_conditions:
            cond = [_io("category", "int64", ["B"])]
        elif cfg.condition_dim:
            cond = [_io("condition", "float32", ["B", cfg.condition_dim])]
        V = cfg.vocab_size
        return {
            "sequence": {
                "inputs": [ids_seq, _io("lengths", "int64", ["B"]), *cond],
                "outputs": [
                    _io("logits", "float32", ["B", "T", V]),
                    *[_io(s["name"] + "_n", "float32", s["shape"]) for s in state_in],
                ],
            },
            "step": {
                "inputs": [ids_step, *cond, *state_in],
                "outputs": [_io("logits", "float32", ["B", V]), *state_out],
            },
        }
    embed, F = _input_stage(model)
    name, size = ("logits", cfg.num_classes) if isinstance(model, SequenceClassifier) else ("outputs", cfg.num_outputs)
    if embed is not None:
        seq_in, step_in = _io("ids", "int64", ["B", "T"]), _io("ids", "int64", ["B"])
    else:
        seq_in, step_in = _io("inputs", "float32", ["B", "T", F]), _io("inputs", "float32", ["B", F])
    specs = {
        "sequence": {
            "inputs": [seq_in, _io("lengths", "int64", ["B"])],
            "outputs": [_io(name, "float32", ["B", size])],
        }
    }
    if _no_step_reason(model) is None:
        specs["step"] = {"inputs": [step_in, *state_in], "outputs": [_io(name, "float32", ["B", size]), *state_out]}
    return specs


def _example(spec: dict[str, Any], vocab_size: int) -> Tensor:
    """An example input for tracing: B = 2, T = 3 (neither 0 nor 1, so neither is specialised)."""
    shape = [{"B": 2, "T": 3}.get(s, s) if isinstance(s, str) else s for s in spec["shape"]]
    if spec["name"] == "lengths":
        return torch.tensor([3, 2])
    if spec["dtype"] == "int64":
        return torch.full(shape, 4 if spec["name"] == "ids" else 0, dtype=torch.long).clamp(max=max(vocab_size - 1, 0))
    return torch.zeros(shape)


# --------------------------------------------------------------------------------------------------------------
# Export


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's warnings (deprecations, 'torchvision is not installed') for one export."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export_graph(module: nn.Module, spec: dict[str, Any], vocab_size: int) -> bytes:
    """One graph as serialized ONNX bytes, dynamic in every ``"B"``/``"T"`` dimension of ``spec``."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ValueError(f"{ONNX_NOTE} (missing module {error.name})") from None
    dims = {"B": torch.export.Dim("B", min=1), "T": torch.export.Dim("T", min=1)}
    args = tuple(_example(s, vocab_size) for s in spec["inputs"])
    dynamic = [{i: dims[s] for i, s in enumerate(x["shape"]) if isinstance(s, str)} for x in spec["inputs"]]
    # a graph module has fixed leading parameters and maybe *args, whose shapes torch.export takes as one tuple
    fixed, varargs = _signature_of(module)
    shapes = (*dynamic[:fixed], tuple(dynamic[fixed:])) if varargs and len(dynamic) > fixed else tuple(dynamic)
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                verbose=False,
                input_names=[s["name"] for s in spec["inputs"]],
                output_names=[s["name"] for s in spec["outputs"]],
                dynamic_shapes=tuple(shapes),
            )
    except Exception as error:  # the exporter's messages run to pages; the cause stays chained for RNNKIT_DEBUG=1
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ValueError(f"torch.onnx.export failed (torch {torch.__version__}): {first}") from error
    return program.model_proto.SerializeToString()


def _signature_of(module: nn.Module) -> tuple[int, bool]:
    """How many fixed positional parameters ``module.forward`` has, and whether ``*args`` follow them."""
    kinds = [p.kind for p in inspect.signature(module.forward).parameters.values()]
    return kinds.count(inspect.Parameter.POSITIONAL_OR_KEYWORD), inspect.Parameter.VAR_POSITIONAL in kinds


def _paths(output: str | Path) -> dict[str, Path]:
    out = Path(output)
    if out.suffix != ".onnx":
        raise ValueError(f"--output must name a .onnx file (the step graph and a JSON go beside it), got {output!r}")
    if out.is_dir():
        raise ValueError(f"--output {output} is a folder; name the .onnx file to write")
    stem = out.with_suffix("")
    return {"sequence": out, "step": Path(f"{stem}.step.onnx"), "json": Path(f"{out}.json")}


def export_model(model: nn.Module, output: str | Path, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export a :class:`SequenceClassifier`, :class:`SequenceRegressor`, :class:`SequenceGenerator` or an
    :class:`~rnnkit.tasks.Ensemble` of classifiers / regressors to ONNX.

    Writes ``output`` (the whole-sequence graph), ``<stem>.step.onnx`` (one-direction recurrent cores; not for
    LSTM-FCN or ensembles) and ``<output>.json`` (the description returned; ``extra`` is merged into it, e.g. the
    vocabulary). The model is copied to the CPU in eval mode first; the caller's module is not changed. See the
    module docstring for the graphs' names and shapes.
    """
    if not isinstance(model, (SequenceClassifier, SequenceRegressor, SequenceGenerator, Ensemble)):
        raise TypeError(
            "export_model takes a SequenceClassifier, SequenceRegressor, SequenceGenerator or Ensemble, "
            f"got {type(model).__name__}"
        )
    paths = _paths(output)
    specs = _specs(model)
    model = copy.deepcopy(model).cpu().float().eval()
    vocab_size = model.config.vocab_size
    if isinstance(model, SequenceGenerator):
        graphs = {"sequence": _GeneratorGraph(model), "step": _GeneratorStep(model)}
    elif isinstance(model, Ensemble):
        graphs = {"sequence": _EnsembleGraph(model)}
    else:
        graphs = {"sequence": _ManyToOneGraph(model)}
        if "step" in specs:
            graphs["step"] = _ManyToOneStep(model)
    blobs = {name: _export_graph(graphs[name], spec, vocab_size) for name, spec in specs.items()}
    opset = _opset(blobs["sequence"])
    info: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "rnnkit_version": __version__,
        "torch_version": torch.__version__,
        "opset": opset,
        "task": model.config.task,
        "model": model.config.model,
        **({"ensemble": model.config.ensemble} if isinstance(model, Ensemble) else {}),
        "graphs": {name: {"file": paths[name].name, **spec} for name, spec in specs.items()},
        **(extra or {}),
    }
    for name, blob in blobs.items():
        write_bytes_atomic(paths[name], blob)
    if "step" not in blobs and paths["step"].exists():
        paths["step"].unlink()  # a stale step graph of an earlier export would not match this model
    write_json_atomic(paths["json"], info)
    return info


def _opset(blob: bytes) -> int | None:
    import onnx

    proto = onnx.load_from_string(blob)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def series_input_steps(config: dict[str, Any]) -> list[dict[str, Any]]:
    """What a series classification run does to a raw series ``(L, C)`` before its graph reads it, in order — the
    ``input_steps`` of ``model.onnx.json`` (an empty list for other runs), so the graph can be fed without rnnkit:

    1. ``{"downsample": f}``: every ``f`` consecutive steps averaged into one (the last over the steps it has),
       ``L' = ⌈L / f⌉`` (left out when ``f = 1``);
    2. ``{"series_norm": "zscore" | "both"}``: each series z-normalised per channel over its own steps (population
       std; a constant channel only centred); ``"both"`` puts those ``C`` channels first and the raw ones after
       (left out for ``"none"``);
    3. ``{"standardize": {"mean": [...], "std": [...]}}``: ``(x − mean_c) / std_c`` per channel of the result.
    """
    scaler = config.get("scaler")
    if config.get("app") != "classify-series" or not isinstance(scaler, dict):
        return []
    steps: list[dict[str, Any]] = []
    if int(config.get("downsample", 1)) > 1:
        steps.append({"downsample": int(config["downsample"])})
    if config.get("series_norm", "none") != "none":  # runs saved before --series-norm: none
        steps.append({"series_norm": config["series_norm"]})
    steps.append({"standardize": {"mean": list(scaler["mean"]), "std": list(scaler["std"])}})
    return steps


def export_run(run: Any, output: str | Path | None = None) -> dict[str, Any]:
    """Export a loaded run (:func:`rnnkit.runs.load_run`) to ``output`` (default ``RUN/model.onnx``).

    The JSON beside it also holds the run's vocabulary and classes, for a generator which category is which, and
    for a series classifier the steps from a raw series to the graph's inputs (:func:`series_input_steps`).
    Returns that JSON's content with ``"paths"`` (the files written) added.
    """
    output = Path(output) if output is not None else Path(run.path) / "model.onnx"
    extra: dict[str, Any] = {"run": str(Path(run.path).resolve())}
    if run.vocab is not None:
        extra["vocab"] = run.vocab.to_dict()  # specials (ids 0-3), then symbols from id 4 on
    if run.classes:
        extra["classes"] = list(run.classes)
    steps = series_input_steps(run.config)
    if steps:
        extra["input_steps"] = steps
    info = export_model(run.model, output, extra=extra)
    paths = _paths(output)
    info["paths"] = [str(paths[g]) for g in info["graphs"]] + [str(paths["json"])]
    return info


# --------------------------------------------------------------------------------------------------------------
# Check an export in onnxruntime


def verify_export(model: nn.Module, output: str | Path, *, lengths: tuple[int, ...] = (1, 5, 12), seed: int = 0):
    """Max ``|ONNX − PyTorch|`` of the graphs at ``output`` on random inputs of each length in ``lengths``.

    The sequence graph is compared with ``model(batch)`` on a padded batch (one row per length); the step graph,
    fed one element at a time, with the same (classifier: the last step's logits; generator: every step's logits,
    starting from the sequence graph's state after ``BOS``). Needs ``onnxruntime``.
    """
    import numpy as np
    import onnxruntime as ort

    from rnnkit.data.batching import Batch

    paths = _paths(output)
    model = copy.deepcopy(model).cpu().float().eval()
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    T, B = max(lengths), len(lengths)
    lens = torch.tensor(lengths)
    generator = isinstance(model, SequenceGenerator)
    tokens = cfg.vocab_size > 0
    if tokens:
        x = torch.randint(4, cfg.vocab_size, (B, T), generator=gen)
        if generator:
            x[:, 0] = BOS
        x = x.masked_fill(~length_mask(lens, T), 0)  # (B, T) padded with PAD
    else:
        x = torch.randn(B, T, cfg.input_features, generator=gen)
        x = x * length_mask(lens, T).unsqueeze(2)  # (B, T, F), zero past each end
    cond = None
    if generator and cfg.num_conditions:
        cond = torch.randint(0, cfg.num_conditions, (B,), generator=gen)
    elif generator and cfg.condition_dim:
        cond = torch.randn(B, cfg.condition_dim, generator=gen)
    with torch.no_grad():
        ref = model(Batch(x, lens, None, cond))[0]
    feeds = {"ids" if tokens else "inputs": x.numpy(), "lengths": lens.numpy()}
    if cond is not None:
        feeds["category" if cfg.num_conditions else "condition"] = cond.numpy()
    seq = ort.InferenceSession(str(paths["sequence"]), providers=["CPUExecutionProvider"])
    out = seq.run(None, feeds)
    worst = float(np.abs(out[0] - ref.numpy()).max())
    if not paths["step"].exists():
        return worst
    step = ort.InferenceSession(str(paths["step"]), providers=["CPUExecutionProvider"])
    names = [i.name for i in step.get_inputs()]
    n_state = sum(n in ("h", "c") for n in names)
    if generator:
        first = seq.run(None, {**feeds, "ids": x[:, :1].numpy(), "lengths": np.ones(B, np.int64)})  # BOS
        state = first[1:]
        for t in range(1, T):
            got = step.run(None, _step_feeds(names, x[:, t].numpy(), cond, state))
            logits, state = got[0], got[1:]
            rows = (lens > t).numpy()
            worst = max(worst, float(np.abs(logits[rows] - ref[:, t].numpy()[rows]).max()))
        return worst
    L, H = model.core.num_layers, model.core.hidden_size
    for b in range(B):
        state = [np.zeros((L, 1, H), np.float32) for _ in range(n_state)]
        for t in range(int(lens[b])):
            got = step.run(None, _step_feeds(names, x[b : b + 1, t].numpy(), None, state))
            logits, state = got[0], got[1:]
        worst = max(worst, float(np.abs(logits[0] - ref[b].numpy()).max()))
    return worst


def _step_feeds(names: list[str], x_t, cond: Tensor | None, state: list) -> dict[str, Any]:
    feeds = {names[0]: x_t}
    rest = names[1:]
    if cond is not None:
        feeds[rest[0]] = cond.numpy()
        rest = rest[1:]
    feeds.update(dict(zip(rest, state, strict=True)))
    return feeds


# --------------------------------------------------------------------------------------------------------------
# rnnkit export


def add_cli(subparsers: Any) -> None:
    """Declare ``rnnkit export RUN [--format onnx] [--output PATH] [--check | --no-check]``."""
    import argparse

    from rnnkit.cliutil import Formatter as _Formatter

    p = subparsers.add_parser(
        "export",
        help="export a run's model to ONNX: a whole-sequence graph and a step graph with explicit state",
        description=(
            "Write RUN/model.onnx (the whole-sequence graph, dynamic batch and length), RUN/model.step.onnx (one\n"
            "time step with explicit state inputs and outputs; not for bidirectional models) and RUN/model.onnx.json\n"
            "(input/output names and shapes, vocabulary, classes). With onnxruntime installed the graphs are run on\n"
            "random inputs and compared with PyTorch."
        ),
        formatter_class=_Formatter,
    )
    p.add_argument("run", help="a run folder written by `rnnkit train`")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="the export format")
    p.add_argument("--output", default=None, help="the .onnx file to write (default: RUN/model.onnx)")
    p.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare the graphs with PyTorch in onnxruntime (skipped when it is not installed)",
    )
    p.set_defaults(func=_cmd_export)


def _signature(spec: dict[str, Any]) -> str:
    def one(s: dict[str, Any]) -> str:
        dims = ", ".join(str(d) for d in s["shape"])
        return f"{s['name']} ({dims}{',' if len(s['shape']) == 1 else ''}) {s['dtype']}"

    return ", ".join(one(s) for s in spec["inputs"]) + " -> " + ", ".join(one(s) for s in spec["outputs"])


def _cmd_export(args: Any) -> int:
    from rnnkit.runs import load_run

    run = load_run(args.run)
    info = export_run(run, args.output)
    for name, spec in info["graphs"].items():
        print(f"wrote {Path(info['paths'][0]).parent / spec['file']} ({name}): {_signature(spec)}")
    print(f"wrote {info['paths'][-1]} (names, shapes, vocabulary, classes)")
    if "step" not in info["graphs"]:
        print(f"no step graph: {_no_step_reason(run.model)}")
    if args.check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print("onnxruntime is not installed (pip install 'rnnkit[onnx]'): skipped the check")
            return 0
        lengths = (1, 5, 12)
        worst = verify_export(run.model, info["paths"][0], lengths=lengths)
        if not math.isfinite(worst) or worst > 1e-4:
            raise ValueError(f"the exported graphs differ from PyTorch by {worst:.2e} (more than 1e-4): please report")
        Ts = ", ".join(map(str, lengths))
        print(f"onnxruntime check: max |ONNX - PyTorch| = {worst:.1e} on random inputs (T = {Ts})")
    return 0
