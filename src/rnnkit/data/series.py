"""Real-valued series for forecasting: the :class:`Series` container, readers, the chronological split, the
training-part :class:`Scaler` and the windowing into ``(context → next horizon values)`` samples.

Shape symbols: ``N`` time steps of a series, ``F`` value columns (channels), ``C`` context length (steps the
model reads), ``K`` horizon (steps predicted), ``M`` windows.

Sources:

- any CSV with an optional date/time column and one or more numeric value columns (:func:`read_series_csv`);
- ``embedded:msft``: Microsoft's daily prices 1986-03-13 … 2017-11-10 (8,000 trading days; columns Open, High,
  Low, Close, Volume; ``Close`` unless ``value_columns`` says otherwise), read from ``msft.csv`` inside
  pmdarima's ``datasets/data/msft.tar.gz``;
- ``embedded:sunspots``: monthly mean sunspot numbers Jan 1749 … Dec 1983 (2,820 values, many of them 0), from
  pmdarima's ``datasets/data/sunspots.txt.gz``;
- ``embedded:ppg``: a clean photoplethysmogram (PPG, finger pulse sensor, 10-bit ADC counts) sampled at 100 Hz,
  2,483 samples (≈25 s, ≈30 heartbeats): HeartPy's first example recording ``data/data.csv`` (HeartPy's docs:
  "a short, very clean PPG signal, sampled at 100.0 Hz"; all three of its example files are PPG, none is ECG).

The packaged files are read where the package is installed (found with :func:`importlib.util.find_spec`, without
importing it); nothing is downloaded or copied. Install them with ``pip install 'rnnkit[series]'``.

No peeking at the future: :func:`chronological_split` cuts the series in time order, the :class:`Scaler` is fitted
on the training part only, and :func:`make_windows` takes a window into a part only when all its targets lie in it
(its context may reach back into earlier parts: that past is known when the forecast is made).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import itertools
import math
import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.data.series_set import is_number

__all__ = [
    "EMBEDDED_SERIES",
    "Scaler",
    "Series",
    "SeriesSplit",
    "Windows",
    "chronological_split",
    "load_series",
    "make_windows",
    "parse_time",
    "read_series_csv",
    "season_from_times",
]

EMBEDDED_SERIES = {
    "embedded:msft": "Microsoft daily stock prices 1986-2017 (pmdarima msft.tar.gz; default column Close)",
    "embedded:sunspots": "monthly sunspot numbers 1749-1983, 2820 values with zeros (pmdarima sunspots.txt.gz)",
    "embedded:ppg": "photoplethysmogram at 100 Hz, 2483 samples (HeartPy data/data.csv)",
}
"""``--data`` names of the series shipped inside packages, with a one-line description."""

DATE_NAMES = {"date", "time", "datetime", "timestamp", "ds", "year", "quarter", "month", "day", "period"}
"""Header names (any case) taken as the date/time column when none is named."""

_TIME_FORMATS = (
    "%Y-%m",
    "%Y/%m/%d",
    "%Y/%m",
    "%Y-%m-%dT%H:%M:%S%z",
    "%d.%m.%Y",
    "%Y %b",  # 1991 Jul (R's and aeon's monthly labels)
    "%Y %B",  # 1991 July
    "%b %Y",  # Jul 1991
    "%B %Y",  # July 1991
)
_QUARTER = re.compile(r"(\d{4})\s*-?\s*Q([1-4])", re.IGNORECASE)  # 1970 Q1, 1970Q1, 1970-Q1: the quarter's first month


# ---------------------------------------------------------------------------------------------------------- series
@dataclass
class Series:
    """A multichannel real-valued series in time order.

    Attributes:
        values: ``(N, F)`` float64, finite.
        columns: the ``F`` channel names.
        times: ``N`` time stamps as written in the source (strings), or None.
        source: where it came from (a path or an ``embedded:`` name, with a note).
        season: the period the time stamps suggest (12 for monthly, 5 for trading days, …), or None.
    """

    values: np.ndarray
    columns: list[str]
    times: list[str] | None = None
    source: str = ""
    season: int | None = None

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]  # (N,) -> (N, 1)
        if values.ndim != 2:
            raise ValueError(f"series values must have shape (N, F), got {values.shape}")
        if len(self.columns) != values.shape[1]:
            raise ValueError(f"{len(self.columns)} column names for {values.shape[1]} value columns")
        if not np.isfinite(values).all():
            raise ValueError("series values must be finite (no NaN/inf): fill or drop those rows first")
        if self.times is not None and len(self.times) != values.shape[0]:
            raise ValueError(f"{len(self.times)} time stamps for {values.shape[0]} rows")
        self.values = values
        self.columns = list(self.columns)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def column_index(self, name: str | None) -> int:
        """Index of the column ``name`` (None: the first column); ValueError listing the columns if unknown."""
        if name is None:
            return 0
        if name not in self.columns:
            raise ValueError(f"no column {name!r} in {self.source or 'the series'}; choose one of {self.columns}")
        return self.columns.index(name)

    def select(self, columns: Sequence[str]) -> Series:
        """The series restricted to ``columns`` (in that order)."""
        idx = [self.column_index(c) for c in columns]
        return Series(self.values[:, idx], list(columns), self.times, self.source, self.season)


# ---------------------------------------------------------------------------------------------------------- times
def parse_time(text: str) -> datetime | None:
    """``text`` as a datetime (ISO 8601 forms, ``YYYY-MM``, ``YYYY/MM/DD``, ``DD.MM.YYYY``, ``1991 Jul`` and the other
    month-name forms of :data:`_TIME_FORMATS`, quarters ``1970 Q1``), or None."""
    text = text.strip()
    if not text or is_number(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    quarter = _QUARTER.fullmatch(text)
    if quarter:
        return datetime(int(quarter.group(1)), 3 * int(quarter.group(2)) - 2, 1)
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def season_from_times(times: Sequence[datetime]) -> int | None:
    """The seasonal period that regular time stamps suggest, or None when they suggest none.

    The median spacing decides: hourly → 24, daily → 7 (5 when no date falls on a weekend: trading days),
    weekly → 52, monthly → 12, quarterly → 4. Yearly and irregular spacings give None.
    """
    if len(times) < 3:
        return None
    gaps = sorted((b - a).total_seconds() for a, b in itertools.pairwise(times))
    median = gaps[len(gaps) // 2]
    day = 86400.0
    if median <= 0:
        return None
    if abs(median - 3600) < 60:
        return 24
    if 0.9 * day <= median <= 1.1 * day:
        return 7 if any(t.weekday() >= 5 for t in times) else 5
    if 6.5 * day <= median <= 7.5 * day:
        return 52
    if 27 * day <= median <= 32 * day:
        return 12
    if 85 * day <= median <= 95 * day:
        return 4
    return None


# ---------------------------------------------------------------------------------------------------------- CSV
def read_series_csv(
    path: str | os.PathLike[str],
    date_column: str | None = None,
    value_columns: Sequence[str] | None = None,
    min_rows: int = 2,
) -> Series:
    """Read a CSV series: an optional date/time column and one or more numeric value columns.

    The first row is a header unless every cell in it is a number or a time stamp (then the columns are named
    ``value`` or ``value1``, ``value2``, …). Without ``date_column`` the first column named like a date
    (:data:`DATE_NAMES`) or holding time stamps is taken, if any. Without ``value_columns`` every other column is
    a value column. Rows must be in time order; a file whose time stamps all decrease (newest first) is reversed.

    Raises:
        ValueError: an empty file, an unknown column, a row with more or fewer cells than the header, a cell that
            is not a number, a missing, NaN or infinite value (each naming the row and column and the fix),
            time stamps out of order, or fewer than ``min_rows`` rows.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"series file {path} does not exist")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); a series must be a CSV "
            "file: re-save it as UTF-8 CSV"
        ) from None
    return _parse_csv(text, str(path), date_column, value_columns, min_rows)


