"""The ``forecast`` task app: ``rnnkit train --task forecast``, ``evaluate`` and ``predict`` for real-valued series.

``rnnkit train --task forecast --data embedded:sunspots|embedded:msft|embedded:ppg|FILE.csv [--date-column D]
[--value-columns a,b] [--target-column C] [--context N] [--horizon K] [--strategy direct|recursive] [--season m]``
reads the series (:mod:`rnnkit.data.series`), splits it in time order (70 % train, 15 % validation, 15 % test),
standardizes every channel with the training part's statistics, cuts windows of ``N`` past steps → the next ``K``
values of the target column and trains a forecast model (:mod:`rnnkit.tasks.forecaster`). The run folder holds::

    config.json        model and train configs, columns, target, context, horizon, strategy, season, the scaler,
                       the split boundaries and the MASE scale
    split.json         the chronological boundaries (indices and time stamps)
    model.safetensors  the best weights (by validation loss)
    metrics.json       on the test part, in original units, over all K steps of every test window:
                       test_{mae,rmse,smape,mase} of the model, naive_*, seasonal_naive_* (season m, recorded) and
                       window_* (the lecture's fixed-window MLP, trained on the same windows in the same command)
    curve.csv, curves.png, forecast.png (the test part: truth, the model's K-step forecasts, the naive forecast)

``rnnkit evaluate RUN [--data F]`` scores the run on its own test part (or on every window of ``F``);
``rnnkit predict RUN [VALUES...] [--data F] [--horizon K]`` forecasts the ``K`` values after the end of the series
(the run's own data unless values or ``--data`` are given) and prints ``step k: value`` lines.

Every check on the data and the settings runs before anything is written, so bad input never costs a run folder.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit import distributed, ranges
from rnnkit import metrics as M
from rnnkit.cliutil import ranged
from rnnkit.data.batching import Batch
from rnnkit.data.series import (
    Scaler,
    Series,
    SeriesSplit,
    Windows,
    chronological_split,
    load_series,
    make_windows,
)
from rnnkit.runs.folder import CONFIG_FILE, Run, write_json_atomic
from rnnkit.runs.kind import Flag, Prepared, RunKind, register_kind
from rnnkit.runs.options import RunOptions, absolute_path, restore_options
from rnnkit.tasks import ModelConfig, build_model
from rnnkit.tasks.forecaster import (
    STRATEGIES,
    Forecaster,
    choose_blend,
    forecast_config,
    naive_forecast,
    seasonal_naive_forecast,
    window_batches,
)
from rnnkit.train import TrainConfig, fit, seed_everything

__all__ = ["APP", "DEFAULTS", "DEFAULT_DATA", "ForecastKind", "evaluate", "plot_forecast", "predict", "summary"]

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


# ---------------------------------------------------------------------------------------------------------- setup
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


def _options_from_config(saved: dict[str, Any], opts: RunOptions) -> RunOptions:
    """The options a run was started with, so ``--resume`` continues exactly that run."""
    f = saved["forecast"]
    options = dict(saved["data"]["options"])
    options.update({key: f[key] for key in ("context", "horizon", "strategy", "relative")})
    options["blend"] = bool(f.get("blend_choice", False))  # runs saved before the blend: the model alone
    return restore_options(saved, opts, APP, options=options)


# ---------------------------------------------------------------------------------------------------------- train
def _prepared(opts: RunOptions) -> Prepared:
    """The validated setup (:func:`_prepare`) and its window batches: shuffled per ``(seed, epoch)`` for training."""
    s = _prepare(opts)
    bs = int(opts.resolved("batch_size", DEFAULTS))

    def train_fn(epoch: int) -> list:
        seed = opts.seed * 100_003 + epoch  # the order is a function of (seed, epoch): resumable
        return window_batches(s.train, bs, relative=s.relative, target=s.target, shuffle=True, seed=seed)

    val_b = window_batches(s.val, 256, relative=s.relative, target=s.target)
    return Prepared(train_fn, val_b, _split_record(s), None, [], extra={"setup": s, "batch_size": bs})


def _scores(run: Run, prepared: Prepared, opts_seed: int) -> dict[str, Any]:
    """Test metrics of the trained forecaster, with the naive, seasonal-naive and window baselines."""
    s: _Setup = prepared.extra["setup"]
    model_name = run.config["model"]["model"]
    tcfg, result = prepared.trainer, prepared.result
    fc = forecaster_of(run)
    values = s.series.values
    metrics: dict[str, Any] = {"app": APP, "task": APP, "model": model_name, "data": s.series.source}
    if bool(run.config["forecast"].get("blend_choice", False)):
        fc = _choose_blend(run, fc, s, metrics)
    metrics.update(_settings(s))
    metrics["num_train_windows"], metrics["num_val_windows"] = len(s.train), len(s.val)
    metrics["num_test_windows"] = len(s.test)
    scores, curves = _score(fc, values, s.test.origins, s.season, s.mase_scale)
    metrics.update(scores)

    window_pred = None
    if model_name == "window":
        window_pred = curves["test"]
    elif result.stopped_reason != "interrupted":  # the lecture's baseline on the same windows, small, in memory
        features = run.config["model"]["input_features"]
        wcfg = forecast_config("window", features, s.horizon, s.strategy, WINDOW_HIDDEN, context=s.context)
        seed_everything(opts_seed)
        wmodel = build_model(wcfg)
        wt = TrainConfig(
            epochs=tcfg.epochs,
            batch_size=prepared.extra["batch_size"],
            lr=tcfg.lr,
            seed=opts_seed,
            progress="none",
            device=tcfg.device,
        )
        fit(wmodel, prepared.train_batches, prepared.val_batches, wt)
        wfc = Forecaster(wmodel.eval(), s.scaler, s.target, s.context, s.horizon, s.strategy, s.relative)
        window_pred = wfc.predict_at(values, s.test.origins)
    if window_pred is not None:
        metrics.update(_errors("window", curves["truth"], window_pred, s.mase_scale))
    return metrics


def _choose_blend(run: Run, fc: Forecaster, s: _Setup, metrics: dict[str, Any]) -> Forecaster:
    """Pick ``w·model + (1 − w)·baseline`` on the validation windows (:func:`choose_blend`), save it in the run's
    ``config.json`` (``forecast.blend``) and return the forecaster that applies it.

    Baselines: the naive forecast, and the seasonal-naive one when the season fits in the context (``predict``
    reads only the context). The model alone and the blend's validation MAE go to ``metrics``
    (``val_model_mae``, ``val_blend_mae``, ``blend_weight``, ``blend_season``)."""
    values = s.series.values
    y = values[:, s.target]  # (N,)
    origins = s.val.origins
    truth = y[origins[:, None] + np.arange(1, s.horizon + 1)]  # (M, K)
    model = replace(fc, blend=1.0).predict_at(values, origins)  # (M, K)
    seasons = sorted({1} | ({s.season} if 1 < s.season <= s.context else set()))
    baselines = {m: seasonal_naive_forecast(y, origins, s.horizon, m) for m in seasons}
    w, m, mae = choose_blend(truth, model, baselines)
    run.config["forecast"]["blend"] = {"weight": w, "season": m}
    if distributed.is_main() and (run.path / CONFIG_FILE).is_file():  # the run's own folder (not an ensemble member)
        write_json_atomic(run.path / CONFIG_FILE, run.config)
    metrics.update(
        blend_weight=w,
        blend_season=m,
        val_model_mae=_num(M.mae(truth, model)),
        val_blend_mae=_num(mae),
    )
    return replace(fc, blend=w, blend_season=m)


def _settings(s: _Setup) -> dict[str, Any]:
    return {
        "target_column": s.series.columns[s.target],
        "context": s.context,
        "horizon": s.horizon,
        "strategy": s.strategy,
        "season": s.season,
    }


# ---------------------------------------------------------------------------------------------------------- scores
def _num(x: float) -> float:
    return float(f"{x:.6g}")


def _errors(prefix: str, truth: np.ndarray, pred: np.ndarray, mase_scale: float) -> dict[str, float]:
    """``{prefix}_mae, _rmse, _smape, _mase`` of ``pred`` against ``truth`` (both ``(M, K)``, original units)."""
    return {
        f"{prefix}_mae": _num(M.mae(truth, pred)),
        f"{prefix}_rmse": _num(M.rmse(truth, pred)),
        f"{prefix}_smape": _num(M.smape(truth, pred)),
        f"{prefix}_mase": _num(M.mae(truth, pred) / mase_scale),
    }


def _score(
    fc: Forecaster, values: np.ndarray, origins: np.ndarray, season: int, mase_scale: float
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Errors of the model and of the naive and seasonal-naive forecasts at ``origins``, and the curves scored."""
    if len(origins) == 0:
        raise ValueError("no window to score: the series is shorter than the context plus the horizon")
    k = fc.horizon
    y = values[:, fc.target]  # (N,)
    truth = y[origins[:, None] + np.arange(1, k + 1)]  # (M, K)
    curves = {
        "truth": truth,
        "test": fc.predict_at(values, origins),
        "naive": naive_forecast(y, origins, k),
        "seasonal_naive": seasonal_naive_forecast(y, origins, k, season),
    }
    scores: dict[str, float] = {}
    for prefix in ("test", "naive", "seasonal_naive"):
        scores.update(_errors(prefix, truth, curves[prefix], mase_scale))
    return scores, curves


