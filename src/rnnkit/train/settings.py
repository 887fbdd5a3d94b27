"""How to train, and what training returns: :class:`TrainConfig`, :class:`TrainResult`, the stop reasons, the
learning-rate schedule (:func:`lr_factor`, :func:`build_optimizer`) and seeding (:func:`seed_everything`).

Nothing here trains; :mod:`rnnkit.train.loop` does, reading these settings.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rnnkit.data.batching import Batch

__all__ = [
    "CHECKPOINT_DIR",
    "CURVE_FILE",
    "RESUME_FIELDS",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "build_optimizer",
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
    "ema",
)
# reasons a run stops; the first two are final (resume returns at once), the others can be resumed
STOP_COMPLETED, STOP_EARLY, STOP_TIME, STOP_INTERRUPTED = "completed", "early_stop", "time", "interrupted"
FINAL_STOPS = (STOP_COMPLETED, STOP_EARLY)

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
    # decay of an exponential moving average of the weights after every step (train.averaging.WeightAverage);
    # validation, the best epoch and the saved weights use the average. 0: off (the raw weights)
    ema: float = 0.0

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
        if isinstance(self.ema, bool) or not (isinstance(self.ema, (int, float)) and 0 <= self.ema < 1):
            raise bad("ema", "must be a decay in [0, 1) (e.g. 0.999), or 0 for no weight averaging")
        self.ema = float(self.ema)
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
    """What :func:`~rnnkit.train.fit` returns.

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


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
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


def adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.AdamW:
    """``torch.optim.AdamW(groups, lr)`` on PyTorch's fused kernel where every parameter allows it (CPU and CUDA
    floating point): one pass over each parameter per step instead of about ten elementwise ops per tensor, 5% of
    a default generate step on 2 cores. The same update (float64: equal; float32: to rounding) and the same
    ``state_dict``, so checkpoints move between the two; the loop form where the fused one refuses the params.

    The fused kernel writes the parameters without bumping their version counters (PyTorch 2.13 on CPU), so a
    step hook bumps them: whatever is cached per ``(tensor, _version)`` — the compiled engine's layout of
    ``W_hh``, autograd's checks of saved tensors — sees every update.
    """
    try:
        optimizer = torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=lr)
    optimizer.register_step_post_hook(_bump_versions)
    return optimizer


def _bump_versions(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    """Mark every parameter of ``optimizer`` as modified in place (after a step of the fused kernel)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            torch.autograd.graph.increment_version(p)


def build_optimizer(
    model: nn.Module, config: TrainConfig, total_steps: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``model``'s trainable parameters and its :func:`lr_factor` schedule over ``total_steps`` steps.

    Decoupled weight decay applies to matrices (weights, embeddings) only; biases and gains are not decayed.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = adamw([g for g in groups if g["params"]], config.lr)

    def factor(step: int) -> float:
        return lr_factor(step, total_steps, config.schedule, config.warmup, config.min_lr_ratio)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def metric_improved(config: TrainConfig, value: float, best: float | None) -> bool:
    """Whether a validation ``monitor`` value beats ``best`` by more than ``min_delta``; NaN/inf never do."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    d = config.min_delta
    return value < best - d if config.minimize else value > best + d


def non_finite_error(
    config: TrainConfig, quantity: str, value: float, *, epoch: int, step: int, where: str
) -> NonFiniteLossError:
    """The error for a non-finite ``quantity`` at 1-based ``epoch`` and ``step``; ``where`` says what is saved."""
    clip = f"--clip-norm (now {config.clip_norm})" if config.clip_norm is not None else "--clip-norm 1.0"
    return NonFiniteLossError(
        f"the training {quantity} became {value} at epoch {epoch}, step {step}; {where}. "
        f"Lower the learning rate (--lr, now {config.lr:g}) or clip gradients harder ({clip}), "
        "and check the data for NaN/inf values",
        epoch=epoch,
        step=step,
        quantity=quantity,
        value=value,
    )
