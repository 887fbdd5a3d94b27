"""The trainer: AdamW, gradient clipping, a warm-up LR schedule, early stopping, progress and resumable runs.

Any task model works: an ``nn.Module`` whose ``forward(batch) -> (outputs, loss)`` takes a
:class:`~rnnkit.data.batching.Batch`. Training data is a function ``epoch -> Iterable[Batch]`` (or a re-iterable
such as a list or a ``DataLoader``, whose sampler gets ``set_epoch(epoch)``), so the data order is a function of
``(seed, epoch)`` and a resumed run sees exactly the batches the uninterrupted run would have seen.

With ``out_dir`` set, :func:`fit` writes into that run folder::

    out_dir/
      checkpoint/          resumable state after every epoch (and at a mid-epoch stop); see rnnkit.checkpoint
      curve.csv            one row per completed epoch (rewritten atomically after each epoch)
      model.safetensors    the best weights (by the monitored validation metric), written when fit returns

Reproducibility: at the start of epoch ``e`` (0-based) the trainer reseeds python ``random``, numpy and torch from
``(seed, e)``; a mid-epoch resume restores the saved generator states instead. With the same seed on CPU, a run
that is interrupted and resumed ends with bitwise the same weights as an uninterrupted one.

Truncated BPTT (``TrainConfig.tbptt = (K1, K2)``, Sutskever's TBPTT(k1, k2)): the batches of an epoch are
consecutive pieces of ``B`` parallel streams (row ``b`` of each batch continues row ``b`` of the previous one, as
:class:`rnnkit.data.stream.TokenStream` yields them; no padding). The trainer cuts every batch into chunks of ``K1``
steps and takes one optimizer step per chunk. Each update

* uses the loss terms of the chunk's ``K1`` steps only (their mean, like an ordinary batch), and
* backpropagates through the last ``K2`` steps: the chunk and the ``K2 − K1`` steps before it, which are re-run with
  the current weights (and fresh dropout masks) from the detached state at their start; gradients stop there.

So the loss at the chunk's last step reaches ``K2`` steps back and its first ``K2 − K1 + 1``. The state (detached)
and the last ``K2 − K1`` steps' inputs are carried to the next chunk; an epoch starts from the model's initial state
(every pass over the streams restarts them), and a mid-epoch checkpoint saves the carried state, so a resumed run
continues exactly. ``K1 = K2 ≥ T`` is plain BPTT over each batch. The model needs
``forward_stateful(batch, state) -> (outputs, loss, state)`` (``state=None``: its initial state) and
``state_batch_dim`` (the batch axis of its state tensors; 1 for the layers' ``hx`` layout, the default).

Several processes (``torchrun``; see :mod:`rnnkit.distributed`): every process builds the same global batches and
trains on its rows, DDP averages the gradients, and only rank 0 writes the run folder.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit import distributed as dist_
from rnnkit.checkpoint import (
    has_checkpoint,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
    save_run_weights,
    write_text_atomic,
)
from rnnkit.data.batching import IGNORE_INDEX, Batch
from rnnkit.layers import detach_state

__all__ = [
    "CHECKPOINT_DIR",
    "CURVE_FILE",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "fit",
    "history_to_csv",
    "lr_factor",
    "seed_everything",
]

CHECKPOINT_DIR = "checkpoint"
"""Sub-folder of a run folder holding the resumable checkpoint."""
CURVE_FILE = "curve.csv"
"""Training-curve CSV inside a run folder."""

SCHEDULES = ("cosine", "linear", "constant")
PROGRESS_MODES = ("auto", "bar", "log", "none")
# config fields that define the training trajectory: a resumed run must use the same values
RESUME_FIELDS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "clip_norm",
    "schedule",
    "warmup",
    "min_lr_ratio",
    "monitor",
    "mode",
    "seed",
    "tbptt",
)
# reasons a run stops; the first two are final (resume returns at once), the others can be resumed
STOP_COMPLETED, STOP_EARLY, STOP_TIME, STOP_INTERRUPTED = "completed", "early_stop", "time", "interrupted"
_FINAL = (STOP_COMPLETED, STOP_EARLY)

TrainData = Callable[[int], Iterable[Batch]] | Iterable[Batch]
ValData = Callable[[], Iterable[Batch]] | Iterable[Batch]
EvaluateFn = Callable[[nn.Module, Iterable[Batch]], Mapping[str, float]]


class NonFiniteLossError(ValueError):
    """The training loss (or gradient norm) became NaN or infinite; the last good checkpoint is untouched.

    Attributes: ``epoch`` (1-based), ``step`` (global, 1-based), ``quantity`` ("loss" or "gradient norm"),
    ``value``.
    """

    def __init__(self, message: str, *, epoch: int, step: int, quantity: str, value: float) -> None:
        super().__init__(message)
        self.epoch, self.step, self.quantity, self.value = epoch, step, quantity, value


@dataclass
class TrainConfig:
    """How to train; saved in every checkpoint. Defaults suit small char-level RNNs on a CPU."""

    epochs: int = 10  # passes over the training data
    batch_size: int = 64  # items per batch: used by the caller's batching, recorded so a resume can check it
    lr: float = 3e-3  # peak learning rate of AdamW (reached at the end of the warm-up)
    weight_decay: float = 0.01  # AdamW decoupled weight decay, on matrices only (biases are not decayed)
    clip_norm: float | None = 1.0  # clip the global gradient norm to this; None: no clipping (norm still logged)
    schedule: str = "cosine"  # after a linear warm-up: "cosine" | "linear" decay to min_lr_ratio, or "constant"
    warmup: float = 0.05  # warm-up length as a fraction of all training steps (0: none)
    min_lr_ratio: float = 0.1  # final lr / peak lr for the "cosine" and "linear" schedules
    patience: int | None = 5  # stop after this many epochs without improvement of `monitor`; None: never stop
    min_delta: float = 0.0  # an improvement must beat the best value by more than this
    monitor: str = "loss"  # validation metric for early stopping and best weights ("loss", "accuracy", ...)
    mode: str = "auto"  # "min" | "max" | "auto": min for names with loss/nll/error/mse/mae/perplexity, else max
    seed: int = 0  # seeds python, numpy and torch; the data order is a function of (seed, epoch)
    max_minutes: float | None = None  # wall-clock budget of this call; stops at a step boundary, saving first
    device: str = "cpu"  # torch device of the model and batches ("cpu", "cuda", "cuda:1", ...)
    log_every: int = 50  # steps between log lines when the progress bar is off (0: one line per epoch only)
    progress: str = "auto"  # "auto": a bar on a terminal, else log lines | "bar" | "log" | "none"
    tbptt: tuple[int, int] | None = None  # truncated BPTT (K1, K2): an update every K1 steps through the last K2

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}")

        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad("epochs", "must be an integer >= 1")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch_size", "must be an integer >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "must be a positive finite number (try 3e-3)")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise bad("weight_decay", "must be >= 0")
        if self.clip_norm is not None and not (self.clip_norm > 0 and math.isfinite(self.clip_norm)):
            raise bad("clip_norm", "must be > 0, or None for no clipping")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"must be one of {', '.join(SCHEDULES)}")
        if not 0 <= self.warmup < 1:
            raise bad("warmup", "must be a fraction in [0, 1)")
        if not 0 <= self.min_lr_ratio <= 1:
            raise bad("min_lr_ratio", "must be in [0, 1]")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise bad("patience", "must be an integer >= 1, or None to never stop early")
        if not self.min_delta >= 0:
            raise bad("min_delta", "must be >= 0")
        if self.mode not in ("min", "max", "auto"):
            raise bad("mode", "must be 'min', 'max' or 'auto'")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", "must be an integer >= 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise bad("max_minutes", "must be > 0, or None for no limit")
        if not isinstance(self.log_every, int) or self.log_every < 0:
            raise bad("log_every", "must be an integer >= 0")
        if self.progress not in PROGRESS_MODES:
            raise bad("progress", f"must be one of {', '.join(PROGRESS_MODES)}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise bad("device", "is not a torch device (e.g. 'cpu' or 'cuda')") from None
        if self.tbptt is not None:
            pair = (self.tbptt, self.tbptt) if isinstance(self.tbptt, int) else tuple(self.tbptt)
            if (
                len(pair) != 2
                or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in pair)
                or pair[1] < pair[0]
            ):
                raise bad("tbptt", "must be (K1, K2) with integers 1 <= K1 <= K2 (e.g. (64, 64)), or None")
            self.tbptt = (int(pair[0]), int(pair[1]))

    @property
    def minimize(self) -> bool:
        """True when a smaller ``monitor`` value is better."""
        if self.mode != "auto":
            return self.mode == "min"
        return any(s in self.monitor.lower() for s in ("loss", "nll", "error", "mse", "mae", "perplexity"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. a saved ``config.json`` section), ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        history: one dict per completed epoch, the rows of ``curve.csv`` (``epoch`` is 1-based).
        best_epoch: 1-based epoch whose weights the model holds now (``None`` if no epoch completed).
        best_metric: its validation ``monitor`` value (``None`` without validation data).
        monitor: the metric's column name, e.g. ``"val_loss"``.
        epochs_run: epochs completed in total, over all resumes.
        steps: optimizer steps taken in total.
        train_seconds: training wall time in total (validation included, checkpoint writing excluded).
        stopped_reason: "completed", "early_stop", "time" (max_minutes) or "interrupted" (Ctrl-C or
            :meth:`Trainer.request_stop`); the last two can be continued with ``resume=True``.
        out_dir: the run folder, or ``None``.
    """

    history: list[dict[str, Any]]
    best_epoch: int | None
    best_metric: float | None
    monitor: str
    epochs_run: int
    steps: int
    train_seconds: float
    stopped_reason: str
    out_dir: Path | None = None

    def metrics(self) -> dict[str, Any]:
        """Flat keys for ``metrics.json``: ``train_seconds``, ``epochs``, ``steps``, ``best_epoch``, ..."""
        out: dict[str, Any] = {
            "train_seconds": round(self.train_seconds, 3),
            "epochs": self.epochs_run,
            "steps": self.steps,
            "best_epoch": self.best_epoch,
            "stopped_reason": self.stopped_reason,
        }
        if self.best_metric is not None:
            out[f"best_{self.monitor}"] = self.best_metric
        return out


