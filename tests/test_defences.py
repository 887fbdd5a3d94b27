"""Issue 13, the defences left after the first pass: every file through a declared model, inputs and resources
checked before they are spent, reports that scale, flags that apply, ``gradients RUN`` for every kind.

Each test fails without its defence (an allocator traceback, a KeyError, a run without end, a silently ignored
flag); the rows of docs/errors.md ("Nothing lost, nothing unbounded") name them.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error, make_folder, rnnkit_main, snapshot
from rnnkit import cli

TINY = ["--hidden", "4", "--embed", "2", "--epochs", "1", "--batch-size", "8"]


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


# ------------------------------------------------------------------------------ 2. .npz headers before allocation
def _npz_with_header(path: Path, shape: tuple[int, ...], payload: int = 64) -> Path:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    labels = io.BytesIO()
    np.save(labels, np.array(["a", "b"]))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("X.npy", buf.getvalue() + b"\0" * payload)
        z.writestr("y.npy", labels.getvalue())
    return path


@pytest.mark.parametrize(
    ("shape", "needle"),
    [
        ((10**6, 10**6, 3), "more than the 4 GiB rnnkit reads per array"),
        ((2, 3, 1000), "the file is truncated or corrupt"),  # declares 24,000 bytes, holds 64
    ],
)
def test_an_npz_header_declaring_a_huge_or_missing_array_is_refused_before_allocation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, shape: tuple[int, ...], needle: str
) -> None:
    path = _npz_with_header(tmp_path / "x.npz", shape)
    code, out, err = rnnkit_main(capsys, "train", "--data", path, "--out", tmp_path / "out", *TINY)
    assert_one_line_error(code, out, err, "x.npz", "array 'X'", str(shape), needle)
    assert not (tmp_path / "out").exists()


def test_the_npz_header_check_follows_the_available_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rnnkit import ranges
    from rnnkit.data.arrays import check_npz_headers

    path = tmp_path / "ok.npz"
    np.savez(path, X=np.zeros((4, 2, 100), dtype=np.float32), y=np.array(["a", "b", "a", "b"]))
    check_npz_headers(path)  # 3,200 bytes: fine
    monkeypatch.setattr(ranges, "available_memory", lambda: 1000)
    with pytest.raises(MemoryError, match=r"array 'X' of shape \(4, 2, 100\) needs about"):
        check_npz_headers(path)


def test_a_single_npy_named_npz_is_never_loaded(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**7, 10**7)})
    (tmp_path / "one.npz").write_bytes(buf.getvalue())
    code, out, err = rnnkit_main(capsys, "train", "--data", tmp_path / "one.npz", "--out", tmp_path / "o", *TINY)
    assert_one_line_error(code, out, err, "holds a single array, not an .npz archive")


# ------------------------------------------------------------------------------ 3. weights and classes on load
def test_nan_or_inf_weights_are_refused_on_load(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, classify_run: Path
) -> None:
    from safetensors.torch import load_file, save_file

    for bad in (math.nan, math.inf):
        run = tmp_path / f"run-{bad}"
        shutil.copytree(classify_run, run)
        weights = load_file(run / "model.safetensors")
        name = sorted(weights)[0]
        weights[name].view(-1)[0] = bad
        save_file(weights, run / "model.safetensors")
        for command in (["predict", run, "Aei"], ["evaluate", run]):
            code, out, err = rnnkit_main(capsys, *command)
            assert_one_line_error(code, out, err, "model.safetensors", repr(name), "NaN or infinite")
            assert "nan" not in out


def test_duplicate_classes_are_refused_on_load(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, classify_run: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(classify_run, run)
    config = json.loads((run / "config.json").read_text())
    config["classes"] = ["Alpha", "Alpha"]
    (run / "config.json").write_text(json.dumps(config))
    code, out, err = rnnkit_main(capsys, "predict", run, "Aei")
    assert_one_line_error(code, out, err, "config.json", "field classes", "'Alpha' appears twice")


# ------------------------------------------------------------------------------ 4. resources before they are spent
def test_a_model_too_large_for_memory_is_refused_before_anything_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: Path
) -> None:
    """--hidden 60000 is within the range (65,536) but its GRU has 2·10^10 parameters: refused from the estimate
    (the model built on the meta device), not by an allocator traceback."""
    out_dir = tmp_path / "big"
    code, out, err = rnnkit_main(
        capsys, "train", "--data", names, "--out", out_dir, "--hidden", "60000", "--epochs", "1"
    )
    assert_one_line_error(code, out, err, "parameters", "hidden 60000", "of memory available", "--hidden")
    assert not out_dir.exists()


def test_the_memory_rule_counts_parameters_and_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate is 20 bytes per parameter plus 4·B·(8·H·L·D + E) bytes per step; compared with the memory
    available (here pinned)."""
    from rnnkit import ranges
    from rnnkit.runs.kind import KINDS, load_kinds
    from rnnkit.tasks import ModelConfig, build_model
    from rnnkit.train import TrainConfig

    load_kinds()
    mcfg = ModelConfig(task="classify", model="lstm", hidden_size=32, num_layers=2, vocab_size=30, num_classes=3,
                       embed_dim=16)  # fmt: skip
    params = sum(p.numel() for p in build_model(mcfg).parameters())
    need = 20 * params + 4 * 8 * (8 * 32 * 2 * 1 + 16)
    tcfg = TrainConfig(batch_size=8)
    monkeypatch.setattr(ranges, "available_memory", lambda: need)
    KINDS["classify"].check_resources(mcfg, tcfg)  # exactly enough
    monkeypatch.setattr(ranges, "available_memory", lambda: need - 1)
    with pytest.raises(MemoryError, match=f"{params:,} parameters"):
        KINDS["classify"].check_resources(mcfg, tcfg)