def _parse_csv(
    text: str, source: str, date_column: str | None, value_columns: Sequence[str] | None, min_rows: int
) -> Series:
    rows = [(i, row) for i, row in _csv_rows(text, source) if any(c.strip() for c in row)]
    if not rows:
        raise ValueError(f"{source}: the file is empty; a series needs a header and at least {min_rows} rows")
    first = [c.strip() for c in rows[0][1]]
    headerless = all(is_number(c) or parse_time(c) is not None for c in first)
    if headerless:
        n_time = sum(parse_time(c) is not None for c in first)
        n_val = len(first) - n_time
        names = iter(["value"] if n_val == 1 else [f"value{j + 1}" for j in range(n_val)])
        header = ["time" if parse_time(c) is not None else next(names) for c in first]
        body = rows
    else:
        header, body = first, rows[1:]
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise ValueError(f"{source}: the header names {dupes} more than once; give every column its own name")
    width = len(header)
    for line, row in body:
        if len(row) != width:
            raise ValueError(
                f"{source}: row {line} has {len(row)} cells but the header has {width}; "
                "fix or remove that row (every row needs one cell per column)"
            )
    cells = [[c.strip() for c in row] for _, row in body]
    lines = [line for line, _ in body]

    if date_column is not None:
        if date_column not in header:
            raise ValueError(f"{source}: no date column {date_column!r}; the columns are {header}")
        t_col: int | None = header.index(date_column)
    else:
        t_col = None
        for j, name in enumerate(header):
            col = [r[j] for r in cells[:20]]
            named = name.lower() in DATE_NAMES
            looks = bool(col) and all(parse_time(c) is not None for c in col)
            if named or looks:
                t_col = j
                break

    if value_columns is not None:
        value_columns = list(value_columns)
        if not value_columns:
            raise ValueError(f"{source}: value_columns is empty; name at least one of {header}")
        missing = [c for c in value_columns if c not in header]
        if missing:
            raise ValueError(f"{source}: no column {missing[0]!r}; the columns are {header}")
        if t_col is not None and header[t_col] in value_columns:
            raise ValueError(f"{source}: {header[t_col]!r} is the date column; it cannot also be a value column")
        v_cols = [header.index(c) for c in value_columns]
    else:
        # a first column with an empty name is the row index pandas' to_csv writes (aeon's Lynx, Uschange): the
        # row numbers or years it holds are not values of the series
        index_col = 0 if not headerless and width > 1 and header[0] == "" and t_col != 0 else None
        v_cols = [j for j in range(width) if j not in (t_col, index_col)]
        if not v_cols:
            raise ValueError(f"{source}: no value column besides the date column {header[t_col]!r}")

    values = np.empty((len(cells), len(v_cols)), dtype=np.float64)
    for i, row in enumerate(cells):
        for k, j in enumerate(v_cols):
            cell = row[j]
            where = f"{source}: row {lines[i]}, column {header[j]!r}"
            if not cell:
                raise ValueError(f"{where}: the value is missing; fill it in or drop the row")
            try:
                x = float(cell)
            except ValueError:
                hint = "choose the numeric columns with --value-columns" if value_columns is None else "fix the cell"
                raise ValueError(f"{where}: {cell!r} is not a number; {hint}") from None
            if not math.isfinite(x):
                raise ValueError(f"{where}: {cell!r} is not a finite number; fill in a real value or drop the row")
            values[i, k] = x
    if len(values) < min_rows:
        raise ValueError(f"{source}: {len(values)} rows of values, but at least {min_rows} are needed")

    times = season = None
    if t_col is not None:
        times = [row[t_col] for row in cells]
        parsed = [parse_time(t) for t in times]
        failed = [i for i, p in enumerate(parsed) if p is None]
        if failed and len(failed) < len(parsed):
            # some dates parse and some do not: the column is meant as dates, one bad row must not drop it all
            i = failed[0]
            raise ValueError(
                f"{source}: row {lines[i]}, column {header[t_col]!r}: {times[i]!r} is not a date or time "
                "(ISO 8601 such as 2024-01-31 or 2024-01-31T12:00, YYYY-MM, YYYY/MM/DD, DD.MM.YYYY, 1991 Jul, "
                "1970 Q1); fix that row"
            )
        if not failed:
            order = _time_order(parsed, lines, source, header[t_col])
            if order == "decreasing":
                values, times, parsed = values[::-1].copy(), times[::-1], parsed[::-1]
            season = season_from_times(parsed)
    return Series(values, [header[j] for j in v_cols], times, source, season)


