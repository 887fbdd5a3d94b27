"""The forecast plot of a run's test part (``forecast.png``).

Shape symbols: N steps, F channels, M origins, K horizon.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnkit.tasks.forecaster import (
    Forecaster,
    naive_forecast,
)


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
