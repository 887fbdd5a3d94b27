"""The run folder: its layout, claiming ``--out``, writing it (atomically, rank 0 only), finishing it, loading it.

Layout (DESIGN.md §2)::

    RUN/
      config.json         everything needed to rebuild the model and its vocabulary (no code, no pickle)
      split.json          which items went to train / validation / test
      model.safetensors   the best weights
      metrics.json        flat keys: test_accuracy, macro_f1, majority_accuracy, test_loss | test_nll_per_char, ...;
                          train_seconds, epochs, ...
      curve.csv           the training curve, one row per epoch
      curves.png          training curves; confusion.png for classifiers (with the ``plot`` extra)
      checkpoint/         resumable state (``--resume``)
      kernels.safetensors a series classifier's kernel ridge (``--kernels``); ngram.safetensors a generator's count
                          member (``--ngram-order``), each named by its config.json record

``config.json`` carries ``format_version`` (:data:`FORMAT_VERSION`); folders written before it existed have none
and read as version 1. A folder of a newer format than this rnnkit knows is refused with one line.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit import __version__, distributed
from rnnkit.checkpoint import (
    CheckpointError,
    check_weights_file,
    fsync_dir,
    load_run_weights,
    load_safetensors,
    make_dirs,
    read_json,
)
from rnnkit.checkpoint import write_json_atomic as write_json_atomic
from rnnkit.data import Vocab
from rnnkit.runs.options import RunOptions, absolute_path, check_resume_options
from rnnkit.runs.registry import kind_of, load_kinds
from rnnkit.runs.schema import RunConfigFile, SplitFile, validate_file
from rnnkit.tasks import ModelConfig, build_model
from rnnkit.train import CHECKPOINT_DIR, TrainConfig, TrainResult, has_checkpoint

__all__ = [
    "CONFIG_FILE",
    "ENSEMBLE_FORMAT",
    "FORMAT_VERSION",
    "MEMBERS_DIR",
    "METRICS_FILE",
    "RUN_FORMAT",
    "SPLIT_FILE",
    "OutLock",
    "Run",
    "begin_run",
    "claim_out",
    "finish_run",
    "hold_out",
    "load_run",
    "read_config",
    "read_split",
    "run_config",
    "write_run_start",
]

CONFIG_FILE = "config.json"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.safetensors"
MEMBERS_DIR = "members"
RUN_FORMAT = "rnnkit-run"
FORMAT_VERSION = 3
"""The newest run-folder format this rnnkit reads and writes. 1: folders without a ``format_version`` key (rnnkit
0.1.0 before the run-kind registry); 2: the same keys plus ``format_version`` and ``"options"``, the run's options
whole (read by :func:`rnnkit.runs.options.restore_run_options`); 3: an ensemble (``train --ensemble K``, see
:data:`ENSEMBLE_FORMAT`). A single model is still written as version 2, so that rnnkit releases that read 2 read
it; only an ensemble, which they could not load, says 3 (and they refuse it in one line)."""

SINGLE_FORMAT = 2
ENSEMBLE_FORMAT = 3
"""An ensemble of K members (``config.json``: ``model.ensemble = K``)::

    RUN/
      config.json         format_version 3; "model" is the members' config plus "ensemble": K
      model.safetensors   every member's best weights: members.<i>.<the member's keys>, i = 0 … K-1
      metrics.json        the ensemble's metrics (mean probabilities / predictions), "ensemble": K, and
                          "members": one dict per member (its seed, test metrics, epochs, best epoch, seconds)
      split.json          the run's one split (all members share it); confusion.json/.png for classifiers
      members/<i>/        member i's training: curve.csv, checkpoint/, model.safetensors (its own keys)

      curves.png          every member's validation curve on one figure (loss, and the first other metric)

