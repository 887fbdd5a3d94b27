"""benchmarks/series_errors.py and benchmarks/dtw_speed.py: the rows they print, what they refuse, that they run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from script_helpers import load_benchmark

errors = load_benchmark("series_errors")


def test_a_row_names_the_missed_series_in_file_order() -> None:
    gold = np.array(["1", "2", "2", "1"])
    assert errors.row("m", 0, np.array(["1", "1", "2", "2"]), gold) == "| m | 0 | 0.500 | 1, 3 |"
    assert errors.row("m", "–", gold.copy(), gold) == "| m | – | 1.000 | – |"


@pytest.mark.parametrize("name", ["GunPoint", "ItalyPowerDemand", "JapaneseVowels"])
def test_the_held_out_sets_are_refused(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert errors.main([name]) == 2
    assert "held out" in capsys.readouterr().err


class Majority:
    """A stand-in peer: predicts the most common training label (no numba compile in the tests)."""

    def fit(self, X: object, y: np.ndarray) -> Majority:
        values, counts = np.unique(y, return_counts=True)
        self.label = values[counts.argmax()]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.label)


def test_every_peer_and_seed_gets_a_row(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from aeon.datasets import load_classification

    monkeypatch.setattr(errors, "peers", lambda seed: {"MiniRocket": Majority, "1-NN DTW": Majority})
    assert errors.main(["UnitTest", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    _, gold = load_classification("UnitTest", split="test")
    train_labels = load_classification("UnitTest", split="train")[1]
    majority = Majority().fit(None, train_labels).label
    missed = ", ".join(str(i) for i in np.flatnonzero(gold != majority))
    assert out.count("| MiniRocket |") == 2 and out.count("| 1-NN DTW |") == 1  # 1-NN is deterministic
    assert f"| {np.mean(gold == majority):.3f} | {missed} |" in out


def test_the_dtw_speed_benchmark_runs_and_its_paths_agree(capsys: pytest.CaptureFixture[str]) -> None:
    speed = load_benchmark("dtw_speed")  # main asserts that every path's matrix equals aeon's
    threads = torch.get_num_threads()
    try:
        assert speed.main(["--sizes", "6x9", "--repeat", "1", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "| 6 | 9 | aeon dtw_pairwise_distance |" in out and "| 6 | 9 | rnnkit scan (PyTorch) |" in out
