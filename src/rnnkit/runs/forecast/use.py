"""A trained forecast run in use: its :class:`~rnnkit.tasks.forecaster.Forecaster`, ``rnnkit evaluate`` and
``rnnkit predict``.

Shape symbols: N steps, F channels, M origins, K horizon.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnkit import ranges
from rnnkit.data.series import (
    Scaler,
    Series,
    SeriesSplit,
    load_series,
)
from rnnkit.data.series_set import is_number
from rnnkit.runs.folder import Run
from rnnkit.runs.forecast.scores import _score
from rnnkit.runs.forecast.setup import (
    APP,
)
from rnnkit.tasks.forecaster import (
    Forecaster,
)


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
            bad = next(v for v in items if not is_number(v))
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