Member ``i`` is trained with seed ``seed + i`` (weights, dropout) on the run's one split and batches, each under
its own ``--max-minutes``; the top folder has no ``curve.csv`` of its own. ``train --resume --out RUN`` continues
an ensemble member by member: a member with a checkpoint from where it stopped (a finished one just gives its
result), a member without one from its start; then the ensemble is scored again. Folders written before resume
existed load and resume alike (the layout is unchanged)."""


@dataclass
class Run:
    """A loaded run: the model in eval mode, its vocabulary, classes and saved config."""

    path: Path
    config: dict[str, Any]
    model: nn.Module
    vocab: Vocab | None  # token inputs; None for real-valued ones
    classes: list[str]
    parts: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Further parts a run kind loads on first use (a series run's kernel ridge: ``"kernels"``; a text run's count
    member: ``"ngram"``)."""

    def part(self, key: str, default_file: str, what: str, flag: str, build: Callable[[dict[str, Tensor]], Any]) -> Any:
        """The member named by ``config.json``'s ``key`` record (loaded once with ``build(state)`` from its
        safetensors file, kept in :attr:`parts`), or None for a run without the record. A missing file, or one
        ``build`` refuses (KeyError, ValueError, RuntimeError, IndexError), is a :class:`CheckpointError` of one
        line naming the file, ``what`` the member is and the ``flag`` that makes it."""
        record = self.config.get(key)
        if not record:
            return None
        if key not in self.parts:
            path = self.path / str(record.get("file", default_file))
            if not path.is_file():
                raise CheckpointError(f"{path}: missing; this run's config names {what} ({flag}): retrain it")
            state = load_safetensors(path)
            try:
                self.parts[key] = build(state)
            except (KeyError, ValueError, RuntimeError, IndexError) as exc:
                why = f"no {exc}" if isinstance(exc, KeyError) else str(exc) or exc.__class__.__name__
                raise CheckpointError(f"{path}: not {what} this release reads ({why})") from None
        return self.parts[key]

    @property
    def task(self) -> str:
        return self.config["model"]["task"]


def read_config(path: Path) -> dict[str, Any]:
    """``path/config.json`` of an rnnkit run, refused when it is not one or comes from a newer format."""
    config = read_json(path / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise ValueError(f"{path / CONFIG_FILE} is not an rnnkit run config")
    version = config.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path / CONFIG_FILE}: format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} is a run folder of format version {version} (written by rnnkit {config.get('rnnkit_version')}), "
            f"newer than this rnnkit {__version__} reads (up to {FORMAT_VERSION}): upgrade rnnkit"
        )
    return validate_file(RunConfigFile, config, path / CONFIG_FILE)


def read_split(path: Path, model: type[SplitFile] = SplitFile) -> dict[str, Any]:
    """``path/split.json`` of a run, checked against its declared model (:class:`~rnnkit.runs.schema.SplitFile`, or
    the kind's own ``model``)."""
    record = read_json(path / SPLIT_FILE)
    if not isinstance(record, dict):
        raise ValueError(f"{path / SPLIT_FILE}: expected a JSON object (the split record), got {type(record).__name__}")
    return validate_file(model, record, path / SPLIT_FILE)


class OutLock:
    """Exclusive ``flock`` locks on run folders (the folder itself, no lock file), held while a ``train`` writes.

    A second ``rnnkit train`` (or ``--resume``) on the same ``--out`` is refused in one line instead of both
    writing into it. Where ``fcntl`` is missing (Windows) nothing is locked.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []

    def add(self, folder: Path) -> None:
        """Lock ``folder`` (an existing directory) or raise ``ValueError`` when another process holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            here, held = os.stat(folder), os.fstat(fd)
            if (here.st_dev, here.st_ino) != (held.st_dev, held.st_ino):  # replaced between open and lock
                raise BlockingIOError
        except OSError:
            os.close(fd)
            raise ValueError(
                f"--out {folder} is being written by another rnnkit process; wait until it finishes, or choose "
                "another --out"
            ) from None
        self._fds.append(fd)

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor releases its flock
        self._fds.clear()


@contextlib.contextmanager
def hold_out(out: Path, *, create: bool) -> Iterator[OutLock]:
    """Hold an exclusive lock on the run folder ``out`` for the body (see :class:`OutLock`).

    ``create``: make ``out`` when it is missing (a fresh run), and remove it again when the body fails leaving
    it empty, so that a refused command leaves no trace. Only rank 0 locks under torchrun.
    """
    lock = OutLock()
    created = False
    if distributed.is_main():
        if create and not out.exists() and not out.is_symlink():
            make_dirs(out)
            created = True
        if out.is_dir():
            lock.add(out)
    try:
        yield lock
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when still empty
        raise
    finally:
        lock.release()


def claim_out(out: Path, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Check that ``out`` may receive a run; on ``resume`` return its saved ``config.json``.

    The one place that checks ``--resume`` and ``--overwrite``. A fresh run refuses a folder that holds files unless
    ``overwrite``; nothing is deleted here (see :func:`write_run_start`), so a refused or failing command leaves the
    folder as it was.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: pick one")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if resume:
        if not (out / CONFIG_FILE).exists():
            raise ValueError(f"--resume: {out} holds no run to continue (no {CONFIG_FILE})")
        if not has_checkpoint(out / CHECKPOINT_DIR) and not _member_checkpoints(out):
            raise ValueError(
                f"--resume: {out} holds no checkpoint (the run stopped before its first save); "
                "start it again with --overwrite"
            )
        return read_config(out)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"--out {out} already holds files; choose another folder or pass --overwrite")
        # --overwrite replaces a run, never a folder of other files (the data, a thesis, a home directory)
        config = out / CONFIG_FILE
        try:
            is_run = config.is_file() and read_json(config).get("format") == RUN_FORMAT
        except (ValueError, OSError, AttributeError):
            is_run = False
        if not is_run:
            raise ValueError(
                f"--out {out} holds files but no rnnkit run (no {CONFIG_FILE} written by rnnkit train); "
                "--overwrite only replaces a run folder: choose another folder"
            )
    return None


