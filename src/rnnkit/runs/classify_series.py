"""The ``classify-series`` task app: many→one classification of multivariate, variable-length real-valued series.

``rnnkit train --task classify --data TRAIN.ts [--test-data TEST.ts]`` reaches this app (rather than the text
classifier) when ``--data`` is a ``.ts`` or ``.npz`` file or ``embedded:basicmotions`` (see :func:`handles`).
Data are read by :mod:`rnnkit.data.arrays` (UEA/UCR ``.ts``, ``.npz`` with ``X`` and ``y``, the BasicMotions
files shipped in the aeon/sktime wheels).

Splits: the test part is ``--test-data`` (for ``embedded:basicmotions`` the shipped TEST file), else
:data:`TEST_FRACTION` of every class of ``--data``; the validation part is ``--val-data``, else
:data:`VAL_FRACTION` (``--val-fraction``; 0: none) of every class of what is left
(:func:`~rnnkit.data.arrays.stratified_split`, seeded). The
best epoch is the one with the highest validation accuracy, ties broken by the lower validation loss
(:func:`validation_score`); training stops after :data:`PATIENCE` epochs without a better one.

Defaults: LSTM-FCN reading every series z-normalised beside its raw values, downsampled to about 64 steps when
long, early stopping within a size-dependent schedule, an ensemble of up to five members by a size rule;
the numbers and rules are in :mod:`rnnkit.runs.series_defaults` (re-exported here). Beside the networks, a ridge
classifier on random convolution features of the series at full resolution (``--kernels``, default 20,000;
:mod:`rnnkit.runs.series_kernels`) fitted after them (with ``--dtw-steps N``
also a nearest-series DTW member beside the ridge, the two averaged by a share chosen by their leave-one-out
probabilities); the run averages that with the networks' probabilities by a weight chosen on the validation
part.

Inputs: real values skip the embedding (``ModelConfig(vocab_size=0, input_features=C)``, ``2C`` with
``--series-norm both``: :func:`model_inputs`); every channel is standardized with the mean and std of the
*training part only* (:class:`~rnnkit.data.arrays.Standardizer`), saved in ``config.json`` under ``"scaler"``
and applied to validation, test and prediction data unchanged. Before both, every series is downsampled by the
run's factor (``config.json`` ``"downsample"``, 1 in runs saved before the option), at training and prediction
alike.

A run folder holds what every run holds (``config.json``, ``split.json``, ``model.safetensors``, ``metrics.json``,
``curve.csv``, ``curves.png``, ``checkpoint/``) and ``confusion.json`` / ``confusion.png``, and with a ridge
``kernels.safetensors`` (with a DTW member also ``dtw.safetensors``). Metrics:
``test_accuracy``, ``macro_f1``, ``majority_accuracy`` and ``majority_class`` (the training part's most common
class), ``test_loss``, ``num_train`` / ``num_val`` / ``num_test``, ``num_channels``, ``missing_filled``.
``rnnkit evaluate RUN [--data F]`` scores a run; ``rnnkit predict RUN --data F.ts|F.npz`` prints ``i: CLASS p``
per series (``i`` its 0-based position in the file, ``p`` the class probability).

Shape symbols: B batch, T steps, C channels (the batch's F features), N series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit import distributed
from rnnkit.data.arrays import (
    EMBEDDED_SERIES,
    SERIES_SUFFIXES,
    SeriesSet,
    Standardizer,
    as_sequences,
    load_series,
    stratified_split,
)
from rnnkit.data.batching import Batch, Batches, collate_sequences
from rnnkit.data.series_inputs import augmented_epochs, auto_downsample, model_inputs
from rnnkit.metrics import accuracy, confusion, macro_f1
from rnnkit.runs import series_kernels
from rnnkit.runs.folder import SPLIT_FILE, Run, read_split
from rnnkit.runs.kind import Prepared, RunKind, accuracy_line, note, register_kind
from rnnkit.runs.options import RunOptions, absolute_path
from rnnkit.runs.series_defaults import (  # the defaults, schedule rules and flags (re-exported)
    DEFAULTS,
    FEWEST_EPOCHS,
    FLAGS,
    KERNEL_WEIGHT,
    MAX_STEPS,
    MIN_EPOCHS,
    PATIENCE,
    STEP_BUDGET,
    TEST_FRACTION,
    VAL_FRACTION,
    augment_of,
    default_epochs,
    default_members,
    downsample_of,
    dtw_steps_of,
    hydra_of,
    kernel_pooling_of,
    kernels_of,
    options_from_config,
    series_norm_of,
    val_fraction_of,
)
from rnnkit.runs.series_kernels import (
    combine,
    dtw_record,
    fit_member,
    kernel_probabilities,
    kernels_record,
    mean_nll,
    nearest_probabilities,
    save_kernels,
    save_nearest,
)
from rnnkit.tasks import ModelConfig
from rnnkit.tasks.kernels import RandomKernels
from rnnkit.train import TrainConfig, evaluate

__all__ = [
    "APP",
    "DEFAULTS",
    "FEWEST_EPOCHS",
    "MAX_STEPS",
    "MIN_EPOCHS",
    "PATIENCE",
    "STEP_BUDGET",
    "TEST_FRACTION",
    "VAL_FRACTION",
    "SeriesSplit",
    "default_epochs",
    "default_members_of",
    "evaluate_series",
    "handles",
    "predict_series",
    "prepare_series",
    "series_batch",
    "series_probabilities",
    "train_series",
]

APP = "classify-series"
EVAL_BATCH = 256


def handles(opts: RunOptions) -> bool:
    """True for ``--task classify`` on a ``.ts`` / ``.npz`` file or ``embedded:basicmotions``."""
    if opts.task != "classify" or opts.data is None:
        return False
    return opts.data in EMBEDDED_SERIES or Path(opts.data).suffix.lower() in SERIES_SUFFIXES


# ---------------------------------------------------------------------------------------------------------- data
@dataclass
class SeriesSplit:
    """The three parts of a series classification run and what is fitted on the training part.

    Attributes:
        train, val, test: the parts (``SeriesSet``), labels required.
        classes: class names in class-id order (the training file's).
        scaler: per-channel statistics of ``train`` only.
        record: what ``split.json`` saves (indices into ``--data``, or the file a part came from).
        missing_filled: missing values filled in all files read.
    """

    train: SeriesSet
    val: SeriesSet
    test: SeriesSet
    classes: list[str]
    scaler: Standardizer
    record: dict[str, Any]
    missing_filled: int
    downsample: int = 1


def _check_part(part: SeriesSet, channels: int, classes: list[str], what: str) -> None:
    if len(part) == 0:
        raise ValueError(f"the {what} part is empty: give more series or --{what}-data")
    if part.num_channels != channels:
        raise ValueError(
            f"{part.source}: its series have {part.num_channels} channels but the training data has {channels}"
        )
    if part.y is None:
        raise ValueError(f"{part.source} has no class labels (@classLabel false, or no y); {what} data needs them")
    unknown = sorted(set(part.y) - set(classes))
    if unknown:
        raise ValueError(f"{part.source}: labels {unknown} do not occur among the training classes {classes}")


def prepare_series(
    data: str,
    val_data: str | None = None,
    test_data: str | None = None,
    seed: int = 0,
    series_norm: str = "none",
    val_fraction: float = VAL_FRACTION,
    downsample: int = 1,
) -> SeriesSplit:
    """Read the files, split them as the module docstring says and fit the scaler on the training part.

    ``val_fraction`` (without ``val_data``): the share of every class carved for validation; ``0`` carves nothing
    (the validation part is empty: train on all of it, no early stopping). ``downsample``: the factor ``f`` of
    :func:`downsample_series` the model reads the series at, ``0`` chosen from the training part
    (:func:`auto_downsample`); the scaler is fitted on what the model reads. Deterministic in its arguments, so a
    run's test part can be rebuilt from its saved settings.
    """
    full = load_series(data, "train")
    if len(full) == 0:
        raise ValueError(f"{full.source}: no series to train on")
    if full.y is None:
        raise ValueError(
            f"{full.source} has no class labels; classification needs one per series (a .ts file with "
            "@classLabel true LABEL ..., or an .npz file with a y array)"
        )
    classes = list(full.classes)
    filled = full.missing_filled
    record: dict[str, Any] = {"seed": seed, "data": absolute_path(data)}
    rest = list(range(len(full)))
    if test_data is None and data in EMBEDDED_SERIES:
        test_data = data  # the shipped TEST file is the test part
    if test_data is not None:
        test = load_series(test_data, "test")
        filled += test.missing_filled
        test.classes = classes
        record["test_data"] = absolute_path(test_data)
    else:
        rest, held = stratified_split(full.y, TEST_FRACTION, seed)
        test = full.subset(held)
        record["test"] = held
    if val_data is not None:
        val = load_series(val_data, "test")
        filled += val.missing_filled
        val.classes = classes
        record["val_data"] = absolute_path(val_data)
        train_idx = rest
    elif val_fraction == 0:
        train_idx = rest  # nothing carved: a fixed schedule on all of it, the last epoch's weights
        val = full.subset([])
        record["val"] = []
    else:
        keep, carved = stratified_split([full.y[i] for i in rest], val_fraction, seed + 1)
        train_idx = [rest[i] for i in keep]
        val = full.subset([rest[i] for i in carved])
        record["val"] = [rest[i] for i in carved]
    train = full.subset(train_idx)
    record["train"] = train_idx
    present = sorted(set(train.y or []), key=classes.index)
    if len(present) < 2:
        raise ValueError(f"{full.source}: the training part has {len(present)} class(es) {present}; need at least 2")
    for part, what in ((val, "val"), (test, "test")):
        if what == "val" and val_data is None and val_fraction == 0:
            continue  # no validation part asked for
        _check_part(part, full.num_channels, classes, what)
    # the training part only: val/test never shape it
    factor = auto_downsample(train) if downsample == 0 else int(downsample)
    scaler = Standardizer.fit(model_inputs(as_sequences(train.X), series_norm, factor))
    return SeriesSplit(train, val, test, classes, scaler, record, filled, factor)


def series_batch(
    sequences: Sequence[np.ndarray],
    scaler: Standardizer,
    labels: Sequence[int] | None = None,
    series_norm: str = "none",
    downsample: int = 1,
) -> Batch:
    """Normalise time-major series ``(L_i, C)`` as the run does (:func:`model_inputs`, then the standardizer) and
    pad them into ``Batch(inputs (B, T, C') float32, ...)``."""
    seqs = scaler.transform(model_inputs(sequences, series_norm, downsample))
    return collate_sequences(seqs, targets=None if labels is None else list(labels))


def _series_batches(
    part: SeriesSet,
    scaler: Standardizer,
    batch_size: int,
    seed: int,
    labeled: bool = True,
    series_norm: str = "none",
    downsample: int = 1,
) -> Batches:
    """One part's batches: bucketed by length; the training order a function of ``(seed, epoch)``."""
    seqs = scaler.transform(model_inputs(as_sequences(part.X), series_norm, downsample))  # N × (L_i', C'), once
    labels = part.label_ids() if labeled else None

    def collate(index: list[int]) -> Batch:
        return collate_sequences(
            [seqs[i] for i in index], targets=None if labels is None else [labels[i] for i in index]
        )

    return Batches([s.shape[0] for s in seqs], collate, batch_size, seed)


# ---------------------------------------------------------------------------------------------------------- train
def validation_score(num_val: int) -> Callable[[torch.nn.Module, Any], dict[str, float]]:
    """The trainer's ``evaluate_fn``: :func:`rnnkit.train.evaluate` plus ``score``, which picks the best epoch.

    ``score = accuracy - min(loss, 10) / (11 · num_val)``: two accuracies on ``num_val`` series differ by at least
    ``1 / num_val`` and the loss term stays below that, so the score ranks epochs by validation accuracy first and
    breaks ties by the lower validation loss. A small validation set reaches its best accuracy early and then
    ties for many epochs; accuracy alone would keep the first of those epochs, often an undertrained one.
    """

    def score(model: torch.nn.Module, batches: Any) -> dict[str, float]:
        out = evaluate(model, batches)
        out["score"] = out["accuracy"] - min(out["loss"], 10.0) / (11.0 * num_val)
        return out

    return score


def _model_config(opts: RunOptions, channels: int, num_classes: int) -> ModelConfig:
    """``channels``: C of the data; the model reads ``2C`` with ``--series-norm both``."""
    model = str(opts.resolved("model", DEFAULTS))
    if series_norm_of(opts) == "both":
        channels *= 2
    if opts.embed_dim is not None and opts.embed_dim != DEFAULTS["embed_dim"]:
        raise ValueError(
            "--embed sizes symbol embeddings; real-valued series enter the model as they are: drop --embed"
        )
    windowed = model == "window"
    if windowed and opts.bidirectional:
        raise ValueError("the window model has no direction: drop --bidirectional")
    return ModelConfig(
        task="classify",
        model=model,
        vocab_size=0,
        input_features=channels,
        num_classes=num_classes,
        embed_dim=int(DEFAULTS["embed_dim"]),
        hidden_size=int(opts.resolved("hidden_size", DEFAULTS)),
        num_layers=int(opts.resolved("num_layers", DEFAULTS)),
        bidirectional=False if windowed else bool(opts.resolved("bidirectional", DEFAULTS)),
        dropout=float(opts.resolved("dropout", DEFAULTS)),
        window=5 if opts.window is None else int(opts.window),
    )


def default_members_of(opts: RunOptions) -> int:
    """The ensemble size a new run of ``opts`` without ``--ensemble`` gets (:func:`default_members`): its training
    part and factor as :func:`prepare_series` makes them, its epochs (``--epochs`` or :func:`default_epochs`)."""
    if opts.data is None:
        raise ValueError(f"{APP} needs --data: a .ts file, an .npz file or {', '.join(EMBEDDED_SERIES)}")
    split = prepare_series(
        opts.data,
        opts.val_data,
        opts.test_data,
        opts.seed,
        series_norm_of(opts),
        val_fraction_of(opts),
        downsample_of(opts),
    )
    epochs = opts.epochs if opts.epochs is not None else default_epochs(split.train, split.downsample)
    return default_members(split.train, split.downsample, epochs)


def _prepare(opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
    """Read and split the series, restore or fit the scaler, fix the trainer settings (a resumed run keeps its
    own), make the batches. All data are read and checked before anything is written."""
    if opts.data is None:
        raise ValueError(f"{APP} needs --data: a .ts file, an .npz file or {', '.join(EMBEDDED_SERIES)}")
    norm = series_norm_of(opts)
    split = prepare_series(
        opts.data, opts.val_data, opts.test_data, opts.seed, norm, val_fraction_of(opts), downsample_of(opts)
    )
    scaler = split.scaler if saved is None else Standardizer.from_dict(saved["scaler"])
    factor = split.downsample
    # the options record (config.json) holds the factor the rule chose, not 0: a resume, or a later release with
    # another rule, reads the series exactly as this run did
    opts.options["downsample"] = factor
    _model_config(opts, split.train.num_channels, len(split.classes))  # bad settings fail before the batches
    if saved is not None:
        tcfg = TrainConfig.from_dict({**saved["train"], "max_minutes": opts.max_minutes, "progress": opts.progress})
    else:
        defaults = {**DEFAULTS, "epochs": default_epochs(split.train, factor)}  # --epochs, when given, wins
        tcfg = opts.train_config(defaults, monitor="score", patience=PATIENCE)
    train_b = _series_batches(split.train, scaler, tcfg.batch_size, tcfg.seed, series_norm=norm, downsample=factor)
    val_b = None  # --val-fraction 0: no validation part, no early stopping
    if len(split.val):
        val_b = _series_batches(split.val, scaler, EVAL_BATCH, tcfg.seed, series_norm=norm, downsample=factor).ordered()
    extra = {"split": split, "scaler": scaler, "trainer": tcfg, "series_norm": norm}
    if kernels_of(opts) > 0:  # a bad --kernels, --hydra or --kernel-pooling fails before anything is written
        RandomKernels(split.train.num_channels, kernels_of(opts), stretch=kernel_pooling_of(opts) == "ppv+lspv")
        hydra_of(opts)
    elif saved is None and opts.options.get("hydra"):  # (a resumed run's options hold the default it resolved)
        raise ValueError("--hydra adds kernels to the kernel ridge, which --kernels 0 turns off: leave one out")
    elif saved is None and opts.options.get("kernel_pooling"):
        raise ValueError("--kernel-pooling shapes the kernel ridge, which --kernels 0 turns off: leave one out")
    elif saved is None and opts.options.get("dtw_steps"):
        raise ValueError(
            "--dtw-steps adds a DTW member beside the kernel ridge, which --kernels 0 turns off: leave one out"
        )
    train_data = augmented_epochs(train_b.epoch, augment_of(opts), tcfg.seed)
    return Prepared(train_data, val_b, split.record, None, split.classes, extra=extra)


# ---------------------------------------------------------------------------------------------------------- use
def _scaler(run: Run) -> Standardizer:
    return Standardizer.from_dict(run.config["scaler"])


def _norm(run: Run) -> str:
    """The run's ``--series-norm`` (runs saved before the option: ``"none"``)."""
    return str(run.config.get("series_norm", "none"))


def _factor(run: Run) -> int:
    """The run's downsampling factor (runs saved before ``--downsample``: 1, the series as they are)."""
    return int(run.config.get("downsample", 1))


def _readable(run: Run, part: SeriesSet) -> None:
    """Refuse series the run cannot read: another channel count, or no series."""
    if len(part) == 0:
        raise ValueError(f"{part.source}: no series")
    C = run.config.get("num_channels", run.config["model"]["input_features"])  # the data's channels
    if part.num_channels != C:
        raise ValueError(f"{part.source}: its series have {part.num_channels} channels; this run reads {C}")


@torch.no_grad()
def _network_probabilities(run: Run, part: SeriesSet, labeled: bool) -> tuple[np.ndarray, list[Batch]]:
    """The networks' class probabilities ``(N, num_classes)`` in the order of ``part``, and the batches."""
    batches = _series_batches(
        part, _scaler(run), EVAL_BATCH, 0, labeled=labeled, series_norm=_norm(run), downsample=_factor(run)
    ).indexed()
    probs = np.zeros((len(part), len(run.classes)))  # (N, classes)
    run.model.eval()
    for index, batch in batches:
        logits, _ = run.model(batch)  # (B, classes)
        probs[index] = torch.softmax(logits.double(), dim=-1).numpy()
    return probs, [b for _, b in batches]


def _sample_note(labeled: int) -> str:
    """The ridge's log line's note when it was fitted on a sample of the ``labeled`` series (empty otherwise)."""
    limit = series_kernels.RIDGE_MAX_SERIES
    if labeled <= limit:
        return ""
    return (
        f"; fitted on about {limit:,} of the {labeled:,} labeled series (a stratified sample: the "
        "ridge's fit grows as N²·F + N³; the networks read them all)"
    )


def _probabilities(run: Run, part: SeriesSet) -> np.ndarray:
    """The run's class probabilities ``(N, num_classes)``: the networks', averaged with its kernel ridge's when it
    has one (:func:`~rnnkit.runs.series_kernels.combine`)."""
    networks, _ = _network_probabilities(run, part, labeled=False)
    return combine(run, networks, kernel_probabilities(run, part), nearest_probabilities(run, part))


def _classify_metrics(run: Run, part: SeriesSet, train: SeriesSet | None = None) -> dict[str, Any]:
    _readable(run, part)
    part = replace(part, classes=list(run.classes))
    gold = part.label_ids()
    networks, batches = _network_probabilities(run, part, labeled=True)
    kernels = kernel_probabilities(run, part)
    nearest = nearest_probabilities(run, part)
    probs = combine(run, networks, kernels, nearest)
    pred = probs.argmax(1).tolist()
    conf = confusion(gold, pred, len(run.classes))
    metrics: dict[str, Any] = {
        "test_accuracy": round(accuracy(gold, pred), 4),
        "macro_f1": round(macro_f1(conf), 4),
    }
    if train is not None and train.y is not None:
        majority = Counter(train.y).most_common(1)[0][0]
        metrics["majority_accuracy"] = round(sum(lab == majority for lab in part.y or []) / len(part), 4)
        metrics["majority_class"] = majority
    if kernels is None:
        metrics["test_loss"] = round(evaluate(run.model, batches)["loss"], 4)
    else:  # the mean cross-entropy of the combined probabilities, and each part's accuracy
        metrics["test_loss"] = round(mean_nll(probs, gold), 4)
        metrics["networks_accuracy"] = round(accuracy(gold, networks.argmax(1).tolist()), 4)
        metrics["kernels_accuracy"] = round(accuracy(gold, kernels.argmax(1).tolist()), 4)
        metrics["kernels_weight"] = float(run.parts["kernels"].weight)
        if nearest is not None:
            metrics["dtw_accuracy"] = round(accuracy(gold, nearest.argmax(1).tolist()), 4)
            metrics["dtw_weight"] = float(run.parts["dtw"].weight)
    metrics["confusion"] = conf
    return metrics


def saved_test_part(run: Run) -> SeriesSet:
    """A run's own test part, rebuilt from its saved data settings (checked against ``split.json``)."""
    d = run.config["data"]
    split = prepare_series(
        d["data"], d["val_data"], d["test_data"], d["seed"], val_fraction=d.get("val_fraction", VAL_FRACTION)
    )
    saved = read_split(run.path)
    if saved.get("test") != split.record.get("test") or saved.get("train") != split.record.get("train"):
        raise ValueError(
            f"{d['data']} changed since the run was trained (its split differs from {run.path / SPLIT_FILE}); "
            "evaluate on a file with --data"
        )
    return split.test


def evaluate_series(run: Run, path: str | None) -> dict[str, Any]:
    """Metrics of ``run`` on the series in ``path`` (None: its own test part); the app's ``evaluate``."""
    part = saved_test_part(run) if path is None else load_series(path, "test")
    metrics = _classify_metrics(run, part)
    metrics.pop("confusion")
    metrics["num_items"] = len(part)
    metrics["missing_filled"] = part.missing_filled
    return metrics


def predict_series(run: Run, items: Sequence[str], data: str | None = None, **options: Any) -> list[str]:
    """``i: CLASS p`` for every series of the file ``data`` (the app's ``predict``); labels there are ignored."""
    if items:
        raise ValueError(
            f"a {APP} run classifies whole series, not items on the command line: pass them with --data FILE.ts "
            "or FILE.npz"
        )
    for key in ("beam", "horizon"):
        if options.get(key) is not None:
            raise ValueError(f"--{key} does not apply to a {APP} run: drop it")
    if data is None:
        raise ValueError("give the series to classify with --data FILE.ts or FILE.npz")
    part = load_series(data, "test")
    _readable(run, part)
    probs = _probabilities(run, part)
    best = probs.argmax(1)
    return [f"{i}: {run.classes[c]} {probs[i, c]:.3f}" for i, c in enumerate(best.tolist())]


def series_probabilities(run: Run, X: Any) -> np.ndarray:
    """Class probabilities ``(N, classes)`` of the series ``X`` (an :func:`~rnnkit.data.arrays.as_sequences`
    layout: ``(N, C, L)``, ``(N, L)`` or a list of ``(C, L_i)``), computed as :func:`predict_series` does for a
    file's series (``rnnkit serve`` answers with them)."""
    part = SeriesSet([s.T for s in as_sequences(X)], source="the series given")
    _readable(run, part)
    return _probabilities(run, part)


def summary(metrics: dict[str, Any]) -> str:
    """The one line ``rnnkit train`` prints."""
    return accuracy_line(metrics) + f" on {metrics['num_test']} test series"


@register_kind
class SeriesClassifyKind(RunKind):
    """Series classification: ``--task classify`` on real-valued series (``.ts``, ``.npz``,
    ``embedded:basicmotions``), chosen by :meth:`handles`."""

    name = APP
    embedded = tuple(EMBEDDED_SERIES)
    app = APP
    defaults = DEFAULTS
    help = "classify on series"
    ignores = ("text_column", "label_column", "unit", "fold_ascii", "conditional")
    flags = FLAGS
    ensembles = True
    selectable = False  # reached through --task classify on series data

    def handles(self, opts: RunOptions) -> bool:
        return handles(opts)

    def default_ensemble(self, opts: RunOptions) -> int:
        """A new run without ``--ensemble`` trains :func:`default_members` members (by the data's size)."""
        return default_members_of(opts) if opts.data is not None else 1

    def options_from_config(self, saved: dict[str, Any], opts: RunOptions) -> RunOptions:
        return options_from_config(saved, opts)

    def prepare(self, opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
        return _prepare(opts, saved)

    def model_config(self, opts: RunOptions, prepared: Prepared) -> ModelConfig:
        split = prepared.extra["split"]
        return _model_config(opts, split.train.num_channels, len(split.classes))

    def trainer_settings(self, opts: RunOptions, prepared: Prepared) -> TrainConfig:
        return prepared.extra["trainer"]

    def data_config(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        return {
            "source": prepared.extra["split"].train.source,
            "data": absolute_path(opts.data),
            "val_data": absolute_path(opts.val_data),
            "test_data": absolute_path(opts.test_data),
            "seed": opts.seed,
            "val_fraction": val_fraction_of(opts),
            "test_fraction": TEST_FRACTION,
        }

    def config_extra(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        split = prepared.extra["split"]
        return {
            "classes": split.classes,
            "scaler": prepared.extra["scaler"].to_dict(),
            "num_channels": split.train.num_channels,
            "series_norm": prepared.extra["series_norm"],
            "downsample": split.downsample,
            "augment": augment_of(opts),
            **(
                {"kernels": kernels_record(kernels_of(opts), opts.seed, hydra_of(opts), kernel_pooling_of(opts))}
                if kernels_of(opts) > 0
                else {}
            ),
            **({"dtw": dtw_record(dtw_steps_of(opts))} if kernels_of(opts) > 0 and dtw_steps_of(opts) > 0 else {}),
        }

    def before_fit(
        self, out: Path, prepared: Prepared, saved: dict[str, Any] | None, log: Callable[[str], None] | None
    ) -> None:
        split = prepared.extra["split"]
        if saved is not None and read_split(out) != split.record:
            raise ValueError(f"--resume: the data of the run in {out} changed since it started (its split differs)")
        if split.missing_filled:
            note(log, f"filled {split.missing_filled} missing values by linear interpolation within their channels")

    def fit_options(self, prepared: Prepared) -> dict[str, Any]:
        num_val = len(prepared.extra["split"].val)
        return {"evaluate_fn": validation_score(num_val)} if num_val else {}

    def _score_member(self, member: tuple[Run, Any], prepared: Prepared, seed: int) -> dict[str, Any]:
        """A member is one network: scored without the run's kernel ridge and DTW member."""
        run, result = member
        alone = replace(run, config={k: v for k, v in run.config.items() if k not in ("kernels", "dtw")}, parts={})
        return super()._score_member((alone, result), prepared, seed)

    def after_fit(self, run: Run, prepared: Prepared) -> None:
        """The networks are trained: fit the ridge member and choose its weight (:mod:`rnnkit.runs.series_kernels`)."""
        split = prepared.extra["split"]
        record = run.config.get("kernels")
        if record:
            networks = _network_probabilities(run, split.val, labeled=False)[0] if len(split.val) else None
            steps = int((run.config.get("dtw") or {}).get("steps", 0))
            ridge, nearest = fit_member(
                (split.train, split.val), split.classes, int(record["features"]), int(record["seed"]), networks,
                KERNEL_WEIGHT, int(record.get("hydra", 0)), str(record.get("pooling", "ppv")), steps,
            )  # fmt: skip
            if distributed.is_main():  # under torchrun every rank fits the same members; rank 0 writes them
                save_kernels(run.path, ridge)
                if nearest is not None:
                    save_nearest(run.path, nearest)
            run.parts["kernels"] = ridge
            if nearest is not None:
                run.parts["dtw"] = nearest
            note(
                prepared.log,
                f"kernel ridge: {ridge.kernels.num_features} random-kernel features"
                + (" (PPV and LSPV)" if ridge.kernels.pools == 2 else "")
                + ("" if ridge.competing is None else f" and {ridge.competing.num_features} competing-kernel ones")
                + f", reading {'+'.join(ridge.chosen_groups()).upper()} (chosen by leave-one-out), "
                f"alpha {float(ridge.alpha):g}, "
                f"weight {float(ridge.weight):g} beside the networks"
                + (" (chosen on the validation part)" if networks is not None else " (no validation part)")
                + _sample_note(len(split.train) + len(split.val)),
            )
            if nearest is not None:
                note(
                    prepared.log,
                    f"DTW member: {len(nearest.labels)} reference series"
                    + (f" read at every {int(nearest.factor)} steps averaged" if int(nearest.factor) > 1 else "")
                    + f", share {float(nearest.weight):g} beside the ridge (chosen by leave-one-out)",
                )

    def score(self, run: Run, prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        split = prepared.extra["split"]
        metrics: dict[str, Any] = {"app": APP, "task": "classify", "model": run.config["model"]["model"]}
        metrics.update(_classify_metrics(run, split.test, train=split.train))
        confusion = metrics.pop("confusion")
        metrics.update(num_train=len(split.train), num_val=len(split.val), num_test=len(split.test))
        metrics["num_channels"] = split.train.num_channels
        metrics["missing_filled"] = split.missing_filled
        prepared.extra["confusion"] = confusion
        return metrics, {"confusion": confusion.record(split.classes)}

    def finish(self, run: Run, metrics: dict[str, Any], prepared: Prepared) -> None:
        from rnnkit.plots import plot_confusion

        split = prepared.extra["split"]
        name = split.train.problem or Path(split.train.source).stem
        title = f"{name}: test accuracy {metrics['test_accuracy']:.3f} (rows normalised)"
        plot_confusion(prepared.extra["confusion"], split.classes, run.path / "confusion.png", title=title)

    def evaluate(self, run: Run, path: str | None, **columns: Any) -> dict[str, Any]:
        return evaluate_series(run, path)

    def predict(self, run: Run, items: list[str], **options: Any) -> list[str]:
        return predict_series(run, items, **options)

    def summary(self, metrics: dict[str, Any]) -> str:
        return summary(metrics)

    def gradient_batch(self, run: Run, size: int) -> Batch:
        """The first ``size`` series of the saved test part with their classes."""
        part = saved_test_part(run)
        _readable(run, part)
        part = replace(part, classes=list(run.classes))
        batches = _series_batches(
            part, _scaler(run), size, 0, labeled=True, series_norm=_norm(run), downsample=_factor(run)
        )
        return batches.collate(list(range(min(size, len(part)))))


def train_series(
    opts: RunOptions,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a series classifier into the run folder ``out``; returns the metrics written (the kind's ``train``)."""
    return SeriesClassifyKind().train(opts, out, resume=resume, overwrite=overwrite, log=log)
