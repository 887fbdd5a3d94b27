""":class:`ForecastKind`, the ``--task forecast`` run kind: its flags and the hooks of the one train skeleton."""

from __future__ import annotations

import argparse
from typing import Any

from rnnkit.cliutil import ranged
from rnnkit.data.batching import Batch
from rnnkit.data.series import (
    EMBEDDED_SERIES,
    SeriesSplit,
    make_windows,
)
from rnnkit.runs.folder import Run
from rnnkit.runs.forecast.plot import plot_forecast
from rnnkit.runs.forecast.scores import summary
from rnnkit.runs.forecast.setup import (
    APP,
    DEFAULTS,
    _Setup,
)
from rnnkit.runs.forecast.training import _prepared, _scores
from rnnkit.runs.forecast.use import _load_for, evaluate, forecaster_of, predict
from rnnkit.runs.kind import Flag, Prepared, RunKind, register_kind
from rnnkit.runs.options import RunOptions, absolute_path, restore_options
from rnnkit.tasks import ModelConfig
from rnnkit.tasks.forecaster import (
    forecast_config,
    window_batches,
)
from rnnkit.train import TrainConfig


def _options_from_config(saved: dict[str, Any], opts: RunOptions) -> RunOptions:
    """The options a run was started with, so ``--resume`` continues exactly that run."""
    f = saved["forecast"]
    options = dict(saved["data"]["options"])
    options.update({key: f[key] for key in ("context", "horizon", "strategy", "relative")})
    options["blend"] = bool(f.get("blend_choice", False))  # runs saved before the blend: the model alone
    return restore_options(saved, opts, APP, options=options)


@register_kind
class ForecastKind(RunKind):
    """``--task forecast``: a series → its next values, scored against naive baselines."""

    predict_flags = ("data", "horizon")
    name = APP
    embedded = tuple(EMBEDDED_SERIES)
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
