"""Issue 13, "nothing lost, nothing hangs, no traceback": the defences at the command line's boundaries.

1. Never destroy before the replacement exists: ``train --overwrite`` writes into a fresh sibling folder and takes
   the place of ``--out`` only once the new run has started; a lock on ``--out`` refuses a second writer;
   ``gradients`` replaces no file it did not write without ``--overwrite``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cli_helpers import assert_one_line_error, make_folder, rnnkit_main, snapshot
from rnnkit import cli

TINY = ["--hidden", "8", "--embed", "4", "--epochs", "1", "--batch-size", "8"]


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data") / "names")


@pytest.fixture(scope="module")
def old_run(tmp_path_factory: pytest.TempPathFactory, names: Path) -> Path:
    out = tmp_path_factory.mktemp("runs") / "old"
    assert cli.main(["train", "--data", str(names), "--out", str(out), *TINY]) == 0
    return out


def copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------- 1. never destroy first
def test_overwrite_failing_at_config_keeps_the_old_run_byte_identical(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: Path, old_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new run's config.json cannot be written (here: the disk is full; in the issue, --max-minutes inf, now
    refused by its range): the new run never starts, the old one stays byte-identical, no sibling is left."""
    import rnnkit.runs.folder as folder

    run = copy_run(old_run, tmp_path / "run")
    before = snapshot(run)
    code, _, err = rnnkit_main(capsys, "train", "--data", names, "--out", run, "--overwrite", "--max-minutes", "inf")
    assert_one_line_error(code, "", err, "--max-minutes")
    assert snapshot(run) == before
    real = folder.write_json_atomic

    def full_disk(path, obj, **kw):
        if Path(path).name == "config.json":
            real(path, obj, **kw)  # half-way: the file exists, then the disk fills
            raise OSError(28, "No space left on device")
        return real(path, obj, **kw)

    monkeypatch.setattr(folder, "write_json_atomic", full_disk)
    code, _, err = rnnkit_main(capsys, "train", "--data", names, "--out", run, "--overwrite", *TINY)
    assert_one_line_error(code, "", err, "No space left")
    assert snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_overwrite_failing_at_the_swap_restores_the_old_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: Path, old_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second rename of the swap fails: the first is undone, the old run is back at --out, whole."""
    import os

    import rnnkit.runs.folder as folder

    run = copy_run(old_run, tmp_path / "run")
    before = snapshot(run)
    real = os.rename
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(folder.os, "rename", flaky)
    code, _, err = rnnkit_main(capsys, "train", "--data", names, "--out", run, "--overwrite", *TINY)
    assert_one_line_error(code, "", err, "Input/output error")
    assert snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_overwrite_replaces_the_run_whole_and_leaves_no_sibling(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: Path, old_run: Path
) -> None:
    run = copy_run(old_run, tmp_path / "run")
    (run / "stale.txt").write_text("from the old run\n", encoding="utf-8")
    code, _, err = rnnkit_main(capsys, "train", "--data", names, "--out", run, "--overwrite", *TINY, "--seed", "3")
    assert code == 0, err
    assert not (run / "stale.txt").exists() and (run / "model.safetensors").is_file()
    assert '"seed": 3' in (run / "config.json").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_failed_fresh_train_leaves_no_empty_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "new"
    assert_one_line_error(*rnnkit_main(capsys, "train", "--data", tmp_path / "missing", "--out", out), "no such")
    assert not out.exists()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rnnkit.runs.folder import hold_out
    with hold_out(Path(sys.argv[1]), create=True):
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_a_second_writer_on_the_same_out_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: Path, old_run: Path
) -> None:
    """Another process holds --out (as a running train does): train, train --overwrite and train --resume are
    refused in one line, and the folder is left as it was."""
    run = copy_run(old_run, tmp_path / "run")
    before = snapshot(run)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for extra in (["--overwrite"], ["--resume"]):
            args = ["train", "--data", names, "--out", run, *TINY, *extra]
            if extra == ["--resume"]:
                args = ["train", "--out", run, "--resume"]
            assert_one_line_error(*rnnkit_main(capsys, *args), "being written by another rnnkit process")
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()
    # once the other process is gone, the folder is free again
    code, _, err = rnnkit_main(capsys, "train", "--data", names, "--out", run, "--overwrite", *TINY)
    assert code == 0, err


def test_two_concurrent_trains_one_refused(tmp_path: Path, names: Path) -> None:
    """Two `rnnkit train` processes on one new --out: exactly one writes the run, the other exits 2 in one line
    (or, if it started after the first finished, is refused because --out holds a run)."""
    out = tmp_path / "race"
    cmd = [sys.executable, "-m", "rnnkit", "train", "--data", str(names), "--out", str(out), *TINY, "--epochs", "3"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for code, e in results if code == 2)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("rnnkit: error: ")
    assert (out / "model.safetensors").is_file()


def test_gradients_compare_keeps_an_existing_csv(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--plot d/x.png writes d/x.csv beside it: an existing x.csv (or x.png) is not replaced without --overwrite."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "x.csv").write_text("precious\n", encoding="utf-8")
    args = ["gradients", "--compare", "rnn", "--length", "4", "--hidden", "3", "--batch-size", "2", "--plot"]
    assert_one_line_error(*rnnkit_main(capsys, *args, d / "x.png"), "x.csv", "--overwrite")
    assert (d / "x.csv").read_text(encoding="utf-8") == "precious\n" and not (d / "x.png").exists()
    code, _, err = rnnkit_main(capsys, *args, d / "x.png", "--overwrite")
    assert code == 0, err
    assert (d / "x.csv").read_text(encoding="utf-8").startswith("t,")


# ------------------------------------------------------------------------------------------ 2. ranges, one place
@pytest.mark.parametrize(
    "argv, flag",
    [
        (["sample", "{gen}", "--temperature", "nan"], "--temperature"),
        (["sample", "{gen}", "--temperature", "inf"], "--temperature"),
        (["sample", "{gen}", "--temperature", "1e-300"], "--temperature"),
        (["sample", "{gen}", "--num", "100000000"], "--num"),
        (["sample", "{gen}", "--max-len", "100000000"], "--max-len"),
        (["sample", "{gen}", "--seed", "-1"], "--seed"),
        (["predict", "{gen}", "x", "--horizon", "100000000"], "--horizon"),
        (["predict", "{gen}", "x", "--beam", "1000"], "--beam"),
        (["train", "--data", "{names}", "--out", "{out}", "--hidden", "1000000"], "--hidden"),
        (["train", "--data", "{names}", "--out", "{out}", "--embed", "100000000000"], "--embed"),
        (["train", "--data", "{names}", "--out", "{out}", "--window", "100000000"], "--window"),
        (["train", "--data", "{names}", "--out", "{out}", "--lr", "nan"], "--lr"),
        (["train", "--data", "{names}", "--out", "{out}", "--lr", "0"], "--lr"),
        (["train", "--data", "{names}", "--out", "{out}", "--dropout", "1"], "--dropout"),
        (["train", "--data", "{names}", "--out", "{out}", "--max-minutes", "-inf"], "--max-minutes"),
        (["train", "--data", "{names}", "--out", "{out}", "--seed", "99999999999999999999"], "--seed"),
        (["train", "--data", "{names}", "--out", "{out}", "--task", "forecast", "--context", "100000000"], "--context"),
        (["memory", "--lengths", "100000000"], "--lengths"),
        (["gradients", "--tiny", "--lengths", "100000000"], "--lengths"),
        (["gradients", "--compare", "rnn", "--length", "100000000"], "--length"),
        (["bench", "--budget", "nan"], "--budget"),
    ],
)
def test_every_number_out_of_range_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: Path, old_run: Path, argv: list[str], flag: str
) -> None:
    """Out of range (or not finite) is refused before anything runs: one line naming the flag and the range."""
    fill = {"{gen}": str(old_run), "{names}": str(names), "{out}": str(tmp_path / "out")}
    code, out, err = rnnkit_main(capsys, *[fill.get(a, a) for a in argv])
    assert_one_line_error(code, out, err, flag)
    assert not (tmp_path / "out").exists()


def test_the_library_checks_the_same_ranges() -> None:
    from rnnkit import ranges
    from rnnkit.runs import RunOptions

    for kwargs, needle in (
        ({"hidden_size": 10**6}, "--hidden"),
        ({"lr": float("nan")}, "--lr"),
        ({"seed": -1}, "--seed"),
        ({"max_minutes": float("inf")}, "--max-minutes"),
        ({"options": {"horizon": 10**8}}, "--horizon"),
    ):
        with pytest.raises(ValueError, match=needle):
            RunOptions(**kwargs)
    for value in (float("nan"), float("inf"), 1e-300, -1.0):
        with pytest.raises(ValueError, match="--temperature"):
            ranges.check(temperature=value)
    ranges.check(temperature=0, num=1, horizon=100_000)  # the ends of the ranges are allowed
    assert ranges.RANGES["num"].hi == 100_000


def test_sample_in_the_library_refuses_a_tiny_temperature(tmp_path: Path, names: Path) -> None:
    from rnnkit.runs import load_run, train_run
    from rnnkit.runs.options import RunOptions
    from rnnkit.runs.text import sample

    out = tmp_path / "gen"
    train_run(RunOptions(task="generate", data=str(names), hidden_size=8, embed_dim=4, epochs=1, batch_size=8), out)
    run = load_run(out)
    with pytest.raises(ValueError, match="--temperature"):
        sample(run, category="Alpha", temperature=1e-300)
    assert len(sample(run, category="Alpha", num=2, temperature=0.5, seed=1)) == 2


# ------------------------------------------------------------------------------- 3. files read back: bounded
@pytest.mark.parametrize("target", ["config.json", "model.safetensors"])
@pytest.mark.parametrize("what", ["fifo", "dev-zero", "huge"])
def test_a_fifo_a_device_or_a_huge_file_in_a_run_is_refused_without_hanging(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old_run: Path, target: str, what: str
) -> None:
    """config.json or model.safetensors replaced by a FIFO (nobody writes it), /dev/zero or a sparse file larger
    than the cap: one line naming the file, at once."""
    import os

    from rnnkit import checkpoint

    run = copy_run(old_run, tmp_path / "run")
    path = run / target
    path.unlink()
    if what == "fifo":
        os.mkfifo(path)
    elif what == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        limit = checkpoint.JSON_LIMIT if target == "config.json" else checkpoint.WEIGHTS_LIMIT
        with path.open("wb") as f:
            f.truncate(limit + 1)  # sparse: no disk used
    start = time.monotonic()
    code, out, err = rnnkit_main(capsys, "evaluate", run)
    assert_one_line_error(code, out, err, target)
    assert time.monotonic() - start < 30


def _edit_config(run: Path, change) -> None:
    import json

    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    change(config)
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.mark.parametrize(
    "name, change, field",
    [
        ("no-model", lambda c: c.pop("model"), "field model"),
        ("no-train", lambda c: c.pop("train"), "field train"),
        ("no-data", lambda c: c.pop("data"), "field data"),
        ("no-vocab", lambda c: c.pop("vocab"), "vocab"),
        ("no-classes", lambda c: c.pop("classes"), "classes"),
        ("dup-classes", lambda c: c.update(classes=["Alpha", "Alpha"]), "field classes"),
        ("dup-symbols", lambda c: c["vocab"].update(symbols=["a", "a"]), "field vocab.symbols"),
        ("hidden-str", lambda c: c["model"].update(hidden_size="big"), "field model.hidden_size"),
        ("hidden-huge", lambda c: c["model"].update(hidden_size=10**11), "field model.hidden_size"),
        ("model-list", lambda c: c.update(model=[1, 2]), "field model"),
        ("no-task", lambda c: c["model"].pop("task"), "field model.task"),
    ],
)
def test_a_hand_edited_config_is_refused_naming_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old_run: Path, name: str, change, field: str
) -> None:
    run = copy_run(old_run, tmp_path / name)
    _edit_config(run, change)
    for argv in (["evaluate", run], ["predict", run, "Aei"], ["train", "--resume", "--out", run]):
        code, out, err = rnnkit_main(capsys, *argv)
        assert_one_line_error(code, out, err, "config.json", field)


def test_a_split_json_that_is_not_a_record_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old_run: Path
) -> None:
    run = copy_run(old_run, tmp_path / "run")
    (run / "split.json").write_text("[1, 2, 3]\n", encoding="utf-8")
    assert_one_line_error(*rnnkit_main(capsys, "evaluate", run), "split.json", "expected a JSON object")
    (run / "split.json").write_text('{"train": 3, "val": [], "test": []}\n', encoding="utf-8")
    assert_one_line_error(*rnnkit_main(capsys, "evaluate", run), "split.json", "field train")


# ------------------------------------------------------------------------------------------ 4. no flag ignored
def test_resume_refuses_every_changed_setting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: Path, old_run: Path
) -> None:
    """--seed, --task, --val-data, --test-data (even a missing one) that differ from the run's: one line each,
    naming the setting; the same values as the run's are accepted."""
    run = copy_run(old_run, tmp_path / "run")
    before = snapshot(run)
    other = make_folder(tmp_path / "other", n=6)
    for extra, key in (
        (["--seed", "5"], "seed"),
        (["--task", "generate"], "task"),
        (["--task", "tag"], "task"),
        (["--val-data", other], "val_data"),
        (["--test-data", tmp_path / "nonexistent"], "test_data"),
    ):
        code, out, err = rnnkit_main(capsys, "train", "--resume", "--out", run, *extra)
        assert_one_line_error(code, out, err, key)
        assert snapshot(run) == before
    code, _, err = rnnkit_main(capsys, "train", "--resume", "--out", run, "--seed", "0", "--task", "classify")
    assert code == 0, err


