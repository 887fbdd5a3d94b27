"""benchmarks/leaderboard.py (issue 16, part 1): the held-out rule, set discovery, the number formatting, and one
``--quick`` classification run when aeon is installed.

The formatting tests use made-up numbers: they check the helpers, they claim nothing about rnnkit or its peers.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("leaderboard", ROOT / "benchmarks" / "leaderboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["leaderboard"] = module
    spec.loader.exec_module(module)
    return module


lb = _load()
has_aeon = importlib.util.find_spec("aeon") is not None
needs_aeon = pytest.mark.skipif(not has_aeon, reason="aeon is not installed (its wheel ships the .ts sets)")


@pytest.mark.parametrize(
    "name",
    ["GunPoint", "ItalyPowerDemand", "JapaneseVowels", "JapaneseVowels_eq", "GunPoint_TRAIN.ts", "x/GunPoint_TEST.ts"],
)
def test_held_out_sets_are_refused(name: str) -> None:
    with pytest.raises(AssertionError, match="held out"):
        lb.check_not_held_out(name)


def test_other_sets_pass_the_held_out_check() -> None:
    for name in ("ArrowHead", "UnitTest", "PickupGestureWiimoteZ", "Airline", "country"):
        lb.check_not_held_out(name)


@pytest.mark.parametrize("name", ["GunPoint", "JapaneseVowels"])
def test_command_line_refuses_held_out_sets(name: str, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="held out"):
        lb.main(["--quick", "--only", "classify", "--sets", "ArrowHead", name, "--out", str(tmp_path)])
    assert not (tmp_path / "leaderboard.json").exists()


def _fake_set(root: Path, name: str, header: str) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    for part in ("TRAIN", "TEST"):
        (root / name / f"{name}_{part}.ts").write_text(f"{header}\n@data\n1,2,3:a\n", encoding="utf-8")


def test_discovery_on_a_made_up_folder(tmp_path: Path) -> None:
    cls = "@problemName X\n@univariate true\n@classLabel true a b"
    _fake_set(tmp_path, "Alpha", cls)
    _fake_set(tmp_path, "GunPoint", cls)
    _fake_set(tmp_path, "Beta", cls.replace("@univariate true", "@equalLength false"))
    _fake_set(tmp_path, "Beta_eq", cls)  # an equal-length copy of a listed set
    _fake_set(tmp_path, "JapaneseVowels_eq", cls)
    _fake_set(tmp_path, "Reg", "@problemName R\n@targetlabel true")
    _fake_set(tmp_path, "Stamped", cls + "\n@timeStamps true")
    (tmp_path / "NoTest").mkdir()
    (tmp_path / "NoTest" / "NoTest_TRAIN.ts").write_text(cls + "\n@data\n1:a\n", encoding="utf-8")
    found = {s.name: s for s in lb.discover_classification_sets(tmp_path)}
    assert set(found) == {"Alpha", "Beta"}
    assert found["Alpha"].equal_length and not found["Beta"].equal_length


@needs_aeon
def test_discovery_finds_the_aeon_sets_and_not_the_held_out_ones() -> None:
    names = {s.name for s in lb.discover_classification_sets()}
    assert {"ACSF1", "ArrowHead", "BasicMotions", "OSULeaf", "PickupGestureWiimoteZ", "UnitTest"} <= names
    assert not names & {"GunPoint", "ItalyPowerDemand", "JapaneseVowels", "JapaneseVowels_eq"}
    assert not {n for n in names if n.endswith("_eq") or n in ("CardanoSentiment", "Covid3Month")}


def test_mean_spread_is_the_sample_std() -> None:
    s = lb.mean_spread([0.9, 0.8, 1.0])
    assert s["mean"] == pytest.approx(0.9)
    assert s["std"] == pytest.approx(0.1)  # sample (n−1) std of made-up numbers
    assert (s["min"], s["max"], s["n"]) == (0.8, 1.0, 3)
    one = lb.mean_spread([0.5])
    assert one["std"] is None and one["mean"] == 0.5
    assert lb.mean_spread([])["mean"] is None


def test_formatting_helpers() -> None:
    assert lb.fmt(lb.mean_spread([0.9, 0.8, 1.0])) == "0.900 ± 0.100"
    assert lb.fmt(lb.mean_spread([0.25])) == "0.250"
    assert lb.fmt(None) == "n/a"
    assert lb.fmt(lb.mean_spread([1.5, 2.5]), digits=2) == "2.00 ± 0.71"
    assert lb.winner({"a": 0.9, "b": 0.95, "c": None}) == "b"
    assert lb.winner({"a": 0.9, "b": 0.9}) == "a = b"
    assert lb.winner({"a": 1.2, "b": 0.7}, higher_is_better=False) == "b"
    assert lb.winner({"a": None}) == "–"
    table = lb.markdown_table(["set", "acc"], [["A", "0.900 ± 0.100"], ["B", "n/a (reason)"]])
    assert table.splitlines() == ["| set | acc |", "|---|---|", "| A | 0.900 ± 0.100 |", "| B | n/a (reason) |"]


def test_replace_between_markers() -> None:
    doc = f"# Method\n\ntext\n\n{lb.START}\nold table\n{lb.END}\n\nafter\n"
    new = lb.replace_between_markers(doc, "| a |\n|---|")
    assert new == f"# Method\n\ntext\n\n{lb.START}\n| a |\n|---|\n{lb.END}\n\nafter\n"
    assert lb.replace_between_markers(new, "x") == f"# Method\n\ntext\n\n{lb.START}\nx\n{lb.END}\n\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        lb.replace_between_markers("no markers here", "x")


def test_forecast_split_and_windows_follow_rnnkits_rule() -> None:
    # 36 values: 70/15/15 in time order → 26 / 5 / 5 steps; too short for C=64, K=12
    assert lb.chronological_split(36) == (26, 31)
    assert lb.short_series_settings(36) == (21, 5)
    assert lb.short_series_settings(144) is None
    origins = lb.forecast_origins(144, 64, 12)  # the test part starts at 122: origins 121 … 131
    assert origins[0] == 121 and origins[-1] == 131
    import numpy as np

    y = np.arange(30.0)
    assert lb.seasonal_naive(y, np.array([23]), 3, 12).tolist() == [[12.0, 13.0, 14.0]]
    assert lb.smape(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0


def test_docs_hold_the_markers() -> None:
    text = (ROOT / "docs" / "leaderboard.md").read_text(encoding="utf-8")
    assert text.index(lb.START) < text.index(lb.END)


@needs_aeon
def test_quick_classification_run(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"method\n{lb.START}\n{lb.END}\n", encoding="utf-8")
    lb.main(["--quick", "--only", "classify", "--out", str(tmp_path / "out"), "--markdown", str(doc)])
    result = json.loads((tmp_path / "out" / "leaderboard.json").read_text(encoding="utf-8"))
    (row,) = result["sections"]["classify"]
    assert row["set"] == "UnitTest"
    assert result["seeds"] == [0] and result["quick"] is True
    accuracies = [r["metrics"]["test_accuracy"] for r in row["rnnkit"]["runs"]]
    accuracies += row["minirocket"]["accuracies"] + row["dtw"]["accuracies"]
    assert len(accuracies) == 3
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    assert "UnitTest" in doc.read_text(encoding="utf-8")


def test_one_rnnkit_column_per_model() -> None:
    """``--model default lstm-fcn``: a column and a mean for each (made-up numbers, formatting only)."""
    assert lb.rnnkit_key(None) == "rnnkit" and lb.rnnkit_key("lstm-fcn") == "rnnkit:lstm-fcn"

    def entry(accs: list[float]) -> dict:
        return {"test_accuracy": lb.mean_spread(accs), "wall_s": lb.mean_spread([1.0])}

    row = {
        "set": "A",
        "n_train": 2,
        "n_test": 2,
        "length": 5,
        "channels": 1,
        "classes": 2,
        "models": ["rnnkit", "rnnkit:lstm-fcn"],
        "rnnkit": entry([0.5, 0.7]),
        "rnnkit:lstm-fcn": entry([0.9, 0.9]),
        "minirocket": entry([0.8]),
        "dtw": entry([0.6]),
        "winner": "rnnkit:lstm-fcn",
    }
    table = lb.classify_table([row])
    header, _, line = table.splitlines()[:3]
    assert "| rnnkit acc | rnnkit:lstm-fcn acc | MiniRocket acc |" in header
    assert "| 0.600 ± 0.141 | 0.900 ± 0.000 | 0.800 | 0.600 |" in line
    assert "rnnkit 0.600, rnnkit:lstm-fcn 0.900, MiniRocket 0.800, 1-NN DTW 0.600" in table