def _member_checkpoints(out: Path) -> bool:
    """Whether an ensemble's folder holds a checkpoint of any member (``members/<i>/checkpoint``): it is resumed."""
    members = out / MEMBERS_DIR
    return members.is_dir() and any(has_checkpoint(m / CHECKPOINT_DIR) for m in members.iterdir() if m.is_dir())


def begin_run(
    out: Path,
    opts: RunOptions,
    *,
    resume: bool,
    overwrite: bool,
    app: str | None,
    options_from: Callable[[dict[str, Any], RunOptions], RunOptions],
) -> tuple[RunOptions, dict[str, Any] | None, bool]:
    """The start every ``train`` shares: claim ``out`` (:func:`claim_out`); on ``resume`` refuse a run of another
    kind, another ``--data`` or changed settings, and continue with the options the run was started with
    (``options_from(saved, opts)``). ``app`` is the ``"app"`` key the kind writes into ``config.json``.

    Returns ``(options to train with, the saved config.json or None, whether out holds files to overwrite)``.
    """
    saved = claim_out(out, resume=resume, overwrite=overwrite)
    existing = saved is None and out.is_dir() and any(out.iterdir())
    if saved is not None:
        if saved.get("app") != app:
            raise ValueError(f"--resume: {out} holds a {saved.get('app') or 'text'} run, not a {app or 'text'} run")
        resumed = options_from(saved, opts)
        if opts.data is not None and absolute_path(opts.data) != resumed.data:
            raise ValueError(f"--resume continues the run in {out} on {resumed.data}; it cannot change --data")
        check_resume_options(opts, resumed, out)
        opts = resumed
    return opts, saved, existing