def test_predict_data_on_a_text_classifier_is_used(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old_run: Path
) -> None:
    """--data FILE on a classify run predicts its lines (before, it was silently ignored); --beam/--horizon are
    refused."""
    items = tmp_path / "items.txt"
    items.write_text("Aeiou\nBcdfg\n\n", encoding="utf-8")
    code, out, err = rnnkit_main(capsys, "predict", old_run, "Aei", "--data", items)
    assert code == 0, err
    assert [line.split(":")[0] for line in out.splitlines()] == ["Aei", "Aeiou", "Bcdfg"]
    for flag in ("--beam", "--horizon"):
        assert_one_line_error(*rnnkit_main(capsys, "predict", old_run, "Aei", flag, "2"), flag)
    assert_one_line_error(*rnnkit_main(capsys, "predict", old_run, "--data", tmp_path / "missing"), "no such")


# ------------------------------------------------------------------------- 5. a checkpoint inside the first epoch
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import rnnkit.train.loop as loop
    from rnnkit import cli

    calls, kill_at, original = [0], int(sys.argv[1]), loop.Trainer._agreed_stop

    def agreed(self):
        calls[0] += 1
        if calls[0] == kill_at:  # after step kill_at, before its own checkpoint: kill -9
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self)

    loop.Trainer._agreed_stop = agreed
    sys.exit(cli.main(sys.argv[2:]))
    """
)


def test_kill_9_in_the_first_epoch_resumes_to_the_uninterrupted_run(tmp_path: Path, names: Path) -> None:
    """With mid-epoch checkpoints (RNNKIT_CHECKPOINT_SECONDS=0: after every step) a kill -9 during the first epoch
    leaves a checkpoint, and --resume ends with the weights of the run that was never interrupted."""
    import os

    from safetensors.torch import load_file

    args = ["train", "--data", str(names), *TINY, "--epochs", "2", "--batch-size", "4"]
    ref = tmp_path / "ref"
    assert cli.main([*args, "--out", str(ref)]) == 0
    out = tmp_path / "killed"
    env = {**os.environ, "RNNKIT_CHECKPOINT_SECONDS": "0"}
    done = subprocess.run([sys.executable, "-c", KILLER, "3", *args, "--out", str(out)], env=env, timeout=300)
    assert done.returncode == -9
    assert (out / "checkpoint").is_dir() and not (out / "model.safetensors").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "rnnkit", "train", "--resume", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "at epoch 1, batch 2" in resumed.stderr
    a, b = load_file(ref / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_bad_checkpoint_interval_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RNNKIT_CHECKPOINT_SECONDS", "soon")
    code, _, err = rnnkit_main(capsys, "train", "--data", names, "--out", tmp_path / "o", *TINY)
    assert code == 2 and "RNNKIT_CHECKPOINT_SECONDS" in err.splitlines()[-1] and "Traceback" not in err


# ------------------------------------------------------------------------------------------------- 6. parsers
def _series_rows(n: int = 40) -> list[str]:
    return [f"2024-01-{1 + i // 24:02d}T{i % 24:02d}:00,{(i % 7) * 0.5 + 1:.2f}" for i in range(n)]


def test_a_series_csv_with_cr_only_line_ends_or_a_huge_cell_reads(tmp_path: Path) -> None:
    from rnnkit.data.series import read_series_csv

    lines = ["date,value", *_series_rows()]
    for name, text in (("cr.csv", "\r".join(lines) + "\r"), ("crlf.csv", "\r\n".join(lines) + "\r\n")):
        (tmp_path / name).write_bytes(text.encode())
        series = read_series_csv(tmp_path / name)
        assert series.values.shape == (40, 1) and series.times is not None
    big = ["date,value,note", *(row + ',"' + "x" * 200_000 + '"' for row in _series_rows())]
    (tmp_path / "big.csv").write_text("\n".join(big) + "\n", encoding="utf-8")
    assert read_series_csv(tmp_path / "big.csv", value_columns=["value"]).values.shape == (40, 1)
    (tmp_path / "quote.csv").write_text('date,value\n"2024-01-01,1\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"quote\.csv"):
        read_series_csv(tmp_path / "quote.csv")


def test_dates_all_parse_and_are_unique_or_one_line_names_the_row(tmp_path: Path) -> None:
    from rnnkit.data.series import read_series_csv

    rows = _series_rows()
    bad = [*rows[:5], "2024-13-45T99:00,1.0", *rows[6:]]
    (tmp_path / "bad.csv").write_text("\n".join(["date,value", *bad]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 7, column 'date': '2024-13-45T99:00' is not a date"):
        read_series_csv(tmp_path / "bad.csv")
    dup = [*rows[:5], rows[4], *rows[6:]]
    (tmp_path / "dup.csv").write_text("\n".join(["date,value", *dup]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 7: time .* repeats the previous row's"):
        read_series_csv(tmp_path / "dup.csv")
    unsorted = [*rows[:5], rows[10], *rows[6:10], rows[5], *rows[11:]]
    (tmp_path / "unsorted.csv").write_text("\n".join(["date,value", *unsorted]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="sort the file"):
        read_series_csv(tmp_path / "unsorted.csv")


def test_a_text_csv_with_a_huge_cell_reads(tmp_path: Path) -> None:
    from rnnkit.data.datasets import read_csv

    rows = [f"{'A' + 'a' * (i % 5 + 1)},Alpha" if i % 2 else f"{'B' + 'b' * (i % 5 + 1)},Beta" for i in range(20)]
    rows.append('"' + "A" + "a" * 200_000 + '",Alpha')
    (tmp_path / "t.csv").write_text("\n".join(["text,label", *rows]) + "\n", encoding="utf-8")
    assert len(read_csv(tmp_path / "t.csv").items) == 21