CSV_FIELD_LIMIT = 64 * 2**20
"""The longest CSV cell rnnkit reads (64 MiB; the csv module's own default is 131,072 characters)."""


def _csv_rows(text: str, source: str = "the CSV") -> list[tuple[int, list[str]]]:
    """The rows of ``text`` with their line numbers: any line ends (``\\n``, ``\\r\\n``, ``\\r`` alone: universal
    newlines), cells up to :data:`CSV_FIELD_LIMIT`; a malformed file is a ``ValueError`` naming the line."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    reader = csv.reader(io.StringIO(text, newline=""))
    out = []
    try:
        for row in reader:
            out.append((reader.line_num, row))
    except csv.Error as e:
        raise ValueError(f"{source}: malformed CSV near line {reader.line_num} ({e}); check its quotes") from None
    return out


def _time_order(parsed: list[Any], lines: list[int], source: str, name: str) -> str:
    """ "increasing" (non-decreasing), "decreasing" (strictly, newest first), else a ValueError naming the row."""
    try:
        steps = [(b - a).total_seconds() for a, b in itertools.pairwise(parsed)]
    except TypeError:  # time stamps with and without time zones
        raise ValueError(f"{source}: column {name!r} mixes time stamps with and without a time zone") from None
    if 0 in steps:
        dup = steps.index(0) + 1
        raise ValueError(
            f"{source}: row {lines[dup]}: time {parsed[dup]} repeats the previous row's; every row needs its own time "
            f"in {name!r} (drop or merge the duplicate)"
        )
    if all(s >= 0 for s in steps):
        return "increasing"
    if all(s < 0 for s in steps):
        return "decreasing"
    bad = next(i for i, s in enumerate(steps) if s < 0) + 1
    raise ValueError(
        f"{source}: row {lines[bad]}: time {parsed[bad]} comes before the previous row's {parsed[bad - 1]}; "
        f"sort the file by {name!r}"
    )


# ---------------------------------------------------------------------------------------------------------- packaged
def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"this series ships with the {name} package, which is not installed: pip install {name}")
    return Path(next(iter(spec.submodule_search_locations)))


def _embedded(name: str, value_columns: Sequence[str] | None) -> Series:
    if name == "embedded:msft":
        archive = _package_dir("pmdarima") / "datasets" / "data" / "msft.tar.gz"
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("msft.csv")
            if member is None:
                raise ValueError(f"{archive} holds no msft.csv")
            text = member.read().decode("utf-8")
        # OpenInt is 0 throughout; Close is the series people forecast
        series = _parse_csv(text, name, "Date", list(value_columns) if value_columns else ["Close"], 2)
        series.source = f"{name} (pmdarima msft.csv, daily prices)"
        return series
    if name == "embedded:sunspots":
        path = _package_dir("pmdarima") / "datasets" / "data" / "sunspots.txt.gz"
        with gzip.open(path, "rt", encoding="utf-8") as f:
            values = np.array([float(x) for line in f for x in line.split()])
        times = [f"{1749 + i // 12}-{i % 12 + 1:02d}" for i in range(len(values))]
        series = Series(values, ["sunspots"], times, f"{name} (pmdarima, monthly 1749-1983)", 12)
    elif name == "embedded:ppg":
        path = _package_dir("heartpy") / "data" / "data.csv"
        with path.open(encoding="utf-8") as f:
            values = np.array([float(line) for line in f if line.strip()])
        series = Series(values, ["ppg"], None, f"{name} (HeartPy data.csv, PPG sampled at 100 Hz)", None)
    else:
        raise ValueError(f"unknown embedded series {name!r}; choose one of: {', '.join(EMBEDDED_SERIES)}")
    if value_columns:
        series = series.select(value_columns)
    return series


def load_series(
    name_or_path: str | os.PathLike[str],
    date_column: str | None = None,
    value_columns: Sequence[str] | None = None,
    min_rows: int = 2,
) -> Series:
    """A packaged series (``embedded:msft``, ``embedded:sunspots``, ``embedded:ppg``) or a CSV file.

    ``value_columns`` picks channels (for ``embedded:msft`` any of Open, High, Low, Close, Volume; default
    Close); ``date_column`` applies to CSV files. See :func:`read_series_csv` for the errors.
    """
    name = str(name_or_path)
    if name.startswith("embedded:"):
        series = _embedded(name, value_columns)
        if len(series) < min_rows:
            raise ValueError(f"{name}: {len(series)} rows, but at least {min_rows} are needed")
        return series
    return read_series_csv(name_or_path, date_column=date_column, value_columns=value_columns, min_rows=min_rows)


# ---------------------------------------------------------------------------------------------------------- split
@dataclass(frozen=True)
class SeriesSplit:
    """Chronological boundaries: train ``[0, train_end)``, validation ``[train_end, val_end)``, test
    ``[val_end, n)``."""

    n: int
    train_end: int
    val_end: int

    def to_dict(self) -> dict[str, int]:
        return {"n": self.n, "train_end": self.train_end, "val_end": self.val_end}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeriesSplit:
        return cls(int(data["n"]), int(data["train_end"]), int(data["val_end"]))


def chronological_split(n: int, val: float = 0.15, test: float = 0.15) -> SeriesSplit:
    """Cut ``n`` steps in time order (no shuffling): the last ``test`` fraction is the test part, the ``val``
    fraction before it validation, the rest training. Each part gets at least one step."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val={val} and test={test} must be fractions in [0, 1) whose sum is below 1")
    n_test = max(1, round(n * test)) if test > 0 else 0
    n_val = max(1, round(n * val)) if val > 0 else 0
    if n - n_val - n_test < 1:
        raise ValueError(f"a series of {n} steps is too short to split into train/validation/test")
    return SeriesSplit(n, n - n_val - n_test, n - n_test)


