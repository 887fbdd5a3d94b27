"""Issue 13, the defences left after the first pass: every file through a declared model, inputs and resources
checked before they are spent, reports that scale, flags that apply, ``gradients RUN`` for every kind.

Each test fails without its defence (an allocator traceback, a KeyError, a run without end, a silently ignored
flag); the rows of docs/errors.md ("Nothing lost, nothing unbounded") name them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rnnkit import cli

LETTERS = {"Alpha": "aeiou", "Beta": "bcdfg"}
TINY = ["--hidden", "4", "--embed", "2", "--epochs", "1", "--batch-size", "8"]


def make_folder(path: Path, n: int = 12) -> Path:
    path.mkdir(parents=True)
    for cls, letters in LETTERS.items():
        items = sorted({cls[0] + letters[i % 5] + letters[(i * 3) % 5] * (1 + i % 3) + str(i) for i in range(n)})
        (path / f"{cls}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    return path


def rnnkit_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnkit: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data") / "names")


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory: pytest.TempPathFactory, names: Path) -> Path:
    out = tmp_path_factory.mktemp("runs") / "classify"
    assert cli.main(["train", "--data", str(names), "--out", str(out), *TINY]) == 0
    return out


# ------------------------------------------------------------------------------ 1. checkpoint state.json
def _state_json(run: Path) -> Path:
    latest = json.loads((run / "checkpoint" / "latest.json").read_text())
    return run / "checkpoint" / latest["current"] / "state.json"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda s: s.update(batch_in_epoch=10**6), "state.batch_in_epoch"),
        (lambda s: s.update(batch_in_epoch=-1), "state.batch_in_epoch"),
        (lambda s: s.update(epoch=-3), "state.epoch"),
        (lambda s: s.update(epoch="1"), "state.epoch"),
        (lambda s: s.update(step=1.5), "state.step"),
        (lambda s: s.pop("steps_per_epoch"), "state.steps_per_epoch"),
        (lambda s: s.update(best_epoch=7), "state.best_epoch"),
        (lambda s: s.update(history=[]), "state.history"),
        (lambda s: s.update(epoch_acc={"loss_sum": "x"}), "state.epoch_acc"),
        (lambda s: s.update(config=[1]), "state.config"),
    ],
)
def test_a_damaged_checkpoint_state_is_one_line_naming_file_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, classify_run: Path, edit, field: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(classify_run, run)
    path = _state_json(run)
    doc = json.loads(path.read_text())
    edit(doc["state"])
    path.write_text(json.dumps(doc))
    before = snapshot(run)
    code, out, err = rnnkit_main(capsys, "train", "--resume", "--out", run)
    line = assert_one_line_error(code, out, err, str(path), f"field {field}")
    assert "--overwrite" in line
    assert snapshot(run) == before


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(current="../elsewhere"),
        lambda d: d.update(current=5),
        lambda d: d.pop("format"),
        lambda d: d.update(version=7),
    ],
)
def test_a_damaged_checkpoint_index_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, classify_run: Path, edit
) -> None:
    run = tmp_path / "run"
    shutil.copytree(classify_run, run)
    path = run / "checkpoint" / "latest.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    code, out, err = rnnkit_main(capsys, "train", "--resume", "--out", run)
    assert_one_line_error(code, out, err, str(path), "field ")


def test_every_json_file_is_read_through_a_declared_model() -> None:
    """No module parses JSON by hand except the ones that validate what they parse: the readers of run files go
    through rnnkit.checkpoint.read_json and then a pydantic model (validate_model / validate_file)."""
    src = Path(cli.__file__).parent
    allowed = {
        "checkpoint.py",  # read_json itself, and the safetensors header (checked field by field there)
        "options.py",  # json.loads(json.dumps(value)): a deep copy of what rnnkit builds, not a file
        "app.py",  # the server: request bodies (pydantic request models) and its own JSON
    }
    offenders = []
    for path in sorted(src.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if ("json.load(" in text or "json.loads(" in text) and path.name not in allowed:
            offenders.append(str(path.relative_to(src)))
    assert offenders == []
    readers = [p for p in sorted(src.rglob("*.py")) if " read_json(" in p.read_text(encoding="utf-8")]
    for path in readers:
        text = path.read_text(encoding="utf-8")
        if path.name in ("checkpoint.py", "app.py"):  # read_json itself; the page's reports, shown as they are
            continue
        assert "validate_model" in text or "validate_file" in text or "_read_checked" in text, path