# ----------------------------------------------------------------------------------------------------------------
# helpers


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed seed for epoch ``epoch`` of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] % (2**63))


def lr_factor(step: int, total_steps: int, schedule: str, warmup: float, min_lr_ratio: float) -> float:
    """Learning-rate multiplier for optimizer step ``step`` (0-based) of ``total_steps``.

    A linear warm-up over ``round(warmup * total_steps)`` steps from ``1/W`` to 1, then ``"cosine"``:
    ``m + (1 - m)(1 + cos(pi p))/2``, ``"linear"``: ``1 - (1 - m) p``, or ``"constant"``: 1, where ``p`` in
    [0, 1] is the progress after the warm-up and ``m = min_lr_ratio``.
    """
    w = round(warmup * total_steps)
    if step < w:
        return (step + 1) / w
    if schedule == "constant":
        return 1.0
    p = min(1.0, (step - w) / max(1, total_steps - w))
    if schedule == "cosine":
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    return 1.0 - (1.0 - min_lr_ratio) * p


def _loss_weight(batch: Batch) -> int:
    """How many terms a batch's mean loss averages: non-ignored per-step integer targets, else items."""
    t = batch.targets
    if t is not None and t.dim() >= 2 and not t.is_floating_point():
        return int((t != IGNORE_INDEX).sum())
    return len(batch)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device | str | None = None,
    *,
    stateful: bool = False,
) -> dict[str, float]:
    """Mean loss over ``batches`` (weighted like the training loss) and, where outputs are class scores for
    integer targets (``outputs.shape[:-1] == targets.shape``), accuracy over non-ignored targets.

    With ``stateful=True`` the batches are consecutive pieces of the same streams (as truncated BPTT trains on):
    the model's ``forward_stateful`` carries its state from each batch to the next, starting from its initial state.

    The model is put in eval mode and restored afterwards. Raises ``ValueError`` if there are no batches or the
    model returns no loss (batches without targets).
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if stateful:
        _require_stateful(model)
    was_training = model.training
    model.eval()
    try:
        loss_sum, weight, correct, counted = 0.0, 0, 0, 0
        state = None
        for batch in batches:
            batch = batch.to(device)
            if stateful:
                outputs, loss, state = model.forward_stateful(batch, state)
            else:
                outputs, loss = model(batch)
            if loss is None:
                raise ValueError("the model returned no loss: evaluation batches need targets")
            w = _loss_weight(batch)
            loss_sum += float(loss) * w
            weight += w
            t = batch.targets
            if (
                isinstance(outputs, Tensor)
                and t is not None
                and not t.is_floating_point()
                and outputs.dim() == t.dim() + 1
                and outputs.shape[:-1] == t.shape
            ):
                mask = t != IGNORE_INDEX
                correct += int(((outputs.argmax(-1) == t) & mask).sum())
                counted += int(mask.sum())
    finally:
        model.train(was_training)
    if weight == 0:
        raise ValueError("no evaluation batches (is the validation set empty?)")
    out = {"loss": loss_sum / weight}
    if counted:
        out["accuracy"] = correct / counted
    return out


def _require_stateful(model: nn.Module) -> None:
    if not callable(getattr(model, "forward_stateful", None)):
        raise ValueError(
            f"truncated BPTT needs a model with forward_stateful(batch, state) -> (outputs, loss, state); "
            f"{type(model).__name__} has none (rnnkit.apps.lm.LanguageModel has one); drop tbptt to train it"
        )


# ----------------------------------------------------------------------------------------------------------------
# truncated BPTT: chunks of streams, the carried state, and its JSON form in checkpoints


def _check_stream_batch(batch: Batch) -> int:
    """The number of steps ``T`` of a truncated-BPTT batch; ValueError for padding or targets not per step."""
    T = int(batch.inputs.shape[1]) if batch.inputs.dim() >= 2 else 0
    if batch.inputs.dim() < 2 or T == 0:
        raise ValueError(f"truncated BPTT needs batches of steps (B, T) or (B, T, F), got {tuple(batch.inputs.shape)}")
    if bool((batch.lengths != T).any()):
        raise ValueError(
            "truncated BPTT needs batches without padding (every row continues its stream through all T steps); "
            "cut one long sequence into parallel streams with rnnkit.data.stream.TokenStream"
        )
    t = batch.targets
    if t is not None and (t.dim() < 2 or tuple(t.shape[:2]) != tuple(batch.inputs.shape[:2])):
        raise ValueError(
            f"truncated BPTT needs one target per step (B, T), got targets of shape {tuple(t.shape)} for inputs "
            f"{tuple(batch.inputs.shape)}"
        )
    return T


def _slice_time(batch: Batch, start: int, end: int) -> Batch:
    """Steps ``start .. end − 1`` of an unpadded batch (inputs and per-step targets; condition unchanged)."""
    return replace(
        batch,
        inputs=batch.inputs[:, start:end],  # (B, k) or (B, k, F)
        lengths=torch.full_like(batch.lengths, end - start),  # (B,)
        targets=None if batch.targets is None else batch.targets[:, start:end],  # (B, k, ...)
    )


def _cat_time(a: Batch, b: Batch) -> Batch:
    """``a`` followed by ``b`` in time (same rows)."""
    return replace(
        b,
        inputs=torch.cat([a.inputs, b.inputs], dim=1),  # (B, Ta + Tb, ...)
        lengths=a.lengths + b.lengths,  # (B,)
        targets=None if b.targets is None else torch.cat([a.targets, b.targets], dim=1),  # (B, Ta + Tb, ...)
    )


def _time_chunks(batches: Iterable[Batch], k1: int) -> Iterator[Batch]:
    """Every batch cut into chunks of ``k1`` steps (the last chunk of a batch may be shorter)."""
    for batch in batches:
        T = _check_stream_batch(batch)
        for start in range(0, T, k1):
            yield batch if k1 >= T else _slice_time(batch, start, min(start + k1, T))


def _step_weight(batch: Batch) -> int:
    """How many terms a per-step mean loss averages: non-ignored integer targets, else every target value."""
    t = batch.targets
    if t is None:
        return 0
    if not t.is_floating_point():
        return int((t != IGNORE_INDEX).sum())
    return int(t.numel())


def _without_targets(batch: Batch) -> Batch:
    """``batch`` with every target ignored (the history steps of a TBPTT window: their loss was used before)."""
    if batch.targets is None:
        return batch
    if batch.targets.is_floating_point():
        raise ValueError(
            "truncated BPTT with K2 > K1 needs integer per-step targets (the re-run history steps' targets are "
            "ignored through IGNORE_INDEX); use K2 = K1 for real-valued targets"
        )
    return replace(batch, targets=torch.full_like(batch.targets, IGNORE_INDEX))


@dataclass
class _Carry:
    """What truncated BPTT carries from one chunk to the next within an epoch."""

    rows: int | None = None  # B of the streams (global rows); None before the epoch's first chunk
    state: Any = None  # the model's state after the last chunk, detached (this rank's rows); None: initial
    hist: Batch | None = None  # the last K2 − K1 steps before the next chunk (global rows)
    hist_state: Any = None  # the state at hist's first step, detached (this rank's rows)


def _tensor_json(t: Tensor) -> dict[str, Any]:
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "values": t.flatten().tolist()}


def _tensor_from_json(d: Mapping[str, Any]) -> Tensor:
    dtype = getattr(torch, str(d["dtype"]), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"checkpoint: unknown dtype {d['dtype']!r} in the carried TBPTT state")
    return torch.tensor(d["values"], dtype=dtype).reshape(d["shape"])


def _state_json(state: Any) -> Any:
    """A nested state (tensors, tuples, lists, None) as plain JSON (exact: floats keep every bit)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return {"tensor": _tensor_json(state.detach().cpu())}
    if isinstance(state, (tuple, list)):
        return {"kind": type(state).__name__, "items": [_state_json(s) for s in state]}
    raise TypeError(f"cannot save a {type(state).__name__} as a recurrent state")