# ---------------------------------------------------------------------------------------------------------- use
def forecaster_of(run: Run) -> Forecaster:
    """The :class:`Forecaster` of a loaded forecast run."""
    f = run.config.get("forecast")
    if run.config.get("app") != APP or not isinstance(f, dict):
        raise ValueError(f"{run.path} is not a forecast run")
    return Forecaster(
        run.model,
        Scaler.from_dict(f["scaler"]),
        int(f["target"]),
        int(f["context"]),
        int(f["horizon"]),
        str(f["strategy"]),
        bool(f["relative"]),
        float((f.get("blend") or {}).get("weight", 1.0)),  # runs saved before the blend: the model alone
        int((f.get("blend") or {}).get("season", 1)),
    )


def _load_for(run: Run, path: str | None) -> Series:
    """The run's own series (``path`` None) or the file ``path`` with the run's columns."""
    d, f = run.config["data"], run.config["forecast"]
    if path is None:
        series = load_series(d["data"], date_column=d["date_column"], value_columns=f["columns"])
        n = int(f["split"]["n"])
        if len(series) != n:
            raise ValueError(
                f"{d['data']} now has {len(series)} steps, not the {n} this run was trained on; "
                "score the new series with --data"
            )
        return series
    if path.startswith("embedded:"):
        return load_series(path, value_columns=f["columns"])
    series = load_series(path, value_columns=None)
    missing = [c for c in f["columns"] if c not in series.columns]
    if missing:
        if series.columns == ["value"] and len(f["columns"]) == 1:  # a headerless one-column file
            return Series(series.values, f["columns"], series.times, series.source, series.season)
        raise ValueError(f"{path} has no column {missing[0]!r}; this run reads the columns {f['columns']}")
    return series.select(f["columns"])