def _non_finite(obj: Any, where: str = "") -> tuple[str, float] | None:
    """The path (``data.scaler.mean[0]``) and value of the first NaN or infinite float in ``obj``, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where or "(the top)", obj)
    if isinstance(obj, dict):
        items: Any = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for key, value in items:
        found = _non_finite(value, key)
        if found is not None:
            return found
    return None


def write_run_start(
    out: Path,
    config: dict[str, Any],
    split_record: dict[str, Any] | None,
    *,
    resume: bool,
    overwrite: bool,
    lock: OutLock | None = None,
) -> None:
    """Create ``out`` and write ``config.json`` and ``split.json``.

    On ``overwrite`` the new run is written into a fresh sibling folder first, and takes the place of ``out``
    only once its config and split are written (:func:`replace_folder`): a failure at any point before leaves
    the old run whole. ``lock`` (the :class:`OutLock` that holds ``out``) also locks the new folder.
    Call it only after the data was read and the model built, so that bad input never costs an existing run.
    """
    if resume:
        return
    for name, record in ((CONFIG_FILE, config), (SPLIT_FILE, split_record)):
        where = _non_finite(record)
        if where is not None:
            raise ValueError(
                f"{out / name} would hold a non-finite number at {where[0]} ({where[1]!r}): a setting or a statistic "
                "of the data is not finite (values too large for float64?); nothing was written"
            )
    for key in ("data", "val_data", "test_data"):
        value = (config.get("data") or {}).get(key)
        if isinstance(value, str) and not value.startswith("embedded:"):
            path = Path(value).expanduser().resolve()
            if path == out.resolve() or out.resolve() in path.parents:
                raise ValueError(
                    f"--out {out} contains the {key.replace('_', '-')} {value}: a run folder is replaced whole; "
                    "put the run somewhere else"
                )
    # under torchrun every rank has passed claim_out before rank 0 writes, and none goes on before it has written
    distributed.barrier()
    if distributed.is_main():
        if overwrite and out.is_dir() and any(out.iterdir()):
            new = out.parent / f".{out.name}.new-{os.getpid()}-{secrets.token_hex(4)}"
            make_dirs(new)
            try:
                if lock is not None:
                    lock.add(new)
                _write_start_files(new, config, split_record)
                replace_folder(new, out)
            except BaseException:
                shutil.rmtree(new, ignore_errors=True)
                raise
        else:
            make_dirs(out)  # created and fsynced into its parent, so the folder survives a power loss
            _write_start_files(out, config, split_record)
    distributed.barrier()


def _write_start_files(folder: Path, config: dict[str, Any], split_record: dict[str, Any] | None) -> None:
    write_json_atomic(folder / CONFIG_FILE, config)
    if split_record is not None:
        write_json_atomic(folder / SPLIT_FILE, split_record)


def replace_folder(new: Path, out: Path) -> None:
    """Put the folder ``new`` in the place of the folder ``out`` (same parent), then delete the old one.

    Two renames: ``out`` → a hidden sibling, ``new`` → ``out``; if the second fails the first is undone. At no
    moment is the old folder partly deleted: it is removed only once the new one stands at ``out``.
    """
    old = out.parent / f".{out.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(out, old)
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(old, out)
        raise
    fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)


def run_config(app: str | None, mcfg: ModelConfig, tcfg: TrainConfig, data: dict[str, Any], **extra) -> dict:
    """The ``config.json`` of a run: format tag and version, model and train configs, data settings and extras;
    ``app`` (the kind's ``"app"`` key; None for text classify/generate, which write none) as today's folders."""
    config: dict[str, Any] = {
        "format": RUN_FORMAT,
        "format_version": ENSEMBLE_FORMAT if mcfg.ensemble > 1 else SINGLE_FORMAT,
        "rnnkit_version": __version__,
        "model": mcfg.to_dict(),
        "train": asdict(tcfg),
        "data": data,
    }
    if app is not None:
        config["app"] = app
    config.update(extra)
    return config


def finish_run(run: Run, metrics: dict[str, Any], result: TrainResult | None, **json_files: Any) -> dict[str, Any]:
    """Add the training facts to ``metrics``, write ``metrics.json`` (and ``NAME.json`` for each extra) and plots."""
    add_train_facts(metrics, result)
    if not distributed.is_main():  # only rank 0 writes the run folder
        return metrics
    write_json_atomic(run.path / METRICS_FILE, metrics)
    for name, value in json_files.items():
        write_json_atomic(run.path / f"{name}.json", value)
    from rnnkit.plots import plot_curves

    if result is None or result.history:  # a run stopped by --max-minutes before its first epoch has no curve yet
        plot_curves(
            run.path / "curve.csv", run.path / "curves.png", title=f"{run.task} · {run.config['model']['model']}"
        )
    k = int(run.config.get("model", {}).get("ensemble", 1))
    curves = [run.path / MEMBERS_DIR / str(i) / "curve.csv" for i in range(k)]
    if k > 1 and all(c.is_file() for c in curves):  # an ensemble: its members' curves on one figure
        from rnnkit.plots import plot_member_curves

        title = f"{run.task} · {run.config['model']['model']} · ensemble of {k}"
        plot_member_curves(curves, run.path / "curves.png", title=title)
    return metrics


def add_train_facts(metrics: dict[str, Any], result: TrainResult | None) -> dict[str, Any]:
    """``metrics`` with the trainer's facts added: seconds, epochs run, the best epoch and why it stopped."""
    if result is not None:
        metrics["train_seconds"] = round(result.train_seconds, 2)
        metrics["epochs"] = result.epochs_run
        metrics["best_epoch"] = result.best_epoch
        metrics["stopped_reason"] = result.stopped_reason
    return metrics


def load_run(path: str | Path) -> Run:
    """Rebuild a run's model from ``config.json`` and ``model.safetensors`` (nothing is executed)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} does not exist; give the folder that rnnkit train --out wrote")
    if not (path / CONFIG_FILE).exists():
        raise ValueError(f"{path} is not a run folder (no {CONFIG_FILE}); train one with `rnnkit train --out`")
    config = read_config(path)
    if not (path / WEIGHTS_FILE).exists():
        raise ValueError(f"{path} has no model.safetensors: the run did not finish; continue it with --resume")
    load_kinds()  # kinds register their task models (e.g. "lm") in rnnkit.tasks.TASKS
    mcfg = ModelConfig.from_dict(config["model"])
    try:
        with torch.device("meta"):  # shapes only, no memory: a config naming a huge model is refused, not allocated
            shapes = build_model(mcfg)
    except RuntimeError as e:
        raise ValueError(f"{path / CONFIG_FILE}: the model it describes cannot be built ({e})") from None
    check_weights_file(path / WEIGHTS_FILE, shapes)
    model = build_model(mcfg)
    load_run_weights(path, model)
    vocab = Vocab.from_dict(config["vocab"]) if config.get("vocab") else None
    classes = list(config.get("classes", []))
    if mcfg.task == "classify" and len(classes) != mcfg.num_classes:  # an empty list too: found by the fuzz test
        raise ValueError(
            f"{path / CONFIG_FILE} names {len(classes)} classes but its model has {mcfg.num_classes} outputs; "
            "the config was edited or mixed with another run's: retrain the run"
        )
    run = Run(path, config, model.eval(), vocab, classes)
    kind_of(run)  # an unknown kind is refused here, before any command uses the run
    return run