def _state_from_json(obj: Any, device: torch.device) -> Any:
    if obj is None:
        return None
    if "tensor" in obj:
        return _tensor_from_json(obj["tensor"]).to(device)
    items = [_state_from_json(s, device) for s in obj["items"]]
    return tuple(items) if obj["kind"] == "tuple" else items


def _map_state(state: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return fn(state)
    return type(state)(_map_state(s, fn) for s in state)


class _Window(nn.Module):
    """One training forward: what DDP wraps, so that it sees one forward call per backward.

    ``forward(pieces, state, stateful)`` runs the pieces of a truncated-BPTT window one after the other, each from
    the state the previous one ended in, and returns ``(outputs of the last piece, losses, states after each)``;
    with ``stateful=False`` it is ``model(batch)`` for one batch.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pieces: list[Batch], state: Any, stateful: bool) -> tuple[Any, list[Tensor | None], list[Any]]:
        if not stateful:
            outputs, loss = self.model(pieces[0])
            return outputs, [loss], [None]
        losses, states = [], []
        outputs = None
        for piece in pieces:
            outputs, loss, state = self.model.forward_stateful(piece, state)
            losses.append(loss)
            states.append(state)
        return outputs, losses, states


def _epoch_batches(source: TrainData, epoch: int) -> Iterable[Batch]:
    """The training batches of ``epoch``: call a factory, or set_epoch on a re-iterable's sampler."""
    if callable(source) and not hasattr(source, "__iter__"):
        return source(epoch)
    for obj in (source, getattr(source, "batch_sampler", None), getattr(source, "sampler", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
    if isinstance(source, Iterator):  # a generator or iterator can be read only once
        raise TypeError(
            "the training data is a one-shot iterator; pass a function epoch -> batches, a list of batches "
            "or a DataLoader so that every epoch can iterate it again"
        )
    return source


def _val_batches(source: ValData) -> Iterable[Batch]:
    if callable(source) and not hasattr(source, "__iter__"):
        return source()
    if isinstance(source, Iterator):  # a generator or iterator can be read only once
        raise TypeError("the validation data is a one-shot iterator; pass a list, a DataLoader or a function")
    return source


def _count(batches: Iterable[Batch]) -> int:
    try:
        return len(batches)  # type: ignore[arg-type]
    except TypeError:
        return sum(1 for _ in batches)


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}" if (abs(x) < 1e-3 or abs(x) >= 1e4) and x != 0 else f"{x:.4f}"
    return str(x)


def _epoch_line(row: Mapping[str, Any], epochs: int, best: bool) -> str:
    """One log line summing up an epoch's curve row."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"train_loss {_fmt(row['train_loss'])}"]
    parts += [f"{k} {_fmt(v)}" for k, v in row.items() if k.startswith("val_") and v is not None]
    parts += [
        f"lr {row['lr']:.3g}",
        f"grad_norm {row['grad_norm']:.3g} (max {row['grad_norm_max']:.3g})",
        f"{row['items_per_second']:.0f} items/s",
        f"{row['seconds']:.1f}s",
    ]
    return "  ".join(parts) + ("  * best" if best else "")


def _stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _Progress:
    """A tqdm bar on a terminal, plain log lines otherwise (or nothing)."""

    def __init__(self, mode: str, total: int, initial: int, log: Callable[[str], None], log_every: int):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode, self.total, self.log, self.log_every = mode, total, log, log_every
        self.t0, self.step0 = time.monotonic(), initial
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            try:
                width_known = os.get_terminal_size(sys.stderr.fileno()).columns > 0
            except (OSError, ValueError, AttributeError):
                width_known = False
            # some ptys report 0 columns, which makes tqdm draw an empty bar: fall back to a fixed width
            cols, rows = shutil.get_terminal_size((100, 24))
            size = {"dynamic_ncols": True} if width_known else {"ncols": cols, "nrows": rows}
            self.bar = tqdm(total=total, initial=initial, unit="step", file=sys.stderr, **size)

    def eta(self, step: int) -> str:
        done = step - self.step0
        if done <= 0:
            return "?"
        return _fmt_time((time.monotonic() - self.t0) / done * (self.total - step))

    def on_step(self, epoch: str, step: int, in_epoch: str, loss: float, items_per_s: float, extra: str) -> None:
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch}", refresh=False)
            self.bar.set_postfix_str(f"loss={loss:.4f} {items_per_s:.0f} items/s", refresh=False)
            self.bar.update(1)
        elif self.mode == "log" and self.log_every and step % self.log_every == 0:
            self.log(
                f"epoch {epoch} step {in_epoch} loss {loss:.4f} {extra} {items_per_s:.0f} items/s eta {self.eta(step)}"
            )

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.mode != "none":
            self.log(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """Trains a task model; see :func:`fit` for the arguments. Callbacks get the trainer itself.

    Useful attributes while training: ``model``, ``config``, ``optimizer``, ``scheduler``, ``state`` (epoch,
    step, batch_in_epoch, best_metric, ...), ``history``. Call :meth:`request_stop` (e.g. from ``on_step``) to
    stop at the next step boundary after saving a resumable checkpoint.
    """

    def __init__(
        self,
        model: nn.Module,
        train: TrainData,
        val: ValData | None = None,
        config: TrainConfig | None = None,
        out_dir: str | Path | None = None,
        *,
        evaluate_fn: EvaluateFn | None = None,
        on_step: Callable[[Trainer], None] | None = None,
        on_epoch_end: Callable[[Trainer, dict[str, Any]], None] | None = None,
        log: Callable[[str], None] | None = None,
        handle_sigint: bool = False,
    ) -> None:
        self.model = model
        self.train_data = train
        self.val_data = val
        self.config = config if config is not None else TrainConfig()
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.evaluate_fn = evaluate_fn
        self.on_step = on_step
        self.on_epoch_end = on_epoch_end
        self.log = log if log is not None else _stderr_log
        self.handle_sigint = handle_sigint
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.state: dict[str, Any] = {}
        self._best: dict[str, Tensor] | None = None
        self._stop: str | None = None
        self._carry = _Carry()  # truncated BPTT's state between chunks
        self._window: _Window | None = None  # the training forward (a TBPTT window, or the DDP-wrapped call)
        self._ddp: nn.Module | None = None  # DistributedDataParallel(_window) when several processes train
        self._writes = True  # this process writes the run folder (rank 0 of several)

    # -- public ----------------------------------------------------------------------------------------------

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.get("history", [])

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_DIR

    def request_stop(self, reason: str = STOP_INTERRUPTED) -> None:
        """Stop at the next step boundary, saving a checkpoint that ``resume=True`` continues exactly."""
        self._stop = reason

    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train (or continue with ``resume=True``) and return a :class:`TrainResult`; see :func:`fit`."""
        self._stop = None  # a stop of an earlier call is spent; one asked from here on (Ctrl-C included) counts
        prev_handler = self._install_sigint()
        try:
            return self._fit(resume, overwrite)
        finally:
            if prev_handler is not None:
                signal.signal(signal.SIGINT, prev_handler)

    # -- setup -----------------------------------------------------------------------------------------------

    def _install_sigint(self) -> Any:
        if not self.handle_sigint or threading.current_thread() is not threading.main_thread():
            return None
        prev = signal.getsignal(signal.SIGINT)
        if prev is None:
            prev = signal.default_int_handler

        def handler(signum: int, frame: Any) -> None:
            self.request_stop(STOP_INTERRUPTED)
            signal.signal(signal.SIGINT, prev)  # a second Ctrl-C interrupts at once

        signal.signal(signal.SIGINT, handler)
        return prev

    def _build_optimizer(self, total_steps: int) -> None:
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        # decoupled weight decay on matrices (weights, embeddings) only; biases and gains are not decayed
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)

        def factor(step: int) -> float:
            return lr_factor(step, total_steps, cfg.schedule, cfg.warmup, cfg.min_lr_ratio)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    def _fresh_state(self, steps_per_epoch: int) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "epoch": 0,  # completed epochs
            "batch_in_epoch": 0,  # batches of the current epoch already trained (mid-epoch checkpoint)
            "step": 0,  # optimizer steps taken
            "steps_per_epoch": steps_per_epoch,
            "data_order": {"seed": self.config.seed, "rule": "epoch e uses batches(e) after reseeding (seed, e)"},
            "best_metric": None,
            "best_epoch": None,
            "best_is_current": False,
            "bad_epochs": 0,  # epochs since the last improvement (early stopping counter)
            "history": [],
            "epoch_acc": None,  # running sums of a partly trained epoch
            "stopped_reason": None,
        }

    def _resume(self, steps_per_epoch: int) -> Any:
        ckdir = self.checkpoint_dir
        if ckdir is None or not has_checkpoint(ckdir):
            where = "no out_dir was given" if ckdir is None else f"{ckdir} holds no checkpoint"
            raise ValueError(f"cannot resume: {where}; start the run without --resume")
        assert self.optimizer is not None and self.scheduler is not None
        # check the settings before anything is loaded, so a refused resume leaves the model as it was
        saved_state = read_checkpoint_state(ckdir)
        saved = saved_state.get("config") or {}
        now = asdict(self.config)
        diff = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in RESUME_FIELDS if saved.get(k) != now[k]]
        if diff:
            raise ValueError(
                f"cannot resume {self.out_dir}: the training settings differ from the saved run "
                f"({'; '.join(diff)}); use the same values, or start a new run"
            )
        _check_trainer_state(saved_state, ckdir)
        if saved_state.get("steps_per_epoch") != steps_per_epoch:
            raise ValueError(
                f"cannot resume {self.out_dir}: the training data gives {steps_per_epoch} batches per epoch, "
                f"the saved run had {saved_state.get('steps_per_epoch')}; resume with the same data"
            )
        ck = load_checkpoint(ckdir, self.model, self.optimizer, self.scheduler, restore_rng=False)
        self.state = ck.state
        self.state["config"] = now
        if self.state.get("best_is_current"):
            self._best = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self._best = ck.best_weights
        return ck

    # -- training --------------------------------------------------------------------------------------------

    def _save(self) -> None:
        ckdir = self.checkpoint_dir
        if ckdir is not None and self._ddp is not None:
            # every process's own generators (dropout on its own rows draws differently): collective, so before
            # the return of the processes that do not write
            self.state["rank_rng"] = _gather_rng_states()
        if ckdir is None or not self._writes:
            return
        assert self.optimizer is not None
        best = None if self.state["best_is_current"] else self._best
        save_checkpoint(ckdir, self.model, self.optimizer, self.scheduler, self.state, best_weights=best)

    def _write_curve(self) -> None:
        if self.out_dir is not None and self._writes:
            write_text_atomic(self.out_dir / CURVE_FILE, history_to_csv(self.history))

    def _metric_improved(self, value: float) -> bool:
        best = self.state["best_metric"]
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        d = self.config.min_delta
        return value < best - d if self.config.minimize else value > best + d

    def _epoch_iter(self, epoch: int) -> Iterable[Batch]:
        """The optimizer steps' batches of ``epoch``: the training batches, cut into K1-step chunks with TBPTT."""
        batches = _epoch_batches(self.train_data, epoch)
        return batches if self.config.tbptt is None else _time_chunks(batches, self.config.tbptt[0])

    def _fit(self, resume: bool, overwrite: bool) -> TrainResult:
        cfg = self.config
        device = dist_.device_for(cfg.device)
        self._writes = dist_.is_main()
        if cfg.tbptt is not None:
            _require_stateful(self.model)
        self.model.to(device)
        ckdir = self.checkpoint_dir
        if not resume and ckdir is not None and has_checkpoint(ckdir) and not overwrite:
            raise ValueError(
                f"{self.out_dir} already holds a training checkpoint; continue it with --resume, "
                "or choose a new output folder (or --overwrite)"
            )
        steps_per_epoch = _count(self._epoch_iter(0))
        if steps_per_epoch == 0:
            raise ValueError("the training data gave no batches (is the training set empty?)")
        total_steps = cfg.epochs * steps_per_epoch
        self._build_optimizer(total_steps)
        ck = None
        if resume:
            ck = self._resume(steps_per_epoch)
        else:
            self.state = self._fresh_state(steps_per_epoch)
            self._best = None
        st = self.state
        self._window = _Window(self.model)
        # DDP broadcasts rank 0's weights here, after every rank has loaded the same checkpoint
        self._ddp = dist_.wrap(self._window, device) if dist_.is_distributed() else None
        t_start = time.monotonic()
        budget = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
        stopped: str | None = st["stopped_reason"] if st["stopped_reason"] in _FINAL else None
        if st["epoch"] >= cfg.epochs:
            stopped = STOP_COMPLETED
        shown = cfg.progress if self._writes else "none"
        progress = _Progress(shown, total_steps, st["step"], self.log, cfg.log_every)
        if ck is not None:
            progress.line(
                f"resuming {self.out_dir} at epoch {st['epoch'] + 1}, batch {st['batch_in_epoch']}, "
                f"step {st['step']}" + (f" (run already {stopped})" if stopped else "")
            )
        params = [p for g in self.optimizer.param_groups for p in g["params"]]  # type: ignore[union-attr]
        max_norm = cfg.clip_norm if cfg.clip_norm is not None else math.inf
        monitor = f"val_{cfg.monitor}"
        try:
            while stopped is None and st["epoch"] < cfg.epochs:
                e = st["epoch"]
                skip = st["batch_in_epoch"]
                seed_everything(_epoch_seed(cfg.seed, e))
                it: Iterator[Batch] = iter(self._epoch_iter(e))
                self._carry = _Carry()  # every epoch reads the streams from their beginnings
                if skip:
                    for _ in range(skip):
                        next(it)
                    if ck is not None:
                        ck.restore_rng()  # the generators as they were at the mid-epoch save
                        if self._ddp is not None and st.get("rank_rng"):
                            _restore_rng_of_this_rank(st["rank_rng"])
                        self._carry = self._carry_from_json(st.get("tbptt"), device)
                ck = None
                acc = dict(st["epoch_acc"]) if st["epoch_acc"] else {
                    "loss_sum": 0.0, "weight": 0, "gn_sum": 0.0, "gn_max": 0.0, "n": 0, "items": 0,
                    "gn_last": 0.0, "seconds": 0.0, "lr": None,
                }  # fmt: skip
                if st["epoch_acc"] and dist_.rank() != 0:
                    # the saved sums are already over every process (_acc_to_save): rank 0 carries them, the
                    # others start from zero, so the end-of-epoch sum over processes counts them once
                    acc["loss_sum"], acc["weight"], acc["items"] = 0.0, 0, 0
                t_epoch = time.monotonic() - acc["seconds"]
                self.model.train()
                for batch in it:
                    self._train_step(batch, device, params, max_norm, acc)
                    st["step"] += 1
                    st["batch_in_epoch"] += 1
                    acc["seconds"] = time.monotonic() - t_epoch
                    rate = acc["items"] / max(acc["seconds"], 1e-9)
                    progress.on_step(
                        f"{e + 1}/{cfg.epochs}",
                        st["step"],
                        f"{st['batch_in_epoch']}/{steps_per_epoch}",
                        acc["loss_sum"] / max(acc["weight"], 1),
                        rate,
                        f"lr {acc['lr']:.3g} grad {acc['gn_last']:.3g}",
                    )
                    if self.on_step is not None:
                        self.on_step(self)
                    decision = self._agreed_stop(budget is not None and time.monotonic() - t_start >= budget)
                    if decision is not None and st["batch_in_epoch"] < steps_per_epoch:
                        # a mid-epoch stop: save exactly where we are, RNG states (and the TBPTT state) included
                        st["epoch_acc"] = self._acc_to_save(acc)
                        st["tbptt"] = self._carry_json()
                        st["best_is_current"] = False
                        self._save()
                        stopped = decision
                        progress.line(
                            f"stopped ({stopped}) at epoch {e + 1}, batch {st['batch_in_epoch']}, step "
                            f"{st['step']}; the checkpoint is saved" + (", continue with --resume" if ckdir else "")
                        )
                        break
                if stopped is not None:
                    break
                if acc["n"] == 0:
                    raise ValueError(f"the training data gave no batches in epoch {e + 1}")
                stopped = self._end_epoch(e, acc, t_epoch, progress, monitor)
                decision = self._agreed_stop(budget is not None and time.monotonic() - t_start >= budget)
                if stopped is None and decision is not None:
                    stopped = decision
                if stopped == STOP_TIME:
                    progress.line(f"time budget of {cfg.max_minutes} min reached after epoch {e + 1}")
        finally:
            progress.close()
        if stopped is None:
            stopped = STOP_COMPLETED
        return self._finish(stopped, monitor)

    def _train_step(
        self, batch: Batch, device: torch.device, params: list[Tensor], max_norm: float, acc: dict[str, Any]
    ) -> None:
        assert self.optimizer is not None and self.scheduler is not None
        batch = batch.to(device)
        if self.config.tbptt is None and self._ddp is None:
            _, loss = self.model(batch)
            if loss is None:
                raise ValueError("the model returned no loss: training batches need targets")
            value, w, items = float(loss.detach()), _loss_weight(batch), len(batch)
        else:
            loss, value, w, items = self._window_loss(batch)
        several = self._ddp is not None
        if not math.isfinite(value) and not several:
            raise self._diverged("loss", value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # with DDP: the gradients are averaged over the processes here
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if several:  # agreed after the gradient collective: a loss that is non-finite on one process stops all
            (bad,) = dist_.all_reduce_sum([float(not math.isfinite(value))])
            if bad:
                raise self._diverged("loss", value if not math.isfinite(value) else math.nan)
        elif not math.isfinite(value):
            raise self._diverged("loss", value)
        if not math.isfinite(grad_norm):
            raise self._diverged("gradient norm", grad_norm)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        acc["loss_sum"] += value * w
        acc["weight"] += w
        acc["gn_sum"] += grad_norm
        acc["gn_max"] = max(acc["gn_max"], grad_norm)
        acc["gn_last"] = grad_norm
        acc["n"] += 1
        acc["items"] += items
        acc["lr"] = lr

    def _window_loss(self, batch: Batch) -> tuple[Tensor, float, int, int]:
        """The loss to backpropagate for one step with TBPTT and/or several processes.

        Returns ``(loss, value, weight, items)``: ``value`` is this process's mean loss over its ``weight`` loss
        terms (for the curve), ``items`` its rows. With several processes ``loss`` is that mean times
        ``W·weight / N`` (``N`` the terms of all processes), so DDP's gradient average is the gradient of the
        global batch's mean loss.
        """
        cfg = self.config
        assert self._window is not None
        if cfg.tbptt is None:
            local, has_rows = dist_.shard_batch(batch)
            pieces, start = [local], None
            weights = [_loss_weight(local) if has_rows else 0]
        else:
            if batch.targets is None:
                raise ValueError("the model returned no loss: training batches need targets")
            global_pieces, start, plan = self._tbptt_window(batch)
            shards = [dist_.shard_batch(p) for p in global_pieces]
            has_rows = shards[0][1]
            pieces = [p for p, _ in shards]
            weights = [_step_weight(p) if has_rows else 0 for p in pieces]
        module = self._ddp if self._ddp is not None else self._window
        _, losses, states = module(pieces, start, cfg.tbptt is not None)
        if cfg.tbptt is not None:
            self._advance_carry(states, start, plan)
        terms = [(loss, w) for loss, w in zip(losses, weights, strict=True) if w > 0]
        if any(loss is None for loss, _ in terms):
            raise ValueError("the model returned no loss: training batches need targets")
        local_w = sum(w for _, w in terms)
        if len(terms) == 1:
            mean: Tensor | None = terms[0][0]
        elif terms:
            mean = sum(loss * w for loss, w in terms) / local_w
        else:
            mean = None
        value = float(mean.detach()) if mean is not None else 0.0
        total = dist_.all_reduce_sum([local_w])[0] if self._ddp is not None else local_w
        if mean is None or total == 0:
            # no loss term here: a zero that still reaches every parameter, as DDP needs on every process
            loss = sum(p.sum() for p in self.model.parameters()) * 0.0
        elif self._ddp is not None:
            loss = mean * (dist_.world_size() * local_w / total)
        else:
            loss = mean
        # an item is a row; with TBPTT one step of one stream (a token), so items/s reads as tokens/s
        items = len(pieces[0]) if has_rows else 0
        if cfg.tbptt is not None:
            items *= int(batch.inputs.shape[1])  # the chunk's steps
        return loss, value, local_w, items

    def _tbptt_window(self, chunk: Batch) -> tuple[list[Batch], Any, tuple[Batch, int, int]]:
        """The pieces of this update's window (global rows), the detached state it starts from, and its plan.

        The window is the carried ``K2 − K1`` history steps (targets ignored) followed by the chunk. It is run as two
        pieces split where the next history starts, so that the state there (the next window's start) is at hand.
        """
        k1, k2 = self.config.tbptt  # type: ignore[misc]
        c = self._carry
        if c.rows is not None and c.rows != len(chunk):
            raise ValueError(
                f"truncated BPTT: a batch has {len(chunk)} rows but the previous one had {c.rows}; every batch of an "
                "epoch must hold the same B parallel streams (row b continuing row b)"
            )
        if c.hist is not None:
            window, start = _cat_time(_without_targets(c.hist), chunk), c.hist_state
        else:
            window, start = chunk, c.state
        n = int(window.inputs.shape[1])
        keep = min(k2 - k1, n)  # steps of the next history
        split = n - keep
        pieces = [_slice_time(window, a, b) for a, b in ((0, split), (split, n)) if b > a]
        return pieces, start, (window, split, keep)

    def _advance_carry(self, states: list[Any], start: Any, plan: tuple[Batch, int, int]) -> None:
        window, split, keep = plan
        c = self._carry
        c.rows = len(window)
        c.state = detach_state(states[-1])
        if keep > 0:
            n = int(window.inputs.shape[1])
            c.hist = _slice_time(window, split, n)
            c.hist_state = detach_state(states[0] if split > 0 else start)

    def _carry_json(self) -> dict[str, Any] | None:
        """The carried TBPTT state as JSON with every row (gathered from all processes), or None."""
        c = self._carry
        if self.config.tbptt is None or c.rows is None:
            return None
        bd = getattr(self.model, "state_batch_dim", 1)
        rows = c.rows

        def full(state: Any) -> Any:
            return _state_json(_map_state(state, lambda t: dist_.gather_rows(t, rows, bd)))

        hist = None
        if c.hist is not None:
            hist = {
                f.name: None if getattr(c.hist, f.name) is None else _tensor_json(getattr(c.hist, f.name).cpu())
                for f in fields(Batch)
            }
        return {"rows": rows, "state": full(c.state), "hist": hist, "hist_state": full(c.hist_state)}

    def _carry_from_json(self, obj: Mapping[str, Any] | None, device: torch.device) -> _Carry:
        if obj is None or self.config.tbptt is None:
            return _Carry()
        bd = getattr(self.model, "state_batch_dim", 1)
        rows = int(obj["rows"])
        index = dist_.shard_rows(rows, dist_.rank(), dist_.world_size()) if dist_.is_distributed() else None

        def local(state_json: Any) -> Any:
            state = _state_from_json(state_json, device)
            return state if index is None else _map_state(state, lambda t: t.index_select(bd, index.to(t.device)))

        hist = None
        if obj.get("hist") is not None:
            parts = {k: None if v is None else _tensor_from_json(v).to(device) for k, v in obj["hist"].items()}
            hist = Batch(**parts)
        return _Carry(rows=rows, state=local(obj["state"]), hist=hist, hist_state=local(obj["hist_state"]))

    def _agreed_stop(self, budget_hit: bool) -> str | None:
        """Whether to stop now (a requested stop, or the time budget), agreed by every process."""
        reason = self._stop or (STOP_TIME if budget_hit else None)
        if self._ddp is None:
            return reason
        interrupted, timed = dist_.all_reduce_sum(
            [float(reason is not None and reason != STOP_TIME), float(reason == STOP_TIME)]
        )
        return STOP_INTERRUPTED if interrupted else (STOP_TIME if timed else None)

    def _acc_to_save(self, acc: dict[str, Any]) -> dict[str, Any]:
        """The epoch's running sums with every process's share (only rank 0's copy is saved)."""
        out = dict(acc)
        if self._ddp is not None:
            out["loss_sum"], out["weight"], out["items"] = dist_.all_reduce_sum(
                [acc["loss_sum"], acc["weight"], acc["items"]]
            )
            out["weight"], out["items"] = int(out["weight"]), int(out["items"])
        return out

    def _diverged(self, quantity: str, value: float) -> NonFiniteLossError:
        cfg, st = self.config, self.state
        epoch, step = st["epoch"] + 1, st["step"] + 1
        if self.checkpoint_dir is not None and has_checkpoint(self.checkpoint_dir):
            where = f"the last good checkpoint is intact in {self.checkpoint_dir}"
        else:
            where = "no checkpoint was saved yet"
        clip = f"--clip-norm (now {cfg.clip_norm})" if cfg.clip_norm is not None else "--clip-norm 1.0"
        return NonFiniteLossError(
            f"the training {quantity} became {value} at epoch {epoch}, step {step}; {where}. "
            f"Lower the learning rate (--lr, now {cfg.lr:g}) or clip gradients harder ({clip}), "
            "and check the data for NaN/inf values",
            epoch=epoch,
            step=step,
            quantity=quantity,
            value=value,
        )

    def _end_epoch(self, e: int, acc: dict[str, Any], t_epoch: float, progress: _Progress, monitor: str) -> str | None:
        """Validate, record the curve row, update best weights / early stopping, checkpoint. Returns a final
        stop reason or None."""
        cfg, st = self.config, self.state
        acc = self._acc_to_save(acc)  # every process's share of the training loss and items
        metrics: dict[str, float] = {}
        if self.val_data is not None:
            # every process validates on all of it, so that all take the same early-stopping decision
            batches = _val_batches(self.val_data)
            if self.evaluate_fn is not None:
                raw = self.evaluate_fn(self.model, batches)
            else:
                raw = evaluate(self.model, batches, stateful=cfg.tbptt is not None)
            metrics = {f"val_{k}": float(v) for k, v in raw.items()}
            if monitor not in metrics:
                raise ValueError(
                    f"the validation metrics {sorted(metrics)} do not include {monitor!r} "
                    f"(TrainConfig.monitor={cfg.monitor!r})"
                )
        self.model.train()
        seconds = time.monotonic() - t_epoch  # training and validation
        row: dict[str, Any] = {
            "epoch": e + 1,
            "step": st["step"],
            "train_loss": acc["loss_sum"] / max(acc["weight"], 1),
        }
        row["val_loss"] = metrics.pop("val_loss", None)
        row.update(metrics)
        row.update(
            {
                "lr": acc["lr"],
                "grad_norm": acc["gn_sum"] / acc["n"],
                "grad_norm_max": acc["gn_max"],
                "items_per_second": acc["items"] / max(acc["seconds"], 1e-9),  # training only
                "seconds": seconds,
            }
        )
        value = row.get(monitor) if self.val_data is not None else None
        improved = False
        if self.val_data is None:
            improved = True  # without validation the latest weights are the result
        elif value is not None and self._metric_improved(value):
            improved = True
            st["best_metric"] = value
        if improved:
            st["best_epoch"] = e + 1
            st["bad_epochs"] = 0
            self._best = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            st["bad_epochs"] += 1
        st["best_is_current"] = improved
        st["history"].append(row)
        st["epoch"] = e + 1
        st["batch_in_epoch"] = 0
        st["epoch_acc"] = None
        stopped = None
        if self.val_data is not None and cfg.patience is not None and st["bad_epochs"] >= cfg.patience:
            stopped = STOP_EARLY
        elif st["epoch"] >= cfg.epochs:
            stopped = STOP_COMPLETED
        st["stopped_reason"] = stopped
        self._save()
        self._write_curve()
        progress.line(_epoch_line(row, cfg.epochs, improved and self.val_data is not None))
        if stopped == STOP_EARLY:
            progress.line(
                f"early stop: {monitor} has not improved for {cfg.patience} epochs; "
                f"best {_fmt(st['best_metric'])} at epoch {st['best_epoch']}"
            )
        if self.on_epoch_end is not None:
            self.on_epoch_end(self, row)
        return stopped

    def _finish(self, stopped: str, monitor: str) -> TrainResult:
        st = self.state
        if self._best is not None:
            self.model.load_state_dict(self._best)
        if self.out_dir is not None and self._writes:
            save_run_weights(self.out_dir, self.model)  # the unwrapped model: no DDP "module." prefix
            self._write_curve()
        if self._ddp is not None:
            dist_.barrier()  # no process returns (and reads the run folder) before rank 0 has written it
        seconds = sum(float(r["seconds"]) for r in st["history"])
        if st.get("epoch_acc"):
            seconds += float(st["epoch_acc"]["seconds"])
        return TrainResult(
            history=list(st["history"]),
            best_epoch=st["best_epoch"],
            best_metric=st["best_metric"],
            monitor=monitor,
            epochs_run=st["epoch"],
            steps=st["step"],
            train_seconds=seconds,
            stopped_reason=stopped,
            out_dir=self.out_dir,
        )


def _gather_rng_states() -> list[dict[str, Any]]:
    """Every process's python/numpy/torch generator states, in rank order, as JSON-safe dicts."""
    from rnnkit.checkpoint import capture_rng_state

    json_part, tensors = capture_rng_state()
    mine = {"json": json_part, "torch": [int(b) for b in tensors["rng.torch"].tolist()]}
    gathered: list[Any] = [None] * dist_.world_size()
    torch.distributed.all_gather_object(gathered, mine)  # in memory between the processes, never from a file
    return gathered


def _restore_rng_of_this_rank(states: list[Mapping[str, Any]]) -> None:
    """Restore this process's generators from :func:`_gather_rng_states`'s list (saved in the checkpoint)."""
    from rnnkit.checkpoint import CheckpointError, restore_rng_state

    r = dist_.rank()
    if len(states) != dist_.world_size():
        raise CheckpointError(
            f"the checkpoint was written by {len(states)} processes, this run has {dist_.world_size()}; "
            "resume with the same --nproc-per-node"
        )
    state = states[r]
    restore_rng_state(state["json"], {"rng.torch": torch.tensor(state["torch"], dtype=torch.uint8)})


_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "epoch": (int,),
    "batch_in_epoch": (int,),
    "step": (int,),
    "steps_per_epoch": (int,),
    "best_metric": (int, float, type(None)),
    "best_epoch": (int, type(None)),
    "best_is_current": (bool,),
    "bad_epochs": (int,),
    "history": (list,),
    "epoch_acc": (dict, type(None)),
    "stopped_reason": (str, type(None)),
}


