"""PNG plots of a run: training curves (an ensemble's members on one figure) and a confusion matrix.

matplotlib is an optional extra (``pip install rnnkit[plot]``). It is imported lazily, only through its
object-oriented API with the Agg canvas (the global pyplot backend is never changed), and when it is missing every
function here returns ``None`` so the caller can print a one-line note instead. Files are written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rnnkit.checkpoint import write_bytes_atomic

__all__ = [
    "MATPLOTLIB_NOTE",
    "matplotlib_available",
    "plot_confusion",
    "plot_curves",
    "plot_member_curves",
    "read_curve",
]

MATPLOTLIB_NOTE = "plots skipped: matplotlib is not installed (pip install 'rnnkit[plot]')"
"""The one-line note a caller prints when a plot function returns ``None``."""


def matplotlib_available() -> bool:
    """True if matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas, or None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_bytes_atomic(path, buf.getvalue())


def _number(text: Any) -> float | None:
    if text is None or text == "":
        return None
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_curve(path: str | os.PathLike[str]) -> list[dict[str, float | None]]:
    """Read ``curve.csv`` into one dict per row (numbers as floats, empty cells as ``None``)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_curves(
    curve: str | os.PathLike[str] | Sequence[Mapping[str, Any]], path: str | os.PathLike[str], title: str | None = None
) -> Path | None:
    """Plot a training curve to a PNG: losses, validation metrics, and learning rate / gradient norm per epoch.

    Args:
        curve: a ``curve.csv`` path or the history rows (``TrainResult.history``).
        path: the PNG to write.
        title: optional figure title.

    Returns:
        The PNG's path, or ``None`` when matplotlib is not installed.
    """
    rows = read_curve(curve) if isinstance(curve, (str, os.PathLike)) else [dict(r) for r in curve]
    if not rows:
        raise ValueError("the training curve has no rows; nothing to plot")
    metrics = [
        k
        for k in rows[0]
        if k.startswith("val_") and k != "val_loss" and any(_number(r.get(k)) is not None for r in rows)
    ]
    fig = _figure(5.0 * (3 if metrics else 2), 3.8)
    if fig is None:
        return None
    axes = fig.subplots(1, 3 if metrics else 2)
    epochs = [_number(r.get("epoch")) for r in rows]

    def series(ax: Any, key: str, label: str, **kw: Any) -> None:
        pts = [(e, _number(r.get(key))) for e, r in zip(epochs, rows, strict=True)]
        pts = [(e, v) for e, v in pts if e is not None and v is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=label, **kw)

    ax = axes[0]
    series(ax, "train_loss", "train")
    series(ax, "val_loss", "validation")
    ax.set(title="loss", xlabel="epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    if metrics:
        ax = axes[1]
        for k in metrics:
            series(ax, k, k.removeprefix("val_"))
        ax.set(title="validation metrics", xlabel="epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    ax = axes[-1]
    series(ax, "lr", "learning rate", color="tab:green")
    ax.set(title="learning rate and gradient norm", xlabel="epoch")
    ax.set_ylabel("learning rate", color="tab:green")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    series(ax2, "grad_norm", "grad norm (mean)", color="tab:red")
    series(ax2, "grad_norm_max", "grad norm (max)", color="tab:red", linestyle="--")
    ax2.set_ylabel("gradient norm (before clipping)", color="tab:red")
    if ax2.get_lines():
        ax2.legend(loc="upper right")
    return _finish_epochs(fig, axes, path, title)


def _finish_epochs(fig: Any, axes: Sequence[Any], path: str | os.PathLike[str], title: str | None) -> Path:
    """Whole epochs on every x axis, the optional title, a tight layout; the figure saved to ``path``."""
    from matplotlib.ticker import MaxNLocator

    for a in axes:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_member_curves(
    curves: Sequence[str | os.PathLike[str] | Sequence[Mapping[str, Any]]],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path | None:
    """An ensemble's members on one figure: each member's validation loss per epoch and, beside it, its first other
    validation metric (the accuracy of a classifier, the MASE of a forecaster) when the curves have one. Members
    without validation data are drawn by their training loss.

    Args:
        curves: one ``curve.csv`` path (or history rows) per member, member ``i`` at index ``i``.
        path: the PNG to write.
        title: optional figure title.

    Returns:
        The PNG's path, or ``None`` when matplotlib is not installed.
    """
    members = [read_curve(c) if isinstance(c, (str, os.PathLike)) else [dict(r) for r in c] for c in curves]
    if not members or not all(members):
        raise ValueError("every member needs a training curve with rows; nothing to plot")
    has = {k for rows in members for r in rows for k, v in r.items() if _number(v) is not None}
    loss = "val_loss" if "val_loss" in has else "train_loss"
    metric = next((k for k in members[0][0] if k.startswith("val_") and k != "val_loss" and k in has), None)
    fig = _figure(5.0 * (2 if metric else 1), 3.8)
    if fig is None:
        return None
    axes = fig.subplots(1, 2 if metric else 1, squeeze=False)[0]
    for ax, key in zip(axes, [loss, metric] if metric else [loss], strict=True):
        for i, rows in enumerate(members):
            pts = [(_number(r.get("epoch")), _number(r.get(key))) for r in rows]
            pts = [(e, v) for e, v in pts if e is not None and v is not None]
            if pts:
                ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", markersize=3, label=f"member {i}")
        ax.set(title=key.replace("_", " ").replace("val ", "validation "), xlabel="epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    return _finish_epochs(fig, axes, path, title)


def plot_confusion(
    matrix: Any,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str | None = None,
    normalize: bool = True,
) -> Path | None:
    """Plot a confusion matrix (rows: true class, columns: predicted) to a PNG.

    Args:
        matrix: ``(C, C)`` counts (a nested list, numpy array, tensor or :class:`rnnkit.metrics.Confusion`);
            row ``i`` counts items of true class ``i`` by predicted class.
        class_names: ``C`` names for the axes.
        path: the PNG to write.
        title: optional title.
        normalize: divide each row by its total, so the diagonal is per-class recall (rows with no items stay 0).

    Returns:
        The PNG's path, or ``None`` when matplotlib is not installed or there are more than
        :data:`rnnkit.ranges.CONFUSION_PLOT_MAX` classes (then one line on stderr says it was skipped).
    """
    import numpy as np

    from rnnkit.ranges import CONFUSION_PLOT_MAX

    n = len(class_names)
    if n > CONFUSION_PLOT_MAX:  # unreadable, and gigabytes to draw: say so in one line instead
        print(
            f"{Path(path).name} skipped: {n} classes, more than the {CONFUSION_PLOT_MAX} a confusion plot shows "
            "(confusion.json holds the counts)",
            file=sys.stderr,
        )
        return None
    if hasattr(matrix, "dense"):  # a rnnkit.metrics.Confusion
        matrix = matrix.dense()
    m = np.asarray(matrix.cpu() if hasattr(matrix, "cpu") else matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape != (n, n):
        raise ValueError(f"the confusion matrix has shape {m.shape}, expected ({n}, {n}) for {n} class names")
    if normalize:
        totals = m.sum(axis=1, keepdims=True)
        m = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
    side = min(14.0, max(4.5, 0.45 * n + 2.5))
    fig = _figure(side + 1.0, side)
    if fig is None:
        return None
    ax = fig.subplots()
    image = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class" if normalize else "count")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    fontsize = 9 if n <= 12 else 7
    ax.set_xticklabels(class_names, rotation=60, ha="right", rotation_mode="anchor", fontsize=fontsize)
    ax.set_yticklabels(class_names, fontsize=fontsize)
    ax.set(xlabel="predicted", ylabel="true")
    if n <= 25:
        threshold = 0.5 * (m.max() if m.size else 1.0)
        for i in range(n):
            for j in range(n):
                if m[i, j] == 0:
                    continue
                text = f"{m[i, j]:.2f}".lstrip("0") if normalize else f"{m[i, j]:.0f}"
                color = "white" if m[i, j] > threshold else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize - 1, color=color)
    ax.set_title(title or ("confusion matrix (rows normalised)" if normalize else "confusion matrix"))
    fig.tight_layout()
    return _save(fig, path)
