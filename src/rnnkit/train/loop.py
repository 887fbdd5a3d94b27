"""The training loop: :class:`Trainer` runs epochs of optimizer steps, validates, keeps the best weights, stops
early, on a time budget or on request, and saves a resumable checkpoint after every epoch (and at a mid-epoch stop);
:func:`fit` is its one-call form and :func:`evaluate` the default validation.

The parts it delegates to: :class:`~rnnkit.train.step.Stepper` (one optimizer step),
:class:`~rnnkit.train.tbptt.Carry` (truncated BPTT), :class:`~rnnkit.train.processes.Processes` (torchrun / DDP),
:class:`~rnnkit.train.checkpoints.RunFiles` (the run folder) and :class:`~rnnkit.train.progress.Progress` (what is
shown).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit import distributed as dist_
from rnnkit.data.batching import IGNORE_INDEX, Batch
from rnnkit.tasks.modes import eval_mode
from rnnkit.train.averaging import WeightAverage
from rnnkit.train.checkpoints import Checkpoint, RunFiles
from rnnkit.train.processes import Processes
from rnnkit.train.progress import Progress, epoch_line, fmt, sigint_requests_stop, stderr_log
from rnnkit.train.settings import (
    FINAL_STOPS,
    STOP_COMPLETED,
    STOP_EARLY,
    STOP_INTERRUPTED,
    STOP_TIME,
    EvaluateFn,
    TrainConfig,
    TrainData,
    TrainResult,
    ValData,
    build_optimizer,
    epoch_seed,
    metric_improved,
    non_finite_error,
    seed_everything,
)
from rnnkit.train.state import fresh_state, new_epoch_acc
from rnnkit.train.step import Stepper, loss_weight
from rnnkit.train.tbptt import Carry, require_stateful, time_chunks

__all__ = ["Trainer", "evaluate", "fit"]


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
        require_stateful(model)
    with eval_mode(model):
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
            w = loss_weight(batch)
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
    if weight == 0:
        raise ValueError("no evaluation batches (is the validation set empty?)")
    out = {"loss": loss_sum / weight}
    if counted:
        out["accuracy"] = correct / counted
    return out


def epoch_batches(source: TrainData, epoch: int) -> Iterable[Batch]:
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


def val_batches(source: ValData) -> Iterable[Batch]:
    """The validation batches: call a no-argument function, or the re-iterable itself."""
    if callable(source) and not hasattr(source, "__iter__"):
        return source()
    if isinstance(source, Iterator):  # a generator or iterator can be read only once
        raise TypeError("the validation data is a one-shot iterator; pass a list, a DataLoader or a function")
    return source


def count_batches(batches: Iterable[Batch]) -> int:
    """How many batches an epoch has (``len``, or one pass over them)."""
    try:
        return len(batches)  # type: ignore[arg-type]
    except TypeError:
        return sum(1 for _ in batches)


def validate(
    model: nn.Module, val: ValData, evaluate_fn: EvaluateFn | None, stateful: bool, monitor: str, config: TrainConfig
) -> dict[str, float]:
    """The ``val_<name>`` metrics of ``model`` on all of ``val``; ValueError if ``monitor`` is not among them."""
    batches = val_batches(val)
    raw = evaluate_fn(model, batches) if evaluate_fn is not None else evaluate(model, batches, stateful=stateful)
    metrics = {f"val_{k}": float(v) for k, v in raw.items()}
    if monitor not in metrics:
        raise ValueError(
            f"the validation metrics {sorted(metrics)} do not include {monitor!r} "
            f"(TrainConfig.monitor={config.monitor!r})"
        )
    return metrics


def curve_row(epoch: int, step: int, acc: Mapping[str, Any], metrics: dict[str, float], seconds: float) -> dict:
    """The ``curve.csv`` row of 1-based ``epoch``: training loss, validation metrics, lr, gradient norms, speed."""
    row: dict[str, Any] = {"epoch": epoch, "step": step, "train_loss": acc["loss_sum"] / max(acc["weight"], 1)}
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
    return row


def record_epoch(
    state: dict[str, Any], row: dict[str, Any], config: TrainConfig, *, validated: bool
) -> tuple[bool, str | None]:
    """Record a completed epoch's curve ``row`` in the trainer ``state``: best metric and epoch, the early-stopping
    counter, the history. Returns ``(improved, stop reason or None)``; without validation every epoch improves (the
    latest weights are the result)."""
    monitor = f"val_{config.monitor}"
    value = row.get(monitor) if validated else None
    improved = not validated or (value is not None and metric_improved(config, value, state["best_metric"]))
    if improved:
        if validated:
            state["best_metric"] = value
        state["best_epoch"] = row["epoch"]
        state["bad_epochs"] = 0
    else:
        state["bad_epochs"] += 1
    state["best_is_current"] = improved
    state["history"].append(row)
    state["epoch"], state["batch_in_epoch"], state["epoch_acc"] = row["epoch"], 0, None
    stopped = None
    if validated and config.patience is not None and state["bad_epochs"] >= config.patience:
        stopped = STOP_EARLY
    elif state["epoch"] >= config.epochs:
        stopped = STOP_COMPLETED
    state["stopped_reason"] = stopped
    return improved, stopped


CHECKPOINT_SECONDS = 120.0
"""Seconds of training between mid-epoch checkpoints (after every epoch one is written anyway); the environment
variable ``RNNKIT_CHECKPOINT_SECONDS`` overrides it (0: after every step)."""


def checkpoint_seconds() -> float:
    """:data:`CHECKPOINT_SECONDS`, or ``RNNKIT_CHECKPOINT_SECONDS`` when set to a finite number >= 0."""
    text = os.environ.get("RNNKIT_CHECKPOINT_SECONDS")
    if text is None:
        return CHECKPOINT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"RNNKIT_CHECKPOINT_SECONDS must be a number of seconds >= 0, got {text!r}")
    return value


class Trainer:
    """Trains a task model; see :func:`fit` for the arguments. Callbacks get the trainer itself.

    Useful attributes while training: ``model``, ``config``, ``optimizer``, ``scheduler``, ``state`` (epoch,
    step, batch_in_epoch, best_metric, ...), ``history``, ``average`` (the
    :class:`~rnnkit.train.averaging.WeightAverage` of ``config.ema``, or None). Call :meth:`request_stop` (e.g.
    from ``on_step``) to stop at the next step boundary after saving a resumable checkpoint.
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
        self.log = log if log is not None else stderr_log
        self.handle_sigint = handle_sigint
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.state: dict[str, Any] = {}
        self._best: dict[str, Tensor] | None = None
        # the weight average of TrainConfig.ema (None: off): validated, kept as best and saved instead of the weights
        self.average: WeightAverage | None = None
        self._stop: str | None = None
        self._files = RunFiles(self.out_dir)  # checkpoint/, curve.csv, model.safetensors
        self._processes = Processes()  # alone, or one of several under torchrun
        self._stepper: Stepper | None = None  # the optimizer steps of the current fit
        self._deadline: tuple[float, float | None] = (0.0, None)  # (start, seconds of budget) of this fit call

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.get("history", [])

    @property
    def last_step(self) -> dict[str, float]:
        """The last optimizer step's ``train_loss`` (its mean batch loss), ``lr`` and ``grad_norm`` (before
        clipping); empty before the first step."""
        return dict(self._stepper.last) if self._stepper is not None else {}

    @property
    def checkpoint_dir(self) -> Path | None:
        return self._files.checkpoint_dir

    def request_stop(self, reason: str = STOP_INTERRUPTED) -> None:
        """Stop at the next step boundary, saving a checkpoint that ``resume=True`` continues exactly."""
        self._stop = reason

    def fit(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train (or continue with ``resume=True``) and return a :class:`TrainResult`; see :func:`fit`."""
        self._stop = None  # a stop of an earlier call is spent; one asked from here on (Ctrl-C included) counts
        with sigint_requests_stop(self.handle_sigint, lambda: self.request_stop(STOP_INTERRUPTED)):
            return self._fit(resume, overwrite)

    # -- the run ---------------------------------------------------------------------------------------------

    def _fit(self, resume: bool, overwrite: bool) -> TrainResult:
        cfg = self.config
        device = dist_.device_for(cfg.device)
        self._files.writes = self._processes.writes
        if cfg.tbptt is not None:
            require_stateful(self.model)
        self.model.to(device)
        self._files.refuse_to_overwrite(resume, overwrite)
        steps_per_epoch = count_batches(self._epoch_iter(0))
        if steps_per_epoch == 0:
            raise ValueError("the training data gave no batches (is the training set empty?)")
        total_steps = cfg.epochs * steps_per_epoch
        self.optimizer, self.scheduler = build_optimizer(self.model, cfg, total_steps)
        ck = None
        if resume:
            ck = self._files.resume(self.model, self.optimizer, self.scheduler, cfg, steps_per_epoch)
            self.state = ck.state
            self.average = self._restored_average(ck)
            if self.state.get("best_is_current"):
                self._best = self._current_weights()
            else:
                self._best = ck.best_weights
        else:
            self.state = fresh_state(cfg, steps_per_epoch)
            self._best = None
            self.average = WeightAverage(self.model, cfg.ema) if cfg.ema > 0 else None
        st = self.state
        # DDP broadcasts rank 0's weights here, after every rank has loaded the same checkpoint
        self._stepper = Stepper(
            self.model, cfg, self.optimizer, self.scheduler, self._processes, device, self._diverged
        )
        self._deadline = (time.monotonic(), None if cfg.max_minutes is None else cfg.max_minutes * 60.0)
        self._last_save = time.monotonic()
        stopped: str | None = st["stopped_reason"] if st["stopped_reason"] in FINAL_STOPS else None
        if st["epoch"] >= cfg.epochs:
            stopped = STOP_COMPLETED
        shown = cfg.progress if self._files.writes else "none"
        progress = Progress(shown, total_steps, st["step"], self.log, cfg.log_every)
        if ck is not None:
            progress.line(
                f"resuming {self.out_dir} at epoch {st['epoch'] + 1}, batch {st['batch_in_epoch']}, "
                f"step {st['step']}" + (f" (run already {stopped})" if stopped else "")
            )
        try:
            while stopped is None and st["epoch"] < cfg.epochs:
                stopped = self._epoch(ck, device, progress, steps_per_epoch)
                ck = None
        finally:
            progress.close()
        return self._finish(stopped if stopped is not None else STOP_COMPLETED)

    def _epoch(self, ck: Checkpoint | None, device: torch.device, progress: Progress, steps: int) -> str | None:
        """Train the rest of the current epoch (all of it, unless resuming mid-epoch); returns a stop reason."""
        cfg, st, stepper = self.config, self.state, self._stepper
        assert stepper is not None
        e = st["epoch"]
        it, acc = self._begin_epoch(e, ck, device)
        t_epoch = time.monotonic() - acc["seconds"]
        self.model.train()
        for batch in it:
            stepper.step(batch, acc)
            if self.average is not None:
                self.average.update()
            st["step"] += 1
            st["batch_in_epoch"] += 1
            acc["seconds"] = time.monotonic() - t_epoch
            rate = acc["items"] / max(acc["seconds"], 1e-9)
            progress.on_step(
                f"{e + 1}/{cfg.epochs}",
                st["step"],
                f"{st['batch_in_epoch']}/{steps}",
                acc["loss_sum"] / max(acc["weight"], 1),
                rate,
                f"lr {acc['lr']:.3g} grad {acc['gn_last']:.3g}",
            )
            if self.on_step is not None:
                self.on_step(self)
            decision = self._agreed_stop()
            if decision is not None and st["batch_in_epoch"] < steps:
                # a mid-epoch stop: save exactly where we are, RNG states (and the TBPTT state) included
                self._save_mid_epoch(acc, stepper)
                progress.line(
                    f"stopped ({decision}) at epoch {e + 1}, batch {st['batch_in_epoch']}, step {st['step']}; the "
                    "checkpoint is saved" + (", continue with --resume" if self.checkpoint_dir else "")
                )
                return decision
            if st["batch_in_epoch"] < steps and self._periodic_save_due():
                t_save = time.monotonic()
                self._save_mid_epoch(acc, stepper)
                t_epoch += time.monotonic() - t_save  # checkpoint writing is not training time
        if acc["n"] == 0:
            raise ValueError(f"the training data gave no batches in epoch {e + 1}")
        stopped = self._end_epoch(e, acc, t_epoch, progress)
        decision = self._agreed_stop()
        if stopped is None and decision is not None:
            stopped = decision
        if stopped == STOP_TIME:
            progress.line(f"time budget of {cfg.max_minutes} min reached after epoch {e + 1}")
        return stopped

    def _save_mid_epoch(self, acc: dict[str, Any], stepper: Stepper) -> None:
        """Save exactly where we are inside an epoch: running sums, RNG states and the TBPTT state included, so a
        resume continues bit for bit (the weights of the best epoch are saved beside, as they differ now)."""
        st = self.state
        st["epoch_acc"] = self._processes.acc_to_save(acc)
        bd = getattr(self.model, "state_batch_dim", 1)
        st["tbptt"] = stepper.carry.to_json(bd) if self.config.tbptt is not None else None
        st["best_is_current"] = False
        self._save()
        self._last_save = time.monotonic()

    def _periodic_save_due(self) -> bool:
        """Whether a mid-epoch checkpoint is due: every :data:`CHECKPOINT_SECONDS` of training (environment
        ``RNNKIT_CHECKPOINT_SECONDS``; 0: after every step), so that a kill at any moment loses at most that much.
        Only a single process writing a checkpoint folder does this (under DDP the decision would need agreeing)."""
        if self.checkpoint_dir is None or self._processes.several or not self._files.writes:
            return False
        return time.monotonic() - self._last_save >= checkpoint_seconds()

    def _begin_epoch(self, e: int, ck: Checkpoint | None, device: torch.device) -> tuple[Iterator[Batch], dict]:
        """Reseed, open epoch ``e``'s batches and its running sums; a mid-epoch resume skips the trained batches
        and restores the generators and the TBPTT state as they were saved."""
        cfg, st, stepper = self.config, self.state, self._stepper
        assert stepper is not None
        skip = st["batch_in_epoch"]
        seed_everything(epoch_seed(cfg.seed, e))
        it: Iterator[Batch] = iter(self._epoch_iter(e))
        stepper.carry = Carry()  # every epoch reads the streams from their beginnings
        if skip:
            for _ in range(skip):
                next(it)
            if ck is not None:
                ck.restore_rng()  # the generators as they were at the mid-epoch save
                if self._processes.several and st.get("rank_rng"):
                    self._processes.restore_rng_of_this_rank(st["rank_rng"])
                if cfg.tbptt is not None:
                    stepper.carry = Carry.from_json(st.get("tbptt"), device, getattr(self.model, "state_batch_dim", 1))
        acc = dict(st["epoch_acc"]) if st["epoch_acc"] else new_epoch_acc()
        if st["epoch_acc"] and dist_.rank() != 0:
            # the saved sums are already over every process (acc_to_save): rank 0 carries them, the others start
            # from zero, so the end-of-epoch sum over processes counts them once
            acc["loss_sum"], acc["weight"], acc["items"] = 0.0, 0, 0
        return it, acc

    def _epoch_iter(self, epoch: int) -> Iterable[Batch]:
        """The optimizer steps' batches of ``epoch``: the training batches, cut into K1-step chunks with TBPTT."""
        batches = epoch_batches(self.train_data, epoch)
        return batches if self.config.tbptt is None else time_chunks(batches, self.config.tbptt[0])

    def _agreed_stop(self) -> str | None:
        """Whether to stop now (a requested stop, or the time budget), agreed by every process."""
        t_start, budget = self._deadline
        budget_hit = budget is not None and time.monotonic() - t_start >= budget
        return self._processes.agreed_stop(self._stop or (STOP_TIME if budget_hit else None))

    def _save(self) -> None:
        if self.checkpoint_dir is not None and self._processes.several:
            # every process's own generators (dropout on its own rows draws differently): collective, so before
            # the return of the processes that do not write
            self.state["rank_rng"] = self._processes.gather_rng_states()
        best = None if self.state["best_is_current"] else self._best
        averaged = None if self.average is None else self.average.state_dict()
        self._files.save(self.model, self.optimizer, self.scheduler, self.state, best, averaged)

    def _current_weights(self) -> dict[str, Tensor]:
        """A copy of the weights an epoch ending now would keep: the weight average, else the model's own."""
        if self.average is not None:
            return self.average.copy()
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _restored_average(self, ck: Checkpoint) -> WeightAverage | None:
        """The weight average of a resumed run, as its checkpoint saved it (None when the run keeps none)."""
        if self.config.ema == 0:
            return None
        if ck.averaged is None:
            raise ValueError(f"cannot resume {self.out_dir}: its checkpoint holds no weight average (ema)")
        average = WeightAverage(self.model, self.config.ema)
        average.load_state_dict(ck.averaged, str(ck.path))
        return average

    def _diverged(self, quantity: str, value: float) -> Exception:
        epoch, step, where = self.state["epoch"] + 1, self.state["step"] + 1, self._files.where_last_good()
        return non_finite_error(self.config, quantity, value, epoch=epoch, step=step, where=where)

    def _end_epoch(self, e: int, acc: dict[str, Any], t_epoch: float, progress: Progress) -> str | None:
        """Validate, record the curve row, update best weights / early stopping, checkpoint. Returns a final
        stop reason or None."""
        cfg, st = self.config, self.state
        monitor = f"val_{cfg.monitor}"
        acc = self._processes.acc_to_save(acc)  # every process's share of the training loss and items
        metrics: dict[str, float] = {}
        if self.val_data is not None:
            # every process validates on all of it, so that all take the same early-stopping decision
            with self.average.swapped_in(self.model) if self.average is not None else contextlib.nullcontext():
                metrics = validate(self.model, self.val_data, self.evaluate_fn, cfg.tbptt is not None, monitor, cfg)
        self.model.train()
        row = curve_row(e + 1, st["step"], acc, metrics, time.monotonic() - t_epoch)  # training and validation
        improved, stopped = record_epoch(st, row, cfg, validated=self.val_data is not None)
        if improved:
            self._best = self._current_weights()
        self._save()
        self._files.write_curve(self.history)
        progress.line(epoch_line(row, cfg.epochs, improved and self.val_data is not None))
        if stopped == STOP_EARLY:
            progress.line(
                f"early stop: {monitor} has not improved for {cfg.patience} epochs; "
                f"best {fmt(st['best_metric'])} at epoch {st['best_epoch']}"
            )
        if self.on_epoch_end is not None:
            self.on_epoch_end(self, row)
        return stopped

    def _finish(self, stopped: str) -> TrainResult:
        st = self.state
        if self._best is not None:
            self.model.load_state_dict(self._best)
        elif self.average is not None:  # no epoch completed: the average so far
            self.model.load_state_dict(self.average.averaged)
        self._files.write_weights(self.model, self.history)
        self._processes.barrier()  # no process returns (and reads the run folder) before rank 0 has written it
        seconds = sum(float(r["seconds"]) for r in st["history"])
        if st.get("epoch_acc"):
            seconds += float(st["epoch_acc"]["seconds"])
        return TrainResult(
            history=list(st["history"]),
            best_epoch=st["best_epoch"],
            best_metric=st["best_metric"],
            monitor=f"val_{self.config.monitor}",
            epochs_run=st["epoch"],
            steps=st["step"],
            train_seconds=seconds,
            stopped_reason=stopped,
            out_dir=self.out_dir,
        )


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
