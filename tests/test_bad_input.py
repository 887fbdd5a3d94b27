"""Bad input, answered: one test per row of the table in docs/errors.md.

Command-line rows go through ``rnnkit.cli.main`` in process and check the contract: exit code 2, one line on
stderr (``rnnkit: error: ...``) naming the problem and the fix, no traceback, nothing on stdout, and the files on
disk byte-identical afterwards: every ``train`` row writes into an existing run folder *with* ``--overwrite``, the
strongest case (bad input is found before anything is deleted). Rows whose command-line reader is not written yet
(real-valued series, arrays) are checked at the library level: NaN/inf, wrong rank or feature size, empty
sequences, lengths. A last test keeps the table and these tests in step.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit import cli

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "errors.md"
LETTERS = {"Alpha": "aeiou", "Beta": "bcdfg", "Gamma": "klmnp"}
TINY = ["--hidden", "8", "--embed", "4", "--epochs", "2", "--batch-size", "8"]


def make_folder(path: Path, classes: list[str] | None = None, n: int = 30) -> Path:
    """``<Category>.txt`` files; a class's names use its own letters, so the task is learnable."""
    path.mkdir(parents=True)
    for cls in classes or list(LETTERS):
        rng = random.Random(cls)
        items: set[str] = set()
        while len(items) < n:
            items.add(cls[0] + "".join(rng.choice(LETTERS[cls]) for _ in range(rng.randint(2, 5))))
        (path / f"{cls}.txt").write_text("\n".join(sorted(items)) + "\n", encoding="utf-8")
    return path


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = cli.main([str(a) for a in args])
    finally:
        sys.stdout, sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_answered(code: int, out: str, err: str, needles: list[str]) -> str:
    """The contract: exit 2, one stderr line ``rnnkit: error: ...`` holding every needle, no traceback."""
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-input")


@pytest.fixture(scope="module")
def names(base: Path) -> Path:
    return make_folder(base / "names")


@pytest.fixture(scope="module")
def clf_run(base: Path, names: Path) -> Path:
    out = base / "clf"
    assert run_cli("train", "--data", names, "--out", out, *TINY)[0] == 0
    return out


@pytest.fixture(scope="module")
def gen_run(base: Path, names: Path) -> Path:
    out = base / "gen"
    assert run_cli("train", "--task", "generate", "--data", names, "--out", out, *TINY)[0] == 0
    return out


