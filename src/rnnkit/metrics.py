"""Evaluation metrics shared by the tasks: classification, sequence (edit distance) and forecast errors.

Every function takes plain Python sequences or NumPy arrays and returns Python floats / lists, so the same code
serves run folders, the scikit-learn estimators and tests. Definitions follow the usual references:

- classification: accuracy, the confusion matrix (rows: true class, columns: predicted), macro-F1 over the
  classes that occur in either the truth or the predictions.
- sequences: Levenshtein distance; an error rate is total edits / total reference length (word error rate when
  each item is one word, phoneme error rate when the symbols are phonemes).
- forecasts: MAE, RMSE, sMAPE (in percent, ``200/n · Σ |F−A| / (|A|+|F|)``, a term with ``A = F = 0`` counts 0)
  and MASE (Hyndman & Koehler 2006: MAE divided by the in-sample MAE of the seasonal-naive forecast on the
  training series). MAPE is not offered: series such as sunspots contain zeros.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from rnnkit.ranges import CONFUSION_DENSE_MAX

__all__ = [
    "Confusion",
    "accuracy",
    "confusion",
    "confusion_matrix",
    "edit_distance",
    "error_rate",
    "exact_match",
    "macro_f1",
    "mae",
    "mase",
    "rmse",
    "smape",
]


# ---------------------------------------------------------------------------------------------------------- classes
def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Fraction of equal pairs; ValueError on empty or unequal-length input."""
    _same_length(y_true, y_pred)
    return sum(int(a == b) for a, b in zip(y_true, y_pred, strict=True)) / len(y_true)


def mean_nll(probs: np.ndarray, gold: Sequence[int]) -> float:
    """The mean cross-entropy of class probabilities ``probs`` ``(N, K)`` against ``gold`` ``(N,)``; at least
    ``0.0`` (certain right answers, or a mixture's probability rounded a hair above 1, never print ``-0.0``)."""
    return max(0.0, float(-np.log(np.maximum(probs[np.arange(len(gold)), gold], 1e-300)).mean()))


def mixture(first: Any, second: Any, weight: float) -> Any:
    """``(1 − w) · first + w · second``: the probabilities of two members of a run averaged with the second's share
    ``w`` (arrays or tensors of one shape; a series run's kernel ridge, a text run's count member)."""
    return (1.0 - weight) * first + weight * second


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> list[list[int]]:
    """``C × C`` counts, rows the true class and columns the predicted one."""
    _same_length(y_true, y_pred)
    conf = [[0] * num_classes for _ in range(num_classes)]
    for g, p in zip(y_true, y_pred, strict=True):
        conf[int(g)][int(p)] += 1
    return conf


class Confusion:
    """A confusion matrix kept as its nonzero cells (memory grows with the items, not with ``C²``).

    ``cells[(true, predicted)]`` counts; :meth:`dense` gives the ``C × C`` nested list, :meth:`record` what
    ``confusion.json`` holds (the dense matrix up to :data:`rnnkit.ranges.CONFUSION_DENSE_MAX` classes, else the
    sorted nonzero cells ``[true, predicted, count]``).
    """

    def __init__(self, cells: dict[tuple[int, int], int], num_classes: int) -> None:
        self.cells = cells
        self.num_classes = num_classes

    def __len__(self) -> int:
        return self.num_classes

    def dense(self) -> list[list[int]]:
        """The ``C × C`` counts, rows the true class and columns the predicted one."""
        conf = [[0] * self.num_classes for _ in range(self.num_classes)]
        for (g, p), n in self.cells.items():
            conf[g][p] = n
        return conf

    def sparse(self) -> list[list[int]]:
        """The nonzero cells ``[true, predicted, count]``, sorted."""
        return [[g, p, n] for (g, p), n in sorted(self.cells.items())]

    def record(self, classes: Sequence[str]) -> dict[str, Any]:
        """``confusion.json``: ``{"classes", "matrix"}`` up to the dense cap, else ``{"classes", "cells", "format":
        "sparse"}``."""
        if self.num_classes <= CONFUSION_DENSE_MAX:
            return {"classes": list(classes), "matrix": self.dense()}
        return {"classes": list(classes), "format": "sparse", "cells": self.sparse()}


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> Confusion:
    """The :class:`Confusion` of ``y_true`` against ``y_pred`` (equal to :func:`confusion_matrix`, kept sparse)."""
    _same_length(y_true, y_pred)
    for v in (*y_true, *y_pred):
        if not 0 <= int(v) < num_classes:
            raise IndexError(f"class id {v} out of range for {num_classes} classes")
    cells = Counter((int(g), int(p)) for g, p in zip(y_true, y_pred, strict=True))
    return Confusion(dict(cells), num_classes)


