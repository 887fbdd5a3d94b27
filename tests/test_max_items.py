"""``--max-items N`` for text classification and generation (issue 16, point 4): a seeded sample of N items of
--data is split and trained on; ``evaluate RUN`` rebuilds the same test part; without the flag nothing changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rnnkit.runs.kind  # noqa: F401  the built-in kinds
from rnnkit import cli
from rnnkit.data.datasets import LabeledItems
from rnnkit.runs.text import sample_items


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("names") / "names"
    root.mkdir()
    for cls, letters in {"Alpha": "aeiou", "Beta": "bcdfg"}.items():
        items = [f"{cls[0]}{letters[i % 5]}{letters[(i * 3) % 5]}{i}" for i in range(60)]
        (root / f"{cls}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    return root


def test_the_sample_is_seeded_and_keeps_the_order() -> None:
    items = LabeledItems(items=[f"x{i}" for i in range(20)], labels=["a", "b"] * 10, classes=["a", "b"])
    one, again = sample_items(items, 7, 3), sample_items(items, 7, 3)
    assert one.items == again.items and len(one) == 7
    assert [int(x[1:]) for x in one.items] == sorted(int(x[1:]) for x in one.items)
    assert sample_items(items, 7, 4).items != one.items
    assert sample_items(items, None, 3) is items and sample_items(items, 50, 3) is items


@pytest.mark.parametrize("task", ["classify", "generate"])
def test_max_items_trains_on_a_sample_and_evaluate_finds_its_test_part(
    capsys: pytest.CaptureFixture[str], data: Path, tmp_path: Path, task: str
) -> None:
    out = tmp_path / "run"
    args = ["train", "--task", task, "--data", str(data), "--max-items", "40", "--out", str(out)]
    assert cli.main([*args, "--hidden", "4", "--embed", "4", "--epochs", "1", "--batch-size", "8"]) == 0
    split = json.loads((out / "split.json").read_text())
    assert sum(len(split[p]) for p in ("train", "val", "test")) == 40
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["max_items"] == 40
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    key = "test_accuracy" if task == "classify" else "test_nll_per_char"
    assert evaluated[key] == metrics[key]


def test_without_the_flag_the_config_is_as_before(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--task", "classify", "--data", str(data), "--out", str(out), "--epochs", "1", "--hidden", "4"]
    assert cli.main(args) == 0
    assert "max_items" not in json.loads((out / "config.json").read_text())["data"]