def test_available_memory_honours_an_address_space_limit() -> None:
    import resource

    from rnnkit import ranges

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    free = ranges.available_memory()
    assert free is None or free > 0
    with open("/proc/self/status", encoding="ascii") as f:
        used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = used + 2**30
    if hard != resource.RLIM_INFINITY and limit > hard:
        pytest.skip("the hard address-space limit is lower than this test needs")
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        left = ranges.available_memory()
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert left is not None and left <= 2**30


def test_a_seq2seq_item_beyond_its_cap_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import random

    rng = random.Random(0)
    words = {"".join(rng.choice("abcdef") for _ in range(4)) for _ in range(80)}
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{w}\t{w[::-1]}\n" for w in sorted(words)), encoding="utf-8")
    run = tmp_path / "s2s"
    assert rnnkit_main(capsys, "train", "--task", "seq2seq", "--data", pairs, "--out", run, *TINY)[0] == 0
    code, out, err = rnnkit_main(capsys, "predict", run, "a" * 1001)
    assert_one_line_error(code, out, err, "1001 symbols", "more than the 1000")
    code, out, _ = rnnkit_main(capsys, "predict", run, "abcdef" * 166, "--beam", "2")  # 996 symbols: answered
    assert code == 0 and out.startswith("abcdef")


# ------------------------------------------------------------------------------ 5. reports scale with the classes
def test_the_sparse_confusion_equals_the_dense_one_and_its_macro_f1() -> None:
    from rnnkit.metrics import confusion, confusion_matrix, macro_f1

    rng = np.random.default_rng(0)
    for classes in (2, 7, 40):
        gold = rng.integers(0, classes, 300).tolist()
        pred = [g if rng.random() < 0.6 else int(rng.integers(0, classes)) for g in gold]
        dense = confusion_matrix(gold, pred, classes)
        sparse = confusion(gold, pred, classes)
        assert sparse.dense() == dense
        assert macro_f1(sparse) == macro_f1(dense)  # bitwise: the same classes summed in the same order
        assert sum(n for _, _, n in sparse.sparse()) == 300
        assert all(dense[g][p] == n for g, p, n in sparse.sparse())


def test_the_mean_cross_entropy_of_certain_answers_prints_as_zero_and_counts_read_well() -> None:
    from rnnkit.cliutil import counted
    from rnnkit.metrics import mean_nll

    probs = np.array([[1.0, 0.0], [0.25, 0.75]])
    for rows, expected in (([0], 0.0), ([0, 1], -np.log(0.75) / 2)):
        got = mean_nll(probs[rows], [[0, 1][i] for i in rows])
        assert got == pytest.approx(expected, abs=1e-15) and str(round(got, 4)) != "-0.0"
    over = np.array([[1.0 + 2e-16, 0.0]])  # a mixture rounded a hair above 1
    assert mean_nll(over, [0]) == 0.0 and str(mean_nll(over, [0])) == "0.0"
    assert (counted(1, "epoch"), counted(0, "epoch"), counted(3, "thread")) == ("1 epoch", "0 epochs", "3 threads")


