"""Training checkpoints: a resumable snapshot of model, optimizer, scheduler, generators and trainer state, saved
and loaded atomically (file I/O from :mod:`rnnkit.checkpoint`), and the trainer's use of its run folder
(:class:`RunFiles`: resume checks, checkpoints, ``curve.csv``, the final weights).

Checkpoint layout (``folder`` is usually ``<run>/checkpoint``)::

    folder/
      latest.json                      {"format": "rnnkit-checkpoint", "version": 1, "current": "<name>"}
      ckpt-e0003-s000120-1a2b3c4d/     one complete checkpoint; older ones are deleted after the switch
        model.safetensors              model weights (state_dict keys)
        best_model.safetensors         best weights so far, when they differ from the current ones
        state.safetensors              optimizer + scheduler tensors, torch (and CUDA) RNG states as uint8,
                                       and the weight average's tensors (``TrainConfig.ema``)
        state.json                     the rest: optimizer param_groups, scheduler state, python/numpy RNG,
                                       trainer state, the weight average's step count, and a sha256 of every
                                       file above

A checkpoint is written into a fresh sub-folder (its files and the folder fsynced) and becomes current only when
``latest.json`` is replaced (the commit point), so the previous checkpoint stays loadable until the new one is
complete; it is deleted after the commit. Loading validates everything before it changes anything, and never
unpickles (a bad file raises :class:`~rnnkit.checkpoint.CheckpointError`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from torch import Tensor, nn

from rnnkit.checkpoint import (
    CheckpointError,
    check_tensors_fit,
    fsync_dir,
    load_safetensors,
    make_dirs,
    read_json,
    save_run_weights,
    save_safetensors_atomic,
    validate_model,
    write_json_atomic,
    write_text_atomic,
)
from rnnkit.train.settings import CHECKPOINT_DIR, CURVE_FILE, RESUME_FIELDS, TrainConfig
from rnnkit.train.state import (
    capture_rng_state,
    check_optimizer_state,
    check_scheduler_state,
    check_trainer_state,
    copy_state,
    decode,
    encode,
    restore_rng_state,
    rng_ok,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointFile",
    "CheckpointIndex",
    "RunFiles",
    "has_checkpoint",
    "history_to_csv",
    "load_checkpoint",
    "read_checkpoint_state",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "rnnkit-checkpoint"
CHECKPOINT_VERSION = 1

_LATEST = "latest.json"
_MODEL = "model.safetensors"
_BEST = "best_model.safetensors"
_STATE_TENSORS = "state.safetensors"
_STATE_JSON = "state.json"
_Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns besides filling the model, optimizer and scheduler.

    Attributes:
        state: the JSON ``state`` dict given to :func:`save_checkpoint` (trainer state: epoch, step, ...).
        best_weights: the best weights saved with the checkpoint (``None`` if none were given).
        path: the checkpoint's sub-folder.
        rng_json, rng_tensors: the saved generator states (``None`` / empty if not saved); see
            :meth:`restore_rng`.
        averaged: the weight average saved with the checkpoint (``{"updates": n, "tensors": {...}}``, see
            :class:`~rnnkit.train.averaging.WeightAverage`), or ``None``.
    """

    state: dict[str, Any]
    best_weights: dict[str, Tensor] | None = None
    path: Path = field(default_factory=Path)
    rng_json: dict[str, Any] | None = None
    rng_tensors: dict[str, Tensor] = field(default_factory=dict)
    averaged: dict[str, Any] | None = None

    def restore_rng(self) -> None:
        """Restore the python, numpy and torch generator states saved with this checkpoint (if any)."""
        if self.rng_json is not None:
            restore_rng_state(self.rng_json, self.rng_tensors)


