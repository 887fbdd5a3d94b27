"""The names section of benchmarks/leaderboard.py (issue 16): the scikit-learn character n-gram peer is scored on
rnnkit's own split, and the table shows it (made-up numbers for the table: they claim nothing about either)."""

from __future__ import annotations

from pathlib import Path

import pytest

from script_helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("sklearn")


lb = load_benchmark("leaderboard")


def test_the_ngram_peer_learns_on_rnnkits_split_and_beats_the_majority_class() -> None:
    from rnnkit.runs import RunOptions
    from rnnkit.runs.text import prepare_split

    peer = lb.char_ngram_svm("gender", [3])
    (run,) = peer["runs"]
    assert run["seed"] == 3 and run["C"] in lb.NGRAM_C
    split = prepare_split(RunOptions(task="classify", data="embedded:gender", seed=3))
    majority = max(split.test.labels.count(c) for c in set(split.test.labels)) / len(split.test.labels)
    assert run["test_accuracy"] > majority + 0.1  # a character n-gram model learns the names' gender
    assert peer["test_accuracy"]["mean"] == run["test_accuracy"] and peer["test_accuracy"]["n"] == 1


def _row(ngram: dict | None) -> dict:
    entry = {"test_accuracy": lb.mean_spread([0.5, 0.7]), "wall_s": lb.mean_spread([10.0, 12.0])}
    row = {
        "data": "embedded:x", "task": "classify", "metric": "test_accuracy", "n_train": 8, "n_test": 2,
        "rnnkit": entry, "window": {"na": "not run with --quick"}, "baseline": lb.mean_spread([0.25]),
        "winner": "rnnkit",
    }  # fmt: skip
    if ngram is not None:
        row["ngram"] = ngram
    return row


def test_the_table_has_the_peers_column_and_reads_older_results() -> None:
    peer = {"test_accuracy": lb.mean_spread([0.8, 0.9]), "wall_s": lb.mean_spread([1.0, 3.0])}
    table = lb.names_table([_row(peer), _row(None)])
    header, _, with_peer, without = table.splitlines()[:4]
    assert "char 1–5-gram TF-IDF + linear SVM (sklearn)" in header
    assert lb.fmt(peer["test_accuracy"]) in with_peer and with_peer.split("|")[-2].strip() == "11.0 s / – / 2.00 s"
    assert "n/a (not run)" in without