@pytest.fixture(scope="module")
def inputs(base: Path) -> dict[str, Path]:
    """Every broken input of the table, made once."""
    d = base / "inputs"
    d.mkdir()
    files = {
        "empty.txt": b"",
        "blank.txt": b"\n   \n\t\n\n",
        "latin1.txt": "Zoë\nRenée\n".encode("latin-1"),
        "ragged.csv": b"text,label\nAeiou,Alpha\nBcd\n",
        "columns.csv": b"name,country\nAeiou,Alpha\nBcdf,Beta\n",
        "three.csv": b"a,b,c\nAeiou,Alpha,1\nBcdf,Beta,2\n",
        "no-header.csv": b'""\n\n',
    }
    paths = {}
    for name, raw in files.items():
        (d / name).write_bytes(raw)
        paths[name] = d / name
    series = ["date,a,b"] + [f"2020-01-{day:02d},{np.sin(day / 3):.4f},{np.cos(day / 5):.4f}" for day in range(1, 31)]
    for name, (row, cell) in {"nan.csv": (11, "nan"), "inf.csv": (13, "-inf"), "good.csv": (0, None)}.items():
        lines = list(series)
        if cell is not None:
            lines[row] = lines[row].rsplit(",", 1)[0] + "," + cell
        (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths[name] = d / name
    (d / "one-column.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in series) + "\n", encoding="utf-8")
    paths["one-column.csv"] = d / "one-column.csv"
    rng = np.random.default_rng(0)
    np.savez(d / "rank4.npz", X=np.zeros((4, 2, 3, 5)), y=np.array(["a", "b", "a", "b"]))
    x = rng.normal(size=(8, 2, 6))
    x[5, 1, 2] = np.inf
    np.savez(d / "inf.npz", X=x, y=np.array(["a", "b"] * 4))
    paths["rank4.npz"], paths["inf.npz"] = d / "rank4.npz", d / "inf.npz"
    paths["one-class"] = make_folder(d / "one-class", ["Alpha"])
    paths["long-items"] = d / "long-items"
    paths["long-items"].mkdir()
    (paths["long-items"] / "Alpha.txt").write_text("Aeiouaeiouaeiou\nAei\n", encoding="utf-8")
    (paths["long-items"] / "Beta.txt").write_text("Bcd\n", encoding="utf-8")
    paths["unknown-label"] = make_folder(d / "unknown-label", ["Alpha", "Beta"], n=4)
    (paths["unknown-label"] / "Delta.txt").write_text("Aeio\n", encoding="utf-8")
    if hasattr(os, "mkfifo"):
        os.mkfifo(d / "pipe.txt")
        paths["pipe"] = d / "pipe.txt"
    return paths


@pytest.fixture(scope="module")
def forecast_run(base: Path, inputs: dict[str, Path]) -> Path:
    """A tiny forecast run on two value columns (a, b)."""
    out = base / "forecast"
    args = ["--context", "4", "--horizon", "2", "--epochs", "1", "--hidden", "4"]
    code, _, err = run_cli("train", "--task", "forecast", "--data", inputs["good.csv"], "--out", out, *args)
    assert code == 0, err
    return out


@pytest.fixture
def existing(tmp_path: Path, clf_run: Path) -> Path:
    """A finished run that a bad ``train --out EXISTING --overwrite`` must leave byte-identical."""
    out = tmp_path / "existing"
    shutil.copytree(clf_run, out)
    return out


@pytest.fixture
def limited_run(tmp_path: Path, clf_run: Path) -> Path:
    """A classify run whose vocabulary carries ``max_len`` 6, as ``train --max-len 6`` would save it."""
    out = tmp_path / "limited"
    shutil.copytree(clf_run, out)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    config["vocab"]["max_len"] = 6
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


@pytest.fixture
def foreign_app_run(tmp_path: Path, clf_run: Path) -> Path:
    """A run folder written by a task app this rnnkit does not have."""
    out = tmp_path / "foreign"
    shutil.copytree(clf_run, out)
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    config["app"] = "dance"
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


# ------------------------------------------------------------------------------------------------- the table
# id -> (command with {placeholders}, needles). {out} is an existing run given with --overwrite unless the row
# is about --out itself; {clf}, {gen}, {limited}, {foreign} are run folders; {in:NAME} an input of `inputs`.

TRAIN = ["train", "--out", "{out}", "--overwrite", *TINY]
REALS = ["train", "--out", "{out}", "--overwrite", "--hidden", "8", "--epochs", "2"]  # no --embed for real values
ROWS: dict[str, tuple[list[str], list[str]]] = {
    "missing-path": ([*TRAIN, "--data", "{tmp}/missing.txt"], ["no such path", "missing.txt", "check the spelling"]),
    "missing-run-folder": (["evaluate", "{tmp}/no-run"], ["run folder", "does not exist"]),
    "unknown-embedded-data": (
        [*TRAIN, "--data", "embedded:genders"],
        ["unknown embedded data 'embedded:genders' for --task classify", "embedded:gender, embedded:basicmotions"],
    ),
    "embedded-data-of-another-task": (
        [*TRAIN, "--task", "forecast", "--data", "embedded:gender"],
        ["for --task forecast", "choose one of: embedded:msft, embedded:sunspots, embedded:ppg"],
    ),
    "unreadable-pipe": ([*TRAIN, "--data", "{in:pipe}"], ["not a regular file", "pipe.txt", "give a text file"]),
    "unreadable-permissions": ([*TRAIN, "--data", "{in:latin1.txt}"], ["cannot be read", "permissions"]),
    "empty-file": ([*TRAIN, "--task", "generate", "--data", "{in:empty.txt}"], ["empty.txt is empty"]),
    "blank-lines-only": ([*TRAIN, "--task", "generate", "--data", "{in:blank.txt}"], ["blank.txt is empty"]),
    "single-class": ([*TRAIN, "--data", "{in:one-class}"], ["1 class ('Alpha')", "at least 2", "add more"]),
    "label-column-missing": (
        [*TRAIN, "--data", "{in:columns.csv}", "--label-column", "lang"],
        ["no label column 'lang'", "its columns are ['name', 'country']"],
    ),
    "label-column-ambiguous": ([*TRAIN, "--data", "{in:three.csv}"], ["3 columns", "--label-column"]),
    "ragged-csv-row": ([*TRAIN, "--data", "{in:ragged.csv}"], ["line 3", "1 fields, but the header has 2", "quote"]),
    "csv-without-header": ([*TRAIN, "--data", "{in:no-header.csv}"], ["no header row"]),
    "non-utf8-file": (
        [*TRAIN, "--task", "generate", "--data", "{in:latin1.txt}"],
        ["latin1.txt is not UTF-8", "byte 0xeb at offset 2", "re-save it as UTF-8"],
    ),
    "non-utf8-argument": (["predict", "{clf}", "Ae\udce9"], ["unknown character '\\udce9'"]),
    "unknown-symbol": (["predict", "{clf}", "Aqz"], ["unknown characters 'q', 'z'", "remove them"]),
    "empty-item": (["predict", "{clf}", ""], ["an item to predict is empty"]),
    "too-long-item": (["predict", "{limited}", "Aeiouaei"], ["has 8 characters", "maximum of 6", "shorten it"]),
    "too-long-data-item": (["evaluate", "{limited}", "--data", "{in:long-items}"], ["15 characters", "maximum of 6"]),
    "unknown-label-at-evaluate": (["evaluate", "{clf}", "--data", "{in:unknown-label}"], ["'Delta'", "not classes"]),
    "run-of-another-task-predict": (["predict", "{gen}", "Aeiou"], ["generate run", "predict needs a classify run"]),
    "run-of-another-task-sample": (["sample", "{clf}"], ["classify run", "sample needs a generate run"]),
    "run-of-an-unknown-task": (["evaluate", "{foreign}"], ["'dance' task", "does not know"]),
    "resume-with-other-settings": (["train", "--resume", "--out", "{out}", "--hidden", "16"], ["cannot change"]),
    "nan-in-a-series": (
        [*REALS, "--task", "forecast", "--data", "{in:nan.csv}"],
        ["row 12, column 'b': 'nan' is not a finite number", "fill in a real value or drop the row"],
    ),
    "inf-in-a-series": ([*REALS, "--task", "forecast", "--data", "{in:inf.csv}"], ["'-inf' is not a finite number"]),
    "inf-in-arrays": ([*REALS, "--data", "{in:inf.npz}"], ["contains inf", "replace or drop those values"]),
    "wrong-rank": ([*REALS, "--data", "{in:rank4.npz}"], ["X has shape (4, 2, 3, 5)", "expected (N, C, L)"]),
    "wrong-feature-size": (["predict", "{forecast}", "0.1", "0.2", "0.3"], ["this run reads 2 columns (a, b)"]),
    "missing-series-column": (
        ["predict", "{forecast}", "--data", "{in:one-column.csv}"],
        ["has no column 'b'", "this run reads the columns"],
    ),
    "existing-out-folder": (
        ["train", "--out", "{out}", "--data", "{names}", *TINY],
        ["already holds files", "--overwrite"],
    ),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_bad_input_row(
    row: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    inputs: dict[str, Path],
    names: Path,
    clf_run: Path,
    gen_run: Path,
    existing: Path,
    limited_run: Path,
    foreign_app_run: Path,
    forecast_run: Path,
) -> None:
    command, needles = ROWS[row]
    if row == "unreadable-pipe" and "pipe" not in inputs:
        pytest.skip("no named pipes on this platform")
    # root reads everything: without a real refusal, simulate the kernel's (only while the command runs)
    denied = row == "unreadable-permissions" and os.name == "posix" and os.geteuid() != 0
    simulated = row == "unreadable-permissions" and not denied
    target, real_read = inputs["latin1.txt"], Path.read_bytes

    def refuse(self: Path) -> bytes:
        if self == target:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    places = {
        "out": existing,
        "tmp": tmp_path,
        "clf": clf_run,
        "gen": gen_run,
        "limited": limited_run,
        "foreign": foreign_app_run,
        "forecast": forecast_run,
        "names": names,
    }
    args = []
    for a in command:
        for key, value in places.items():
            a = a.replace("{" + key + "}", str(value))
        if a.startswith("{in:"):
            a = str(inputs[a[4:-1]])
        args.append(a)
    watched = [existing, clf_run, gen_run, limited_run, foreign_app_run, forecast_run, inputs["ragged.csv"].parent]
    before = [snapshot(p) for p in watched]
    if denied:
        target.chmod(0)
    try:
        with monkeypatch.context() as m:
            if simulated:
                m.setattr(Path, "read_bytes", refuse)
            result = run_cli(*args)
    finally:
        if denied:
            target.chmod(0o644)
    print(assert_answered(*result, needles))  # shown with -s: the table's "what rnnkit says"
    assert [snapshot(p) for p in watched] == before, "a refused command changed files on disk"


def test_out_naming_a_file_is_refused_and_kept(tmp_path: Path, names: Path) -> None:
    as_file = tmp_path / "notes.txt"
    as_file.write_text("keep me\n", encoding="utf-8")
    assert_answered(*run_cli("train", "--data", names, "--out", as_file, *TINY), ["is a file"])
    assert as_file.read_text(encoding="utf-8") == "keep me\n"


def test_blank_lines_are_skipped_not_refused(tmp_path: Path, clf_run: Path) -> None:
    """Blank lines between items are no error: evaluating a folder with blank lines counts only the items."""
    data = make_folder(tmp_path / "data", n=4)
    plain = run_cli("evaluate", clf_run, "--data", data, "--json")
    for f in data.iterdir():
        lines = f.read_text(encoding="utf-8").splitlines()
        f.write_text("\n\n" + "\n  \n".join(lines) + "\n\t\n", encoding="utf-8")
    spaced = run_cli("evaluate", clf_run, "--data", data, "--json")
    assert plain[0] == spaced[0] == 0, (plain, spaced)
    assert json.loads(plain[1]) == json.loads(spaced[1])
    assert json.loads(spaced[1])["num_items"] == 12


# ------------------------------------------------------------------------------------------------- library rows
# NaN/inf in a series, wrong rank or feature size, empty sequences: the checks that exist today, below the CLI.


def test_nan_or_inf_in_real_valued_sequences() -> None:
    from rnnkit.data import collate_sequences

    good = np.zeros((3, 2))
    for bad in (np.nan, np.inf, -np.inf):
        x = good.copy()
        x[1, 1] = bad
        with pytest.raises(ValueError, match=r"sequence 1 contains NaN or inf; fill or drop those values first"):
            collate_sequences([good, x])
        with pytest.raises(ValueError, match="targets contain NaN or inf"):
            collate_sequences([good, good], targets=[0.5, bad])
        with pytest.raises(ValueError, match="target sequence 0 contains NaN or inf"):
            collate_sequences([good], targets=[np.array([0.0, bad, 1.0])])
        with pytest.raises(ValueError, match="condition vectors contain NaN or inf"):
            collate_sequences([good], conditions=[[bad, 1.0]])


def test_values_beyond_float32_in_real_valued_sequences() -> None:
    """1e300 is finite in float64 but inf in float32: refused with one line and no numpy overflow warning; the
    largest float32 itself, and every value below it, is taken as it is."""
    import warnings

    from rnnkit.data import collate_sequences
    from rnnkit.data.batching import FLOAT32_MAX, NonFiniteValues

    edge = np.array([[FLOAT32_MAX], [-FLOAT32_MAX], [1.5]])
    assert collate_sequences([edge]).inputs[0, :, 0].tolist() == [FLOAT32_MAX, -FLOAT32_MAX, 1.5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in the cast would raise here instead of the ValueError
        with pytest.raises(NonFiniteValues, match=r"sequence 1: a value of magnitude 1e\+300 lies beyond the float32"):
            collate_sequences([np.ones((2, 1)), np.array([[1.0], [-1e300]])])
        with pytest.raises(ValueError, match=r"target sequence 0: a value of magnitude 1e\+300 lies beyond"):
            collate_sequences([np.ones((2, 1))], targets=[np.array([0.5, 1e300])])
        with pytest.raises(ValueError, match=r"targets: a value of magnitude 1e\+300 lies beyond"):
            collate_sequences([np.ones((2, 1))], targets=np.array([1e300]))


def test_wrong_rank_or_feature_size() -> None:
    from rnnkit.data import collate_sequences
    from rnnkit.layers import GRU, LSTM
    from rnnkit.tasks.config import ModelConfig
    from rnnkit.tasks.inputs import InputEncoder
    from rnnkit.windowing import WindowCore, split

    with pytest.raises(ValueError, match=r"sequence 0 has shape \(1, 3, 2\); expected \(L, F\) or \(L,\)"):
        collate_sequences([np.zeros((1, 3, 2))])
    with pytest.raises(ValueError, match=r"different feature sizes \[2, 3\]"):
        collate_sequences([np.zeros((3, 2)), np.zeros((3, 3))])
    lstm = LSTM(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"input must be 3-D .*or unbatched 2-D \(T, I\), got shape \(2, 3, 4, 3\)"):
        lstm(torch.zeros(2, 3, 4, 3))
    with pytest.raises(ValueError, match=r"input feature size must equal input_size=3, got 5"):
        GRU(3, 4)(torch.zeros(2, 3, 5))
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        lstm(torch.zeros(2, 3, 3, dtype=torch.long))
    window = WindowCore(3, 4, window=2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, 3\), got \(2, 3, 5\)"):
        window(torch.zeros(2, 3, 5))
    with pytest.raises(TypeError, match=r"x has dtype torch\.float64 but the weights are torch\.float32"):
        window(torch.zeros(2, 3, 3, dtype=torch.float64))
    reals = InputEncoder(ModelConfig(input_features=3))
    with pytest.raises(ValueError, match=r"real-valued inputs must have shape \(B, T, 3\), got \(2, 4, 2\)"):
        reals(torch.zeros(2, 4, 2))
    tokens = InputEncoder(ModelConfig(vocab_size=10))
    with pytest.raises(ValueError, match=r"token inputs must be ids of shape \(B, T\), got \(2, 4, 1\)"):
        tokens(torch.zeros(2, 4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="0-d array"):
        split(np.array(3.0), window=2)


def test_empty_sequences_and_lengths() -> None:
    from rnnkit.data import collate_classification, collate_sequences
    from rnnkit.layers import RNN
    from rnnkit.windowing import WindowCore, split

    with pytest.raises(ValueError, match="item 1 of the batch is empty"):
        collate_classification([[4, 5], []])
    with pytest.raises(ValueError, match=r"sequence 0 is empty \(0 steps\)"):
        collate_sequences([np.zeros((0, 2))])
    with pytest.raises(ValueError, match="cannot collate an empty batch"):
        collate_sequences([])
    with pytest.raises(ValueError, match="x is an empty string"):
        split("", window=2)
    for core in (RNN(2, 3, batch_first=True), WindowCore(2, 3, window=2)):
        x = torch.zeros(2, 4, 2)
        with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=4\], got values from 0 to 3"):
            core(x, lengths=[3, 0])
        with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=4\], got values from 2 to 5"):
            core(x, lengths=[5, 2])
        with pytest.raises(ValueError, match=r"lengths must be 1-D with one entry per sequence \(B=2\)"):
            core(x, lengths=[3])
        with pytest.raises(ValueError, match="at least one time step"):
            core(torch.zeros(2, 0, 2))


def test_too_long_items_at_the_library_level() -> None:
    from rnnkit.data import Vocab

    vocab = Vocab.build(["abc", "de"], max_len=4)
    assert vocab.encode("abcd", add_bos=True, add_eos=True) == [1, 4, 5, 6, 7, 2]
    with pytest.raises(ValueError, match=r"item 'abcde' has 5 characters, more than the maximum of 4; shorten it"):
        vocab.encode("abcde")
    words = Vocab.build(["a b"], unit="word", max_len=2)
    with pytest.raises(ValueError, match="3 words, more than the maximum of 2"):
        words.encode("a b a")
    assert Vocab.from_dict(vocab.to_dict()) == vocab and "max_len" not in Vocab.build(["a"]).to_dict()
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="max_len must be a positive integer or None"):
            Vocab(["a"], max_len=bad)


def test_embedded_data_is_checked_against_the_tasks_kinds_but_not_on_resume(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rnnkit.runs import kind as kinds
    from rnnkit.runs.options import RunOptions

    kinds.check_embedded(RunOptions(task="classify", data="embedded:basicmotions"))  # the series kind's
    kinds.check_embedded(RunOptions(task="generate", data="embedded:gender"))
    kinds.check_embedded(RunOptions(task="tag", data="embedded:x"))  # no kind of tag declares any: its reader says
    with pytest.raises(ValueError, match="for --task classify; choose one of: embedded:country"):
        kinds.check_embedded(RunOptions(task="classify", data="embedded:sunspots"))
    trained = []
    monkeypatch.setattr(type(kinds.KINDS["classify"]), "train", lambda self, opts, out, **kw: trained.append(kw))
    # `train --resume --out RUN --data embedded:sunspots` without --task: the run's own kind reads its own data
    kinds.train_run(RunOptions(task="classify", data="embedded:sunspots"), tmp_path / "run", resume=True)
    assert trained and trained[0]["resume"] is True
    with pytest.raises(ValueError, match="unknown embedded data"):
        kinds.train_run(RunOptions(task="classify", data="embedded:sunspots"), tmp_path / "other")


# ------------------------------------------------------------------------------------------------- the doc


def test_every_row_is_in_the_docs_table() -> None:
    """docs/errors.md lists every row tested here, with the exit code, and quotes what rnnkit says."""
    text = DOC.read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0].replace(" ", "").lower().startswith("|input|command|whatrnnkitsays|exitcode|")
    for row, (_, needles) in ROWS.items():
        hits = [line for line in table if f"`{row}`" in line]
        assert len(hits) == 1, f"row {row!r} is missing from {DOC.name} (or listed twice)"
        assert hits[0].rstrip(" |").endswith("2"), hits[0]
        quoted = hits[0].replace("\\|", "|")
        assert needles[0] in quoted, (row, needles[0])