def evaluate(run: Run, path: str | None) -> dict[str, Any]:
    """Metrics of a forecast run on its own test part (``path`` None) or on every window of the series ``path``.

    The MASE scale is the run's (the in-sample seasonal-naive MAE of its training part), so MASE values of
    different series scored by one run are comparable.
    """
    fc = forecaster_of(run)
    f = run.config["forecast"]
    season, scale = int(f["season"]), float(f["mase_scale"])
    series = _load_for(run, path)
    if path is None:
        split = SeriesSplit.from_dict(f["split"])
        origins = np.arange(split.val_end - 1, split.n - fc.horizon, dtype=np.int64)
    else:
        first = max(fc.context, season) - 1
        origins = np.arange(first, len(series) - fc.horizon, dtype=np.int64)
        if len(origins) == 0:
            raise ValueError(
                f"{path} has {len(series)} steps; scoring needs at least {first + 1 + fc.horizon} "
                f"(context {fc.context}, season {season}, horizon {fc.horizon})"
            )
    scores, _ = _score(fc, series.values, origins, season, scale)
    metrics: dict[str, Any] = {"app": APP, "task": APP, "model": run.config["model"]["model"]}
    metrics["data"] = series.source if path is not None else run.config["data"]["source"]
    metrics["season"] = season
    metrics["num_windows"] = len(origins)
    metrics.update(scores)
    return metrics


def predict(run: Run, items: list[str], *, data: str | None = None, horizon: int | None = None, **_: Any) -> list[str]:
    """``step k: value`` lines: the ``horizon`` values after the end of the series.

    The series is ``items`` (numbers, for a one-column run), the file ``data``, or else the run's own data.
    """
    fc = forecaster_of(run)
    cols = run.config["forecast"]["columns"]
    if items and data is not None:
        raise ValueError("give the series either as values on the command line or with --data, not both")
    if items:
        if len(cols) != 1:
            raise ValueError(f"this run reads {len(cols)} columns ({', '.join(cols)}); give the series with --data")
        try:
            raw = [float(v) for v in items]
        except ValueError:
            bad = next(v for v in items if not _is_float(v))
            raise ValueError(f"{bad!r} is not a number; give the series as numbers, oldest first") from None
        values = np.asarray(raw, dtype=np.float64)[:, None]  # (N, 1)
        if not np.isfinite(values).all():
            raise ValueError("the values to forecast from must be finite (no nan/inf)")
    else:
        values = _load_for(run, data).values
    if len(values) < fc.context:
        raise ValueError(
            f"this run reads {fc.context} past steps; give at least {fc.context} values (got {len(values)})"
        )
    k = fc.horizon if horizon is None else int(horizon)
    ranges.check(horizon=k)
    return [f"step {i}: {v:.6g}" for i, v in enumerate(fc.next_values(values, k), 1)]


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def summary(metrics: dict[str, Any]) -> str:
    """One line: the model's test errors and the baselines' MAE."""
    s = (
        f"test MAE {metrics['test_mae']:.4g}, RMSE {metrics['test_rmse']:.4g}, sMAPE {metrics['test_smape']:.2f}%, "
        f"MASE {metrics['test_mase']:.3f} (MAE of naive {metrics['naive_mae']:.4g}, "
        f"seasonal-naive m={metrics['season']} {metrics['seasonal_naive_mae']:.4g}"
    )
    if "window_mae" in metrics:
        s += f", window {metrics['window_mae']:.4g}"
    return s + ")"


