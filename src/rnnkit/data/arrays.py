"""Real-valued series in the formats aeon and sktime use: arrays, UEA/UCR ``.ts`` files and ``.npz`` files; the
embedded BasicMotions data; stratified index splits; per-channel standardization fitted on training data only.

Layouts. aeon and sktime keep a collection of ``N`` series *channels first*: one array ``(N, C, L)`` when every
series has the same length ``L``, a list of ``N`` arrays ``(C, L_i)`` when lengths differ, and ``(N, L)`` for
univariate series (``C = 1``). rnnkit's batches are time-major per item, ``(L_i, C)`` (``C`` channels here are
the ``F`` features of :class:`~rnnkit.data.batching.Batch`): :func:`as_sequences` converts any of those layouts.
An array ``(N, L, C)`` (time first) must be transposed by the caller, ``X.transpose(0, 2, 1)``: a 3-D array is
always read as ``(N, C, L)``.

Readers (:func:`read_ts`, :func:`read_npz`, :func:`load_series`) return a :class:`SeriesSet` whose ``X`` is the
list of ``(C, L_i)`` float64 arrays, ``y`` the labels as strings, ``classes`` the class list.

Missing values (``?`` or ``NaN`` in a ``.ts`` file, NaN in an ``.npz`` array) are filled when a file is read, by
:func:`fill_missing`: linear interpolation in time within each channel of each series between the nearest observed
values, and the nearest observed value before the first / after the last one (constant at the edges). The count
filled is kept in ``SeriesSet.missing_filled`` so that a run can report it. A channel of a series with no observed
value at all cannot be filled and is an error. :func:`as_sequences` itself refuses NaN: fill first.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.data.npz_headers import NPZ_ARRAY_LIMIT, check_npz_headers

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


# ---------------------------------------------------------------------------------------------------------- arrays
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


# ---------------------------------------------------------------------------------------------------------- .ts
_TS_BOOL_KEYS = ("timestamps", "missing", "univariate", "equallength", "targetlabel")
_TS_INT_KEYS = ("dimensions", "serieslength")
_TS_KEYS = ("problemname", *_TS_BOOL_KEYS, *_TS_INT_KEYS, "classlabel", "data")
_TS_SPELLING = {
    "problemname": "@problemName",
    "timestamps": "@timeStamps",
    "missing": "@missing",
    "univariate": "@univariate",
    "equallength": "@equalLength",
    "targetlabel": "@targetLabel",
    "dimensions": "@dimensions",
    "serieslength": "@seriesLength",
    "classlabel": "@classLabel",
    "data": "@data",
}


def _ts_bool(value: str, where: str, key: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError(f"{where}: {_TS_SPELLING[key]} must be true or false, got {value!r}")
    return value.lower() == "true"


def _ts_header(lines: list[tuple[int, str]], where: str) -> tuple[dict[str, Any], int]:
    """Parse the ``@key value`` lines up to ``@data``; returns the header and the index of the first data line."""
    header: dict[str, Any] = {}
    for k, (no, line) in enumerate(lines):
        at = f"{where}:{no}"
        if not line.startswith("@"):
            raise ValueError(
                f"{at}: expected a header line '@key value' (or '@data') before the data, got {line[:40]!r}"
            )
        parts = line[1:].split()
        key = parts[0].lower() if parts else ""
        if key == "dimension":  # a spelling some writers use
            key = "dimensions"
        if key not in _TS_KEYS:
            known = ", ".join(_TS_SPELLING[k] for k in _TS_KEYS)
            raise ValueError(f"{at}: unknown header key {line.split()[0]!r}; a .ts header has {known}")
        if key in header and key != "problemname":  # a second name is harmless (a shipped file has one); the last wins
            raise ValueError(f"{at}: {_TS_SPELLING[key]} is given twice")
        args = parts[1:]
        if key == "data":
            if args:
                raise ValueError(f"{at}: @data takes no value; the series start on the next line")
            return header, k + 1
        if key == "problemname":
            header[key] = " ".join(args)
            continue
        if not args:
            raise ValueError(f"{at}: {_TS_SPELLING[key]} needs a value")
        if key in _TS_BOOL_KEYS:
            if len(args) != 1:
                raise ValueError(f"{at}: {_TS_SPELLING[key]} takes one value, true or false, got {' '.join(args)!r}")
            header[key] = _ts_bool(args[0], at, key)
        elif key in _TS_INT_KEYS:
            if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
                raise ValueError(f"{at}: {_TS_SPELLING[key]} must be a positive integer, got {' '.join(args)!r}")
            header[key] = int(args[0])
        else:  # classlabel: true LABEL... | false
            flag = _ts_bool(args[0], at, key)
            if not flag and len(args) > 1:
                raise ValueError(f"{at}: @classLabel false takes no class list, got {' '.join(args[1:])!r}")
            if flag and len(set(args[1:])) != len(args[1:]):
                raise ValueError(f"{at}: @classLabel lists a class twice: {' '.join(args[1:])!r}")
            header[key] = (flag, list(args[1:]))
    raise ValueError(f"{where}: no @data line; a .ts file has header lines, then '@data', then one series per line")


def _ts_values(text: str, at: str, what: str, missing_allowed: bool | None) -> np.ndarray:
    """One dimension's comma-separated values → ``(L,)`` float64, NaN where a value is missing (``?``)."""
    tokens = text.split(",")
    out = np.empty(len(tokens))  # (L,)
    for j, raw in enumerate(tokens):
        tok = raw.strip()
        if tok == "?" or tok.lower() == "nan":
            if missing_allowed is False:
                raise ValueError(
                    f"{at}: {what} has a missing value ({tok!r}) but the header says @missing false; "
                    "set @missing true or fill the value"
                )
            out[j] = math.nan
            continue
        try:
            v = float(tok)
        except ValueError:
            shown = "an empty value (two commas in a row?)" if not tok else repr(tok)
            raise ValueError(
                f"{at}: {what}, value {j + 1}: {shown} is not a number (missing values are written '?')"
            ) from None
        if not math.isfinite(v):
            raise ValueError(f"{at}: {what}, value {j + 1}: {tok!r} is not finite; write missing values as '?'")
        out[j] = v
    return out


