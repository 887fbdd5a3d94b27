"""Scores of a forecaster at given origins, in original units: the model's errors beside the naive and
seasonal-naive baselines', and the one-line summary.

Shape symbols: N steps, M origins, K horizon.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnkit import metrics as M
from rnnkit.tasks.forecaster import (
    Forecaster,
    naive_forecast,
    seasonal_naive_forecast,
)


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