def _check_trainer_state(state: Mapping[str, Any], ckdir: Path) -> None:
    """Refuse a checkpoint whose trainer state (in ``state.json``) lacks a field or has one of the wrong type, before
    anything is loaded: a hand-edited or foreign file must not end in a KeyError halfway through a resume."""
    from rnnkit.checkpoint import CheckpointError

    for key, types in _STATE_TYPES.items():
        value = state.get(key, KeyError)
        if value is KeyError or isinstance(value, bool) != (types == (bool,)) or not isinstance(value, types):
            raise CheckpointError(
                f"{ckdir}: the trainer state has {'no' if value is KeyError else 'a malformed'} {key!r}; the "
                "checkpoint is damaged or was not written by rnnkit: start the run again with --overwrite"
            )
    if not all(isinstance(row, dict) for row in state["history"]):
        raise CheckpointError(f"{ckdir}: the trainer state's history is malformed; start again with --overwrite")


def history_to_csv(history: list[Mapping[str, Any]]) -> str:
    """The CSV text of ``curve.csv``: a header, then one row per epoch; columns in first-seen order."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    if not columns:
        columns = ["epoch", "step", "train_loss", "val_loss", "lr", "grad_norm", "seconds"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()


def fit(
    model: nn.Module,
    train: TrainData,
    val: ValData | None = None,
    config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    evaluate_fn: EvaluateFn | None = None,
    on_step: Callable[[Trainer], None] | None = None,
    on_epoch_end: Callable[[Trainer, dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
    handle_sigint: bool = False,
) -> TrainResult:
    """Train ``model`` and leave the best weights in it.

    Args:
        model: ``forward(batch) -> (outputs, loss)``; moved to ``config.device``.
        train: ``epoch -> Iterable[Batch]`` (0-based epoch; must give the same batches for the same epoch), or a
            re-iterable of batches (a list; a ``DataLoader`` or sampler with ``set_epoch`` gets it called). With
            ``config.tbptt`` the batches of an epoch are consecutive pieces of the same parallel streams (e.g. a
            :class:`~rnnkit.data.stream.TokenStream`); see the module docstring.
        val: validation batches (re-iterable or a no-argument function), or ``None``: no early stopping, the
            final weights are the result. With ``config.tbptt`` they are read as streams too (the state carried
            from batch to batch, :func:`evaluate` with ``stateful=True``) unless ``evaluate_fn`` is given.
        config: :class:`TrainConfig` (defaults if ``None``).
        out_dir: run folder for ``checkpoint/``, ``curve.csv`` and ``model.safetensors``; ``None``: in memory.
        resume: continue the run saved in ``out_dir`` (same config; see ``RESUME_FIELDS``). A finished run just
            returns its result.
        overwrite: start afresh even if ``out_dir`` holds a checkpoint (otherwise a ``ValueError``).
        evaluate_fn: ``(model, val_batches) -> {"loss": ..., ...}``; default :func:`evaluate`. Keys become
            ``val_<key>`` columns; ``config.monitor`` must be one of them.
        on_step: called as ``on_step(trainer)`` after every optimizer step.
        on_epoch_end: called as ``on_epoch_end(trainer, row)`` after each epoch's checkpoint is written.
        log: where log lines go (default: stderr).
        handle_sigint: catch Ctrl-C during training, stop at the next step boundary and save (a second Ctrl-C
            interrupts at once). Leave ``False`` in library use; the CLI sets it.

    Under ``torchrun`` (a process group joined with :func:`rnnkit.distributed.init_from_env`) every process calls
    ``fit`` with the same data: each trains on its rows of every batch (:func:`rnnkit.distributed.shard_batch`),
    DDP averages the gradients, stop requests and the time budget are agreed at every step, every process
    validates on all the validation data (so all take the same early-stopping decisions), only rank 0 writes
    ``out_dir``, and ``fit`` returns on every process after rank 0 has written it. A resume reads ``out_dir`` on
    every process: on several machines it must be a shared folder.

    Returns:
        :class:`TrainResult`.

    Raises:
        NonFiniteLossError: the loss or gradient norm became NaN/inf (the last good checkpoint stays).
        ValueError: bad data, settings, or a corrupt / mismatched checkpoint on resume
            (:class:`~rnnkit.checkpoint.CheckpointError`).
    """
    trainer = Trainer(
        model,
        train,
        val,
        config,
        out_dir,
        evaluate_fn=evaluate_fn,
        on_step=on_step,
        on_epoch_end=on_epoch_end,
        log=log,
        handle_sigint=handle_sigint,
    )
    return trainer.fit(resume=resume, overwrite=overwrite)