def read_ts(path: str | Path) -> SeriesSet:
    """Read a UEA/UCR ``.ts`` file (the sktime/aeon text format) into a :class:`SeriesSet`.

    The format: ``#`` comment lines (``%`` too, ARFF's, which some shipped files use); header lines
    ``@problemName NAME``, ``@timeStamps false``, ``@missing true|false``, ``@univariate true|false``,
    ``@dimensions C``, ``@equalLength true|false``, ``@seriesLength L``, ``@classLabel true LABEL ...`` (or
    ``false``) or ``@targetLabel true`` (regression); then
    ``@data`` and one series per line: its ``C`` dimensions separated by ``:``, each a comma-separated list of
    values (``?`` = missing), the label after the last ``:``. Keys and ``true``/``false`` are case-insensitive.
    Lengths may differ between series (``@equalLength false``) but not between the dimensions of one series.

    Every header statement is checked against the data: the number of dimensions (``@dimensions``, or 1 for
    ``@univariate true``), ``@equalLength true`` / ``@seriesLength``, ``@missing false`` (no ``?``), and labels
    from the ``@classLabel`` list. Missing values are filled as the module docstring says.

    Returns:
        ``SeriesSet(X = N arrays (C, L_i), y = labels or None, classes = the header's list (else the sorted
        labels), targets = regression values or None, missing_filled)``.

    Raises:
        FileNotFoundError: no such file. ValueError: ``@timeStamps true`` (not supported), a malformed header or
        line, or data that contradicts the header; the message names the line.
    """
    p = _existing_file(path, ".ts")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p} is not UTF-8 text (byte offset {e.start}); a .ts file is plain text") from None
    where = str(p)
    lines = [(no, s) for no, s in ((i + 1, raw.strip()) for i, raw in enumerate(text.splitlines())) if s]
    lines = [(no, s) for no, s in lines if not s.startswith(("#", "%"))]  # '%': ARFF's comment, in some files
    if not lines:
        raise ValueError(f"{where} is empty: a .ts file needs a header, '@data' and one series per line")
    header, start = _ts_header(lines, where)
    if header.get("timestamps"):
        raise ValueError(
            f"{where}: @timeStamps true is not supported (values with time stamps); rnnkit reads files with "
            "@timeStamps false, one value per step"
        )
    class_flag, class_list = header.get("classlabel", (False, []))
    has_target = header.get("targetlabel", False)
    if class_flag and has_target:
        raise ValueError(f"{where}: @classLabel true and @targetLabel true contradict each other: keep one")
    labeled = class_flag or has_target
    expected_dims = header.get("dimensions")
    if header.get("univariate") is True:
        if expected_dims not in (None, 1):
            raise ValueError(f"{where}: @univariate true contradicts @dimensions {expected_dims}")
        expected_dims = 1
    elif header.get("univariate") is False and expected_dims is None:
        expected_dims = None  # multivariate: the first series tells
    equal, fixed_len = header.get("equallength"), header.get("serieslength")
    missing_allowed = header.get("missing")
    rows = lines[start:]
    if not rows:
        raise ValueError(f"{where}: no series after @data")
    X: list[np.ndarray] = []
    labels: list[str] = []
    missing = 0
    for i, (no, line) in enumerate(rows):
        at = f"{where}:{no}"
        if line.startswith("@"):
            raise ValueError(f"{at}: header line {line.split()[0]!r} after @data; the header comes first")
        parts = line.split(":")
        if labeled:
            if len(parts) < 2:
                raise ValueError(f"{at}: series {i} has no label after a ':' although the header declares labels")
            label, parts = parts[-1].strip(), parts[:-1]
            if not label:
                raise ValueError(f"{at}: series {i} has an empty label after the last ':'")
            labels.append(label)
        if expected_dims is None:
            expected_dims = len(parts)
            why = "the first series has"
        else:
            why = "the header says" if header.get("dimensions") or header.get("univariate") else "the first series has"
        if len(parts) != expected_dims:
            raise ValueError(
                f"{at}: series {i} has {len(parts)} dimensions (':'-separated) but {why} {expected_dims}"
                + ("; is the label missing?" if labeled and len(parts) == expected_dims - 1 else "")
            )
        dims = []
        for d, part in enumerate(parts):
            dims.append(_ts_values(part, at, f"series {i}, dimension {d + 1}", missing_allowed))
        lens = sorted({v.shape[0] for v in dims})
        if len(lens) > 1:
            raise ValueError(
                f"{at}: the dimensions of series {i} have different lengths {lens}; one series' dimensions share "
                "its length"
            )
        if fixed_len is not None and lens[0] != fixed_len:
            raise ValueError(
                f"{at}: series {i} has {lens[0]} values per dimension but the header says @seriesLength {fixed_len}"
            )
        series = np.stack(dims)  # (C, L_i)
        if np.isnan(series).any():
            try:
                series, n = _fill_series(series)
            except ValueError as e:
                raise ValueError(f"{at}: series {i}, {e}") from None
            missing += n
        X.append(series)
    lengths = sorted({x.shape[1] for x in X})
    if equal is True and len(lengths) > 1:
        raise ValueError(
            f"{where}: the header says @equalLength true but the series have lengths {lengths[0]}..{lengths[-1]}; "
            "set @equalLength false"
        )
    y: list[str] | None = None
    targets = None
    classes: list[str] = []
    if class_flag:
        y = labels
        if class_list:
            allowed = set(class_list)
            for i, lab in enumerate(labels):
                if lab not in allowed:
                    raise ValueError(
                        f"{where}:{rows[i][0]}: label {lab!r} of series {i} is not in the @classLabel list "
                        f"({' '.join(class_list)})"
                    )
            classes = list(class_list)
        else:
            classes = series_classes(labels)
    elif has_target:
        try:
            targets = np.array([float(lab) for lab in labels])
        except ValueError:
            bad = next(i for i, lab in enumerate(labels) if not _is_float(lab))
            raise ValueError(
                f"{where}:{rows[bad][0]}: the target {labels[bad]!r} of series {bad} is not a number "
                "(@targetLabel true files end each line with a real value)"
            ) from None
    return SeriesSet(
        X=X,
        y=y,
        classes=classes,
        targets=targets,
        source=where,
        problem=header.get("problemname", ""),
        missing_filled=missing,
    )


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
