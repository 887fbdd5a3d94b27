"""Real-valued series in the formats aeon and sktime use: arrays, UEA/UCR ``.ts`` files and ``.npz`` files; the
embedded BasicMotions data; stratified index splits; per-channel standardization fitted on training data only.

Layouts and missing values: :mod:`rnnkit.data.series_set` (:class:`SeriesSet`, :func:`as_sequences`,
:func:`fill_missing`); the ``.ts`` reader: :mod:`rnnkit.data.ts_reader`. Both are imported from here too.

Readers (:func:`read_ts`, :func:`read_npz`, :func:`load_series`) return a :class:`SeriesSet` whose ``X`` is the
list of ``(C, L_i)`` float64 arrays, ``y`` the labels as strings, ``classes`` the class list.

Standardization (:class:`Standardizer`): ``(x - mean_c) / std_c`` per channel ``c``, with the mean and the
population standard deviation pooled over every time step of every *training* series (a long series weighs more
than a short one, as its steps do in the loss). A constant channel (std 0) is only centred. Validation, test and
prediction data are transformed with those statistics and never change them.

Shape symbols: N series, C channels, L / L_i steps of a series.
"""

from __future__ import annotations

import importlib.util
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.data.npz_headers import NPZ_ARRAY_LIMIT, check_npz_headers
from rnnkit.data.series_set import SeriesSet, _existing_file, as_sequences, fill_missing, series_classes
from rnnkit.data.ts_reader import read_ts

__all__ = [
    "EMBEDDED_SERIES",
    "NPZ_ARRAY_LIMIT",
    "SeriesSet",
    "Standardizer",
    "as_sequences",
    "channel_scale",
    "check_npz_headers",
    "embedded_series_path",
    "fill_missing",
    "load_series",
    "read_npz",
    "read_ts",
    "series_classes",
    "stratified_split",
]

EMBEDDED_SERIES = {"embedded:basicmotions": "BasicMotions"}
"""``--data`` names of UEA/UCR problems read from the ``.ts`` files shipped in the aeon (or sktime) wheel."""

SERIES_SUFFIXES = (".ts", ".npz")
"""File suffixes :func:`load_series` reads."""


# ---------------------------------------------------------------------------------------------------------- .npz
def _npz_array(z: Any, key: str, where: str) -> np.ndarray:
    try:
        return z[key]
    except ValueError as e:
        if "pickle" not in str(e):
            raise ValueError(f"{where}: array {key!r} cannot be read: {e}") from None
        raise ValueError(
            f"{where}: array {key!r} is an object array (e.g. series of unequal lengths, or Python objects); "
            "rnnkit never unpickles data: save X as one numeric array (N, C, L) or (N, L) of equal-length series "
            "and y as strings or integers, or write unequal-length series to a .ts file"
        ) from None


def _npz_labels(y: np.ndarray, n: int, where: str) -> list[str]:
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{where}: y has shape {y.shape}; expected ({n},), one label per series of X")
    if y.dtype.kind == "U":
        return [str(v) for v in y]
    if y.dtype.kind == "S":
        return [v.decode("utf-8") for v in y]
    if y.dtype.kind in "iu":
        return [str(int(v)) for v in y]
    if y.dtype.kind == "b":
        return [str(bool(v)) for v in y]
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not (y == np.round(y)).all():
            raise ValueError(
                f"{where}: y holds non-integer or non-finite floats; class labels must be strings or integers"
            )
        return [str(int(v)) for v in y]
    raise TypeError(f"{where}: y has dtype {y.dtype}; class labels must be strings or integers")


def read_npz(path: str | Path) -> SeriesSet:
    """Read an ``.npz`` file holding ``X`` (and optionally ``y``) into a :class:`SeriesSet`.

    ``X`` is one numeric array, ``(N, C, L)`` (channels first) or ``(N, L)`` (univariate); ``y`` (optional) holds
    ``N`` labels, strings or integers. The file is opened with ``allow_pickle=False``: an object array (how NumPy
    stores a list of unequal-length series) is refused with a message saying what to save instead. NaNs in ``X``
    are missing values, filled as the module docstring says. ``classes`` are the sorted distinct labels.
    """
    p = _existing_file(path, ".npz")
    where = str(p)
    check_npz_headers(p, where)
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{where} is not a NumPy .npz file ({e}); save one with np.savez(path, X=X, y=y)") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{where} holds a single array, not an .npz archive; save one with np.savez(path, X=X, y=y)")
    with z:
        if "X" not in z.files:
            raise ValueError(f"{where} has arrays {sorted(z.files)}; expected X (series) and y (labels)")
        X = _npz_array(z, "X", where)
        y = _npz_array(z, "y", where) if "y" in z.files else None
    if X.ndim not in (2, 3):
        raise ValueError(f"{where}: X has shape {X.shape}; expected (N, C, L) channels first or (N, L) univariate")
    try:
        series, filled = fill_missing(X)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{where}: X: {e}") from None
    labels = None if y is None else _npz_labels(y, len(series), where)
    return SeriesSet(
        X=series,
        y=labels,
        classes=series_classes(labels) if labels is not None else [],
        source=where,
        missing_filled=filled,
    )