def test_ten_thousand_classes_write_a_small_confusion_and_no_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rnnkit.metrics import confusion
    from rnnkit.plots import plot_confusion
    from rnnkit.ranges import CONFUSION_DENSE_MAX, CONFUSION_PLOT_MAX

    classes = [f"c{i}" for i in range(10_000)]
    gold = list(range(0, 10_000, 7))
    conf = confusion(gold, [(g * 3) % 10_000 for g in gold], len(classes))
    record = conf.record(classes)
    assert record["format"] == "sparse" and "matrix" not in record and len(record["cells"]) == len(gold)
    assert len(json.dumps(record)) < 200_000  # dense: 10^8 cells, about 200 MB of JSON
    small = confusion([0, 1, 1], [0, 1, 0], CONFUSION_DENSE_MAX).record([str(i) for i in range(CONFUSION_DENSE_MAX)])
    assert len(small["matrix"]) == CONFUSION_DENSE_MAX  # up to the cap, confusion.json is as before
    capsys.readouterr()
    assert plot_confusion(conf, classes, tmp_path / "confusion.png") is None
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"confusion.png skipped: 10000 classes, more than the {CONFUSION_PLOT_MAX} a confusion plot shows "
        "(confusion.json holds the counts)"
    ]
    assert not (tmp_path / "confusion.png").exists()


