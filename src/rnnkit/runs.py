"""A run is a folder: train a task model into one, and load, evaluate, predict and sample from it.

Layout (DESIGN.md §2)::

    RUN/
      config.json         everything needed to rebuild the model and its vocabulary (no code, no pickle)
      split.json          which items went to train / validation / test
      model.safetensors   the best weights
      metrics.json        flat keys: test_accuracy, macro_f1, majority_accuracy, test_loss | test_nll_per_char,
                          bigram_nll_per_char; train_seconds, epochs, ...
      curve.csv           the training curve, one row per epoch
      curves.png          training curves; confusion.png for classifiers (with the ``plot`` extra)
      checkpoint/         resumable state (``--resume``)

The command line (:mod:`rnnkit.cli`) is a thin layer over :func:`train_run`, :func:`load_run`,
:func:`evaluate_run`, :func:`predict` and :func:`sample`.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit import __version__, distributed
from rnnkit.checkpoint import (
    check_weights_file,
    load_run_weights,
    make_dirs,
    read_json,
    write_json_atomic,
)
from rnnkit.data import (
    BucketBatchSampler,
    LabeledItems,
    Split,
    Vocab,
    apply_split,
    carve_validation,
    collate_classification,
    collate_generation,
    default_names,
    exclude_items,
    load_data,
    split_items,
)
from rnnkit.data.batching import Batch
from rnnkit.data.vocab import BOS, EOS
from rnnkit.metrics import confusion_matrix, macro_f1
from rnnkit.tasks import ModelConfig, build_model
from rnnkit.train import CHECKPOINT_DIR, TrainConfig, TrainResult, evaluate, fit, has_checkpoint, seed_everything

__all__ = [
    "DEFAULTS",
    "Run",
    "RunOptions",
    "evaluate_run",
    "load_run",
    "predict",
    "sample",
    "train_run",
]

CONFIG_FILE = "config.json"
SPLIT_FILE = "split.json"
METRICS_FILE = "metrics.json"
RUN_FORMAT = "rnnkit-run"

DEFAULTS: dict[str, dict[str, Any]] = {
    # Chosen by benchmarks/sweep_defaults.py on the embedded default (table in the CHANGELOG / closing note).
    "classify": {
        "model": "gru",
        "embed_dim": 64,
        "hidden_size": 256,
        "num_layers": 1,
        "bidirectional": True,
        "dropout": 0.4,
        "epochs": 12,
        "batch_size": 64,
        "lr": 3e-3,
    },
    "generate": {
        "model": "lstm",
        "embed_dim": 64,
        "hidden_size": 256,
        "num_layers": 1,
        "bidirectional": False,
        "dropout": 0.1,
        "epochs": 12,
        "batch_size": 64,
        "lr": 3e-3,
    },
}
"""Per-task defaults for the model and the trainer when the user names nothing."""


@dataclass
class RunOptions:
    """What ``rnnkit train`` was asked for; unset (None) fields take :data:`DEFAULTS` for the task."""

    task: str = "classify"  # "classify" | "generate"
    data: str | None = None  # a folder of <Category>.txt, a one-item-per-line file, a CSV; None: embedded names
    val_data: str | None = None  # explicit validation file (else carved from the training data)
    test_data: str | None = None  # explicit test file (else 10% of --data)
    text_column: str | None = None  # CSV: the text column (auto-detected when the CSV has two columns)
    label_column: str | None = None  # CSV: the label column
    unit: str = "char"  # vocabulary unit: "char" | "word"
    fold_ascii: bool = False  # fold accents to ASCII as the PyTorch tutorial does
    model: str | None = None  # recurrent core: rnn | lstm | gru | gru-before | window (the registry's names)
    window: int | None = None  # W of the "window" model (None: 5)
    embed_dim: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    bidirectional: bool | None = None
    dropout: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    max_minutes: float | None = None
    conditional: bool = True  # generate: condition on the category when the data has labels
    progress: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields
    options: dict[str, Any] = field(default_factory=dict)  # task-specific settings (horizon, context, beam, ...)

    def train_config(self, defaults: dict[str, Any] | None = None, **fields: Any) -> TrainConfig:
        """The trainer settings: epochs, batch size and learning rate (else the task's ``defaults``), seed, time
        budget and progress from these options, then the task's ``fields`` (e.g. ``monitor``), then ``extra``."""
        settings = {
            "epochs": int(self.resolved("epochs", defaults)),
            "batch_size": int(self.resolved("batch_size", defaults)),
            "lr": float(self.resolved("lr", defaults)),
            "seed": self.seed,
            "max_minutes": self.max_minutes,
            "progress": self.progress,
        }
        return TrainConfig(**{**settings, **fields, **self.extra})

    def resolved(self, key: str, defaults: dict[str, Any] | None = None) -> Any:
        """``key``'s value, or the default (from ``defaults``, else :data:`DEFAULTS` of the task) when unset."""
        value = getattr(self, key) if hasattr(self, key) else self.options.get(key)
        if value is not None:
            return value
        table = defaults if defaults is not None else DEFAULTS[self.task]
        return table[key]


@dataclass
class Run:
    """A loaded run: the model in eval mode, its vocabulary, classes and saved config."""

    path: Path
    config: dict[str, Any]
    model: nn.Module
    vocab: Vocab | None  # token inputs; None for real-valued ones
    classes: list[str]

    @property
    def task(self) -> str:
        return self.config["model"]["task"]


# ---------------------------------------------------------------------------------------------------------- data
EMBEDDED = {"embedded:country": "country", "embedded:gender": "gender"}
"""``--data`` names of the embedded first-name dictionary: name → country or region (the default), name → gender."""


def _read(path: str | None, opts: RunOptions) -> LabeledItems:
    if path is None or path in EMBEDDED:
        return default_names(EMBEDDED.get(path or "embedded:country", "country"))
    return load_data(path, text_column=opts.text_column, label_column=opts.label_column)


def prepare_split(opts: RunOptions) -> Split:
    """Read ``opts.data`` (or the embedded default) and split it as asked."""
    data = _read(opts.data, opts)
    if len(data) == 0:
        raise ValueError(f"{data.source or opts.data}: no items to train on")
    if opts.task == "classify":
        data.require_classes()
    if opts.test_data is None and opts.val_data is None:
        return split_items(data, val=0.1, test=0.1, seed=opts.seed)
    test = _read(opts.test_data, opts) if opts.test_data else None
    val = _read(opts.val_data, opts) if opts.val_data else None
    for other in (test, val):
        if other is not None and other.is_labeled and data.is_labeled:
            unknown = sorted(set(other.labels) - set(data.classes))
            if unknown:
                raise ValueError(f"{other.source}: labels {unknown} do not occur in the training data")
            other.classes = list(data.classes)
    train = exclude_items(data, *[o for o in (test, val) if o is not None])
    if val is None:
        carved = carve_validation(train, val=0.1, seed=opts.seed)
        train, val = carved.train, carved.val
    if test is None:
        carved = split_items(train, val=0.0, test=0.1, seed=opts.seed)
        train, test = carved.train, carved.test
    record = {
        "seed": opts.seed,
        "explicit": True,
        **{name: sorted(set(part.items)) for name, part in (("train", train), ("val", val), ("test", test))},
    }
    return Split(train=train, val=val, test=test, record=record)


def _encode(vocab: Vocab, data: LabeledItems) -> tuple[list[list[int]], list[int]]:
    """Token ids of every item that keeps at least one symbol, and the indices kept."""
    ids, kept = [], []
    for i, item in enumerate(data.items):
        e = vocab.encode(item)
        if e:
            ids.append(e)
            kept.append(i)
    return ids, kept


class _Batches:
    """One task's batches of one split: bucketed by length, order a function of ``(seed, epoch)``."""

    def __init__(self, task: str, ids: list[list[int]], labels: list[int] | None, batch_size: int, seed: int):
        self.task, self.ids, self.labels = task, ids, labels
        self.sampler = BucketBatchSampler([len(s) for s in ids], batch_size, shuffle=True, seed=seed)
        self.fixed = BucketBatchSampler([len(s) for s in ids], batch_size, shuffle=False, seed=seed)

    def _collate(self, index: list[int]) -> Batch:
        ids = [self.ids[i] for i in index]
        if self.task == "classify":
            return collate_classification(ids, [self.labels[i] for i in index])
        conds = None if self.labels is None else [self.labels[i] for i in index]
        return collate_generation(ids, conds)

    def epoch(self, epoch: int) -> list[Batch]:
        self.sampler.set_epoch(epoch)
        return [self._collate(b) for b in self.sampler]

    def ordered(self) -> list[Batch]:
        return [self._collate(b) for b in self.fixed]


# ---------------------------------------------------------------------------------------------------------- train
def train_run(
    opts: RunOptions,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the model ``opts`` describes into the run folder ``out``; returns the metrics written.

    An existing ``out`` with a run in it is refused unless ``resume`` (continue it) or ``overwrite`` (replace it).
    """
    out = Path(out)
    app = app_for(opts)
    if app is None and resume and (out / CONFIG_FILE).is_file():
        # `train --resume --out RUN` names no --data: the app that wrote the run continues it
        app = APPS.get(read_json(out / CONFIG_FILE).get("app") or "")
    if app is not None:
        return app.train(opts, out, resume=resume, overwrite=overwrite, log=log)
    if opts.task not in DEFAULTS:
        raise ValueError(f"unknown task {opts.task!r}; choose one of: {', '.join(sorted(DEFAULTS))}")
    opts, saved, existing = begin_run(
        out, opts, resume=resume, overwrite=overwrite, app=None, options_from=_options_from_config
    )
    split = prepare_split(opts)
    if resume:
        vocab = Vocab.from_dict(saved["vocab"])
    else:
        vocab = Vocab.build(
            split.train.items, unit=opts.unit, fold_ascii=opts.fold_ascii, max_len=opts.options.get("max_len")
        )
    tr_ids, tr_kept = _encode(vocab, split.train)
    if not tr_ids:
        raise ValueError("no training item has a symbol left (is --fold-ascii removing everything?)")
    conditional = opts.task == "generate" and opts.conditional and split.train.is_labeled
    use_labels = opts.task == "classify" or conditional
    classes = list(split.train.classes) if use_labels else []

    def labels_of(data: LabeledItems, kept: list[int]) -> list[int] | None:
        if not use_labels:
            return None
        ids = data.label_ids()
        return [ids[i] for i in kept]

    bs = int(opts.resolved("batch_size"))
    train_b = _Batches(opts.task, tr_ids, labels_of(split.train, tr_kept), bs, opts.seed)
    va_ids, va_kept = _encode(vocab, split.val)
    if not va_ids:
        raise ValueError("the validation split is empty: give more data or --val-data")
    val_b = _Batches(opts.task, va_ids, labels_of(split.val, va_kept), bs, opts.seed).ordered()

    model_name = opts.resolved("model")
    windowed = model_name == "window"
    if windowed and opts.bidirectional:
        raise ValueError("the window model has no direction: drop --bidirectional")
    mcfg = ModelConfig(
        task=opts.task,
        model=model_name,
        vocab_size=len(vocab),
        num_classes=len(classes) if opts.task == "classify" else 0,
        embed_dim=int(opts.resolved("embed_dim")),
        hidden_size=int(opts.resolved("hidden_size")),
        num_layers=int(opts.resolved("num_layers")),
        bidirectional=bool(opts.resolved("bidirectional")) if opts.task == "classify" and not windowed else False,
        dropout=float(opts.resolved("dropout")),
        num_conditions=len(classes) if conditional else 0,
        # a window model has no state to condition: the category enters through every step's input
        condition_mode="input" if windowed else "both",
        window=5 if opts.window is None else int(opts.window),
    )
    # a classifier keeps the epoch that classifies best: validation loss turns up (over-confidence) while
    # accuracy is still rising
    tcfg = opts.train_config(monitor="accuracy" if opts.task == "classify" else "loss")
    seed_everything(opts.seed)
    model = build_model(mcfg)
    config = run_config(
        None,
        mcfg,
        tcfg,
        {
            "source": split.train.source or (opts.data or "embedded"),
            # absolute, so that `evaluate RUN` and `--resume` find the data from any working directory
            "data": absolute_path(opts.data),
            "val_data": absolute_path(opts.val_data),
            "test_data": absolute_path(opts.test_data),
            "text_column": opts.text_column,
            "label_column": opts.label_column,
            "unit": opts.unit,
            "fold_ascii": opts.fold_ascii,
            "conditional": conditional,
            "seed": opts.seed,
        },
        vocab=vocab.to_dict(),
        classes=classes,
    )
    write_run_start(out, config, split.record, resume=resume, overwrite=overwrite and existing)
    result = fit(
        model, train_b.epoch, val_b, tcfg, out, resume=resume, overwrite=overwrite, log=log, handle_sigint=True
    )
    run = Run(out, config, model.eval(), vocab, classes)
    metrics = _test_metrics(run, split, result)
    confusion = metrics.pop("confusion", None)
    if distributed.is_main():  # only rank 0 writes the run folder
        write_json_atomic(out / METRICS_FILE, metrics)
        if confusion is not None:
            write_json_atomic(out / "confusion.json", {"classes": classes, "matrix": confusion})
        _plots(run, out, confusion)
    return metrics


# ---------------------------------------------------------------------------------------------------------- apps
@dataclass(frozen=True)
class TaskApp:
    """How ``rnnkit train/evaluate/predict`` handle one task family beyond text classify/generate.

    ``train(opts, out, *, resume, overwrite, log) -> metrics`` writes a whole run folder (use :func:`claim_out`,
    :func:`check_resume_options`, :func:`write_run_start` and :func:`finish_run` for the shared steps);
    ``evaluate(run, path) -> metrics`` scores a loaded run on ``path`` (None: its saved test split);
    ``predict(run, items, **kw) -> lines`` answers ``rnnkit predict`` with one printable line per item;
    ``summary(metrics) -> str`` is the one line ``rnnkit train`` prints; ``defaults`` fill unset RunOptions
    fields; ``handles(opts)`` (optional) claims options of another task name, e.g. ``classify`` on a ``.ts`` file.
    """

    name: str
    train: Callable[..., dict[str, Any]]
    evaluate: Callable[..., dict[str, Any]]
    predict: Callable[..., list[str]]
    summary: Callable[[dict[str, Any]], str]
    defaults: dict[str, Any]
    handles: Callable[[RunOptions], bool] | None = None


APPS: dict[str, TaskApp] = {}
"""Registered task apps by name (the ``app`` key of a run's ``config.json``)."""


def register_app(app: TaskApp) -> None:
    """Make ``app`` reachable from every command; its defaults join :data:`DEFAULTS` under its name."""
    APPS[app.name] = app
    DEFAULTS.setdefault(app.name, dict(app.defaults))


def app_for(opts: RunOptions) -> TaskApp | None:
    """The app that trains ``opts``: one whose ``handles`` claims it, else the one named ``opts.task``, else None."""
    _load_apps()
    for app in APPS.values():
        if app.handles is not None and app.handles(opts):
            return app
    return APPS.get(opts.task)


def app_of(run: Run) -> TaskApp | None:
    """The app a loaded run belongs to (None: text classify/generate)."""
    _load_apps()
    name = run.config.get("app")
    if name is None:
        return None
    if name not in APPS:
        raise ValueError(f"{run.path} was written by the {name!r} task, which this rnnkit version does not know")
    return APPS[name]


def _load_apps() -> None:
    import rnnkit.apps  # noqa: F401  (registers every app)


def claim_out(out: Path, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Check that ``out`` may receive a run; on ``resume`` return its saved ``config.json``.

    A fresh run refuses a folder that holds files unless ``overwrite``; nothing is deleted here (see
    :func:`write_run_start`), so a refused or failing command leaves the folder as it was.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if resume:
        if overwrite:
            raise ValueError("--resume and --overwrite contradict each other: pick one")
        if not (out / CONFIG_FILE).exists():
            raise ValueError(f"--resume: {out} holds no run to continue (no {CONFIG_FILE})")
        if not has_checkpoint(out / CHECKPOINT_DIR):
            raise ValueError(
                f"--resume: {out} holds no checkpoint (the run stopped before its first save); "
                "start it again with --overwrite"
            )
        return read_json(out / CONFIG_FILE)
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


def check_resume_options(opts: RunOptions, resumed: RunOptions, out: Path) -> None:
    """Refuse a ``--resume`` that asks for settings other than the run was started with."""
    keys = [*DEFAULTS.get(resumed.task, {}), "window"]
    changed = [k for k in keys if hasattr(opts, k) and getattr(opts, k) not in (None, getattr(resumed, k))]
    changed += [k for k, v in opts.options.items() if v is not None and resumed.options.get(k) != v]
    if changed:
        raise ValueError(
            f"--resume continues the run in {out} as it was started; it cannot change {', '.join(changed)} "
            "(start a new run with another --out instead)"
        )


def write_run_start(
    out: Path, config: dict[str, Any], split_record: dict[str, Any] | None, *, resume: bool, overwrite: bool
) -> None:
    """Create ``out`` (emptying it first on ``overwrite``) and write ``config.json`` and ``split.json``.

    Call it only after the data was read and the model built, so that bad input never costs an existing run.
    """
    if resume:
        return
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
        if overwrite and out.is_dir():
            shutil.rmtree(out)
        make_dirs(out)  # created and fsynced into its parent, so the folder survives a power loss
        write_json_atomic(out / CONFIG_FILE, config)
        if split_record is not None:
            write_json_atomic(out / SPLIT_FILE, split_record)
    distributed.barrier()


def run_config(app: str | None, mcfg: ModelConfig, tcfg: TrainConfig, data: dict[str, Any], **extra) -> dict:
    """The ``config.json`` of a run: format tag, version, model and train configs, data settings and extras."""
    config: dict[str, Any] = {
        "format": RUN_FORMAT,
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
    if result is not None:
        metrics["train_seconds"] = round(result.train_seconds, 2)
        metrics["epochs"] = result.epochs_run
        metrics["best_epoch"] = result.best_epoch
        metrics["stopped_reason"] = result.stopped_reason
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
    return metrics


def absolute_path(path: str | None) -> str | None:
    """``path`` made absolute, so that `evaluate RUN` and `--resume` find the data from any working directory;
    None and ``embedded:NAME`` stay as they are."""
    if path is None or path.startswith("embedded:"):
        return path
    return str(Path(path).expanduser().resolve())


def resume_options(saved: dict[str, Any], opts: RunOptions, task: str, **fields: Any) -> RunOptions:
    """The options a run was started with, rebuilt from its ``config.json`` so ``--resume`` continues exactly
    that run: the model and training settings every task saves, plus the task's own ``fields``. Only the wall-clock
    budget and the progress display come from ``opts`` (this call's flags)."""
    m, t, d = saved["model"], saved["train"], saved["data"]
    common: dict[str, Any] = {
        "task": task,
        "data": d["data"],
        "model": m["model"],
        "hidden_size": m["hidden_size"],
        "num_layers": m["num_layers"],
        "bidirectional": m["bidirectional"],
        "dropout": m["dropout"],
        "epochs": t["epochs"],
        "batch_size": t["batch_size"],
        "lr": t["lr"],
        "seed": d["seed"],
        "max_minutes": opts.max_minutes,
        "progress": opts.progress,
    }
    return RunOptions(**{**common, **fields})


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
    app, another ``--data`` or changed settings, and continue with the options the run was started with
    (``options_from(saved, opts)``).

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


def _options_from_config(saved: dict[str, Any], opts: RunOptions) -> RunOptions:
    d = saved["data"]
    return resume_options(
        saved,
        opts,
        saved["model"]["task"],
        val_data=d["val_data"],
        test_data=d["test_data"],
        text_column=d["text_column"],
        label_column=d["label_column"],
        unit=d["unit"],
        fold_ascii=d["fold_ascii"],
        window=saved["model"].get("window", 5),
        embed_dim=saved["model"]["embed_dim"],
        conditional=d["conditional"],
    )


# ---------------------------------------------------------------------------------------------------------- metrics
def _test_metrics(run: Run, split: Split, result: TrainResult | None) -> dict[str, Any]:
    metrics: dict[str, Any] = {"task": run.task, "model": run.config["model"]["model"]}
    metrics.update(evaluate_run(run, split.test, train=split.train, val=split.val))
    metrics["num_train"], metrics["num_val"], metrics["num_test"] = len(split.train), len(split.val), len(split.test)
    if result is not None:
        metrics["train_seconds"] = round(result.train_seconds, 2)
        metrics["epochs"] = result.epochs_run
        metrics["best_epoch"] = result.best_epoch
        metrics["stopped_reason"] = result.stopped_reason
    return metrics


def evaluate_run(
    run: Run, data: LabeledItems, train: LabeledItems | None = None, val: LabeledItems | None = None
) -> dict[str, Any]:
    """Test metrics of ``run`` on ``data``, and the baselines when the run's ``train`` (and ``val``) are given.

    Classifiers also get ``confusion`` (rows: true class, columns: predicted), which is not a flat metric and
    is saved to ``confusion.json`` rather than ``metrics.json``.
    """
    if len(data) == 0:
        raise ValueError("no items to evaluate")
    ids, kept = _encode(run.vocab, data)
    if not ids:
        raise ValueError("no item to evaluate has a symbol the model knows")
    if run.task == "classify":
        return _classify_metrics(run, data, ids, kept, train)
    return _generate_metrics(run, data, ids, kept, train, val)


def _label_ids(run: Run, data: LabeledItems, kept: list[int]) -> list[int]:
    if not data.is_labeled:
        raise ValueError(f"{data.source or 'the data'} has no labels to evaluate against")
    index = {c: i for i, c in enumerate(run.classes)}
    unknown = sorted({lab for lab in data.labels if lab not in index})
    if unknown:
        raise ValueError(
            f"labels {unknown} are not classes of this run ({', '.join(run.classes)}); "
            "evaluate on data labelled with the run's classes"
        )
    return [index[data.labels[i]] for i in kept]


def _classify_metrics(run, data, ids, kept, train) -> dict[str, Any]:
    y = _label_ids(run, data, kept)
    batches = _Batches("classify", ids, y, 256, 0).ordered()
    out = evaluate(run.model, batches)
    preds, golds = [], []
    with torch.no_grad():
        for b in batches:
            logits, _ = run.model(b)
            preds += logits.argmax(-1).tolist()
            golds += b.targets.tolist()
    conf = confusion_matrix(golds, preds, len(run.classes))
    ref = train if train is not None and train.is_labeled else data
    majority = Counter(ref.labels).most_common(1)[0][0]
    return {
        "test_accuracy": round(out["accuracy"], 4),
        "macro_f1": round(macro_f1(conf), 4),
        "majority_accuracy": round(sum(1 for i in kept if data.labels[i] == majority) / len(kept), 4),
        "majority_class": majority,
        "test_loss": round(out["loss"], 4),
        "confusion": conf,
    }


def _generate_metrics(run, data, ids, kept, train, val) -> dict[str, Any]:
    conditional = run.config["data"]["conditional"]
    y = _label_ids(run, data, kept) if conditional else None
    out = evaluate(run.model, _Batches("generate", ids, y, 256, 0).ordered())
    metrics: dict[str, Any] = {"test_nll_per_char": round(out["loss"], 4), "test_loss": round(out["loss"], 4)}
    if train is not None:
        tr_ids, _ = _encode(run.vocab, train)
        va_ids = _encode(run.vocab, val)[0] if val is not None and len(val) else tr_ids
        metrics["bigram_nll_per_char"] = round(bigram_nll(tr_ids, va_ids, ids, len(run.vocab)), 4)
    return metrics


def bigram_nll(
    train: Sequence[Sequence[int]], val: Sequence[Sequence[int]], test: Sequence[Sequence[int]], vocab_size: int
) -> float:
    """Mean NLL on ``test`` (nats per predicted symbol, EOS included) of makemore's counting bigram model.

    Counts come from ``train``; the add-α smoothing is picked on ``val`` from a small grid. Sequences are wrapped
    as ``[BOS] + s + [EOS]`` exactly like the generator's inputs and targets.
    """
    V = vocab_size
    counts = torch.zeros(V, V, dtype=torch.float64)
    for s in train:
        seq = [BOS, *s, EOS]
        for a, b in itertools.pairwise(seq):
            counts[a, b] += 1

    def nll(alpha: float, seqs) -> float:
        probs = (counts + alpha) / (counts + alpha).sum(1, keepdim=True)
        logp = probs.log()
        total, n = 0.0, 0
        for s in seqs:
            seq = [BOS, *s, EOS]
            for a, b in itertools.pairwise(seq):
                total -= float(logp[a, b])
                n += 1
        return total / n

    alpha = min((0.01, 0.03, 0.1, 0.3, 1.0), key=lambda a: nll(a, val))
    return nll(alpha, test)


def _plots(run: Run, out: Path, confusion: list[list[int]] | None) -> list[Path]:
    from rnnkit.plots import plot_confusion, plot_curves

    written = []
    if (out / "curve.csv").exists() and len((out / "curve.csv").read_text().splitlines()) > 1:
        p = plot_curves(out / "curve.csv", out / "curves.png", title=f"{run.task} · {run.config['model']['model']}")
        if p is not None:
            written.append(p)
    if confusion is not None:
        p = plot_confusion(confusion, run.classes, out / "confusion.png")
        if p is not None:
            written.append(p)
    return written


# ---------------------------------------------------------------------------------------------------------- use
def load_run(path: str | Path) -> Run:
    """Rebuild a run's model from ``config.json`` and ``model.safetensors`` (nothing is executed)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} does not exist; give the folder that rnnkit train --out wrote")
    if not (path / CONFIG_FILE).exists():
        raise ValueError(f"{path} is not a run folder (no {CONFIG_FILE}); train one with `rnnkit train --out`")
    config = read_json(path / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise ValueError(f"{path / CONFIG_FILE} is not an rnnkit run config")
    if not (path / "model.safetensors").exists():
        raise ValueError(f"{path} has no model.safetensors: the run did not finish; continue it with --resume")
    _load_apps()  # apps register their task models (e.g. "lm") in rnnkit.tasks.TASKS
    mcfg = ModelConfig.from_dict(config["model"])
    try:
        with torch.device("meta"):  # shapes only, no memory: a config naming a huge model is refused, not allocated
            shapes = build_model(mcfg)
    except RuntimeError as e:
        raise ValueError(f"{path / CONFIG_FILE}: the model it describes cannot be built ({e})") from None
    check_weights_file(path / "model.safetensors", shapes)
    model = build_model(mcfg)
    load_run_weights(path, model)
    vocab = Vocab.from_dict(config["vocab"]) if config.get("vocab") else None
    classes = list(config.get("classes", []))
    if mcfg.task == "classify" and classes and len(classes) != mcfg.num_classes:
        raise ValueError(
            f"{path / CONFIG_FILE} names {len(classes)} classes but its model has {mcfg.num_classes} outputs; "
            "the config was edited or mixed with another run's: retrain the run"
        )
    run = Run(path, config, model.eval(), vocab, classes)
    app_of(run)  # an unknown app is refused here, before any command uses the run
    return run


def saved_test_data(run: Run) -> LabeledItems:
    """The test items of a run, rebuilt from its saved data settings and ``split.json``."""
    d = run.config["data"]
    opts = RunOptions(text_column=d["text_column"], label_column=d["label_column"])
    if d["test_data"]:
        return _read(d["test_data"], opts)
    data = _read(d["data"], opts)
    return apply_split(data, read_json(run.path / SPLIT_FILE)).test


def evaluate_path(run: Run, path: str | None, text_column: str | None = None, label_column: str | None = None):
    """Metrics of ``run`` on the file/folder ``path``, or on its own saved test split when ``path`` is None."""
    app = app_of(run)
    if app is not None:
        return app.evaluate(run, path)
    if path is None:
        data = saved_test_data(run)
    else:
        data = load_data(path, text_column=text_column, label_column=label_column)
    metrics = evaluate_run(run, data)
    metrics.pop("confusion", None)
    metrics.pop("majority_accuracy", None)  # a baseline needs the training data; the run's metrics.json has it
    metrics.pop("majority_class", None)
    metrics["num_items"] = len(data)
    return metrics


def predict(run: Run, items: Sequence[str], top_k: int = 3) -> list[list[tuple[str, float]]]:
    """The ``top_k`` classes and probabilities of each item; unknown symbols are an error naming them.

    Runs of other task apps answer through their own ``predict`` (see :func:`predict_lines`).
    """
    if run.task != "classify":
        raise ValueError(f"{run.path} is a {run.task} run; predict needs a classify run (use `rnnkit sample`)")
    if not items:
        raise ValueError("give at least one item to predict")
    ids = []
    for item in items:
        if not item.strip():
            raise ValueError("an item to predict is empty; give at least one symbol per item")
        ids.append(run.vocab.encode(item, strict=True))
    k = max(1, min(top_k, len(run.classes)))
    probs = run.model.predict_proba(collate_classification(ids))
    top = torch.topk(probs, k, dim=1)
    return [
        [(run.classes[c], float(p)) for p, c in zip(pv.tolist(), cv.tolist(), strict=True)]
        for pv, cv in zip(top.values, top.indices, strict=True)
    ]


def predict_lines(run: Run, items: Sequence[str], **options: Any) -> list[str]:
    """``rnnkit predict``: one printable line per item, for any task app (text classify included)."""
    app = app_of(run)
    if app is not None:
        return app.predict(run, list(items), **options)
    top = predict(run, items, top_k=options.get("top_k", 3))
    return [f"{item}: " + ", ".join(f"{c} {p:.3f}" for c, p in row) for item, row in zip(items, top, strict=True)]


def summary_line(metrics: dict[str, Any]) -> str:
    """The one human line of a run's headline metrics, for any task."""
    _load_apps()
    app = APPS.get(metrics.get("app", ""))
    return app.summary(metrics) if app is not None else accuracy_line(metrics)


def sample(
    run: Run,
    category: str | None = None,
    num: int = 10,
    temperature: float = 0.8,
    prefix: str = "",
    max_len: int = 30,
    seed: int | None = None,
    top_k: int | None = None,
) -> list[str]:
    """``num`` items drawn from a generate run, of ``category`` when the run is conditional."""
    if run.task != "generate":
        raise ValueError(f"{run.path} is a {run.task} run; sample needs a generate run (use `rnnkit predict`)")
    cond = None
    if run.config["data"]["conditional"]:
        if category is None:
            raise ValueError(f"this run generates per category: pass --category (one of {', '.join(run.classes)})")
        if category not in run.classes:
            raise ValueError(f"unknown category {category!r}; choose one of: {', '.join(run.classes)}")
        cond = run.classes.index(category)
    elif category is not None:
        raise ValueError("this run was trained without categories: leave out --category")
    pre = run.vocab.encode(prefix, strict=True) if prefix else []
    gen = torch.Generator().manual_seed(seed if seed is not None else int(time.time_ns() % 2**31))
    seqs = run.model.sample(
        cond, n=num, temperature=temperature, top_k=top_k, prefix=pre, max_len=max_len, generator=gen
    )
    return [run.vocab.decode(s) for s in seqs]


def accuracy_line(metrics: dict[str, Any]) -> str:
    """One human line of a run's headline metrics."""
    if "test_accuracy" in metrics:
        return (
            f"test accuracy {metrics['test_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
            f"(majority-class baseline {metrics['majority_accuracy']:.3f})"
        )
    s = f"test NLL {metrics['test_nll_per_char']:.3f} nats/char"
    if "bigram_nll_per_char" in metrics:
        s += f" (bigram baseline {metrics['bigram_nll_per_char']:.3f})"
    return s


def fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"
