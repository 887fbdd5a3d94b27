"""A run's options: what ``rnnkit train`` was asked for (:class:`RunOptions`), their defaults per kind, and the
two resume rules — the options a run was started with are restored by ONE function (:func:`restore_options`),
and a ``--resume`` asking for other settings is refused by ONE function that lists every changed setting
(:func:`changed_settings`).

This module imports nothing from the rest of :mod:`rnnkit.runs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnkit.train import TrainConfig

__all__ = ["DEFAULTS", "RunOptions", "absolute_path", "changed_settings", "check_resume_options", "restore_options"]

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
    conditional: bool = True  # generate: condition on the category when the data has labels
    progress: str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific settings (horizon, context, beam, ...)

    def train_config(self, defaults: dict[str, Any] | None = None, **fields: Any) -> TrainConfig:
        """The trainer settings: epochs, batch size and learning rate (else the kind's ``defaults``), seed, time
        budget and progress from these options, then the kind's ``fields`` (e.g. ``monitor``), then ``extra``."""
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


def changed_settings(opts: RunOptions, resumed: RunOptions) -> list[str]:
    """Every setting that ``opts`` (this call's flags) asks for and that differs from the run's ``resumed`` ones."""
    keys = [*DEFAULTS.get(resumed.task, {}), "window"]
    changed = [k for k in keys if hasattr(opts, k) and getattr(opts, k) not in (None, getattr(resumed, k))]
    changed += [k for k, v in opts.options.items() if v is not None and resumed.options.get(k) != v]
    return changed


def check_resume_options(opts: RunOptions, resumed: RunOptions, out: Path) -> None:
    """Refuse a ``--resume`` that asks for settings other than the run was started with."""
    changed = changed_settings(opts, resumed)
    if changed:
        raise ValueError(
            f"--resume continues the run in {out} as it was started; it cannot change {', '.join(changed)} "
            "(start a new run with another --out instead)"
        )