def test_a_classify_run_with_many_classes_writes_the_sparse_confusion(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caps as they reach a run (lowered here, so a tiny run has "many" classes)."""
    from rnnkit import metrics, ranges

    monkeypatch.setattr(metrics, "CONFUSION_DENSE_MAX", 1)
    monkeypatch.setattr(ranges, "CONFUSION_PLOT_MAX", 1)
    data = make_folder(tmp_path / "names")
    run = tmp_path / "run"
    code, _, err = rnnkit_main(capsys, "train", "--data", data, "--out", run, *TINY)
    assert code == 0 and "confusion.png skipped: 2 classes" in err
    record = json.loads((run / "confusion.json").read_text())
    assert record["format"] == "sparse" and record["classes"] == ["Alpha", "Beta"]
    assert not (run / "confusion.png").exists()


# ------------------------------------------------------------------------------ 6. overflow in standardisation
def _series_csv(path: Path, column) -> Path:
    path.write_text("a,b\n" + "".join(f"{column(i)!r},{math.cos(i / 5):.4f}\n" for i in range(80)), encoding="utf-8")
    return path


def test_the_scaler_of_values_near_1e308_is_computed_in_float64_without_overflow() -> None:
    from rnnkit.data.series import Scaler

    small = np.array([[math.sin(i / 3), i % 5] for i in range(200)], dtype=np.float64)
    values = small * np.array([1.5e308, 1.0])  # column 0 near the largest float64
    scaler = Scaler.fit(values)
    # reference: the same statistics computed at a safe scale (exact powers of two keep every bit)
    ref_mean, ref_std = small[:, 0].mean() * 1.5e308, small[:, 0].std() * 1.5e308
    assert math.isclose(scaler.mean[0], ref_mean, rel_tol=1e-12)
    assert math.isclose(scaler.std[0], ref_std, rel_tol=1e-12)
    assert scaler.mean[1] == small[:, 1].mean() and scaler.std[1] == small[:, 1].std()  # the usual path, unchanged
    z = scaler.transform(values[:10])
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z[:, 0], (small[:10, 0] - small[:, 0].mean()) / small[:, 0].std(), rtol=1e-10)
    # x - mean overflows for a value at the other end of the range: one message naming the column
    with pytest.raises(ValueError, match=r"^column 0 is not finite after standardization in float64"):
        scaler.transform(np.array([[-1.79e308, 0.0]]))


def test_forecast_data_near_1e308_trains_or_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    flags = ["--task", "forecast", "--context", "8", "--horizon", "2", *TINY]
    big = _series_csv(tmp_path / "big.csv", lambda i: 1e308 * math.sin(i / 3))
    code, out, err = rnnkit_main(capsys, "train", "--data", big, "--out", tmp_path / "r1", *flags)
    assert_one_line_error(code, out, err, "big.csv", "'a'", "overflow float64", "rescale the column")
    assert not (tmp_path / "r1").exists()
    near = _series_csv(tmp_path / "near.csv", lambda i: 1e307 * (1 + (i % 7) * 1e-3))
    code, out, err = rnnkit_main(capsys, "train", "--data", near, "--out", tmp_path / "r2", *flags)
    assert code == 0, err
    metrics = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("test_") and isinstance(v, float))


def test_rmse_of_errors_beyond_1e154_is_finite_and_equals_the_scaled_reference() -> None:
    from rnnkit.metrics import rmse

    a = np.array([3e200, -1e200, 2e200])
    f = np.zeros(3)
    assert math.isclose(rmse(a, f), 1e200 * math.sqrt((9 + 1 + 4) / 3), rel_tol=1e-14)
    assert rmse([1.0, 2.0], [0.0, 0.0]) == float(np.sqrt(np.mean(np.array([1.0, 4.0]))))  # usual path unchanged


def test_a_non_finite_number_never_reaches_config_json(tmp_path: Path) -> None:
    from rnnkit.runs.folder import write_run_start

    out = tmp_path / "run"
    for config, where in (
        ({"format": "rnnkit-run", "train": {"max_minutes": math.inf}}, "train.max_minutes"),
        ({"data": {"scaler": {"mean": [0.0, math.nan]}}}, "data.scaler.mean[1]"),
    ):
        with pytest.raises(ValueError, match=rf"config.json would hold a non-finite number at {re.escape(where)}"):
            write_run_start(out, config, None, resume=False, overwrite=False)
        assert not out.exists()


def test_max_minutes_inf_is_refused_and_the_old_run_kept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, classify_run: Path, names: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(classify_run, run)
    before = snapshot(run)
    for value in ("inf", "nan", "-inf", "1e400"):
        code, out, err = rnnkit_main(
            capsys, "train", "--data", names, "--out", run, "--overwrite", "--max-minutes", value, *TINY
        )
        assert_one_line_error(code, out, err, "--max-minutes")
    assert snapshot(run) == before


# ------------------------------------------------------------------------------ 9. gradients RUN for every kind
def _kind_data(tmp_path: Path, kind: str) -> tuple[list[str], Path]:
    import random

    rng = random.Random(0)
    if kind in ("classify", "generate"):
        return [], make_folder(tmp_path / "names")
    if kind == "forecast":
        csv = _series_csv(tmp_path / "s.csv", lambda i: math.sin(i / 3))
        return ["--context", "8", "--horizon", "2"], csv
    if kind == "lm":
        (tmp_path / "book.txt").write_text("the cat sat on the mat. " * 60, encoding="utf-8")
        return [], tmp_path / "book.txt"
    if kind == "tag":
        words = [("the", "D"), ("a", "D"), ("cat", "N"), ("dog", "N"), ("sat", "V"), ("ran", "V")]
        seqs = ["\n".join("\t".join(rng.choice(words)) for _ in range(4)) for _ in range(40)]
        (tmp_path / "tags.conll").write_text("\n\n".join(seqs) + "\n", encoding="utf-8")
        return [], tmp_path / "tags.conll"
    if kind == "seq2seq":
        words = sorted({"".join(rng.choice("abcdef") for _ in range(4)) for _ in range(80)})
        (tmp_path / "pairs.tsv").write_text("".join(f"{w}\t{w[::-1]}\n" for w in words), encoding="utf-8")
        return [], tmp_path / "pairs.tsv"
    x = np.random.default_rng(0).normal(size=(24, 2, 12)).astype(np.float32)  # classify on series
    np.savez(tmp_path / "x.npz", X=x, y=np.array(["a", "b"] * 12))
    return [], tmp_path / "x.npz"


@pytest.mark.parametrize("kind", ["classify", "generate", "forecast", "lm", "tag", "seq2seq", "series"])
def test_gradients_of_a_run_of_every_kind(capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str) -> None:
    """``rnnkit gradients RUN`` (a KeyError: 'text_column' for all but the text kinds once) answers for every kind;
    the flow's loss is the model's own loss on the same batch (its ``forward``), and the CSV holds one finite,
    non-negative norm per step of the batch's longest item."""
    from rnnkit import diagnostics
    from rnnkit.runs import kind_of, load_run

    extra, data = _kind_data(tmp_path, kind)
    task = "classify" if kind == "series" else kind
    run = tmp_path / "run"
    tiny = TINY if kind not in ("forecast", "series") else ["--hidden", "4", "--epochs", "1", "--batch-size", "8"]
    if kind == "series":
        tiny = [*tiny, "--ensemble", "1"]  # one model: the default trains an ensemble, whose flow is per member
        # the series default is LSTM-FCN (issue 16): `gradients` measures its LSTM branch (one norm per step,
        # both directions; float64 reference in test_diagnostics.py); the flow of the kind below on a GRU core
        fcn = tmp_path / "fcn"
        code, _, err = rnnkit_main(capsys, "train", "--task", task, "--data", data, "--out", fcn, *tiny, *extra)
        assert code == 0, err
        code, out, err = rnnkit_main(capsys, "gradients", fcn, "--batch-size", "4")
        assert code == 0 and "Traceback" not in err and "lstm-fcn l0_reverse" in out, err
        tiny = [*tiny, "--model", "gru"]
    code, _, err = rnnkit_main(capsys, "train", "--task", task, "--data", data, "--out", run, *tiny, *extra)
    assert code == 0, err
    code, out, err = rnnkit_main(capsys, "gradients", run, "--batch-size", "4")
    assert code == 0 and "Traceback" not in err, err
    assert (run / "gradient_flow.csv").exists() and "wrote" in out

    loaded = load_run(run)
    batch = kind_of(loaded).gradient_batch(loaded, 4)
    flow = diagnostics.gradient_flow(loaded.model, batch)
    with torch.no_grad():
        _, loss = loaded.model(batch)
    assert flow.loss == pytest.approx(float(loss), rel=1e-5)
    T = int(batch.lengths.max())
    for norms in flow.norms.values():
        assert len(norms) == T and all(math.isfinite(v) and v >= 0 for v in norms)
    assert any(v > 0 for norms in flow.norms.values() for v in norms)


def test_gradients_flow_equals_a_hand_unrolled_loop_in_float64() -> None:
    """Reference for the generic replay, in float64: the tagger's loss computed by a hand-unrolled loop over
    torch.nn.GRUCell (the core's weights copied) with a zero perturbation δ_t added to every state h_t; ∂L/∂δ_t is
    the total derivative ∂L/∂h_t through all later steps, and its norm, averaged over the items still running at
    t, is what gradient_flow reports."""
    from rnnkit import diagnostics
    from rnnkit.data.batching import IGNORE_INDEX
    from rnnkit.data.tagging import collate_tagging
    from rnnkit.tasks import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(task="tag", model="gru", hidden_size=5, num_layers=1, vocab_size=12, num_classes=3,
                      embed_dim=4)  # fmt: skip
    model = build_model(cfg).double().eval()
    batch = collate_tagging([[5, 6, 7, 8], [9, 10]], [[0, 1, 2, 0], [1, 2]])
    flow = diagnostics.gradient_flow(model, batch)

    cell = torch.nn.GRUCell(4, 5).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(model.core, f"{name}_l0"))
    x = model.inputs(batch.inputs, batch.lengths)  # (B, T, E)
    deltas = [torch.zeros(2, 5, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    h = torch.zeros(2, 5, dtype=torch.float64)
    outs = []
    for t in range(4):
        h = cell(x[:, t], h) + deltas[t]
        outs.append(h)
    logits = model.head(torch.stack(outs, dim=1))  # (B, T, C)
    targets = batch.targets.masked_fill(torch.tensor([[False] * 4, [False, False, True, True]]), IGNORE_INDEX)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 3), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    grads = torch.autograd.grad(loss, deltas)
    lens = batch.lengths.tolist()
    ref = [float(torch.stack([grads[t][b].norm() for b in range(2) if t < lens[b]]).mean()) for t in range(4)]
    (norms,) = flow.norms.values()
    assert flow.loss == pytest.approx(float(loss), rel=1e-12)
    assert norms == pytest.approx(ref, rel=1e-10)


def test_gradients_of_a_model_without_per_step_states_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: Path
) -> None:
    run = tmp_path / "win"
    assert rnnkit_main(capsys, "train", "--data", names, "--out", run, "--model", "window", *TINY)[0] == 0
    code, out, err = rnnkit_main(capsys, "gradients", run)
    assert_one_line_error(code, out, err, "no per-step recurrent states")


