"""Vanishing and exploding gradients: the lecture's TinyRNN experiment and gradient norms through time.

Shape symbols: T time, B batch, I input features, H hidden size, L layers, D directions.

* :class:`TinyRNN` and :func:`show_grads` are the lecture's scalar demo, ``h_t = relu(w_h·h_{t−1} + w_x·x_t)``
  with ``w_x = 0`` and ``ŷ_t = w_y·h_t``, so ``ŷ_L = w_y·w_hᴸ·h_0`` and the loss gradients grow or shrink like
  ``w_hᴸ``. Every number is computed by running the model and calling ``backward`` (nothing is tabulated).
* :func:`gradient_flow` measures ``‖∂L/∂h_t‖`` at every step of every layer and direction of an rnnkit layer or a
  task model, through :meth:`rnnkit.layers.Recurrent.forward_states` (the total derivative through time).
* :func:`compare_flow`, :func:`write_flow_csv`, :func:`plot_flow` and :func:`flow_table` back
  ``rnnkit gradients --compare`` and ``rnnkit gradients RUN``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.layers import Recurrent, StepStates
from rnnkit.masks import length_mask

__all__ = [
    "CANCELLATION_NOTE",
    "GradientFlow",
    "TinyRNN",
    "compare_flow",
    "flow_table",
    "gradient_flow",
    "plot_flow",
    "show_grads",
    "tiny_cancellations",
    "write_flow_csv",
]

LECTURE_WH = (0.1, 1, 10)
"""The lecture's three ``wh_init`` values: vanishing, stable, exploding."""
LECTURE_LENGTHS = (1, 2, 3, 4, 5, 10)
"""The lecture's sequence lengths ``L``."""