class CheckpointIndex(BaseModel):
    """``checkpoint/latest.json``: the format tag and the name of the current checkpoint's sub-folder."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal["rnnkit-checkpoint"]
    version: Literal[1]
    current: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")  # a plain name: no path, no dot first


class CheckpointFile(BaseModel):
    """``checkpoint/ckpt-*/state.json``: the format tag, the sha256 of each tensor file, the JSON parts of the
    optimizer, scheduler and generator states, and the trainer state (its fields are checked by
    :class:`rnnkit.train.state.TrainerState` when the trainer resumes)."""

    model_config = ConfigDict(extra="allow", strict=True)

    format: Literal["rnnkit-checkpoint"]
    version: int
    files: dict[Literal["model.safetensors", "best_model.safetensors", "state.safetensors"], _Sha256] = Field(
        description="the checkpoint's file list"
    )
    optimizer: Any = None
    scheduler: Any = None
    rng: dict[str, Any] | None = None
    averaged: dict[str, Any] | None = None  # the weight average (TrainConfig.ema); absent in older checkpoints
    state: dict[str, Any] = Field(description="the trainer state")

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {v} is not supported (this rnnkit reads {CHECKPOINT_VERSION})")
        return v

    @model_validator(mode="after")
    def _both_files(self) -> CheckpointFile:
        missing = [f for f in (_MODEL, _STATE_TENSORS) if f not in self.files]
        if missing:
            raise ValueError(f"files: expected the sha256 of {' and '.join(missing)}")
        return self


_FIELD_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
"""TrainConfig's defaults, for the settings a checkpoint written before they existed does not name."""

_FIX = "the checkpoint is damaged or was not written by rnnkit: start the run again with --overwrite"


def _read_checked(path: Path, model: type[BaseModel]) -> dict[str, Any]:
    """``path``'s JSON, validated by ``model`` (one-line :class:`CheckpointError` naming the file and field)."""
    return validate_model(model, read_json(path), path, fix=_FIX, error=CheckpointError)


def _current_dir(folder: Path) -> Path:
    latest = folder / _LATEST
    if not latest.exists():
        raise CheckpointError(f"{folder}: no complete checkpoint (no {_LATEST})")
    return folder / _read_checked(latest, CheckpointIndex)["current"]


def read_checkpoint_state(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The trainer ``state`` of the current checkpoint in ``folder``, read from JSON only (nothing is loaded)."""
    sub = _current_dir(Path(folder))
    doc = _read_checked(sub / _STATE_JSON, CheckpointFile)
    try:
        return decode(doc["state"], {}, str(sub))
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{sub}: malformed checkpoint state ({e})") from None


def has_checkpoint(folder: str | os.PathLike[str]) -> bool:
    """True if ``folder`` holds a committed checkpoint (its ``latest.json`` exists)."""
    return (Path(folder) / _LATEST).exists()


def save_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    state: Mapping[str, Any],
    *,
    best_weights: Mapping[str, Tensor] | None = None,
    rng: bool = True,
    averaged: Mapping[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint into ``folder`` atomically and make it the current one.

    Args:
        folder: the checkpoint folder (created if needed), e.g. ``<run>/checkpoint``.
        model: its ``state_dict`` goes to ``model.safetensors``.
        optimizer: its state tensors (AdamW: ``exp_avg``, ``exp_avg_sq``, ``step``) go to ``state.safetensors``,
            its ``param_groups`` to ``state.json``.
        scheduler: any object with ``state_dict()`` / ``load_state_dict()`` (a torch LR scheduler); tensors and
            JSON parts are split the same way.
        state: JSON-serialisable trainer state (epoch, step, best metric, data order, ...).
        best_weights: optional best weights so far, kept beside the current ones.
        rng: also store the python, numpy and torch generator states (restored by :func:`load_checkpoint`).
        averaged: a weight average's ``state_dict()`` (:class:`~rnnkit.train.averaging.WeightAverage`): its
            tensors go to ``state.safetensors``, its step count to ``state.json``.

    Returns:
        The new checkpoint's sub-folder. The previous checkpoint is deleted only after the new one is committed.
    """
    folder = Path(folder)
    make_dirs(folder)
    step = int(state.get("step", 0)) if isinstance(state.get("step", 0), (int, float)) else 0
    epoch = int(state.get("epoch", 0)) if isinstance(state.get("epoch", 0), (int, float)) else 0
    name = f"ckpt-e{epoch:04d}-s{step:09d}-{secrets.token_hex(4)}"
    sub = folder / name
    sub.mkdir()

    tensors: dict[str, Tensor] = {}
    doc: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}
    doc["optimizer"] = None if optimizer is None else encode(optimizer.state_dict(), "optimizer", tensors)
    doc["scheduler"] = None if scheduler is None else encode(scheduler.state_dict(), "scheduler", tensors)
    if rng:
        rng_json, rng_tensors = capture_rng_state()
        doc["rng"] = rng_json
        tensors.update(rng_tensors)
    else:
        doc["rng"] = None
    if averaged is not None:
        doc["averaged"] = encode(dict(averaged), "averaged", tensors)
    # the trainer state must be plain JSON; _encode only guards against NaN/inf floats here
    doc["state"] = encode(dict(state), "state", tensors)

    try:
        files = {_MODEL: save_safetensors_atomic(sub / _MODEL, model.state_dict())}
        if best_weights is not None:
            files[_BEST] = save_safetensors_atomic(sub / _BEST, best_weights)
        files[_STATE_TENSORS] = save_safetensors_atomic(sub / _STATE_TENSORS, tensors)
        doc["files"] = files
        write_json_atomic(sub / _STATE_JSON, doc)
        fsync_dir(sub)
        fsync_dir(folder)  # the new sub-folder's entry is on disk before the index names it
        # commit point: after this replace, the new checkpoint is the current one
        index = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "current": name}
        write_json_atomic(folder / _LATEST, index)
    except BaseException:
        # the previous checkpoint is still current, unless the index was already replaced
        committed = False
        with contextlib.suppress(Exception):
            committed = _current_dir(folder).name == name
        if not committed:
            shutil.rmtree(sub, ignore_errors=True)
        raise
    _cleanup(folder, keep=name)
    return sub