# ------------------------------------------------------------------------------ 8. no flag is ignored
@pytest.mark.parametrize(
    ("task", "flags", "needle"),
    [
        ("classify", ["--horizon", "3"], "--horizon does not apply to --task classify"),
        ("classify", ["--beam", "2", "--context", "4"], "--beam, --context do not apply to --task classify"),
        ("classify", ["--unconditional"], "--unconditional does not apply to --task classify"),
        ("generate", ["--strategy", "recursive"], "--strategy does not apply to --task generate"),
        ("tag", ["--text-column", "x"], "--text-column does not apply to --task tag"),
        ("seq2seq", ["--max-len", "5"], "--max-len does not apply to --task seq2seq"),
        ("forecast", ["--max-items", "9"], "--max-items does not apply to --task forecast"),
        ("forecast", ["--unit", "word"], "--unit does not apply to --task forecast"),
        ("lm", ["--label-column", "y"], "--label-column does not apply to --task lm"),
    ],
)
def test_a_train_flag_of_another_task_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, names: Path, task: str, flags: list[str], needle: str
) -> None:
    """One generic check (RunKind.check_flags) over every kind's declared flags and the common options a kind
    never reads; before --out is claimed, so nothing is written."""
    out = tmp_path / "out"
    code, stdout, err = rnnkit_main(capsys, "train", "--task", task, "--data", names, "--out", out, *flags, *TINY)
    assert_one_line_error(code, stdout, err, needle, "leave")
    assert not out.exists()