# ---------------------------------------------------------------------------------------------------------- TinyRNN
class TinyRNN(nn.Module):
    """The lecture's one-unit RNN: ``h_t = relu(w_h·h_{t−1} + w_x·x_t)``, ``ŷ_t = w_y·h_t``, ``h_0 = h_init``.

    Parameters, registered in the lecture's order (so ``named_parameters`` gives ``h_init, wh, wy``):
    ``h_init = 1.0``, ``wh = wh_init``, ``wy = 1.0``, all 0-d. ``w_x = 0`` is a buffer (not learnable), as in the
    lecture, so the inputs never matter and the gradients depend on ``w_h`` and ``L`` only.

    Args:
        wh_init: the initial recurrent weight ``w_h``.
        dtype: the dtype of every parameter; the lecture's is float32.
    """

    def __init__(self, wh_init: float = 1, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.h_init = nn.Parameter(torch.tensor(1.0, dtype=dtype))
        self.wh = nn.Parameter(torch.tensor(wh_init).to(dtype))
        self.register_buffer("wx", torch.tensor(0.0, dtype=dtype))
        self.wy = nn.Parameter(torch.tensor(1.0, dtype=dtype))

    def forward(self, x_seq: Tensor) -> tuple[Tensor, Tensor]:
        """Run over ``x_seq`` ``(L,)``; returns ``(y (L,), h (L+1,))``, ``h[0] = h_init``."""

        def _single_step(x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
            new_h = torch.relu(self.wh * h + self.wx * x)
            y = self.wy * new_h
            return y, new_h

        h = self.h_init
        h_list = [h]
        y_list = []
        for x in x_seq:
            y, h = _single_step(x, h)
            y_list.append(y)
            h_list.append(h)
        return torch.stack(y_list), torch.stack(h_list)  # (L,), (L+1,)


def _tiny_run(wh_init: float, length: int, dtype: torch.dtype) -> tuple[TinyRNN, Tensor]:
    """One run of the lecture's experiment: returns the model (its ``.grad`` filled) and ``ŷ_L``."""
    criterion = nn.MSELoss()
    rnn = TinyRNN(wh_init=wh_init, dtype=dtype)
    x_seq = torch.ones(length, dtype=dtype)  # (L,)
    y_seq_pred, _ = rnn(x_seq)
    # the lecture's fake target: one below the prediction, so the MSE is 1 (in exact arithmetic)
    y_true = y_seq_pred[-1].detach() - 1
    loss = criterion(y_seq_pred[-1], y_true)
    loss.backward()
    return rnn, y_seq_pred[-1].detach()


def show_grads(
    wh_init: float,
    lengths: Sequence[int] = LECTURE_LENGTHS,
    dtype: torch.dtype = torch.float32,
) -> list[str]:
    """The lecture's ``show_grads``: the header ``wh_init = …`` and one line of parameter gradients per length.

    For each ``L`` a fresh :class:`TinyRNN` reads ``L`` ones, the MSE between ``ŷ_L`` and the target
    ``ŷ_L − 1`` is back-propagated, and the line is printed in the lecture's format, e.g.
    ``" Length= 1 h_init.grad = 0.200000, wh.grad = 2.000000, wy.grad = 0.200000"`` (the leading space is the
    lecture's f-string). In exact arithmetic ``h_init.grad = wy.grad = 2·w_hᴸ`` and ``wh.grad = 2L·w_hᴸ⁻¹``.

    Args:
        wh_init: ``w_h``; printed as given (``1`` stays ``1``, ``0.1`` stays ``0.1``).
        lengths: the sequence lengths ``L ≥ 1``.
        dtype: float32 (the lecture's) or float64.
    """
    if isinstance(wh_init, bool) or not isinstance(wh_init, (int, float)) or not math.isfinite(wh_init):
        raise ValueError(f"wh_init must be a finite number, got {wh_init!r}")
    lines = [f"wh_init = {wh_init}"]
    for L in lengths:
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise ValueError(f"lengths must be positive integers, got {L!r}")
        rnn, _ = _tiny_run(wh_init, L, dtype)
        grads = ", ".join(f"{name}.grad = {p.grad:6.6f}" for name, p in rnn.named_parameters())
        lines.append(f" Length={L:2d} " + grads)
    return lines


def tiny_cancellations(
    wh_inits: Sequence[float], lengths: Sequence[int], dtype: torch.dtype = torch.float32
) -> list[tuple[float, int]]:
    """The ``(wh_init, L)`` cells where the target ``ŷ_L − 1`` rounds back to ``ŷ_L`` in ``dtype``.

    There the loss is 0 and every gradient is exactly 0: an artefact of the finite precision of the *target*, not
    of back-propagation (float32 has a 24-bit significand, so ``1e10 − 1 == 1e10``).
    """
    found = []
    for wh in wh_inits:
        for L in lengths:
            rnn = TinyRNN(wh_init=wh, dtype=dtype)
            with torch.no_grad():
                y = rnn(torch.ones(L, dtype=dtype))[0][-1]
            if bool(y - 1 == y):
                found.append((wh, L))
    return found


CANCELLATION_NOTE = (
    "In {dtype} the target y_pred - 1 rounds back to y_pred (e.g. 1e10 - 1 == 1e10 in float32, whose significand "
    "has 24 bits), so the loss and every gradient there are exactly 0: a precision artefact of the target, not a "
    "vanishing gradient. --dtype float64 keeps the -1 and shows the true, exploding values."
)
"""The footnote ``rnnkit gradients --tiny`` prints after tables with such cells (``{dtype}`` filled in)."""


# ---------------------------------------------------------------------------------------------------------- flow
@dataclass
class GradientFlow:
    """‖∂L/∂h_t‖ through time for every layer and direction of one model on one batch.

    Attributes:
        norms: series label → ``T`` floats, one per time step ``t`` (reverse directions re-indexed from processing
            order to time). Labels are ``"l{k}"`` / ``"l{k}_reverse"`` (torch.nn's parameter suffixes). Each value
            is the L2 norm of ``∂L/∂h_t`` for one sequence ``(H,)``, averaged over the sequences still running at
            ``t`` (``t < lengths[b]``); ``T`` is the longest length in the batch.
        loss: the loss the gradients are of.
        lengths: each sequence's length ``(B,)``.
    """

    norms: dict[str, list[float]]
    loss: float
    lengths: list[int]


LossFn = Callable[[Tensor, object], Tensor]


def _last_step_sum(output: Tensor, lens: Tensor, batch_first: bool) -> Tensor:
    """Sum of the top layer's output at each sequence's last valid step: the default loss for bare layers."""
    out = output.transpose(0, 1) if batch_first else output  # (T, B, D·H)
    rows = torch.arange(out.shape[1], device=out.device)
    return out[lens - 1, rows].sum()  # (B, D·H) -> scalar


def _norms_by_time(states: StepStates, loss: Tensor, lens: Tensor) -> dict[str, list[float]]:
    """Per-time-step mean (over running sequences) of ‖∂L/∂h_t‖ for every layer and direction."""
    flat = [h for layer in states.h for seq in layer for h in seq]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    T_max = int(lens.max())
    valid = length_mask(lens, T_max, time_major=True)  # (T, B)
    t = torch.arange(T_max, device=lens.device).unsqueeze(1)  # (T, 1)
    count = valid.sum(dim=1).clamp(min=1)  # (T,)
    # time t of row b, in the reverse direction, is processing step lengths[b] − 1 − t
    rev_step = (lens.unsqueeze(0) - 1 - t).clamp(min=0)  # (T, B)
    out: dict[str, list[float]] = {}
    i = 0
    for k, layer in enumerate(states.h):
        for d, seq in enumerate(layer):
            g = [torch.zeros_like(h) if gr is None else gr for h, gr in zip(seq, grads[i : i + len(seq)], strict=True)]
            i += len(seq)
            n = torch.stack([x.detach().reshape(x.shape[0], -1).norm(dim=1) for x in g])  # (S, B)
            by_time = n[:T_max] if d == 0 else n.gather(0, rev_step)  # (T, B)
            mean = (by_time * valid).sum(dim=1) / count  # (T,)
            out[f"l{k}" + ("_reverse" if d else "")] = [float(v) for v in mean]
    return out


def gradient_flow(
    model: nn.Module,
    batch: object,
    *,
    loss_fn: LossFn | None = None,
    lengths: Sequence[int] | Tensor | None = None,
    hx: object = None,
) -> GradientFlow:
    """‖∂L/∂h_t‖ at every time step, per layer and direction, through ``forward_states``.

    The loss is computed from the very state tensors that ``forward_states`` records, so
    ``torch.autograd.grad(L, h_t)`` is the total derivative through all later steps and layers. For an LSTM it is
    the gradient with respect to ``h_t`` (the cell state ``c_t`` is a separate node). Dropout acts as in the
    model's current mode (loaded runs are in eval mode).

    Args:
        model: an rnnkit layer (:class:`~rnnkit.layers.Recurrent`: ``RNN``, ``LSTM``, ``GRU`` or one with a custom
            cell), or a task model whose ``core`` (a seq2seq model: ``encoder``) is one and whose
            ``forward(batch)`` returns ``(output, loss)``: classifier, generator, tagger, regressor (forecast),
            language model, seq2seq; of an LSTM-FCN / MLSTM-FCN classifier or regressor the flow through its LSTM
            branch (labels ``l0``, …) under the whole model's loss.
        batch: for a layer, its input ``(T, B, I)`` (``(B, T, I)`` with ``batch_first``); for a task model, a
            :class:`~rnnkit.data.batching.Batch` with targets.
        loss_fn: layers only: ``loss_fn(output, h_n) -> scalar`` on the layer's outputs (as ``forward`` returns
            them). Default: the sum of the top layer's output at each sequence's last valid step, i.e. a unit
            read-out of the last step only. Task models always use their own loss, computed by their own
            ``forward`` (the classifier's cross-entropy over the last valid states, the generator's next-symbol
            cross-entropy with padding ignored, the tagger's per token, the regressor's error, seq2seq's
            teacher-forced cross-entropy).
        lengths, hx: layers only: passed to ``forward_states``.

    Returns:
        :class:`GradientFlow`.
    """
    if not isinstance(model, Recurrent):  # a task model: its forward(batch) gives the loss
        members = getattr(model, "members", None)
        if isinstance(members, nn.ModuleList):
            raise ValueError(
                f"the model is an ensemble of {len(members)} members, each with its own recurrent core: the flow is "
                "one model's (gradient_flow(model.members[i], batch) in Python; on the command line a run trained with "
                "--ensemble 1)"
            )
        if loss_fn is not None or lengths is not None or hx is not None:
            raise ValueError("loss_fn, lengths and hx are for bare layers; a task model takes them from the batch")
        if not isinstance(getattr(model, "core", None) or getattr(model, "encoder", None), nn.Module):
            raise TypeError(
                f"gradient_flow needs an rnnkit layer (rnnkit.Recurrent, RNN, LSTM, GRU) or a task model whose core "
                f"is one, got {type(model).__name__}"
            )
        return _task_flow(model, batch)
    if not isinstance(batch, Tensor) or batch.dim() not in (2, 3):
        raise ValueError("for a layer, batch is its input tensor (T, B, I), (B, T, I) with batch_first, or (T, I)")
    x = batch
    if x.dim() == 2:  # unbatched (T, I): one sequence
        x = x.unsqueeze(0 if model.batch_first else 1)
    T, B = (x.shape[1], x.shape[0]) if model.batch_first else (x.shape[0], x.shape[1])
    with torch.enable_grad():
        states = model.forward_states(x, hx, lengths)
        lens = torch.full((B,), T, dtype=torch.long) if lengths is None else torch.as_tensor(lengths).long()
        lens = lens.to(states.output.device)
        if loss_fn is None:
            loss = _last_step_sum(states.output, lens, model.batch_first)
        else:
            loss = loss_fn(states.output, states.h_n)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor")
        return GradientFlow(_norms_by_time(states, loss, lens), float(loss.detach()), lens.tolist())


def _core_of(model: nn.Module) -> Recurrent:
    """The recurrent core whose steps the flow is measured at: ``core`` (one-pass task models), else ``encoder``
    (seq2seq: the flow back through the source steps); of an LSTM-FCN core its LSTM branch (the loss is the
    whole model's, the convolutional branch has no state carried through time)."""
    core = getattr(model, "core", None)
    if core is None:
        core = getattr(model, "encoder", None)
    if getattr(core, "summary_only", False) and isinstance(getattr(core, "lstm", None), Recurrent):
        core = core.lstm
    if not isinstance(core, Recurrent):
        name = getattr(getattr(model, "config", None), "model", type(core).__name__)
        raise ValueError(f"model {name!r} has no per-step recurrent states: gradient flow needs an rnnkit layer core")
    return core


def _task_flow(model: nn.Module, batch: object) -> GradientFlow:
    """Run a task model's own ``forward(batch) -> (output, loss)`` with its core recording every step: the core's
    ``forward`` is replaced, for this one call, by ``forward_states`` (the same computation, each state its own
    graph node), so the loss is exactly the model's and ‖∂L/∂h_t‖ is taken at the states it was computed from."""
    from rnnkit.data.batching import Batch

    if not isinstance(batch, Batch):
        raise TypeError(f"a task model takes a rnnkit Batch, got {type(batch).__name__}")
    if batch.targets is None:
        raise ValueError("the batch has no targets: gradient flow needs a loss")
    core = _core_of(model)
    recorded: list[StepStates] = []

    def recording(x: Tensor, hx: object = None, lengths: object = None) -> tuple[Tensor, object]:
        if recorded:
            raise ValueError("the model runs its core more than once per batch: gradient flow needs one pass")
        states = core.forward_states(x, hx, lengths)
        recorded.append(states)
        return states.output, states.h_n

    core.forward = recording  # an instance attribute: nn.Module.__call__ finds it before the class's forward
    try:
        with torch.enable_grad():
            _, loss = model(batch)
    finally:
        del core.forward
    if not recorded:
        raise ValueError("the model's forward did not run its recurrent core")
    states = recorded[0]
    lens = batch.lengths.to(states.output.device)
    return GradientFlow(_norms_by_time(states, loss, lens), float(loss.detach()), lens.tolist())


def compare_flow(
    names: Sequence[str],
    length: int = 50,
    hidden_size: int = 32,
    input_size: int = 8,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Gradient flow of fresh registry cores (``rnn``, ``lstm``, ``gru``, …) on one synthetic batch.

    Every model is built with the same sizes and seed ``seed`` (its default init) and reads the same batch
    ``x ~ N(0, 1)`` ``(B, T, I)``; the loss is the default of :func:`gradient_flow` (a unit read-out of the last
    step), so the curves show how ``‖∂L/∂h_t‖`` decays (or grows) going back from ``t = T − 1``.

    Returns:
        ``"{name} {series}"`` (e.g. ``"lstm l0"``) → ``T`` norms.
    """
    from rnnkit.tasks.registry import MODELS, build_core

    for v, what in ((length, "length"), (hidden_size, "hidden_size"), (input_size, "input_size")):
        if v < 1:
            raise ValueError(f"{what} must be ≥ 1, got {v}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if not names:
        raise ValueError("name at least one model to compare")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; choose from: {', '.join(sorted(MODELS))}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, length, input_size, generator=gen)  # (B, T, I)
    out: dict[str, list[float]] = {}
    for name in dict.fromkeys(names):
        torch.manual_seed(seed)
        core = build_core(name, input_size, hidden_size)
        if not isinstance(core, Recurrent):
            raise ValueError(f"model {name!r} has no per-step recurrent states: gradient flow needs an rnnkit layer")
        for label, norms in gradient_flow(core, x).norms.items():
            out[f"{name} {label}"] = norms
    return out


# ---------------------------------------------------------------------------------------------------------- output
def flow_table(norms: dict[str, list[float]]) -> str:
    """A text table: each series' norm at the first, middle and last step, and the ratio first/last."""
    rows = [("series", "t=0", "middle", "last", "first/last")]
    for label, v in norms.items():
        T = len(v)
        first, mid, last = v[0], v[(T - 1) // 2], v[-1]
        ratio = first / last if last else float("inf")
        rows.append((label, f"{first:.3e}", f"{mid:.3e} (t={(T - 1) // 2})", f"{last:.3e} (t={T - 1})", f"{ratio:.3e}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def write_flow_csv(norms: dict[str, list[float]], path: str | os.PathLike[str]) -> Path:
    """Write the series as CSV: a column ``t`` and one column per series (empty past a shorter series' end)."""
    from rnnkit.checkpoint import write_text_atomic

    T = max(len(v) for v in norms.values())
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["t", *norms])
    for t in range(T):
        w.writerow([t, *(repr(v[t]) if t < len(v) else "" for v in norms.values())])
    return write_text_atomic(path, buf.getvalue())


def plot_flow(norms: dict[str, list[float]], path: str | os.PathLike[str], title: str | None = None) -> Path | None:
    """Plot ``‖∂L/∂h_t‖`` against ``t`` on a log-scale y axis, one line per series; None without matplotlib."""
    from rnnkit.plots import _figure, _save

    fig = _figure(7.0, 4.2)
    if fig is None:
        return None
    ax = fig.subplots()
    for label, v in norms.items():
        pts = [(t, x) for t, x in enumerate(v) if x > 0 and math.isfinite(x)]  # a log axis cannot show 0
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label)
    ax.set_yscale("log")
    ax.set(xlabel="time step t", ylabel="‖∂L/∂h_t‖ (mean over sequences)", title=title or "gradient flow")
    ax.grid(alpha=0.3, which="both")
    if ax.get_lines():
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)