def _cleanup(folder: Path, keep: str) -> None:
    """Delete older checkpoints and stray temporary files (left by a crash mid-write)."""
    for p in folder.iterdir():
        if p.name in (keep, _LATEST):
            continue
        if p.is_dir() and p.name.startswith("ckpt-"):
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                p.unlink()


def load_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    *,
    restore_rng: bool = True,
) -> Checkpoint:
    """Load the current checkpoint of ``folder`` into ``model`` (and ``optimizer``, ``scheduler``, RNGs).

    Every file is read and validated (format, checksums, keys, shapes, dtypes, optimizer and scheduler settings,
    generator states) before anything is modified, and should applying still fail, the model, optimizer and
    scheduler are rolled back; so on a :class:`CheckpointError` nothing was changed. Never executes code.
    With ``restore_rng=False`` the generators are left alone; call :meth:`Checkpoint.restore_rng` later (the
    trainer does so after re-creating the epoch's data iterator, which may itself draw random numbers).

    Returns:
        A :class:`Checkpoint` with the saved trainer ``state`` and ``best_weights``.
    """
    folder = Path(folder)
    sub = _current_dir(folder)
    source = str(sub)
    doc = _read_checked(sub / _STATE_JSON, CheckpointFile)
    files = doc["files"]
    weights = load_safetensors(sub / _MODEL, sha256=files[_MODEL])
    check_tensors_fit(model.state_dict(), weights, str(sub / _MODEL))
    best = None
    if _BEST in files:
        best = load_safetensors(sub / _BEST, sha256=files[_BEST])
        check_tensors_fit(model.state_dict(), best, str(sub / _BEST))
    tensors = load_safetensors(sub / _STATE_TENSORS, sha256=files[_STATE_TENSORS])
    try:
        opt_sd = decode(doc.get("optimizer"), tensors, source)
        sched_sd = decode(doc.get("scheduler"), tensors, source)
        state = decode(doc.get("state"), tensors, source)
        averaged = decode(doc.get("averaged"), tensors, source)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{source}: malformed checkpoint state ({e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: the trainer state is malformed")
    if optimizer is not None:
        if opt_sd is None:
            raise CheckpointError(f"{source}: the checkpoint holds no optimizer state")
        check_optimizer_state(optimizer, opt_sd, source)
    if scheduler is not None:
        if sched_sd is None:
            raise CheckpointError(f"{source}: the checkpoint holds no scheduler state")
        check_scheduler_state(scheduler, sched_sd, source)
    rng_json = doc.get("rng")
    if rng_json is not None and not rng_ok(rng_json, tensors):
        raise CheckpointError(f"{source}: the checkpoint's RNG state is incomplete or malformed")

    # everything validated: apply, rolling back if torch still refuses something
    before = (
        copy_state(model.state_dict()),
        None if optimizer is None else copy_state(optimizer.state_dict()),
        None if scheduler is None else copy_state(scheduler.state_dict()),
    )
    try:
        model.load_state_dict(weights)
        if optimizer is not None:
            optimizer.load_state_dict(opt_sd)
        if scheduler is not None:
            scheduler.load_state_dict(sched_sd)
    except Exception as e:
        model.load_state_dict(before[0])
        if optimizer is not None:
            optimizer.load_state_dict(before[1])
        if scheduler is not None:
            scheduler.load_state_dict(before[2])
        raise CheckpointError(f"{source}: the checkpoint cannot be applied ({e}); nothing was changed") from None
    if averaged is not None and not isinstance(averaged, dict):
        raise CheckpointError(f"{source}: the weight average is malformed")
    rng_tensors = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    ck = Checkpoint(
        state=state, best_weights=best, path=sub, rng_json=rng_json, rng_tensors=rng_tensors, averaged=averaged
    )
    if restore_rng:
        ck.restore_rng()
    return ck


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


class RunFiles:
    """What the trainer keeps in its run folder ``out_dir`` (``None``: nothing is written).

    ``checkpoint/`` (resumable state), ``curve.csv`` and ``model.safetensors`` (the best weights, at the end). Only
    a process with ``writes`` set writes them (rank 0 of several); every process reads them on a resume.
    """

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = out_dir
        self.writes = True

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_DIR

    def has_checkpoint(self) -> bool:
        return self.checkpoint_dir is not None and has_checkpoint(self.checkpoint_dir)

    def refuse_to_overwrite(self, resume: bool, overwrite: bool) -> None:
        """ValueError when a fresh start would replace a saved run without ``overwrite``."""
        if not resume and self.has_checkpoint() and not overwrite:
            raise ValueError(
                f"{self.out_dir} already holds a training checkpoint; continue it with --resume, "
                "or choose a new output folder (or --overwrite)"
            )

    def where_last_good(self) -> str:
        """Where the last good checkpoint is, for an error message."""
        if self.has_checkpoint():
            return f"the last good checkpoint is intact in {self.checkpoint_dir}"
        return "no checkpoint was saved yet"

    def resume(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, config: TrainConfig, steps: int
    ) -> Checkpoint:
        """Load the saved run into ``model``, ``optimizer`` and ``scheduler`` after checking that it continues with
        ``config`` and ``steps`` batches per epoch; the generators are restored later (:meth:`Checkpoint.restore_rng`).

        The settings are checked before anything is loaded, so a refused resume leaves the model as it was.
        """
        ckdir = self.checkpoint_dir
        if ckdir is None or not has_checkpoint(ckdir):
            where = "no out_dir was given" if ckdir is None else f"{ckdir} holds no checkpoint"
            raise ValueError(f"cannot resume: {where}; start the run without --resume")
        saved_state = read_checkpoint_state(ckdir)
        check_trainer_state(saved_state, _current_dir(ckdir) / _STATE_JSON)
        # a setting added since a checkpoint was written (ema) was its default then
        saved = {**_FIELD_DEFAULTS, **saved_state["config"]}
        now = asdict(config)
        diff = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in RESUME_FIELDS if saved.get(k) != now[k]]
        if diff:
            raise ValueError(
                f"cannot resume {self.out_dir}: the training settings differ from the saved run "
                f"({'; '.join(diff)}); use the same values, or start a new run"
            )
        if saved_state.get("steps_per_epoch") != steps:
            raise ValueError(
                f"cannot resume {self.out_dir}: the training data gives {steps} batches per epoch, "
                f"the saved run had {saved_state.get('steps_per_epoch')}; resume with the same data"
            )
        ck = load_checkpoint(ckdir, model, optimizer, scheduler, restore_rng=False)
        ck.state["config"] = now
        return ck

    def save(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any,
        state: Mapping[str, Any],
        best: Mapping[str, Tensor] | None,
        averaged: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a checkpoint (when there is a folder and this process writes); ``averaged``: the weight
        average's state, if the run keeps one."""
        ckdir = self.checkpoint_dir
        if ckdir is None or not self.writes:
            return
        assert optimizer is not None
        save_checkpoint(ckdir, model, optimizer, scheduler, state, best_weights=best, averaged=averaged)

    def write_curve(self, history: list[Mapping[str, Any]]) -> None:
        """Rewrite ``curve.csv`` atomically."""
        if self.out_dir is not None and self.writes:
            write_text_atomic(self.out_dir / CURVE_FILE, history_to_csv(history))

    def write_weights(self, model: nn.Module, history: list[Mapping[str, Any]]) -> None:
        """The final ``model.safetensors`` (the unwrapped model: no DDP ``module.`` prefix), then ``curve.csv``."""
        if self.out_dir is not None and self.writes:
            save_run_weights(self.out_dir, model)
            self.write_curve(history)
