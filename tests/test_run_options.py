"""A run's options are saved whole in config.json and restored by one function (rnnkit.runs.options).

Runs written since format version 2 hold ``"options"``; folders of rnnkit 0.1.0 do not, and each kind keeps the
inverse of its saved config for them. Both paths do one job, so the tests train a tiny run of every kind and
assert that the saved options and the legacy inverse give the same options.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.runs import KINDS, load_kinds
from rnnkit.runs.options import OPTIONS_KEY, RunOptions, restore_run_options

FIXTURES = Path(__file__).parent / "fixtures" / "runs" / "v0.1.0"
DATA = FIXTURES / "data"

TINY = ["--epochs", "1", "--hidden", "8", "--seed", "3"]
RUNS = {
    "classify": ["--task", "classify", "--data", str(DATA / "names")],
    "generate": ["--task", "generate", "--data", str(DATA / "names")],
    "tag": ["--task", "tag", "--data", str(DATA / "tag.conll")],
    "seq2seq": ["--task", "seq2seq", "--data", "embedded:cmudict", "--max-items", "300"],
    "lm": ["--task", "lm", "--data", str(DATA / "lm.txt"), "--tbptt", "16,32"],
    "classify-series": ["--task", "classify", "--data", "embedded:basicmotions"],
    "forecast": ["--task", "forecast", "--data", "embedded:sunspots", "--horizon", "3"],
}
# A setting the legacy inverse restored differently because its kind does not read it: classify ignores
# --conditional. --window is W of the window model; unset (None) means 5, and the record writes it out only for
# runs of the window model, where the legacy inverse of the text kinds wrote 5 for every model.
IGNORED = {("classify", "conditional")}


def _same(field: str, a: object, b: object) -> bool:
    return (5 if a is None else a) == (5 if b is None else b) if field == "window" else a == b


def _kind(config: dict):
    load_kinds()
    return KINDS[config.get("app") or config["model"]["task"]]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_saved_options_equal_the_legacy_inverse(name: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / name
    assert main(["train", *RUNS[name], *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    config = json.loads((out / "config.json").read_text())
    record = config[OPTIONS_KEY]
    assert set(record) == {f.name for f in dataclasses.fields(RunOptions)}
    assert record["seed"] == 3 and record["hidden_size"] == 8 and record["epochs"] == 1
    if not record["data"].startswith("embedded:"):
        assert Path(record["data"]).is_absolute()

    kind = _kind(config)
    given = RunOptions(max_minutes=2.5, progress="log")
    restored = kind.restore(config, given)
    legacy = kind.options_from_config(config, given)
    assert restored.max_minutes == 2.5 and restored.progress == "log"  # this call's budget and display
    for field in dataclasses.fields(RunOptions):
        if (name, field.name) in IGNORED:
            continue
        assert _same(field.name, getattr(restored, field.name), getattr(legacy, field.name)), field.name
    # every default the kind filled in is written out, so a later release's defaults never change a resume
    assert restored.batch_size is not None and restored.lr is not None and restored.model is not None


def test_a_window_model_run_records_its_window(tmp_path: Path, capsys) -> None:
    out = tmp_path / "window"
    args = [*RUNS["classify"], *TINY, "--model", "window", "--window", "3", "--out", str(out)]
    assert main(["train", *args]) == 0
    capsys.readouterr()
    config = json.loads((out / "config.json").read_text())
    assert config[OPTIONS_KEY]["window"] == 3 == config["model"]["window"]
    assert _kind(config).restore(config, RunOptions()).window == 3


def test_a_release_0_1_0_folder_restores_through_its_kinds_inverse() -> None:
    config = json.loads((FIXTURES / "forecast" / "config.json").read_text())
    assert OPTIONS_KEY not in config
    kind = _kind(config)
    opts = RunOptions()
    assert restore_run_options(config, opts, kind.options_from_config) == kind.options_from_config(config, opts)


def test_options_of_a_newer_rnnkit_are_refused_in_one_line(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "forecast", run)
    config = json.loads((run / "config.json").read_text())
    config[OPTIONS_KEY] = {**dataclasses.asdict(RunOptions(task="forecast")), "quantiles": [0.1, 0.9]}
    with pytest.raises(ValueError, match="quantiles") as info:
        _kind(config).restore(config, RunOptions())
    assert "\n" not in str(info.value) and "newer rnnkit" in str(info.value)
    with pytest.raises(ValueError, match="must be an object"):
        _kind(config).restore({**config, OPTIONS_KEY: [1, 2]}, RunOptions())
