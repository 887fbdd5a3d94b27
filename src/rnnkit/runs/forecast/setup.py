"""What a forecast run is made of, validated before anything is written: the defaults, the series, its
chronological split, the scaler fitted on the training part, and the windows of each part (:class:`_Setup`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnkit.data.series import (
    Scaler,
    Series,
    SeriesSplit,
    Windows,
    chronological_split,
    load_series,
    make_windows,
)
from rnnkit.runs.options import RunOptions
from rnnkit.tasks.forecaster import (
    STRATEGIES,
)

APP = "forecast"
DEFAULT_DATA = "embedded:sunspots"
"""The series trained on when ``--data`` is not given."""

DEFAULTS: dict[str, Any] = {
    # measured on 2 shared CPU cores (GRU, H=64): ~1 s per epoch on sunspots/ppg (~1.9k windows), ~3 s on msft
    # (~5.5k windows); early stopping usually ends a run after 10-25 epochs, so each default run takes under a minute
    "model": "gru",
    "hidden_size": 64,
    "num_layers": 1,
    "bidirectional": False,
    "dropout": 0.0,
    "epochs": 30,
    "batch_size": 64,
    "lr": 3e-3,
    "context": 64,  # past steps read: 5 years of sunspots, 3 months of trading days, 0.64 s of PPG (< 1 beat)
    "horizon": 12,  # steps predicted
    "strategy": "direct",
    # windows relative to their last value: the model predicts changes, so it copes with test values outside the
    # training range (msft: level-standardized GRU MAE 5.3 vs naive 0.75; relative 0.75)
    "relative": True,
    # w·model + (1 − w)·(seasonal-)naive, w chosen on the validation windows: a series the model cannot beat the
    # naive forecast on (a random walk: msft) is forecast (close to) naively instead of worse (docs/leaderboard.md)
    "blend": True,
}
"""Defaults of the forecast app for unset options."""

VAL_FRACTION = 0.15
TEST_FRACTION = 0.15
WINDOW_HIDDEN = 64
"""Hidden size of the window-model baseline trained next to every forecast model."""


@dataclass
class _Setup:
    """Everything a run is made of, validated before anything is written."""

    name: str
    series: Series
    target: int
    context: int
    horizon: int
    strategy: str
    relative: bool
    blend: bool
    season: int
    split: SeriesSplit
    scaler: Scaler
    train: Windows
    val: Windows
    test: Windows
    mase_scale: float


def _columns_option(value: Any) -> list[str] | None:
    if value is None:
        return None
    names = value if isinstance(value, list) else str(value).split(",")
    names = [n.strip() for n in names]
    if not names or any(not n for n in names):
        raise ValueError(f"--value-columns {value!r} has an empty name; write the columns as a,b,c")
    return names


def _option(opts: RunOptions, key: str) -> Any:
    return opts.resolved(key, DEFAULTS) if key in DEFAULTS else opts.options.get(key)


def _positive(value: Any, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{flag} must be a whole number ≥ 1, got {value!r}")
    return int(value)


def _prepare(opts: RunOptions) -> _Setup:
    if opts.val_data is not None or opts.test_data is not None:
        raise ValueError(
            "forecast splits --data in time order (the last 15% is the test part); leave out --val-data and "
            "--test-data, and score another series afterwards with `rnnkit evaluate RUN --data FILE`"
        )
    name = opts.data or DEFAULT_DATA
    target_name = opts.options.get("target_column")
    value_columns = _columns_option(opts.options.get("value_columns"))
    if value_columns is None and target_name is not None and name == "embedded:msft":
        value_columns = [target_name]
    context = _positive(_option(opts, "context"), "--context")
    horizon = _positive(_option(opts, "horizon"), "--horizon")
    strategy = _option(opts, "strategy")
    if strategy not in STRATEGIES:
        raise ValueError(f"--strategy {strategy!r} is unknown; choose one of: {', '.join(STRATEGIES)}")
    relative = bool(_option(opts, "relative"))
    blend = bool(_option(opts, "blend"))

    series = load_series(name, date_column=opts.options.get("date_column"), value_columns=value_columns)
    target = series.column_index(target_name)
    if strategy == "recursive" and len(series.columns) != 1:
        raise ValueError(
            f"--strategy recursive feeds each prediction back as the next input, so the target must be the only "
            f"value column, but {series.source} has {series.columns}; use --strategy direct, or "
            f"--value-columns {series.columns[target]}"
        )
    season_opt = opts.options.get("season")
    season = _positive(season_opt, "--season") if season_opt is not None else (series.season or 1)

    n = len(series)
    k_train = horizon if strategy == "direct" else 1
    split = chronological_split(n, VAL_FRACTION, TEST_FRACTION) if n >= 3 else None
    n_train = split.train_end if split else n
    n_val = split.val_end - split.train_end if split else 0
    n_test = n - split.val_end if split else 0
    if split is None or n_train < context + k_train or n_val < k_train or n_test < horizon:
        raise ValueError(
            f"{series.source}: {n} steps are too few for --context {context} and --horizon {horizon}: the training "
            f"part ({n_train} steps) needs at least {context + k_train}, the validation part ({n_val}) at least "
            f"{k_train} and the test part ({n_test}) at least {horizon}; use a smaller --context or --horizon, "
            "or a longer series"
        )
    if split.val_end < season:
        raise ValueError(
            f"--season {season} is longer than the series before its test part ({split.val_end} steps); "
            "the seasonal-naive baseline needs one season of past values: use a smaller --season"
        )
    y_train = series.values[: split.train_end, target]
    if n_train <= season or not np.any(y_train[season:] != y_train[:-season]):
        raise ValueError(
            f"MASE is undefined: the training part of {series.columns[target]!r} does not change over one season "
            f"(m={season}); choose another --target-column or --season"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # float64; values near 1e308 overflow: said below
        mase_scale = float(np.mean(np.abs(y_train[season:] - y_train[:-season])))
    if not math.isfinite(mase_scale):
        raise ValueError(
            f"{name}: the differences of {series.columns[target]!r} over one season overflow float64 (values as "
            f"large as {float(np.abs(y_train).max()):.3g}); rescale the column, e.g. divide it by 1e300"
        )
    scaler = Scaler.fit(series.values[: split.train_end])  # the training part only: no peeking
    try:
        z = scaler.transform(series.values)  # (N, F)
    except ValueError as e:  # "column C is not finite after standardization ...": name the file and the column
        c = int(str(e).split()[1])
        raise ValueError(f"{name}: {series.columns[c]!r}{str(e)[len(f'column {c}') :]}") from None
    return _Setup(
        name=name,
        series=series,
        target=target,
        context=context,
        horizon=horizon,
        strategy=strategy,
        relative=relative,
        blend=blend,
        season=season,
        split=split,
        scaler=scaler,
        train=make_windows(z, target, context, k_train, 0, split.train_end),
        val=make_windows(z, target, context, k_train, split.train_end, split.val_end),
        test=make_windows(z, target, context, horizon, split.val_end, n),
        mase_scale=mase_scale,
    )


def _split_record(s: _Setup) -> dict[str, Any]:
    record: dict[str, Any] = {**s.split.to_dict(), "order": "chronological"}
    t = s.series.times
    if t is not None:
        sp = s.split
        record["train"] = [t[0], t[sp.train_end - 1]]
        record["val"] = [t[sp.train_end], t[sp.val_end - 1]]
        record["test"] = [t[sp.val_end], t[sp.n - 1]]
    return record
