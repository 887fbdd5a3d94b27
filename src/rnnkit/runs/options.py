"""A run's options: what ``rnnkit train`` was asked for (:class:`RunOptions`), their defaults per kind, and the
two resume rules — the options a run was started with are restored by ONE function (:func:`restore_run_options`:
``config.json`` holds them whole under ``"options"``, every default the kind filled in written out), and a
``--resume`` asking for other settings is refused by ONE function that lists every changed setting
(:func:`changed_settings`). Run folders of rnnkit 0.1.0 have no ``"options"``: for them each kind keeps the
inverse of its saved config (:meth:`~rnnkit.runs.kind.RunKind.options_from_config`, built on
:func:`restore_options`).

This module imports nothing from the rest of :mod:`rnnkit.runs`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rnnkit import ranges
from rnnkit.train import TrainConfig

WEIGHT_DECAY: float = TrainConfig.weight_decay
"""AdamW's decoupled weight decay where neither the flag nor the kind's defaults name one (0.01, PyTorch's)."""

OPTIONAL_TRAINER: dict[str, float] = {"ema": 0.0, "weight_decay": WEIGHT_DECAY}
"""Trainer settings a kind's defaults may leave out: the value then (and that of a run folder written before the
setting existed, whose ``train`` section has none)."""

__all__ = [
    "DEFAULTS",
    "OPTIONS_KEY",
    "RunOptions",
    "absolute_path",
    "changed_settings",
    "check_resume_options",
    "options_record",
    "restore_options",
    "restore_run_options",
]

OPTIONS_KEY = "options"
"""The key of ``config.json`` that holds the run's :class:`RunOptions` whole (format version 2 on)."""

DEFAULTS: dict[str, dict[str, Any]] = {}
"""Per-kind defaults for the model and the trainer when the user names nothing; every registered kind adds its
own under its name (:func:`rnnkit.runs.kind.register_kind`)."""


@dataclass
class RunOptions:
    """What ``rnnkit train`` was asked for; unset (None) fields take :data:`DEFAULTS` of the kind."""

    task: str = "classify"  # the run kind, as --task names it: classify | generate | tag | seq2seq | lm | forecast
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
    ema: float | None = None  # decay of the weights' moving average (TrainConfig.ema); 0: off; None: the kind's
    weight_decay: float | None = None  # AdamW's decoupled weight decay (TrainConfig.weight_decay); None: the kind's
    conditional: bool = True  # generate: condition on the category when the data has labels
    progress: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific settings (horizon, context, beam, ...)

    def __post_init__(self) -> None:
        """Every number in its range (:data:`rnnkit.ranges.RANGES`, the command line's own checks)."""
        ranges.check(
            window=self.window,
            embed=self.embed_dim or None,  # 0: real-valued inputs, no embedding
            hidden=self.hidden_size,
            layers=self.num_layers,
            dropout=self.dropout,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
            max_minutes=self.max_minutes,
            ema=self.ema,
            weight_decay=self.weight_decay,
        )
        for key in ("context", "horizon", "season", "beam", "max_len", "max_items"):
            if isinstance(self.options.get(key), (int, float)):
                ranges.check_value(key, self.options[key])

    def train_config(self, defaults: dict[str, Any] | None = None, **fields: Any) -> TrainConfig:
        """The trainer settings: epochs, batch size, learning rate and weight averaging (else the kind's
        ``defaults``; ``ema`` 0 where the kind names none), seed, time budget and progress from these options, then
        the kind's ``fields`` (e.g. ``monitor``), then ``extra``."""
        table = defaults if defaults is not None else DEFAULTS.get(self.task, {})
        settings = {
            "epochs": int(self.resolved("epochs", defaults)),
            "batch_size": int(self.resolved("batch_size", defaults)),
            "lr": float(self.resolved("lr", defaults)),
            **{
                key: float(getattr(self, key) if getattr(self, key) is not None else table.get(key, fallback))
                for key, fallback in OPTIONAL_TRAINER.items()
            },
            "seed": self.seed,
            "max_minutes": self.max_minutes,
            "progress": self.progress,
        }
        return TrainConfig(**{**settings, **fields, **self.extra})

    def resolved(self, key: str, defaults: dict[str, Any] | None = None) -> Any:
        """``key``'s value, or the default (from ``defaults``, else :data:`DEFAULTS` of the kind) when unset."""
        value = getattr(self, key) if hasattr(self, key) else self.options.get(key)
        if value is not None:
            return value
        table = defaults if defaults is not None else DEFAULTS[self.task]
        return table[key]


def absolute_path(path: str | None) -> str | None:
    """``path`` made absolute, so that `evaluate RUN` and `--resume` find the data from any working directory;
    None and ``embedded:NAME`` stay as they are."""
    if path is None or path.startswith("embedded:"):
        return path
    return str(Path(path).expanduser().resolve())


def restore_options(saved: dict[str, Any], opts: RunOptions, task: str, **fields: Any) -> RunOptions:
    """The options a run was started with, rebuilt from its ``config.json`` so ``--resume`` continues exactly
    that run: the model and training settings every kind saves, plus the kind's own ``fields`` (each kind's
    :meth:`~rnnkit.runs.kind.RunKind.saved_fields` names them). Only the wall-clock budget and the progress display
    come from ``opts`` (this call's flags)."""
    common: dict[str, Any] = {
        "task": task,
        "data": saved["data"]["data"],
        "val_data": saved["data"].get("val_data"),  # every kind's explicit parts (None where it takes none)
        "test_data": saved["data"].get("test_data"),
        **_built_with(saved),
        "max_minutes": opts.max_minutes,
        "progress": opts.progress,
    }
    return RunOptions(**{**common, **fields})


def _built_with(saved: dict[str, Any]) -> dict[str, Any]:
    """The settings that built the saved model and trainer (config.json's ``model``, ``train`` and data seed):
    they decide a resume, so a hand-edited model section is refused by the weights check as it is at load time."""
    m, t, d = saved["model"], saved["train"], saved["data"]
    return {
        "model": m["model"],
        "hidden_size": m["hidden_size"],
        "num_layers": m["num_layers"],
        "bidirectional": m["bidirectional"],
        "dropout": m["dropout"],
        "epochs": t["epochs"],
        "batch_size": t["batch_size"],
        "lr": t["lr"],
        **{key: t.get(key, fallback) for key, fallback in OPTIONAL_TRAINER.items()},
        "seed": d["seed"],
    }


def _plain(value: Any) -> Any:
    """``value`` as config.json holds it (tuples become lists), so a saved and a given setting compare equal."""
    return json.loads(json.dumps(value))


_FIELDS = {f.name for f in fields(RunOptions)}


def options_record(opts: RunOptions, defaults: dict[str, Any]) -> dict[str, Any]:
    """``opts`` as saved in ``config.json["options"]``: every field, each unset one that the kind's ``defaults``
    fill in written out (so a resume never depends on a later release's defaults), data paths absolute."""
    record = _plain(asdict(opts))
    for key, value in defaults.items():
        if key in _FIELDS:
            if record[key] is None:
                record[key] = _plain(value)
        elif record["options"].get(key) is None:  # a kind's own setting (--horizon, --tbptt, ...)
            record["options"][key] = _plain(value)
    for key in ("data", "val_data", "test_data"):
        record[key] = absolute_path(record[key])
    return record


def restore_run_options(
    saved: dict[str, Any], opts: RunOptions, legacy: Callable[[dict[str, Any], RunOptions], RunOptions]
) -> RunOptions:
    """THE function that gives the options a run was started with, so ``--resume`` continues exactly that run:
    ``config.json``'s ``"options"`` whole; for a folder of rnnkit 0.1.0 (none saved) the kind's ``legacy`` inverse
    of its saved config. Either way the settings that built the saved model come from its ``model`` and ``train``
    sections (the same the weights are loaded with), and only the wall-clock budget and the progress display come
    from ``opts`` (this call's flags)."""
    record = saved.get(OPTIONS_KEY)
    if record is None:
        return legacy(saved, opts)
    if not isinstance(record, dict) or not isinstance(record.get("options", {}), dict):
        raise ValueError('config.json: "options" must be an object of the run\'s settings')
    unknown = sorted(set(record) - _FIELDS)
    if unknown:
        raise ValueError(
            f'config.json: "options" has fields this rnnkit does not know ({", ".join(unknown)}): '
            "the run was written by a newer rnnkit; upgrade rnnkit to resume it"
        )
    return RunOptions(**{**record, **_built_with(saved), "max_minutes": opts.max_minutes, "progress": opts.progress})


def changed_settings(opts: RunOptions, resumed: RunOptions) -> list[str]:
    """Every setting that ``opts`` (this call's flags) asks for and that differs from the run's ``resumed`` ones."""
    keys = [*DEFAULTS.get(resumed.task, {}), "window", *OPTIONAL_TRAINER]
    changed = [k for k in keys if hasattr(opts, k) and getattr(opts, k) not in (None, getattr(resumed, k))]
    changed += [k for k, v in opts.options.items() if v is not None and _plain(resumed.options.get(k)) != _plain(v)]
    for key in ("val_data", "test_data"):  # another validation or test file is another run
        given = getattr(opts, key)
        if given is not None and absolute_path(given) != absolute_path(getattr(resumed, key)):
            changed.append(key)
    for key in ("text_column", "label_column"):
        given = getattr(opts, key)
        if given is not None and given != getattr(resumed, key):
            changed.append(key)
    return changed


def check_resume_options(opts: RunOptions, resumed: RunOptions, out: Path) -> None:
    """Refuse a ``--resume`` that asks for settings other than the run was started with."""
    changed = changed_settings(opts, resumed)
    if changed:
        raise ValueError(
            f"--resume continues the run in {out} as it was started; it cannot change {', '.join(changed)} "
            "(start a new run with another --out instead)"
        )
