"""The UEA/UCR ``.ts`` text format (sktime/aeon) read into a :class:`~rnnkit.data.series_set.SeriesSet`:
:func:`read_ts` checks every header statement against the data and fills missing values.

Shape symbols: N series, C channels, L / L_i steps of a series.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.data.series_set import SeriesSet, _existing_file, _fill_series, is_number, series_classes

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
    from the ``@classLabel`` list. Missing values are filled as :mod:`rnnkit.data.series_set` says.

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
            bad = next(i for i, lab in enumerate(labels) if not is_number(lab))
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