# ---------------------------------------------------------------------------------------------------------- scaler
@dataclass
class Scaler:
    """Per-channel standardization ``z = (x − mean) / std``, fitted on the training part only.

    A channel that is constant in the training part gets ``std = 1`` (it is only centred).
    """

    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)

    @classmethod
    def fit(cls, values: np.ndarray) -> Scaler:
        """Mean and (population) standard deviation of each column of ``values`` ``(N, F)``."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] == 0:
            raise ValueError(f"fit the scaler on values of shape (N, F) with N ≥ 1, got {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError("the scaler takes finite values only (NaN or inf found)")
        with np.errstate(over="ignore", invalid="ignore"):
            mean = values.mean(axis=0)  # (F,)
            std = values.std(axis=0)  # (F,)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            # sums of values near 1e308 overflow: the statistics of values / max|value|, scaled back (float64)
            peak = np.abs(values).max(axis=0)  # (F,), finite
            peak = np.where(peak > 0, peak, 1.0)
            mean, std = (values / peak).mean(axis=0) * peak, (values / peak).std(axis=0) * peak
        # a constant column is only centred: its computed std is rounding noise (0.1 repeated gives 1.4e-17)
        varies = values.max(axis=0) > values.min(axis=0)  # np.ptp's test, without its overflow near 1e308
        return cls(mean, np.where(varies, std, 1.0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        """``(…, F)`` values → standardized ``(…, F)``, in float64; ``ValueError`` naming the first channel whose
        standardized values are not finite (``x − mean`` overflows for values near ±1.8e308)."""
        with np.errstate(over="ignore", invalid="ignore"):
            z = (np.asarray(values, dtype=np.float64) - self.mean) / self.std
        if not np.isfinite(z).all():
            bad = np.nonzero(~np.isfinite(z).reshape(-1, z.shape[-1]).all(axis=0))[0]
            c = int(bad[0]) if len(bad) else 0
            raise ValueError(
                f"column {c} is not finite after standardization in float64 (mean {self.mean[c]:.3g}, "
                f"std {self.std[c]:.3g}: its values are too large); rescale it, e.g. divide by 1e300"
            )
        return z

    def inverse(self, z: np.ndarray, column: int | None = None) -> np.ndarray:
        """Standardized values back to original units: all ``F`` channels (last axis), or one ``column`` (any
        shape, every value of that channel)."""
        z = np.asarray(z, dtype=np.float64)
        if column is None:
            return z * self.std + self.mean
        return z * self.std[column] + self.mean[column]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(x) for x in self.mean], "std": [float(x) for x in self.std]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        mean = np.asarray(data["mean"], dtype=np.float64)
        std = np.asarray(data["std"], dtype=np.float64)
        if mean.shape != std.shape or mean.ndim != 1 or not (std > 0).all():
            raise ValueError("a saved scaler needs equal-length 'mean' and positive 'std' lists")
        return cls(mean, std)


# ---------------------------------------------------------------------------------------------------------- windows
@dataclass
class Windows:
    """Forecasting samples cut from one series.

    Attributes:
        inputs: ``(M, C, F)`` the context of each window.
        targets: ``(M, K)`` the next ``K`` values of the target column.
        origins: ``(M,)`` index of each window's last context step ``t`` (targets are ``t+1 … t+K``).
    """

    inputs: np.ndarray
    targets: np.ndarray
    origins: np.ndarray

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def make_windows(
    values: np.ndarray, target: int, context: int, horizon: int, start: int = 0, stop: int | None = None
) -> Windows:
    """Every window whose ``horizon`` targets lie in ``[start, stop)`` and whose ``context`` lies in the series.

    Window ``t`` reads ``values[t−C+1 … t]`` and predicts ``values[t+1 … t+K, target]``; ``t`` runs from
    ``max(C−1, start−1)`` to ``stop−1−K``. The context may start before ``start`` (earlier parts are the known
    past), never after ``t``: nothing at or past ``t+1`` enters a window's inputs.

    Args:
        values: ``(N, F)`` (standardized) series.
        target: the column to predict.
        context: ``C ≥ 1``.
        horizon: ``K ≥ 1``.
        start, stop: the part whose values may be targets (default: the whole series).
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must have shape (N, F), got {values.shape}")
    n, f = values.shape
    if context < 1 or horizon < 1:
        raise ValueError(f"context and horizon must be ≥ 1, got context={context}, horizon={horizon}")
    if not 0 <= target < f:
        raise ValueError(f"target column {target} is out of range for {f} columns")
    stop = n if stop is None else stop
    if not 0 <= start <= stop <= n:
        raise ValueError(f"start={start} and stop={stop} must satisfy 0 ≤ start ≤ stop ≤ {n} (the series' length)")
    first, last = max(context - 1, start - 1), stop - 1 - horizon
    origins = np.arange(first, last + 1, dtype=np.int64)  # (M,)
    if len(origins) == 0:
        return Windows(np.zeros((0, context, f)), np.zeros((0, horizon)), origins)
    view = np.lib.stride_tricks.sliding_window_view(values, context, axis=0)  # (N−C+1, F, C)
    inputs = view[origins - context + 1].transpose(0, 2, 1)  # (M, C, F)
    steps = origins[:, None] + np.arange(1, horizon + 1)  # (M, K)
    return Windows(np.ascontiguousarray(inputs), values[steps, target], origins)
