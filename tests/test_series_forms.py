"""Series CSVs in the forms aeon ships (issue 16, point 4): month names ("1991 Jul") and quarters ("1970 Q1") are
dates, so the season is read from them; an unnamed first column (the index pandas writes) is not a value."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from rnnkit.data.series import parse_time, read_series_csv


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("1991 Jul", datetime(1991, 7, 1)),
        ("1991 July", datetime(1991, 7, 1)),
        ("Jul 1991", datetime(1991, 7, 1)),
        ("1970 Q1", datetime(1970, 1, 1)),
        ("1970Q3", datetime(1970, 7, 1)),
        ("1970-Q4", datetime(1970, 10, 1)),
    ],
)
def test_month_names_and_quarters_are_dates(text: str, when: datetime) -> None:
    assert parse_time(text) == when


@pytest.mark.parametrize("text", ["1970 Q5", "1991 Jux", "Q1", "1991"])
def test_near_misses_are_not(text: str) -> None:
    assert parse_time(text) is None


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_season_comes_from_month_names_and_quarters(tmp_path: Path) -> None:
    months = [f"{1991 + (6 + i) // 12} {m}" for i, m in enumerate(["Jul", "Aug", "Sep", "Oct", "Nov", "Dec"] * 4)]
    rows = "\n".join(f"{t},{i}" for i, t in enumerate(months[:6]))
    s = read_series_csv(_csv(tmp_path, "Month,Scripts\n" + rows + "\n"))
    assert s.season == 12 and s.columns == ["Scripts"] and s.times[0] == "1991 Jul"
    quarters = "\n".join(f"{i},{1970 + i // 4} Q{i % 4 + 1},{i * 0.5}" for i in range(8))
    s = read_series_csv(_csv(tmp_path, ",Quarter,Consumption\n" + quarters + "\n"))
    assert s.season == 4 and s.columns == ["Consumption"]  # the unnamed index column is not a value


def test_an_unnamed_first_column_is_the_index_not_a_value(tmp_path: Path) -> None:
    s = read_series_csv(_csv(tmp_path, ",0\n1821,269\n1822,321\n1823,585\n"))
    assert s.columns == ["0"] and s.values[:, 0].tolist() == [269.0, 321.0, 585.0]
    # a named first column is always a value
    s = read_series_csv(_csv(tmp_path, "a,b\n1,2\n3,4\n"))
    assert s.columns == ["a", "b"]
