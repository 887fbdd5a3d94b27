"""``rnnkit demo`` trains its recurrent models with the task defaults except :data:`rnnkit.demo.DEMO_SETTINGS`
(issue 16: the generator's default got heavier, the demo keeps its time), prints those settings, and lets
``--epochs`` and explicit options override them. Tiny: a small names folder, one epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import write_names  # the tiny names folder the demo tests share
from rnnkit import demo
from rnnkit.runs.text import DEFAULTS


def _model(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["model"]


def test_demo_settings_name_task_defaults_only() -> None:
    for task, settings in demo.DEMO_SETTINGS.items():
        assert settings and set(settings) <= set(DEFAULTS[task]), task
        assert any(DEFAULTS[task][k] != v for k, v in settings.items()), f"{task}: the same as the defaults"


def test_the_demo_trains_with_its_settings_and_prints_them(tmp_path: Path, monkeypatch, capsys) -> None:
    names = write_names(tmp_path / "names")
    monkeypatch.setattr(demo, "DEMO_SETTINGS", {"generate": {"hidden_size": 7, "dropout": 0.25, "epochs": 2}})
    tiny = {"data": str(names), "embed_dim": 4, "batch_size": 16, "progress": "none"}
    assert demo.run_demo(tmp_path / "d", options={**tiny, "num_layers": 1}) == 0
    out = capsys.readouterr().out
    assert "the demo's lighter settings hidden_size=7, dropout=0.25, epochs=2" in out
    gen, clf = _model(tmp_path / "d" / "generate"), _model(tmp_path / "d" / "classify")
    assert (gen["hidden_size"], gen["dropout"]) == (7, 0.25)
    assert json.loads((tmp_path / "d" / "generate" / "metrics.json").read_text())["epochs"] == 2
    # the classifier has no demo settings: the task defaults
    for key in ("hidden_size", "dropout"):
        assert clf[key] == DEFAULTS["classify"][key], key
    # the window baselines keep rnnkit 0.1.0's settings
    assert _model(tmp_path / "d" / "generate-window")["dropout"] == demo.BASELINE_SETTINGS["generate"]["dropout"]
    # both generators are the lecture's networks alone: no count member (--ngram-order, the task default)
    for folder in ("generate", "generate-window"):
        assert "ngram" not in json.loads((tmp_path / "d" / folder / "config.json").read_text()), folder
        assert not (tmp_path / "d" / folder / "ngram.safetensors").exists(), folder


@pytest.mark.parametrize("given", [{"epochs": 1}, {"options": {"hidden_size": 5, "dropout": 0.0}}])
def test_epochs_and_options_override_the_demo_settings(tmp_path: Path, monkeypatch, capsys, given) -> None:
    names = write_names(tmp_path / "names")
    monkeypatch.setattr(demo, "DEMO_SETTINGS", {"generate": {"hidden_size": 7, "dropout": 0.25, "epochs": 2}})
    tiny = {"data": str(names), "embed_dim": 4, "batch_size": 16, "progress": "none", "num_layers": 1}
    options = {**tiny, **given.get("options", {})}
    assert demo.run_demo(tmp_path / "d", epochs=given.get("epochs"), options=options) == 0
    out = capsys.readouterr().out
    gen = _model(tmp_path / "d" / "generate")
    epochs = json.loads((tmp_path / "d" / "generate" / "metrics.json").read_text())["epochs"]
    if "epochs" in given:
        assert epochs == 1 and gen["hidden_size"] == 7
        assert "lighter settings hidden_size=7, dropout=0.25;" in out  # the epochs shown are the ones given
    else:
        assert epochs == 2 and (gen["hidden_size"], gen["dropout"]) == (5, 0.0)
        assert "lighter settings epochs=2;" in out  # only the settings that still apply are shown


def test_the_demo_generator_stays_the_first_sessions_default() -> None:
    """Whatever the task's default becomes, the demo trains the generator its README figures and time are of."""
    merged = {**DEFAULTS["generate"], **demo.DEMO_SETTINGS["generate"]}
    keys = ("model", "embed_dim", "hidden_size", "num_layers", "dropout", "epochs", "lr", "weight_decay")
    settings = [merged.get(k, 0.01 if k == "weight_decay" else None) for k in keys]
    assert settings == ["lstm", 64, 256, 2, 0.2, 12, 3e-3, 0.01]
