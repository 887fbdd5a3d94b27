"""Run folders written by earlier releases still load and give the same numbers.

``tests/fixtures/runs/vX.Y.Z/`` holds one tiny run folder per kind (classify, generate, tag, seq2seq, lm,
classify-series, forecast), written by release X.Y.Z, and ``expected.json``: the ``rnnkit`` commands to replay
on them (evaluate, predict, sample) with the exit code and stdout that release gave. ``make_fixtures.py`` there
wrote both (see README.md). Here each release folder is copied to ``tmp_path`` (commands may write into a run
folder, and the fixture must stay as the release wrote it), the runs' saved data paths are pointed at the copy
(config.json stores them absolute, as they were on the machine that made the fixtures), and every command is
replayed through ``rnnkit.cli.main`` in process: ``--json`` metrics equal within 1e-9 relative (every recorded key
present with its value), other output lines exactly. Only the command line and the public ``rnnkit.runs`` names
(``load_run``, ``evaluate_run``, ``predict``, ``sample``) are used, never private helpers.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from rnnkit.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
RELEASES = sorted(p.parent.name for p in FIXTURES.glob("v*/expected.json"))
KINDS = ["classify", "generate", "tag", "seq2seq", "lm", "classify-series", "forecast"]
REL = 1e-9


def _expected(release: str) -> dict[str, Any]:
    return json.loads((FIXTURES / release / "expected.json").read_text(encoding="utf-8"))


CASES = [(release, kind) for release in RELEASES for kind in _expected(release)["kinds"]]


def _relocate(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _relocate(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_relocate(v, old, new) for v in value]
    if isinstance(value, str) and value.startswith(old + "/"):
        return new + value[len(old) :]
    return value


def copy_release(release: str, tmp_path: Path) -> Path:
    """The release folder copied under ``tmp_path``, its runs' saved data paths pointed at the copied data."""
    root = tmp_path / "copy"
    shutil.copytree(FIXTURES / release, root)
    old = _expected(release)["generated_root"]
    for config in root.glob("*/config.json"):
        saved = json.loads(config.read_text(encoding="utf-8"))
        config.write_text(json.dumps(_relocate(saved, old, str(root)), indent=2), encoding="utf-8")
    return root


def fill(argv: list[str], root: Path, kind: str) -> list[str]:
    return [a.replace("<RUN>", str(root / kind)).replace("<DATA>", str(root / "data")) for a in argv]


def same(actual: Any, expected: Any) -> bool:
    """Equal, numbers within ``REL`` relative; a dict needs every expected key (more keys are allowed)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and same(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(same, actual, expected))
    if isinstance(expected, float) or (isinstance(expected, int) and not isinstance(expected, bool)):
        if isinstance(actual, bool) or not isinstance(actual, (int, float)):
            return False
        return math.isclose(actual, expected, rel_tol=REL, abs_tol=1e-12)
    return actual == expected


def rnnkit(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[str], list[str]]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_every_kind_has_a_fixture() -> None:
    assert RELEASES, f"no fixtures under {FIXTURES}"
    for release in RELEASES:
        assert sorted(_expected(release)["kinds"]) == sorted(KINDS)
        for kind in KINDS:
            assert (FIXTURES / release / kind / "config.json").is_file()
            assert (FIXTURES / release / kind / "model.safetensors").is_file()


def test_fixtures_stay_small() -> None:
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 2_000_000, f"{FIXTURES} holds {total} bytes; keep fixture runs tiny"


@pytest.mark.parametrize(("release", "kind"), CASES, ids=[f"{r}-{k}" for r, k in CASES])
def test_old_run_gives_the_same_output(
    release: str, kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replay the release's evaluate/predict/sample commands on its run of ``kind``."""
    root = copy_release(release, tmp_path)
    for check in _expected(release)["kinds"][kind]["checks"]:
        argv = fill(check["argv"], root, kind)
        code, out, err = rnnkit(capsys, argv)
        assert code == check["exit"], f"rnnkit {' '.join(argv)}: exit {code}, stderr {err}"
        out = [line.replace(str(root), "<ROOT>") for line in out]
        if "--json" in argv:
            assert len(out) == 1, out
            actual, expected = json.loads(out[0]), json.loads(check["stdout"][0])
            assert same(actual, expected), f"rnnkit {' '.join(check['argv'])}:\n got {actual}\nwant {expected}"
        else:
            assert out == check["stdout"], f"rnnkit {' '.join(check['argv'])}"


@pytest.mark.parametrize("release", RELEASES)
def test_old_runs_through_the_public_functions(release: str, tmp_path: Path) -> None:
    """``load_run`` reads every kind; ``predict``, ``sample`` and ``evaluate_run`` agree with the recorded output."""
    from rnnkit.data import load_data
    from rnnkit.runs import evaluate_run, load_run, predict, sample

    root = copy_release(release, tmp_path)
    kinds = _expected(release)["kinds"]
    for kind in kinds:
        load_run(root / kind)

    checks = {tuple(c["argv"]): c["stdout"] for c in kinds["classify"]["checks"]}
    run = load_run(root / "classify")
    (argv, lines) = next((a, s) for a, s in checks.items() if a[0] == "predict")
    items = [a for a in argv[2:] if not a.startswith("--") and not a.isdigit()]
    rows = predict(run, items, top_k=2)
    printed = [f"{item}: " + ", ".join(f"{c} {p:.3f}" for c, p in row) for item, row in zip(items, rows, strict=True)]
    assert printed == lines
    (argv, lines) = next((a, s) for a, s in checks.items() if "--data" in a)
    metrics = evaluate_run(run, load_data(fill(list(argv), root, "classify")[-1]))
    recorded = json.loads(lines[0])
    for key in ("test_accuracy", "macro_f1", "test_loss"):
        assert round(metrics[key], 4) == pytest.approx(recorded[key], rel=REL), key

    run = load_run(root / "generate")
    for check in kinds["generate"]["checks"]:
        a = check["argv"]
        if a[0] != "sample":
            continue
        opt = {a[i]: a[i + 1] for i in range(2, len(a), 2)}
        items = sample(
            run,
            opt.get("--category"),
            int(opt.get("--num", 10)),
            float(opt.get("--temperature", 0.8)),
            opt.get("--prefix", ""),
            int(opt.get("--max-len", 30)),
            int(opt["--seed"]),
            int(opt["--top-k"]) if "--top-k" in opt else None,
        )
        assert items == check["stdout"], " ".join(a)


@pytest.mark.parametrize("release", RELEASES[-1:])
def test_run_of_a_newer_format_is_refused_in_one_line(
    release: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run folder whose config.json claims a newer format than this rnnkit reads: exit 2, one clear line."""
    root = copy_release(release, tmp_path)
    config = root / "classify" / "config.json"
    saved = json.loads(config.read_text(encoding="utf-8"))
    saved["format_version"] = 999  # the run-format number a later rnnkit may write
    saved["rnnkit_version"] = "999.0.0"
    config.write_text(json.dumps(saved, indent=2), encoding="utf-8")
    code, out, err = rnnkit(capsys, ["evaluate", str(root / "classify"), "--json"])
    assert code == 2
    assert out == []
    assert len(err) == 1 and err[0].startswith("rnnkit: error:"), err
    assert "version" in err[0] or "newer" in err[0], err[0]
