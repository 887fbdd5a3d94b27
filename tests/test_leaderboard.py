"""benchmarks/leaderboard.py (issue 16, part 1): the held-out rule, set discovery, the number formatting, and one
``--quick`` classification run when aeon is installed.

The formatting tests use made-up numbers: they check the helpers, they claim nothing about rnnkit or its peers.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from script_helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


lb = load_benchmark("leaderboard")
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


def test_columns_with_options_and_the_goal_lines() -> None:
    assert lb.model_args(None) == []
    assert lb.model_args("lstm-fcn") == ["--model", "lstm-fcn"]
    assert lb.model_args("lstm-fcn --series-norm both") == ["--model", "lstm-fcn", "--series-norm", "both"]
    assert lb.model_args("default --lr 1e-3") == ["--lr", "1e-3"]

    def entry(accs: list[float]) -> dict:
        return {"test_accuracy": lb.mean_spread(accs)}

    rows = [
        {"set": "A", "rnnkit": entry([0.9, 0.8]), "minirocket": entry([0.8]), "dtw": entry([0.9])},  # 0.85 < DTW
        {"set": "B", "rnnkit": entry([1.0]), "minirocket": {"na": "unequal"}, "dtw": entry([0.5])},
        {"set": "C", "rnnkit": entry([0.7]), "minirocket": entry([0.6]), "dtw": entry([0.7])},
    ]
    line = lb.classify_goals(rows, ["rnnkit"])
    # MiniRocket scores A and C: ours (0.85 + 0.7) / 2 = 0.775 ≥ (0.8 + 0.6) / 2 = 0.7; below DTW on A only
    assert "mean accuracy 0.775 against MiniRocket's 0.700 over the 2 sets MiniRocket scores: met" in line
    assert "below 1-NN DTW on A (0.850 < 0.900): not met" in line

    def frow(name: str, ours: float, naive: float, snaive: float, arima: float | None) -> dict:
        return {
            "set": name,
            "rnnkit": {"test_mase": lb.mean_spread([ours])},
            "baselines": {"naive_mase": naive, "seasonal_naive_mase": snaive},
            "arima": {} if arima is None else {"mase": arima},
        }

    goals = lb.forecast_goals(
        [frow("x", 1.0, 1.0, 1.2, 1.1), frow("y", 2.0, 1.5, 2.5, None), frow("z", 0.9, 1.0, 1.0, 0.8)]
    )
    # x ties the best peer, y beats seasonal-naive (no ARIMA) though it is 1.33× naive, z loses to ARIMA
    assert "on 2 of 3 series (x, y): met" in goals
    assert "more than 5 % worse than naive on y (1.33× naive): not met" in goals
    flat = lb.forecast_goals([frow("p", 0.01, 0.0, 0.04, 0.0)])  # a constant test part: naive is perfect
    assert "more than 5 % worse than naive on p (0.01 > 0): not met" in flat


def test_peers_are_read_back_only_for_the_same_seeds_and_aeon(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    path.write_text(json.dumps({"aeon": "1.6.0", "seeds": [0, 1], "minirocket": {"x": 1}, "dtw": {"y": 2}}))
    assert lb._read_peers(path, [0, 1], "1.6.0") == {"minirocket": {"x": 1}, "dtw": {"y": 2}}
    assert lb._read_peers(path, [0, 1, 2], "1.6.0") is None
    assert lb._read_peers(path, [0, 1], "1.7.0") is None
    assert lb._read_peers(tmp_path / "none.json", [0], "1.6.0") is None


def test_sweep_table_reads_run_folders(tmp_path: Path) -> None:
    for col, accs in (("rnnkit", [0.5, 0.7]), ("rnnkit-lstm-fcn", [0.9])):
        for seed, acc in enumerate(accs):
            folder = tmp_path / "classify" / "UnitTest" / col / f"seed{seed}"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps({"test_accuracy": acc}))
    table = lb.sweep_table([tmp_path])
    assert "| set | rnnkit | rnnkit-lstm-fcn | MiniRocket | 1-NN DTW |" in table
    assert "| UnitTest | 0.600 ± 0.141 (n=2) | 0.900 (n=1) | n/a (not run) | n/a (not run) |" in table
    (tmp_path / "classify" / "GunPoint").mkdir()
    with pytest.raises(AssertionError):
        lb.sweep_table([tmp_path])


def test_merge_renders_the_parts_of_a_board(tmp_path: Path) -> None:
    def part(command: str, rows: list) -> Path:
        result = {
            "started": "2026-01-01T00:00:00+00:00",
            "command": command,
            "quick": False,
            "seeds": [0],
            "wall_s": 1.0,
            "machine": {"cores": 2, "processor": "x", "versions": {"torch": "t", "aeon": "a", "pmdarima": "p"}},
            "load_start": {"load_1m": 1.0, "running": "1/2"},
            "load_end": {"load_1m": 2.0, "running": "1/2"},
            "sections": {"classify": rows},
        }
        path = tmp_path / f"{command}.json"
        path.write_text(json.dumps(result))
        return path

    def row(name: str, acc: float) -> dict:
        entry = {"test_accuracy": lb.mean_spread([acc]), "wall_s": lb.mean_spread([1.0])}
        return {"set": name, "n_train": 2, "n_test": 2, "length": 5, "channels": 1, "classes": 2,
                "models": ["rnnkit"], "rnnkit": entry, "minirocket": entry, "dtw": entry, "winner": "x"}  # fmt: skip

    table = lb.merge_results([part("one", [row("UnitTest", 0.5)]), part("two", [row("ACSF1", 0.7)])])
    assert table.index("| UnitTest |") < table.index("| ACSF1 |") and table.count("### Series classification") == 1
    assert "Part 1 (`one`): Measured" in table and "Part 2 (`two`): Measured" in table
    with pytest.raises(AssertionError):
        lb.merge_results([part("three", [row("GunPoint", 0.5)])])


def test_reuse_accepts_only_a_default_run_of_the_same_data_and_seed(tmp_path: Path) -> None:
    from rnnkit.runs.classify_series import DEFAULTS, VAL_FRACTION

    train = lb.aeon_data_dir() / "UnitTest" / "UnitTest_TRAIN.ts"  # real files: the epochs are checked on them
    test = train.with_name("UnitTest_TEST.ts")
    args = ["--task", "classify", "--data", str(train), "--test-data", str(test)]
    folder = tmp_path / "seed0"
    folder.mkdir()
    record = {k: v for k, v in DEFAULTS.items() if k not in ("series_norm", "val_fraction")}
    options = {"series_norm": "both", "val_fraction": VAL_FRACTION}
    record.update(data=str(train.resolve()), test_data=str(test.resolve()), seed=0, options=options)
    data = {"data": record["data"], "val_data": None, "test_data": record["test_data"], "seed": 0}
    data["val_fraction"] = VAL_FRACTION

    def write(options_record: dict, epochs: int = 200, members: int = 5, **extra: object) -> None:
        # UnitTest's 16 series: 200 epochs, and five members by the ensemble rule (board8)
        config = {"options": options_record, "data": data, "train": {"epochs": epochs}, **extra}
        config["model"] = {"ensemble": members} if members > 1 else {}
        (folder / "config.json").write_text(json.dumps(config))

    write(record)
    assert lb.reusable(folder, args, 0) is None  # no metrics.json: not finished
    (folder / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5, "train_seconds": 3.0}))
    assert lb.reusable(folder, args, 0) == {"test_accuracy": 0.5, "train_seconds": 3.0}
    assert lb.reusable(folder, args, 1) is None  # another seed
    assert lb.reusable(folder, [*args, "--model", "gru"], 0) is None  # a column with options: trained again
    for key, other in (("epochs", 60), ("model", "gru")):
        write({**record, key: other})
        assert lb.reusable(folder, args, 0) is None, key  # made with other defaults
    write({**record, "options": {"series_norm": "none"}})
    assert lb.reusable(folder, args, 0) is None
    write({**record, "options": {**options, "val_fraction": 0.0}})
    assert lb.reusable(folder, args, 0) is None  # another validation carve
    write({**record, "options": {"series_norm": "both"}})  # a folder from before --val-fraction: it carved 0.2
    assert lb.reusable(folder, args, 0) == {"test_accuracy": 0.5, "train_seconds": 3.0}
    write(record, epochs=6)
    assert lb.reusable(folder, args, 0) is None  # trained by an earlier step budget's schedule
    write(record, members=1)
    assert lb.reusable(folder, args, 0) is None  # one model: a default run from before the ensemble rule
    write(record, members=3)
    assert lb.reusable(folder, args, 0) is None  # another ensemble size than the rule gives
    # the factor the series were read at: UnitTest's 24 steps are read as they are (folders from before the key: 1)
    write(record, downsample=1)
    assert lb.reusable(folder, args, 0) == {"test_accuracy": 0.5, "train_seconds": 3.0}
    write(record, downsample=2)
    assert lb.reusable(folder, args, 0) is None  # read at another factor than today's default picks
    write({**record, "augment": 0.1})
    assert lb.reusable(folder, args, 0) is None  # trained on augmented batches
    write({k: v for k, v in record.items() if k != "dtw_steps"})
    assert lb.reusable(folder, args, 0) == {"test_accuracy": 0.5, "train_seconds": 3.0}  # before --dtw-steps: none
    write({**record, "dtw_steps": 128})
    assert lb.reusable(folder, args, 0) is None  # with a DTW member beside the ridge
    write(record)
    for extra in (["--threads", "1"], ["--threads=2"]):  # --train-args "--threads 1": reused
        assert lb.reusable(folder, args, 0, extra) is not None, extra
    for extra in (
        ["--dtw-steps", "128"],
        ["--test-data", "other.ts"],
        ["--threads"],
        ["--epochs", "1", "--threads", "1"],
    ):
        assert lb.reusable(folder, args, 0, extra) is None, extra  # other settings (or a second --test-data): retrained


def test_the_parts_cell_names_the_dtw_member_when_the_runs_have_one() -> None:
    stats = {"mean": 0.9, "std": 0.01}
    ridge_only = {"networks_accuracy": stats, "kernels_accuracy": stats, "kernels_weights": [0.5, 1.0]}
    assert lb._parts_cell(ridge_only) == f"{lb.fmt(stats)} / {lb.fmt(stats)} (0.5, 1)"
    with_dtw = {**ridge_only, "dtw_accuracy": {"mean": 0.7, "std": 0.0}, "dtw_weights": [0.25, 0.0]}
    assert (
        lb._parts_cell(with_dtw)
        == f"{lb.fmt(stats)} / {lb.fmt(stats)} / {lb.fmt(with_dtw['dtw_accuracy'])} (w 0.5, 1; v 0.25, 0)"
    )
    assert lb._parts_cell({}) == "–"
    assert "DTW member" in lb._parts_header("rnnkit", [{"rnnkit": with_dtw}])
    assert "DTW" not in lb._parts_header("rnnkit", [{"rnnkit": ridge_only}])
