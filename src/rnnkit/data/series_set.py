"""A collection of real-valued series (:class:`SeriesSet`), the layouts aeon and sktime keep it in, and the filling
of missing values.

Layouts. aeon and sktime keep a collection of ``N`` series *channels first*: one array ``(N, C, L)`` when every
series has the same length ``L``, a list of ``N`` arrays ``(C, L_i)`` when lengths differ, and ``(N, L)`` for
univariate series (``C = 1``). rnnkit's batches are time-major per item, ``(L_i, C)`` (``C`` channels here are
the ``F`` features of :class:`~rnnkit.data.batching.Batch`): :func:`as_sequences` converts any of those layouts.
An array ``(N, L, C)`` (time first) must be transposed by the caller, ``X.transpose(0, 2, 1)``: a 3-D array is
always read as ``(N, C, L)``.

Missing values (``?`` or ``NaN`` in a ``.ts`` file, NaN in an ``.npz`` array) are filled when a file is read, by
:func:`fill_missing`: linear interpolation in time within each channel of each series between the nearest observed
values, and the nearest observed value before the first / after the last one (constant at the edges). The count
filled is kept in ``SeriesSet.missing_filled`` so that a run can report it. A channel of a series with no observed
value at all cannot be filled and is an error. :func:`as_sequences` itself refuses NaN: fill first.

Shape symbols: N series, C channels, L / L_i steps of a series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class SeriesSet:
    """A collection of series with optional labels: what every reader returns.

    Attributes:
        X: ``N`` float64 arrays ``(C, L_i)``, channels first (aeon's list layout), missing values already filled.
        y: ``N`` class labels as strings, or ``None`` (unlabeled data, or a regression file).
        classes: every class name in class-id order: a ``.ts`` header's ``@classLabel`` list in its order, else
            the distinct labels sorted (numbers numerically).
        targets: ``(N,)`` float64 regression targets of a ``@targetLabel true`` file, else ``None``.
        source: the path (or embedded name) read, for messages.
        problem: the ``@problemName`` of a ``.ts`` file ("" if none).
        missing_filled: how many missing values :func:`fill_missing` filled while reading.
    """

    X: list[np.ndarray]
    y: list[str] | None = None
    classes: list[str] = field(default_factory=list)
    targets: np.ndarray | None = None
    source: str = ""
    problem: str = ""
    missing_filled: int = 0

    def __len__(self) -> int:
        return len(self.X)

    @property
    def num_channels(self) -> int:
        """``C``, the channels every series has."""
        return int(self.X[0].shape[0]) if self.X else 0

    @property
    def lengths(self) -> list[int]:
        """``L_i`` of every series."""
        return [int(x.shape[1]) for x in self.X]

    def label_ids(self) -> list[int]:
        """Class ids of ``y`` (positions in ``classes``); unlabeled data and unknown labels raise ValueError."""
        if self.y is None:
            raise ValueError(f"{self.source or 'the data'} has no class labels")
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({lab for lab in self.y if lab not in index})
        if unknown:
            raise ValueError(f"{self.source or 'the data'}: labels {unknown} are not among the classes {self.classes}")
        return [index[lab] for lab in self.y]

    def subset(self, indices: Sequence[int]) -> SeriesSet:
        """The series at ``indices`` (same classes, source and problem; ``missing_filled`` is not split)."""
        idx = [int(i) for i in indices]
        return SeriesSet(
            X=[self.X[i] for i in idx],
            y=None if self.y is None else [self.y[i] for i in idx],
            classes=list(self.classes),
            targets=None if self.targets is None else self.targets[idx],
            source=self.source,
            problem=self.problem,
        )


def _numeric(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{what} must hold numbers, got dtype {a.dtype}")
    return a.astype(np.float64)


def _channels_first(X: Any) -> list[np.ndarray]:
    """Any accepted layout → ``N`` float64 arrays ``(C, L_i)``; ranks, emptiness and channel counts checked."""
    if hasattr(X, "detach"):  # a torch tensor
        X = X.detach().cpu().numpy()
    if isinstance(X, np.ndarray):
        a = _numeric(X, "X")
        if a.ndim == 3:
            items = list(a)  # N × (C, L)
        elif a.ndim == 2:
            items = list(a[:, None, :])  # N × (1, L): univariate
        else:
            raise ValueError(
                f"X has shape {a.shape}; expected (N, C, L) channels first (aeon/sktime), (N, L) univariate, "
                "or a list of (C, L_i) arrays"
            )
        if not items:
            raise ValueError("X holds no series (N = 0)")
    elif isinstance(X, Sequence) and not isinstance(X, (str, bytes)):
        if len(X) == 0:
            raise ValueError("X holds no series (an empty list)")
        items = []
        for i, s in enumerate(X):
            if hasattr(s, "detach"):
                s = s.detach().cpu().numpy()
            a = _numeric(np.asarray(s), f"series {i}")
            if a.ndim == 1:
                a = a[None, :]  # (1, L_i): univariate
            elif a.ndim != 2:
                raise ValueError(f"series {i} has shape {a.shape}; expected (C, L_i) channels first or (L_i,)")
            items.append(a)
    else:
        raise TypeError(f"X must be an array (N, C, L) or (N, L), or a list of (C, L_i) arrays, not {type(X).__name__}")
    C = items[0].shape[0]
    for i, a in enumerate(items):
        if a.shape[0] == 0:
            raise ValueError(f"series {i} has no channels (shape {a.shape}); expected (C, L_i) with C >= 1")
        if a.shape[1] == 0:
            raise ValueError(f"series {i} is empty (0 steps); every series needs at least one")
        if a.shape[0] != C:
            raise ValueError(
                f"series {i} has {a.shape[0]} channels but series 0 has {C}; every series needs the same channels "
                "(is an array laid out (L, C) instead of (C, L)?)"
            )
    return items


def as_sequences(X: Any) -> list[np.ndarray]:
    """Series in an aeon/sktime layout → ``N`` time-major float64 arrays ``(L_i, C)`` for rnnkit's batches.

    Args:
        X: an array ``(N, C, L)`` (channels first, the aeon/sktime convention), an array ``(N, L)`` (univariate),
            or a list of ``N`` arrays ``(C, L_i)`` (unequal lengths; a 1-D ``(L_i,)`` item is univariate).
            NumPy arrays, nested lists and torch tensors are accepted.

    Returns:
        ``N`` new C-contiguous float64 arrays ``(L_i, C)``.

    Raises:
        ValueError: a wrong rank, no series, an empty series, differing channel counts, NaN (fill it with
            :func:`fill_missing`) or inf.
        TypeError: non-numeric data.
    """
    out = []
    for i, a in enumerate(_channels_first(X)):
        if np.isnan(a).any():
            raise ValueError(
                f"series {i} has {int(np.isnan(a).sum())} missing values (NaN); fill them first with "
                "rnnkit.data.arrays.fill_missing"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"series {i} contains inf; replace or drop those values")
        out.append(np.ascontiguousarray(a.T))  # (L_i, C)
    return out


def _fill_channel(v: np.ndarray) -> np.ndarray:
    """Linear interpolation over the NaNs of one channel ``(L,)``, constant (nearest value) at the edges."""
    missing = np.isnan(v)
    t = np.arange(v.shape[0])
    # np.interp holds the first / last observed value beyond the observed range: the nearest-value edge rule
    return np.where(missing, np.interp(t, t[~missing], v[~missing]), v)


def _fill_series(a: np.ndarray) -> tuple[np.ndarray, int]:
    """One series ``(C, L)`` with its NaNs filled (a new array), and how many there were."""
    a, filled = a.copy(), 0
    for c in range(a.shape[0]):
        n = int(np.isnan(a[c]).sum())
        if n == 0:
            continue
        if n == a.shape[1]:
            raise ValueError(
                f"channel {c}: every value is missing; there is nothing to fill it from "
                "(drop that series, or that channel from every series)"
            )
        a[c] = _fill_channel(a[c])
        filled += n
    return a, filled


def fill_missing(X: Any) -> tuple[list[np.ndarray], int]:
    """Fill the NaNs of every channel of every series (see the module docstring for the rule).

    Args:
        X: series in any layout :func:`as_sequences` accepts (channels first).

    Returns:
        ``(series, filled)``: ``N`` new float64 arrays ``(C, L_i)`` without NaN, and how many values were filled.

    Raises:
        ValueError: a channel of a series is missing entirely (nothing to interpolate from), or a layout error.
    """
    out, filled = [], 0
    for i, a in enumerate(_channels_first(X)):
        try:
            a, n = _fill_series(a)
        except ValueError as e:
            raise ValueError(f"series {i}, {e}") from None
        out.append(a)
        filled += n
    return out, filled


def _label_key(label: str) -> tuple[int, float, str]:
    """Sort labels numerically when they are numbers (``"2" < "10"``), else as text."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def series_classes(labels: Sequence[str]) -> list[str]:
    """The distinct labels sorted: numbers numerically, then text."""
    return sorted(set(labels), key=_label_key)


def _existing_file(path: str | Path, suffix: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"no such {suffix} file: {str(path)!r}")
    if p.is_dir():
        raise ValueError(f"{p} is a folder, expected a {suffix} file")
    return p


def is_number(text: str) -> bool:
    """Whether ``float(text)`` reads ``text`` (a label or a cell of a file)."""
    try:
        float(text)
    except ValueError:
        return False
    return True