# ---------------------------------------------------------------------------------------------------------- plot
def plot_forecast(
    forecaster: Forecaster,
    values: np.ndarray,
    start: int,
    path: str | Path,
    *,
    times: list[str] | None = None,
    title: str | None = None,
    ylabel: str = "value",
) -> Path | None:
    """Plot the target from step ``start`` on against the forecaster's ``K``-step forecasts made every ``K``
    steps (non-overlapping, one line segment each) and the naive forecast; returns the PNG's path, or None
    without matplotlib.

    Args:
        forecaster: the model, with its scaler.
        values: ``(N, F)`` the series in original units (every channel: the model's inputs).
        start: first step shown (the test part's start); the first forecast is made at origin ``start − 1``.
        path: the PNG to write.
        times: time stamps for the axis labels, or None (step numbers).
        title: figure title.
        ylabel: the target's name.
    """
    from rnnkit.plots import _figure, _save

    k, n = forecaster.horizon, len(values)
    y = values[:, forecaster.target]  # (N,)
    origins = np.arange(max(start - 1, forecaster.context - 1), n - 1, k, dtype=np.int64)  # (M,)
    if len(origins) == 0:
        return None
    fig = _figure(10.0, 4.0)
    if fig is None:
        return None
    pred = forecaster.predict_at(values, origins)  # (M, K)
    naive = naive_forecast(y, origins, k)  # (M, K)
    steps = (origins[:, None] + np.arange(1, k + 2)).astype(np.float64)  # (M, K+1): one gap after each segment
    steps[:, -1] = np.nan
    gap = np.full((len(origins), 1), np.nan)  # (M, 1)
    pred_line = np.concatenate([pred, gap], axis=1).ravel()  # (M·(K+1),)
    naive_line = np.concatenate([naive, gap], axis=1).ravel()  # (M·(K+1),)
    x = steps.ravel()  # (M·(K+1),)
    keep = ~(x >= n)
    ax = fig.subplots()
    ax.plot(np.arange(start, n), y[start:], color="black", linewidth=1.0, label="truth")
    ax.plot(x[keep], pred_line[keep], color="tab:blue", linewidth=1.2, label=f"model ({k}-step forecasts)")
    ax.plot(x[keep], naive_line[keep], color="tab:gray", linewidth=0.8, linestyle=":", label="naive (last value)")
    if times is not None:
        ticks = np.linspace(start, n - 1, 6).astype(int)
        ax.set_xticks(ticks)
        ax.set_xticklabels([times[i] for i in ticks], fontsize=8)
    ax.set(xlabel="time" if times is not None else "step", ylabel=ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


@register_kind
class ForecastKind(RunKind):
    """``--task forecast``: a series → its next values, scored against naive baselines."""

    predict_flags = ("data", "horizon")
    name = APP
    app = APP
    defaults = DEFAULTS
    help = "forecast (series -> next values)"
    ignores = ("text_column", "label_column", "unit", "fold_ascii", "conditional", "window")
    ensembles = True  # --ensemble K (declared by the series-classification kind): K members, mean predictions
    flags = (
        Flag("--date-column", {"default": None, "help": "CSV series: the date/time column (default: detected)"}),
        Flag(
            "--value-columns",
            {"default": None, "help": "CSV series: comma-separated value columns (default: all numeric)"},
        ),
        Flag("--target-column", {"default": None, "help": "forecast: the column to predict (default: the first)"}),
        Flag(
            "--context",
            {
                "type": ranged("context"),
                "default": None,
                "help": "forecast: past steps the model reads (default: the task's)",
            },
        ),
        Flag(
            "--horizon",
            {
                "type": ranged("horizon"),
                "default": None,
                "help": "forecast: steps ahead to predict (default: the task's)",
            },
        ),
        Flag(
            "--strategy",
            {
                "choices": ["direct", "recursive"],
                "default": None,
                "help": "forecast: all horizon steps at once (direct) or one step rolled out (recursive); "
                "default: direct",
            },
        ),
        Flag(
            "--season",
            {
                "type": ranged("season"),
                "default": None,
                "help": "forecast: period of the seasonal-naive baseline (default: detected from the dates, else 1)",
            },
        ),
        Flag(
            "--relative",
            {
                "action": argparse.BooleanOptionalAction,
                "default": None,
                "help": "forecast: windows relative to their last value, the model predicts changes (default: on)",
            },
        ),
        Flag(
            "--blend",
            {
                "action": argparse.BooleanOptionalAction,
                "default": None,
                "help": "forecast: blend the model with the naive or seasonal-naive forecast, the weight chosen on "
                "the validation windows (default: on; --no-blend: the model alone)",
            },
        ),
    )

    def options_from_config(self, saved: dict[str, Any], opts: RunOptions) -> RunOptions:
        return _options_from_config(saved, opts)

    def prepare(self, opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
        return _prepared(opts)

    def model_config(self, opts: RunOptions, prepared: Prepared) -> ModelConfig:
        s: _Setup = prepared.extra["setup"]
        model_name = str(opts.resolved("model", DEFAULTS))
        bidirectional = bool(opts.resolved("bidirectional", DEFAULTS))
        if model_name == "window" and bidirectional:
            raise ValueError("the window model has no direction: drop --bidirectional")
        return forecast_config(
            model_name,
            len(s.series.columns),
            s.horizon,
            s.strategy,
            hidden_size=int(opts.resolved("hidden_size", DEFAULTS)),
            num_layers=int(opts.resolved("num_layers", DEFAULTS)),
            dropout=float(opts.resolved("dropout", DEFAULTS)),
            bidirectional=bidirectional,
            context=s.context,
        )

    def trainer_settings(self, opts: RunOptions, prepared: Prepared) -> TrainConfig:
        return opts.train_config(DEFAULTS, monitor="loss")

    def data_config(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        s: _Setup = prepared.extra["setup"]
        return {
            "source": s.series.source,
            "data": absolute_path(s.name),
            "date_column": opts.options.get("date_column"),
            "value_columns": list(s.series.columns),
            "seed": opts.seed,
            "options": {k: v for k, v in opts.options.items() if v is not None},
        }

    def config_extra(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        s: _Setup = prepared.extra["setup"]
        forecast = {
            "columns": list(s.series.columns),
            "target": s.target,
            "target_column": s.series.columns[s.target],
            "context": s.context,
            "horizon": s.horizon,
            "strategy": s.strategy,
            "relative": s.relative,
            "blend_choice": s.blend,
            "season": s.season,
            "scaler": s.scaler.to_dict(),
            "split": s.split.to_dict(),
            "mase_scale": s.mase_scale,
        }
        return {"forecast": forecast}

    def score(self, run: Run, prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        return _scores(run, prepared, run.config["data"]["seed"]), {}

    def finish(self, run: Run, metrics: dict[str, Any], prepared: Prepared) -> None:
        s: _Setup = prepared.extra["setup"]
        plot_forecast(
            forecaster_of(run),
            s.series.values,
            s.split.val_end,
            run.path / "forecast.png",
            times=s.series.times,
            title=f"{s.series.source} · {run.config['model']['model']} · {s.strategy}, K={s.horizon} (test part)",
            ylabel=s.series.columns[s.target],
        )

    def evaluate(self, run: Run, path: str | None, **columns: Any) -> dict[str, Any]:
        return evaluate(run, path)

    def predict(self, run: Run, items: list[str], **options: Any) -> list[str]:
        return predict(run, items, **options)

    def summary(self, metrics: dict[str, Any]) -> str:
        return summary(metrics)

    def gradient_batch(self, run: Run, size: int) -> Batch:
        """The first ``size`` windows whose targets lie in the test part (standardized, as the model reads them)."""
        fc = forecaster_of(run)
        split = SeriesSplit.from_dict(run.config["forecast"]["split"])
        z = fc.scaler.transform(_load_for(run, None).values)  # (N, F)
        windows = make_windows(z, fc.target, fc.context, fc.horizon, start=split.val_end, stop=split.n)
        batches = window_batches(windows, size, relative=fc.relative, target=fc.target)
        if not batches:
            raise ValueError(f"{run.path}: its test part holds no full window")
        return batches[0]
