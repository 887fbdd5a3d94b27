"""Training a forecast run: the window batches of its setup, and the test scores that follow the fit — the
validation-chosen blend with the naive baselines and the lecture's window model trained on the same windows.

Shape symbols: N steps, M origins, K horizon.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from rnnkit import distributed
from rnnkit import metrics as M
from rnnkit.runs.folder import CONFIG_FILE, Run, write_json_atomic
from rnnkit.runs.forecast.scores import _errors, _num, _score
from rnnkit.runs.forecast.setup import (
    APP,
    DEFAULTS,
    WINDOW_HIDDEN,
    _prepare,
    _Setup,
    _split_record,
)
from rnnkit.runs.forecast.use import forecaster_of
from rnnkit.runs.kind import Prepared
from rnnkit.runs.options import RunOptions
from rnnkit.tasks import build_model
from rnnkit.tasks.forecaster import (
    Forecaster,
    choose_blend,
    forecast_config,
    seasonal_naive_forecast,
    window_batches,
)
from rnnkit.train import TrainConfig, fit, seed_everything


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