def macro_f1(conf: Sequence[Sequence[int]] | Confusion) -> float:
    """Mean F1 over the classes present in the truth or the predictions of a confusion matrix (a nested list or a
    :class:`Confusion`; both give the same float: the classes are summed in the same order)."""
    if isinstance(conf, Confusion):
        tp: Counter[int] = Counter()
        rows: Counter[int] = Counter()
        cols: Counter[int] = Counter()
        for (g, p), n in conf.cells.items():
            rows[g] += n
            cols[p] += n
            if g == p:
                tp[g] += n
        f1s = []
        for c in sorted(set(rows) | set(cols)):
            fp, fn = cols[c] - tp[c], rows[c] - tp[c]
            if tp[c] + fp + fn:
                f1s.append(2 * tp[c] / (2 * tp[c] + fp + fn))
        return sum(f1s) / len(f1s) if f1s else 0.0
    C = len(conf)
    f1s = []
    for c in range(C):
        tp = conf[c][c]
        fp = sum(conf[r][c] for r in range(C)) - tp
        fn = sum(conf[c]) - tp
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s) if f1s else 0.0


# ---------------------------------------------------------------------------------------------------------- sequences
def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning ``hyp`` into ``ref``."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def error_rate(refs: Sequence[Sequence[Hashable]], hyps: Sequence[Sequence[Hashable]]) -> float:
    """Σ edit distances / Σ reference lengths (e.g. the phoneme error rate of a G2P model)."""
    _same_length(refs, hyps)
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ValueError("the references hold no symbols")
    return sum(edit_distance(r, h) for r, h in zip(refs, hyps, strict=True)) / total


def exact_match(refs: Sequence[Sequence[Hashable]], hyps: Sequence[Sequence[Hashable]]) -> float:
    """Fraction of outputs equal to their reference as a whole (1 − word error rate for one word per item)."""
    _same_length(refs, hyps)
    return sum(int(list(r) == list(h)) for r, h in zip(refs, hyps, strict=True)) / len(refs)


# ---------------------------------------------------------------------------------------------------------- forecasts
def mae(actual, forecast) -> float:
    """Mean absolute error."""
    a, f = _pair(actual, forecast)
    return float(np.mean(np.abs(a - f)))


def rmse(actual, forecast) -> float:
    """Root mean squared error (in float64; squares beyond its range are scaled by the largest error first)."""
    a, f = _pair(actual, forecast)
    with np.errstate(over="ignore", invalid="ignore"):
        d = a - f
        out = float(np.sqrt(np.mean(d**2)))
        if not math.isfinite(out) and np.isfinite(d).all():  # errors above 1e154: their squares overflow
            peak = float(np.abs(d).max())
            out = peak * float(np.sqrt(np.mean((d / peak) ** 2)))
    return out


def smape(actual, forecast) -> float:
    """Symmetric MAPE in percent, in [0, 200]; terms where both values are 0 count as 0 error."""
    a, f = _pair(actual, forecast)
    denom = np.abs(a) + np.abs(f)
    terms = np.divide(2 * np.abs(f - a), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100 * np.mean(terms))


def mase(actual, forecast, train, season: int = 1) -> float:
    """MAE scaled by the in-sample MAE of the seasonal-naive forecast ``y_t = y_{t−m}`` on ``train``.

    Below 1: better than that naive forecast was in-sample. ``train`` is ``(N,)`` or ``(N, K)`` (the scale is the
    mean over all columns); ValueError when it is constant over lag ``season`` (the scale would be 0).
    """
    if season < 1:
        raise ValueError(f"season must be ≥ 1, got {season}")
    y = np.asarray(train, dtype=np.float64)
    if y.shape[0] <= season:
        raise ValueError(f"MASE needs a training series longer than season={season}, got {y.shape[0]} values")
    scale = float(np.mean(np.abs(y[season:] - y[:-season])))
    if scale == 0:
        raise ValueError("MASE is undefined: the training series does not change over one season")
    return mae(actual, forecast) / scale


def _pair(actual, forecast) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if a.shape != f.shape:
        raise ValueError(f"actual {a.shape} and forecast {f.shape} differ in shape")
    if a.size == 0:
        raise ValueError("no values to score")
    return a, f


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} references but {len(b)} predictions")
    if len(a) == 0:
        raise ValueError("nothing to score")
