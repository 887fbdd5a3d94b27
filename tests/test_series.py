"""Tests of rnnkit.data.series: CSV reading and its errors, the packaged series, the chronological split, the
training-part scaler and the windowing, each against a hand computation or an independent reader."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import tarfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from rnnkit.data.series import (
    Scaler,
    Series,
    chronological_split,
    load_series,
    make_windows,
    parse_time,
    read_series_csv,
    season_from_times,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return None if spec is None else Path(next(iter(spec.submodule_search_locations)))


# ---------------------------------------------------------------------------------------------------------- CSV
def test_date_column_detected_by_content_and_values_read(tmp_path: Path) -> None:
    rows = ["when,x,y"] + [f"2020-01-{d:02d},{d * 1.5},{-d}" for d in range(1, 11)]
    s = read_series_csv(write(tmp_path / "a.csv", "\n".join(rows) + "\n"))
    assert s.columns == ["x", "y"]
    assert s.times == [f"2020-01-{d:02d}" for d in range(1, 11)]
    np.testing.assert_array_equal(s.values, [[d * 1.5, -d] for d in range(1, 11)])
    assert s.values.dtype == np.float64
    assert s.season == 7  # daily, weekends included


def test_date_column_detected_by_name_and_explicit_choices(tmp_path: Path) -> None:
    # a numeric "year" column is a date column by its name; value_columns picks and orders the channels
    text = "year,a,b,c\n" + "".join(f"{1900 + i},{i},{2 * i},{3 * i}\n" for i in range(6))
    path = write(tmp_path / "y.csv", text)
    s = read_series_csv(path, value_columns=["c", "a"])
    assert s.columns == ["c", "a"]
    assert s.times == [str(1900 + i) for i in range(6)]
    np.testing.assert_array_equal(s.values, [[3 * i, i] for i in range(6)])
    # naming the date column explicitly makes every other column a value column
    s2 = read_series_csv(path, date_column="a")
    assert s2.columns == ["year", "b", "c"]
    with pytest.raises(ValueError, match=r"no column 'd'.*\['year', 'a', 'b', 'c'\]"):
        read_series_csv(path, value_columns=["d"])
    with pytest.raises(ValueError, match="no date column 'when'"):
        read_series_csv(path, date_column="when")
    with pytest.raises(ValueError, match="date column; it cannot also be a value column"):
        read_series_csv(path, value_columns=["year"])


def test_no_date_column_and_headerless_file(tmp_path: Path) -> None:
    s = read_series_csv(write(tmp_path / "v.csv", "u,v\n1,2\n3,4\n5,6\n"))
    assert s.times is None and s.season is None and s.columns == ["u", "v"]
    h = read_series_csv(write(tmp_path / "h.csv", "530\n518\n506\n\n"))  # trailing blank line ignored
    assert h.columns == ["value"]
    np.testing.assert_array_equal(h.values[:, 0], [530, 518, 506])
    h2 = read_series_csv(write(tmp_path / "h2.csv", "2021-03-01,1,2\n2021-04-01,3,4\n2021-05-01,5,6\n"))
    assert h2.columns == ["value1", "value2"] and h2.times[0] == "2021-03-01" and h2.season == 12


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("nan", r"row 4, column 'x': 'nan' is not a finite number"),
        ("inf", r"row 4, column 'x': 'inf' is not a finite number"),
        ("-Infinity", r"row 4, column 'x': '-Infinity' is not a finite number"),
        ("", r"row 4, column 'x': the value is missing"),
        ("abc", r"row 4, column 'x': 'abc' is not a number; choose the numeric columns with --value-columns"),
    ],
)
def test_bad_cells_are_refused_naming_row_and_column(tmp_path: Path, cell: str, message: str) -> None:
    path = write(tmp_path / "bad.csv", f"date,x\n2020-01-01,1\n2020-01-02,2\n2020-01-03,{cell}\n2020-01-04,4\n")
    with pytest.raises(ValueError, match=message):
        read_series_csv(path)


def test_ragged_rows_short_files_and_order(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="row 3 has 2 cells but the header has 3"):
        read_series_csv(write(tmp_path / "r.csv", "t,a,b\n1,2,3\n4,5\n"))
    with pytest.raises(ValueError, match="row 2 has 4 cells but the header has 3"):
        read_series_csv(write(tmp_path / "r2.csv", "t,a,b\n1,2,3,4\n"))
    with pytest.raises(ValueError, match="the file is empty"):
        read_series_csv(write(tmp_path / "e.csv", "\n\n"))
    with pytest.raises(ValueError, match="1 rows of values, but at least 2 are needed"):
        read_series_csv(write(tmp_path / "s.csv", "a\n1\n"))
    with pytest.raises(ValueError, match="3 rows of values, but at least 10 are needed"):
        read_series_csv(write(tmp_path / "s3.csv", "a\n1\n2\n3\n"), min_rows=10)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_series_csv(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="names \\['a'\\] more than once"):
        read_series_csv(write(tmp_path / "d.csv", "a,a\n1,2\n3,4\n"))
    # newest first: reversed into time order
    s = read_series_csv(write(tmp_path / "rev.csv", "date,p\n2020-01-03,3\n2020-01-02,2\n2020-01-01,1\n"))
    assert s.times == ["2020-01-01", "2020-01-02", "2020-01-03"]
    np.testing.assert_array_equal(s.values[:, 0], [1, 2, 3])
    with pytest.raises(ValueError, match=r"row 4: time .* comes before the previous row's .*sort the file by 'date'"):
        read_series_csv(write(tmp_path / "o.csv", "date,p\n2020-01-01,1\n2020-01-03,3\n2020-01-02,2\n"))


def test_parse_time_and_season_from_times() -> None:
    assert parse_time("1749-01") == datetime(1749, 1, 1)
    assert parse_time("2016-11-24 13:58:58.081000") == datetime(2016, 11, 24, 13, 58, 58, 81000)
    assert parse_time("12.5") is None and parse_time("abc") is None

    def every(delta: timedelta, n: int = 30, start: datetime = datetime(2021, 1, 4)) -> list[datetime]:
        return [start + i * delta for i in range(n)]

    assert season_from_times(every(timedelta(hours=1))) == 24
    assert season_from_times(every(timedelta(days=1))) == 7
    weekdays = [t for t in every(timedelta(days=1), 60) if t.weekday() < 5]
    assert season_from_times(weekdays) == 5  # trading days
    assert season_from_times(every(timedelta(weeks=1))) == 52
    assert season_from_times([datetime(2000 + i // 12, i % 12 + 1, 1) for i in range(30)]) == 12
    assert season_from_times([datetime(2000 + i // 4, 3 * (i % 4) + 1, 1) for i in range(12)]) == 4
    assert season_from_times(every(timedelta(days=365))) is None
    assert season_from_times(every(timedelta(seconds=0.01))) is None


def test_series_checks_its_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        Series(np.array([1.0, np.nan]), ["a"])
    with pytest.raises(ValueError, match="2 column names for 1 value columns"):
        Series(np.zeros((3, 1)), ["a", "b"])
    s = Series(np.arange(4.0), ["a"])
    assert s.values.shape == (4, 1)
    with pytest.raises(ValueError, match=r"no column 'b'.*\['a'\]"):
        s.column_index("b")


# ---------------------------------------------------------------------------------------------------------- packaged
@pytest.mark.skipif(package_dir("pmdarima") is None, reason="pmdarima is not installed")
def test_embedded_sunspots_and_msft_match_an_independent_read() -> None:
    data = package_dir("pmdarima") / "datasets" / "data"
    s = load_series("embedded:sunspots")
    with gzip.open(data / "sunspots.txt.gz", "rt") as f:
        ref = np.loadtxt(f).ravel()
    assert len(s) == 2820 and s.columns == ["sunspots"] and s.season == 12
    np.testing.assert_array_equal(s.values[:, 0], ref)
    assert (s.values == 0).any()  # why MAPE is not offered
    assert s.times[0] == "1749-01" and s.times[-1] == "1983-12"

    m = load_series("embedded:msft", value_columns=["Open", "Close"])
    with tarfile.open(data / "msft.tar.gz") as tar:
        rows = list(csv.DictReader(io.TextIOWrapper(tar.extractfile("msft.csv"), encoding="utf-8")))
    assert len(m) == len(rows) > 7000
    np.testing.assert_array_equal(m.values, [[float(r["Open"]), float(r["Close"])] for r in rows])
    assert m.times[0] == rows[0]["Date"] and m.season == 5  # trading days
    assert load_series("embedded:msft").columns == ["Close"]


@pytest.mark.skipif(package_dir("heartpy") is None, reason="heartpy is not installed")
def test_embedded_ppg_matches_an_independent_read() -> None:
    s = load_series("embedded:ppg")
    ref = np.loadtxt(package_dir("heartpy") / "data" / "data.csv")
    assert s.columns == ["ppg"] and len(s) == len(ref) == 2483  # ≈25 s at 100 Hz
    np.testing.assert_array_equal(s.values[:, 0], ref)


def test_unknown_embedded_name() -> None:
    with pytest.raises(ValueError, match="unknown embedded series 'embedded:ecg'; choose one of"):
        load_series("embedded:ecg")


# ---------------------------------------------------------------------------------------------------------- split
def test_chronological_split_is_in_order_and_covers_the_series() -> None:
    sp = chronological_split(100, val=0.15, test=0.15)
    assert (sp.train_end, sp.val_end, sp.n) == (70, 85, 100)
    assert chronological_split(10, 0.1, 0.1).to_dict() == {"n": 10, "train_end": 8, "val_end": 9}
    assert type(sp).from_dict(sp.to_dict()) == sp
    small = chronological_split(3, 0.01, 0.01)  # every part keeps at least one step
    assert (small.train_end, small.val_end) == (1, 2)
    with pytest.raises(ValueError, match="too short"):
        chronological_split(2, 0.3, 0.3)
    with pytest.raises(ValueError, match="fractions"):
        chronological_split(100, 0.5, 0.5)


# ---------------------------------------------------------------------------------------------------------- scaler
def test_scaler_fits_the_training_part_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)) * [1.0, 10.0, 0.0] + [0.0, 5.0, 7.0]  # third channel constant
    sp = chronological_split(len(x))
    sc = Scaler.fit(x[: sp.train_end])
    train = x[: sp.train_end]
    np.testing.assert_allclose(sc.mean, [train[:, j].mean() for j in range(3)], rtol=1e-12)
    np.testing.assert_allclose(sc.std[:2], [np.sqrt(((train[:, j] - train[:, j].mean()) ** 2).mean()) for j in (0, 1)])
    assert sc.std[2] == 1.0  # constant: only centred
    z = sc.transform(x)
    np.testing.assert_allclose(z[: sp.train_end, :2].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z[: sp.train_end, :2].std(0), 1, rtol=1e-12)
    np.testing.assert_allclose(sc.inverse(z), x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sc.inverse(z[:, 1], column=1), x[:, 1], rtol=1e-12)
    back = Scaler.from_dict(sc.to_dict())
    np.testing.assert_array_equal(back.mean, sc.mean)
    np.testing.assert_array_equal(back.std, sc.std)
    # the future does not move the statistics
    y = x.copy()
    y[sp.train_end :] = rng.normal(size=y[sp.train_end :].shape) * 1e3
    same = Scaler.fit(y[: sp.train_end])
    np.testing.assert_array_equal(same.mean, sc.mean)
    np.testing.assert_array_equal(same.std, sc.std)
    with pytest.raises(ValueError, match="positive 'std'"):
        Scaler.from_dict({"mean": [0.0], "std": [0.0]})


# ---------------------------------------------------------------------------------------------------------- windows
@pytest.mark.parametrize(("context", "horizon", "start", "stop"), [(3, 2, 0, None), (4, 1, 10, 20), (1, 3, 5, 30)])
def test_windows_match_a_hand_loop(context: int, horizon: int, start: int, stop: int | None) -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(30, 2))
    w = make_windows(values, 1, context, horizon, start, stop)
    stop_ = len(values) if stop is None else stop
    ref_in, ref_out, ref_t = [], [], []
    for t in range(len(values)):
        targets = list(range(t + 1, t + 1 + horizon))
        if t - context + 1 >= 0 and all(start <= i < stop_ for i in targets):
            ref_in.append(values[t - context + 1 : t + 1])
            ref_out.append(values[targets, 1])
            ref_t.append(t)
    np.testing.assert_array_equal(w.origins, ref_t)
    np.testing.assert_array_equal(w.inputs, np.array(ref_in))
    np.testing.assert_array_equal(w.targets, np.array(ref_out))
    assert w.inputs.shape == (len(ref_t), context, 2) and w.targets.shape == (len(ref_t), horizon)


def test_windows_never_read_past_their_origin() -> None:
    values = np.arange(40.0).reshape(20, 2)
    w = make_windows(values, 0, 5, 3)
    for t, x in zip(w.origins, w.inputs, strict=True):
        assert x.max() <= values[t].max()  # increasing series: a later value would be larger
    empty = make_windows(values, 0, 19, 3)
    assert len(empty) == 0 and empty.inputs.shape == (0, 19, 2)
    with pytest.raises(ValueError, match="target column 2 is out of range"):
        make_windows(values, 2, 3, 1)
    with pytest.raises(ValueError, match="context and horizon must be ≥ 1"):
        make_windows(values, 0, 0, 1)


def test_a_non_utf8_series_file_is_named_in_one_line(tmp_path: Path) -> None:
    from rnnkit.data.series import read_series_csv

    path = tmp_path / "latin1.csv"
    path.write_bytes("date,value\n2020-01-01,1\n2020-01-02,2\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv is not UTF-8 text \(byte 0xe9"):
        read_series_csv(path)


def test_a_constant_column_is_only_centred_even_when_its_std_rounds_above_zero() -> None:
    from rnnkit.data.series import Scaler

    values = np.column_stack([np.full(7, 0.1), np.arange(7.0)])  # 0.1 repeated: np.std gives 1.4e-17, not 0
    scaler = Scaler.fit(values)
    assert scaler.std[0] == 1.0 and scaler.mean[0] == pytest.approx(0.1)
    assert np.allclose(scaler.transform(values)[:, 0], 0.0)
    assert scaler.transform(np.array([[1.1, 0.0]]))[0, 0] == pytest.approx(1.0)  # a later change stays its size


def test_make_windows_refuses_bounds_outside_the_series() -> None:
    from rnnkit.data.series import make_windows

    values = np.arange(20.0).reshape(-1, 1)
    for start, stop in ((0, 21), (-1, 10), (12, 8)):
        with pytest.raises(ValueError, match="must satisfy 0 ≤ start ≤ stop ≤ 20"):
            make_windows(values, 0, 4, 2, start=start, stop=stop)