def test_a_series_classify_run_refuses_the_text_classifier_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--task classify on an .npz file is the series kind (dispatched by the data): the text kind's --max-len
    does not apply to it."""
    np.savez(tmp_path / "x.npz", X=np.zeros((8, 1, 5), dtype=np.float32), y=np.array(["a", "b"] * 4))
    code, out, err = rnnkit_main(
        capsys, "train", "--data", tmp_path / "x.npz", "--out", tmp_path / "o", "--max-len", "4", "--epochs", "1"
    )
    assert_one_line_error(code, out, err, "--max-len does not apply to --task classify-series")


def test_every_kind_flag_applies_to_the_kinds_that_declare_it() -> None:
    """The check accepts each kind's own flags (the ones rnnkit train --help lists in its group)."""
    from rnnkit.runs import RunOptions
    from rnnkit.runs.registry import load_kinds

    for kind in load_kinds().values():
        kind.check_flags(RunOptions(task=kind.name, options={f.dest: 1 for f in kind.flags}))
        with pytest.raises(ValueError, match="--not-a-flag does not apply"):
            kind.check_flags(RunOptions(task=kind.name, options={"not_a_flag": 1}))


# ------------------------------------------------------------------------------ 11. the README's promises
def test_the_readme_promise_one_line_exit_2_nothing_overwritten(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, classify_run: Path, names: Path
) -> None:
    """README, "The command line": a missing or empty file, a folder with one class, an unknown symbol, a run
    folder without weights, an existing --out: one line on stderr, exit 2, nothing on disk overwritten."""
    readme = (Path(cli.__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert "gets one line on stderr and exit\ncode 2; nothing on disk is overwritten" in readme
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    one = tmp_path / "one"
    one.mkdir()
    (one / "Alpha.txt").write_text("Aei\nAou\n", encoding="utf-8")
    no_weights = tmp_path / "no-weights"
    shutil.copytree(classify_run, no_weights)
    (no_weights / "model.safetensors").unlink()
    existing = tmp_path / "existing"
    shutil.copytree(classify_run, existing)
    cases = [
        (["train", "--data", tmp_path / "missing.txt", "--out", tmp_path / "o1"], "no such path"),
        (["train", "--task", "generate", "--data", tmp_path / "empty.txt", "--out", tmp_path / "o2"], "is empty"),
        (["train", "--data", one, "--out", tmp_path / "o3"], "1 class"),
        (["predict", classify_run, "Aqz"], "unknown characters"),
        (["evaluate", no_weights], "no model.safetensors"),
        (["train", "--data", names, "--out", existing, *TINY], "already holds files"),
    ]
    before = snapshot(tmp_path)
    for argv, needle in cases:
        code, out, err = rnnkit_main(capsys, *argv)
        assert_one_line_error(code, out, err, needle)
    assert snapshot(tmp_path) == before
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 3))


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda c: c["forecast"].pop("scaler"), "forecast.scaler"),
        (lambda c: c["forecast"].update(target=7), "forecast"),
        (lambda c: c["forecast"]["scaler"].update(std=[0.0, 1.0]), "forecast.scaler"),
        (lambda c: c["forecast"].update(strategy="sideways"), "forecast.strategy"),
        (lambda c: c["forecast"]["split"].update(train_end=999), "forecast.split"),
        (lambda c: c["forecast"].update(mase_scale=-1), "forecast.mase_scale"),
        (lambda c: c["target_vocab"].update(symbols=["a", "a"]), "target_vocab.symbols"),
    ],
)
def test_a_hand_edited_forecast_or_seq2seq_section_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory, edit, field: str
) -> None:
    """The kinds' own sections of config.json (forecast's scaler and split, seq2seq's target vocabulary) are
    declared too: a KeyError or a division by a zero std before."""
    base = tmp_path_factory.getbasetemp() / "sections"
    if not base.exists():
        base.mkdir()
        for kind in ("forecast", "seq2seq"):
            (base / f"{kind}-data").mkdir()
            extra, data = _kind_data(base / f"{kind}-data", kind)
            tiny = TINY if kind == "seq2seq" else ["--hidden", "4", "--epochs", "1", "--batch-size", "8"]
            argv = ["train", "--task", kind, "--data", data, "--out", base / kind, *tiny, *extra]
            assert cli.main([str(a) for a in argv]) == 0
    kind = "seq2seq" if field.startswith("target_vocab") else "forecast"
    run = tmp_path_factory.mktemp("edited") / kind
    shutil.copytree(base / kind, run)
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))
    code, out, err = rnnkit_main(capsys, "evaluate", run)
    assert_one_line_error(code, out, err, "config.json", f"field {field}")