# ---------------------------------------------------------------------------------------------------------- embedded
def embedded_series_path(name: str, part: str) -> Path:
    """The shipped ``.ts`` file of an embedded problem, ``part`` "train" or "test".

    ``name`` is a key of :data:`EMBEDDED_SERIES` (``"embedded:basicmotions"``). The file is looked up in the
    installed aeon package (``aeon/datasets/data/BasicMotions/BasicMotions_TRAIN.ts``), else sktime's copy, via
    ``importlib.util.find_spec``, which locates a package without importing it (importing aeon takes seconds).
    """
    if name not in EMBEDDED_SERIES:
        raise ValueError(f"unknown embedded series data {name!r}; choose one of: {', '.join(EMBEDDED_SERIES)}")
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got {part!r}")
    problem = EMBEDDED_SERIES[name]
    for package in ("aeon", "sktime"):
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec is not None else []:
            f = Path(root) / "datasets" / "data" / problem / f"{problem}_{part.upper()}.ts"
            if f.is_file():
                return f
    raise ValueError(
        f"{name} reads {problem}_{part.upper()}.ts from the aeon or sktime package, and neither is installed with "
        "it; install one (pip install aeon) or pass your own --data FILE.ts"
    )


def load_series(spec: str | Path, part: str = "train") -> SeriesSet:
    """Read ``spec``: a ``.ts`` file, an ``.npz`` file, or an embedded name (its ``part``: "train" | "test")."""
    text = str(spec)
    if text in EMBEDDED_SERIES:
        data = read_ts(embedded_series_path(text, part))
        data.source = f"{text} ({part})"
        return data
    suffix = Path(text).suffix.lower()
    if suffix == ".ts":
        return read_ts(text)
    if suffix == ".npz":
        return read_npz(text)
    raise ValueError(
        f"{text!r} is not series data: expected a .ts file, an .npz file with arrays X and y, or "
        f"{', '.join(EMBEDDED_SERIES)}"
    )


# ---------------------------------------------------------------------------------------------------------- splits
def stratified_split(labels: Sequence[str], fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Carve about ``fraction`` of the indices of every class off, deterministically from ``seed``.

    Each class with ``n >= 2`` items gives ``round(fraction * n)`` of them, at least 1 and at most ``n - 1``; a
    class with one item keeps it. Returns ``(kept, carved)``: sorted, disjoint index lists covering
    ``range(len(labels))``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    carved: list[int] = []
    for lab in series_classes(list(by_class)):
        idx = by_class[lab]
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        carved += [int(i) for i in rng.permutation(idx)[:k]]
    chosen = set(carved)
    return [i for i in range(len(labels)) if i not in chosen], sorted(chosen)


# ---------------------------------------------------------------------------------------------------------- scaling
def channel_scale(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The divisor per channel for ``(x − mean) / scale``: ``std``, but 1.0 where a channel is constant (``std ≤
    1e-12·max(1, |mean|)``: 0 or rounding noise), which is then only centred, its noise not blown up."""
    return np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)


@dataclass(frozen=True)
class Standardizer:
    """Per-channel standardization ``(x - mean_c) / std_c``; fit it on the training series only.

    Attributes:
        mean: ``C`` channel means over every step of every training series.
        std: ``C`` population standard deviations (1.0 for a constant channel, which is then only centred).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, sequences: Sequence[np.ndarray]) -> Standardizer:
        """Statistics of time-major series ``(L_i, C)`` (as :func:`as_sequences` returns them)."""
        if len(sequences) == 0:
            raise ValueError("cannot fit a Standardizer on no series")
        stacked = np.concatenate([np.asarray(s, dtype=np.float64) for s in sequences], axis=0)  # (ΣL_i, C)
        if stacked.ndim != 2:
            raise ValueError(f"Standardizer.fit takes (L_i, C) series, got a stack of shape {stacked.shape}")
        mean = stacked.mean(axis=0)  # (C,)
        std = stacked.std(axis=0)  # (C,)
        std = channel_scale(mean, std)
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

    @property
    def num_channels(self) -> int:
        return len(self.mean)

    def transform(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
        """New standardized float64 arrays ``(L_i, C)``; a different channel count is an error."""
        mean, std = np.asarray(self.mean), np.asarray(self.std)
        out = []
        for i, s in enumerate(sequences):
            a = np.asarray(s, dtype=np.float64)
            if a.ndim != 2 or a.shape[1] != len(mean):
                raise ValueError(
                    f"series {i} has shape {a.shape}; the standardizer expects (L_i, {len(mean)}) time-major series"
                )
            out.append((a - mean) / std)  # (L_i, C)
        return out

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready ``{"mean": [...], "std": [...]}`` (floats round-trip exactly)."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Standardizer:
        """Rebuild from :meth:`to_dict`; malformed input raises ValueError."""
        try:
            mean = tuple(float(v) for v in data["mean"])
            std = tuple(float(v) for v in data["std"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("a saved standardizer needs lists 'mean' and 'std' of numbers") from None
        if not mean or len(mean) != len(std) or not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
            raise ValueError("a saved standardizer needs equally long, finite 'mean' and positive 'std' lists")
        return cls(mean, std)