@pytest.mark.parametrize(
    ("kind", "flags", "needle"),
    [
        ("forecast", ["--horizon", "2", "--top-k", "3"], "--top-k does not apply to predict on a forecast run"),
        ("lm", ["the", "--beam", "2"], "--beam does not apply to predict on a lm run"),
        ("seq2seq", ["abc", "--top-k", "2"], "--top-k does not apply to predict on a seq2seq run"),
        ("series", ["--top-k", "2"], "--top-k does not apply to predict on a classify-series run"),
        ("tag", ["the cat", "--top-k", "2"], "--top-k does not apply to predict on a tag run"),
        ("classify", ["Aei", "--beam", "2"], "--beam does not apply to predict on a classify run"),
    ],
)
def test_a_predict_flag_the_run_does_not_read_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str, flags: list[str], needle: str
) -> None:
    """One generic check (predict_lines over RunKind.predict_flags); --top-k was silently ignored by forecast,
    seq2seq and series runs, --beam by lm runs."""
    extra, data = _kind_data(tmp_path, kind)
    task = "classify" if kind == "series" else kind
    tiny = TINY if kind not in ("forecast", "series") else ["--hidden", "4", "--epochs", "1", "--batch-size", "8"]
    run = tmp_path / "run"
    assert rnnkit_main(capsys, "train", "--task", task, "--data", data, "--out", run, *tiny, *extra)[0] == 0
    if kind == "series":
        flags = ["--data", data, *flags]
    assert_one_line_error(*rnnkit_main(capsys, "predict", run, *flags), needle, "leave it out")
    without = flags[: flags.index(needle.split()[0])]  # the same call without the foreign flag is answered
    code, _, err = rnnkit_main(capsys, "predict", run, *without)
    assert code == 0, err
