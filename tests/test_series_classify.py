"""Tests of the ``classify-series`` app (rnnkit.runs.classify_series): real-valued multichannel series classification.

Covered: which options the app claims; the classifier on unequal-length real-valued series against torch.nn.GRU
after a weight copy, and a padded batch equal to each series run alone (logits and gradients, float64); the
standardizer fitted on the training part only (test and validation data never change it); the CLI end to end on
tiny ``.ts`` files written here (train, evaluate, predict, the metrics agreeing with predict's output), an
``.npz`` run with a carved test part, ``--resume`` after an interruption, and bad input (exit 2, one line,
nothing on disk changed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import rnnkit.data.series_inputs as series_inputs
import rnnkit.runs.classify_series as series_app
import rnnkit.runs.kind  # the series-classification kind
import rnnkit.runs.series_defaults as series_defaults
import rnnkit.train
from rnnkit import cli
from rnnkit.data.arrays import Standardizer, as_sequences, read_ts
from rnnkit.runs import RunOptions, load_run
from rnnkit.runs.classify_series import APP, handles, prepare_series, series_batch
from rnnkit.tasks import ModelConfig, SequenceClassifier

CLASSES = ["rise", "fall", "wave"]
TINY = ["--hidden", "8", "--epochs", "3", "--batch-size", "8", "--ensemble", "1", "--kernels", "0"]  # one network


def make_series(n_per_class: int, seed: int, channels: int = 2, offset: float = 0.0) -> tuple[list, list[str]]:
    """Unequal-length series (6–14 steps) whose class shows in their shape: a rise, a fall, or a wave."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(n_per_class):
        for cls in CLASSES:
            n = int(rng.integers(6, 15))
            t = np.linspace(0.0, 1.0, n)
            base = {"rise": 3 * t, "fall": 3 - 3 * t, "wave": np.sin(6 * t)}[cls]
            x = np.stack([base * (c + 1) + offset + 0.1 * rng.normal(size=n) for c in range(channels)])  # (C, L)
            X.append(np.round(x, 4))
            y.append(cls)
    return X, y


def write_ts(path: Path, X: list, y: list[str], missing: set[tuple[int, int, int]] = frozenset()) -> Path:
    """A ``.ts`` file written by hand; ``missing`` holds (series, channel, step) written as '?'."""
    lines = [
        "# written by the test",
        "@problemName Tiny",
        "@timeStamps false",
        f"@missing {str(bool(missing)).lower()}",
    ]
    lines += ["@univariate false", f"@dimensions {X[0].shape[0]}", "@equalLength false"]
    lines += [f"@classLabel true {' '.join(CLASSES)}", "@data"]
    for i, (x, lab) in enumerate(zip(X, y, strict=True)):
        dims = [
            ",".join("?" if (i, c, j) in missing else repr(float(v)) for j, v in enumerate(ch))
            for c, ch in enumerate(x)
        ]
        lines.append(":".join(dims) + f":{lab}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_run(out: Path, files: tuple[str, str], *args: str) -> Path:
    """``rnnkit train --task classify`` on the TRAIN and TEST ``files`` (:func:`train_test_files`) with ``args``,
    into ``out``; returns ``out``."""
    train, test = files
    assert (
        cli.main(["train", "--task", "classify", "--data", train, "--test-data", test, *args, "--out", str(out)]) == 0
    )
    return out


def train_test_files(base: Path, seed: int, n_train: int = 8, n_test: int = 3) -> tuple[str, str]:
    """A TRAIN and a TEST ``.ts`` file of :func:`make_series` (seeds ``seed`` and ``seed + 1``) under ``base``."""
    X, y = make_series(n_train, seed=seed)
    Xt, yt = make_series(n_test, seed=seed + 1)
    return str(write_ts(base / "TRAIN.ts", X, y)), str(write_ts(base / "TEST.ts", Xt, yt))


def rnnkit_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: "), err
    assert "Traceback" not in err and out == ""
    for needle in needles:
        assert needle in lines[0], (needle, err)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------------- claims
def test_the_app_claims_series_files_only() -> None:
    for data in ("a/TRAIN.ts", "b.NPZ", "embedded:basicmotions"):
        assert handles(RunOptions(task="classify", data=data)), data
    for task, data in (("classify", None), ("classify", "names.csv"), ("classify", "folder"), ("generate", "a.ts")):
        assert not handles(RunOptions(task=task, data=data)), (task, data)


# ---------------------------------------------------------------------------------------------------------- model
def _classifier(model: str = "gru", bidirectional: bool = True) -> SequenceClassifier:
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="classify",
        model=model,
        vocab_size=0,
        input_features=2,
        num_classes=3,
        hidden_size=5,
        bidirectional=bidirectional,
        dropout=0.0,
    )
    return SequenceClassifier(cfg).double().eval()


def test_classifier_on_real_series_matches_torch_gru_after_a_weight_copy() -> None:
    model = _classifier()
    X, _ = make_series(2, seed=1)
    seqs = as_sequences(X)
    scaler = Standardizer.fit(seqs)
    batch = series_batch(seqs, scaler)
    batch.inputs = batch.inputs.double()
    logits, loss = model(batch)
    assert loss is None and logits.shape == (len(seqs), 3)
    ref = torch.nn.GRU(2, 5, batch_first=True, bidirectional=True).double()
    ref.load_state_dict(model.core.state_dict())
    for i, s in enumerate(scaler.transform(seqs)):
        x = torch.from_numpy(s).float().double().unsqueeze(0)  # (1, L_i, C), the batch's float32 rounding
        _, h_n = ref(x)  # (2, 1, H): forward and backward final states
        want = model.head(torch.cat([h_n[0, 0], h_n[1, 0]]))  # (3,)
        torch.testing.assert_close(logits[i], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("model", ["gru", "lstm"])
def test_padded_batch_equals_each_series_alone(model: str) -> None:
    net = _classifier(model)
    X, y = make_series(2, seed=2)
    seqs = as_sequences(X)
    scaler = Standardizer.fit(seqs)
    labels = [CLASSES.index(lab) for lab in y]
    assert len({s.shape[0] for s in seqs}) > 1  # unequal lengths: the batch is padded

    def run(items: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        net.zero_grad()
        batch = series_batch([seqs[i] for i in items], scaler, [labels[i] for i in items])
        batch.inputs = batch.inputs.double()
        logits, loss = net(batch)
        (loss * len(items)).backward()  # the summed loss, so that grads add up over items
        return logits.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}

    logits, grads = run(list(range(len(seqs))))
    alone = [run([i]) for i in range(len(seqs))]
    for i, (row, _) in enumerate(alone):
        torch.testing.assert_close(logits[i], row[0], rtol=1e-10, atol=1e-12)
    for k, g in grads.items():
        torch.testing.assert_close(g, sum(a[1][k] for a in alone), rtol=1e-9, atol=1e-12, msg=k)


# ---------------------------------------------------------------------------------------------------------- scaling
def test_standardization_uses_the_training_part_only(tmp_path: Path) -> None:
    X, y = make_series(6, seed=3)
    Xt, yt = make_series(2, seed=4)
    train_file = write_ts(tmp_path / "train.ts", X, y)
    split = prepare_series(str(train_file), test_data=str(write_ts(tmp_path / "test.ts", Xt, yt)), seed=0)
    train_idx, val_idx = split.record["train"], split.record["val"]
    assert sorted(train_idx + val_idx) == list(range(len(X))) and val_idx and not set(train_idx) & set(val_idx)
    assert len(split.test) == len(Xt)
    # the scaler is NumPy's statistics of the training indices, nothing else
    stacked = np.concatenate([X[i].T for i in train_idx])  # (Σ L_i, C)
    np.testing.assert_allclose(split.scaler.mean, stacked.mean(0), rtol=1e-13)
    np.testing.assert_allclose(split.scaler.std, stacked.std(0), rtol=1e-13)
    # other test data, or other values in the validation series, leave it as it was
    loud = [x * 1000 + 50 for x in Xt]
    other = prepare_series(str(train_file), test_data=str(write_ts(tmp_path / "loud.ts", loud, yt)), seed=0)
    assert other.scaler == split.scaler
    X2 = [x * 1000 if i in val_idx else x for i, x in enumerate(X)]
    changed = prepare_series(str(write_ts(tmp_path / "train2.ts", X2, y)), test_data=str(tmp_path / "test.ts"))
    assert changed.record == {**split.record, "data": str((tmp_path / "train2.ts").resolve())}
    assert changed.scaler == split.scaler
    # an explicit validation file never changes it either
    with_val = prepare_series(str(train_file), val_data=str(tmp_path / "loud.ts"), test_data=str(tmp_path / "test.ts"))
    again = prepare_series(str(train_file), val_data=str(tmp_path / "test.ts"), test_data=str(tmp_path / "loud.ts"))
    assert with_val.scaler == again.scaler
    assert with_val.record["train"] == list(range(len(X)))


# ---------------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("series")
    X, y = make_series(8, seed=10)
    Xt, yt = make_series(3, seed=11)
    return {
        "base": base,
        "train": write_ts(base / "TRAIN.ts", X, y, missing={(0, 1, 2), (5, 0, 0)}),
        "test": write_ts(base / "TEST.ts", Xt, yt),
    }


@pytest.fixture(scope="module")
def ts_run(files: dict[str, Path]) -> Path:
    out = files["base"] / "run"
    args = ["train", "--task", "classify", "--data", files["train"], "--test-data", files["test"], "--out", out]
    assert cli.main([str(a) for a in [*args, *TINY]]) == 0
    return out


def test_train_on_ts_files_writes_a_complete_run(ts_run: Path, files: dict[str, Path]) -> None:
    for name in ("config.json", "split.json", "model.safetensors", "metrics.json", "curve.csv", "confusion.json"):
        assert (ts_run / name).is_file(), name
    m = read_json(ts_run / "metrics.json")
    assert m["app"] == APP and m["task"] == "classify" and m["model"] == "lstm-fcn"  # the default since issue 16
    assert m["num_test"] == 9 and m["num_train"] + m["num_val"] == 24 and m["num_channels"] == 2
    assert m["missing_filled"] == 2 and m["epochs"] == 3
    for key in ("test_accuracy", "macro_f1", "majority_accuracy", "test_loss", "train_seconds"):
        assert isinstance(m[key], float | int) and math.isfinite(m[key]), key
    assert m["majority_class"] in CLASSES and m["majority_accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    config = read_json(ts_run / "config.json")
    assert config["app"] == APP and config["classes"] == CLASSES
    # the default reads each series z-normalised beside its raw values: 2 channels in, 4 into the model
    assert config["model"]["vocab_size"] == 0 and config["model"]["input_features"] == 4
    assert config["series_norm"] == "both" and config["num_channels"] == 2
    assert config["model"]["bidirectional"] is True  # the app's default core
    split = prepare_series(str(files["train"]), test_data=str(files["test"]), seed=0, series_norm="both")
    assert Standardizer.from_dict(config["scaler"]) == split.scaler
    conf = read_json(ts_run / "confusion.json")
    assert conf["classes"] == CLASSES and sum(map(sum, conf["matrix"])) == 9
    assert m["test_accuracy"] == pytest.approx(sum(conf["matrix"][i][i] for i in range(3)) / 9, abs=1e-4)


def test_evaluate_and_predict_agree_with_the_run(
    capsys: pytest.CaptureFixture[str], ts_run: Path, files: dict[str, Path]
) -> None:
    m = read_json(ts_run / "metrics.json")
    for extra in ([], ["--data", files["test"]]):
        code, out, err = rnnkit_main(capsys, "evaluate", ts_run, "--json", *extra)
        assert code == 0, err
        e = json.loads(out)
        assert e["num_items"] == 9
        for key in ("test_accuracy", "macro_f1", "test_loss"):
            assert e[key] == m[key], (key, extra)
    code, out, err = rnnkit_main(capsys, "predict", ts_run, "--data", files["test"])
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 9
    test = read_ts(files["test"])
    run = load_run(ts_run)
    batch = series_batch(
        as_sequences(test.X), Standardizer.from_dict(run.config["scaler"]), series_norm=run.config["series_norm"]
    )
    probs = run.model.predict_proba(batch)  # (N, classes), an independent path: one padded batch in file order
    correct = 0
    for i, line in enumerate(lines):
        index, rest = line.split(": ")
        cls, p = rest.split(" ")
        assert int(index) == i and cls in CLASSES
        assert cls == CLASSES[int(probs[i].argmax())]
        assert float(p) == pytest.approx(float(probs[i].max()), abs=5e-4)
        correct += cls == test.y[i]
    assert m["test_accuracy"] == pytest.approx(correct / 9, abs=1e-4)


def test_npz_run_with_a_carved_test_part(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    X = rng.normal(size=(30, 3, 7))
    y = np.array(["a", "b", "c"] * 10)
    X[y == "b"] += 2.0
    np.savez(tmp_path / "d.npz", X=X, y=y)
    args = ["train", "--task", "classify", "--data", tmp_path / "d.npz", "--out", tmp_path / "run", "--hidden", "8"]
    code, out, err = rnnkit_main(capsys, *args, "--epochs", "1")
    assert code == 0, err
    assert "test series" in out
    m = read_json(tmp_path / "run" / "metrics.json")
    split = read_json(tmp_path / "run" / "split.json")
    parts = [split["train"], split["val"], split["test"]]
    assert sorted(i for p in parts for i in p) == list(range(30))
    assert [len(p) for p in parts] == [m["num_train"], m["num_val"], m["num_test"]] == [18, 6, 6]
    code, out, err = rnnkit_main(capsys, "evaluate", tmp_path / "run", "--json")  # rebuilds the carved test part
    assert code == 0, err
    assert json.loads(out)["test_accuracy"] == m["test_accuracy"]
    code, out, err = rnnkit_main(capsys, "predict", tmp_path / "run", "--data", tmp_path / "d.npz")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 30 and all(line.split(": ")[1].split()[0] in "abc" for line in lines)
    correct = sum(lines[i].split(": ")[1].split()[0] == y[i] for i in split["test"])
    assert m["test_accuracy"] == pytest.approx(correct / len(split["test"]), abs=1e-4)


def interrupting_fit(stop_at: int):
    def fit(*args, **kwargs):
        def on_step(trainer: rnnkit.train.Trainer) -> None:
            if trainer.state["step"] == stop_at:
                trainer.request_stop()

        return rnnkit.train.fit(*args, on_step=on_step, **kwargs)

    return fit


def test_resume_after_an_interruption_gives_the_same_weights(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]
) -> None:
    args = ["train", "--data", files["train"], "--test-data", files["test"], *TINY, "--dropout", "0.3", "--seed", "3"]
    code, _, err = rnnkit_main(capsys, *args, "--out", tmp_path / "a")
    assert code == 0, err
    with monkeypatch.context() as m:
        m.setattr(rnnkit.runs.kind, "fit", interrupting_fit(4))  # 18 training series, 3 steps per epoch: in epoch 2
        code, out, err = rnnkit_main(capsys, *args, "--out", tmp_path / "b")
    assert code == 0 and "(interrupted)" in out, err
    interrupted = load_file(str(tmp_path / "b" / "model.safetensors"))
    final = load_file(str(tmp_path / "a" / "model.safetensors"))
    assert any(not torch.equal(interrupted[k], final[k]) for k in final), "the interruption stopped nothing"
    code, out, err = rnnkit_main(capsys, "train", "--data", files["train"], "--resume", "--out", tmp_path / "b")
    assert code == 0, err
    assert "resuming" in err
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma, mb = read_json(tmp_path / "a" / "metrics.json"), read_json(tmp_path / "b" / "metrics.json")
    assert mb["stopped_reason"] == "completed" and mb["test_accuracy"] == ma["test_accuracy"]
    code, out, err = rnnkit_main(capsys, "train", "--data", files["test"], "--resume", "--out", tmp_path / "b")
    assert_one_line_error(code, out, err, "cannot change --data")
    # the app continues a run from its folder alone (what `train --resume --out RUN` needs): a finished run
    # is re-scored, its weights untouched
    again = series_app.train_series(RunOptions(progress="none"), tmp_path / "b", resume=True, log=lambda _: None)
    assert again["test_accuracy"] == mb["test_accuracy"] and again["epochs"] == mb["epochs"]
    resumed = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(resumed[k], b[k]) for k in b)


def test_bad_input_is_one_line_and_leaves_runs_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, ts_run: Path, files: dict[str, Path]
) -> None:
    before = snapshot(ts_run)
    X, y = make_series(2, seed=5, channels=3)
    three = write_ts(tmp_path / "three.ts", X, y)
    stamped = tmp_path / "stamped.ts"
    stamped.write_text("@timeStamps true\n@classLabel true rise\n@data\n(0,1.0):rise\n", encoding="utf-8")
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((2, 3)), np.zeros((2, 4))
    np.savez(tmp_path / "ragged.npz", X=ragged, y=np.array(["rise", "fall"]))
    X1, _ = make_series(1, seed=6)
    unknown = write_ts(tmp_path / "unknown.ts", X1, ["rise", "fall", "wave"])
    text = unknown.read_text(encoding="utf-8").replace(":wave\n", ":jump\n").replace("rise fall wave", "rise fall jump")
    unknown.write_text(text, encoding="utf-8")
    train = ["train", "--task", "classify", "--out", ts_run, "--overwrite", *TINY]
    cases = [
        ([*train, "--data", tmp_path / "missing.ts"], ["no such .ts file"]),
        ([*train, "--data", stamped], ["@timeStamps true is not supported"]),
        ([*train, "--data", tmp_path / "ragged.npz"], ["object array", ".ts file"]),
        ([*train, "--data", files["train"], "--test-data", three], ["3 channels", "has 2"]),
        ([*train, "--data", files["train"], "--test-data", unknown], ["['jump']", "training classes"]),
        ([*train, "--data", files["train"], "--embed", "4"], ["--embed"]),
        (["evaluate", ts_run, "--data", three], ["3 channels", "reads 2"]),
        (["predict", ts_run, "--data", tmp_path / "ragged.npz"], ["object array"]),
        (["predict", ts_run, "1,2,3"], ["--data FILE.ts"]),
        (["predict", ts_run], ["--data FILE.ts"]),
    ]
    for args, needles in cases:
        assert_one_line_error(*rnnkit_main(capsys, *args), *needles)
    assert snapshot(ts_run) == before


# ---------------------------------------------------------------------------------------------------------- series norm
def test_zscore_each_and_model_inputs_by_hand() -> None:
    rng = np.random.default_rng(3)
    seqs = [rng.normal(5.0, 3.0, size=(7, 2)), np.array([[2.0, 1.0], [2.0, 3.0], [2.0, 5.0]])]
    z = series_inputs.zscore_each(seqs)
    for s, out in zip(seqs, z, strict=True):
        for c in range(2):
            col = [float(v) for v in s[:, c]]
            mu = sum(col) / len(col)
            sd = math.sqrt(sum((v - mu) ** 2 for v in col) / len(col))
            want = [(v - mu) / sd if sd > 1e-12 * max(1.0, abs(mu)) else v - mu for v in col]
            np.testing.assert_allclose(out[:, c], want, rtol=1e-12, atol=1e-12)
    assert z[1][:, 0].tolist() == [0.0, 0.0, 0.0]  # a constant channel is only centred
    both = series_inputs.model_inputs(seqs, "both")
    for s, zz, b in zip(seqs, z, both, strict=True):
        assert b.shape == (len(s), 4)
        np.testing.assert_array_equal(b[:, :2], zz)
        np.testing.assert_array_equal(b[:, 2:], s)
    for s, n in zip(seqs, series_inputs.model_inputs(seqs, "none"), strict=True):
        np.testing.assert_array_equal(n, s)
    with pytest.raises(ValueError, match="unknown"):
        series_inputs.model_inputs(seqs, "minmax")


def test_zscore_each_of_huge_values_equals_that_of_the_scaled_series() -> None:
    """Values whose squares pass float64's range (a variance would be inf and every z 0) z-normalise as the same
    series at ordinary scale does; values at ordinary scale take the plain path, bit for bit as before."""
    rng = np.random.default_rng(4)
    base = rng.normal(5.0, 3.0, size=(9, 2))
    (want,) = series_inputs.zscore_each([base])
    for scale in (1e200, 1e160, 1e300):
        (got,) = series_inputs.zscore_each([base * scale])
        assert np.isfinite(got).all() and np.abs(got).max() > 1
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    mean, std = base.mean(axis=0), base.std(axis=0)
    np.testing.assert_array_equal(series_inputs.zscore_each([base])[0], (base - mean) / std)


def test_default_epochs_follow_the_step_budget() -> None:
    X, y = make_series(2, seed=0)
    small = read_ts_like(X, y)
    assert series_app.default_epochs(small) == series_app.DEFAULTS["epochs"]  # a few short series: 200
    steps = sum(x.shape[1] for x in X)

    def longer(k: int) -> int:  # the default epochs of the same series k times longer, and by the rule written
        got = series_app.default_epochs(read_ts_like([np.tile(x, (1, k)) for x in X], y))
        per_epoch = k * steps
        floor = max(series_app.FEWEST_EPOCHS, min(series_app.MIN_EPOCHS, series_app.MAX_STEPS // per_epoch))
        want = min(series_app.DEFAULTS["epochs"], max(floor, math.ceil(series_app.STEP_BUDGET / per_epoch)))
        assert got == want, (k, got, want)
        return got

    mid = longer(100)  # the step budget: fewer than 200, more than the floor
    assert mid == math.ceil(series_app.STEP_BUDGET / (100 * steps))
    assert series_app.MIN_EPOCHS < mid < series_app.DEFAULTS["epochs"]
    assert longer(500) == series_app.MIN_EPOCHS  # long: the floor (the step budget alone gives fewer)
    assert math.ceil(series_app.STEP_BUDGET / (500 * steps)) < series_app.MIN_EPOCHS
    huge = longer(4000)  # too long for the floor within MAX_STEPS: as many as MAX_STEPS allows
    assert huge == series_app.MAX_STEPS // (4000 * steps) and series_app.FEWEST_EPOCHS < huge < series_app.MIN_EPOCHS
    assert huge * 4000 * steps <= series_app.MAX_STEPS
    assert longer(40_000) == series_app.FEWEST_EPOCHS  # and never fewer than FEWEST_EPOCHS


def test_default_members_follow_the_ensemble_budget() -> None:
    """K = min(MAX_MEMBERS, max(1, ENSEMBLE_STEPS // (epochs · N·L̄'))), the series-steps counted at the factor."""
    from rnnkit.runs import series_defaults as sd

    X, y = make_series(2, seed=0)
    small = read_ts_like(X, y)
    steps = sum(x.shape[1] for x in X)
    assert sd.series_steps(small) == steps
    assert sd.series_steps(small, 3) == sum(-(-x.shape[1] // 3) for x in X)  # a partial window counts as a step
    for k, epochs, f in ((1, 200, 1), (100, 40, 1), (300, 40, 1), (500, 40, 4), (4000, 5, 1)):
        part = read_ts_like([np.tile(x, (1, k)) for x in X], y)
        one = sd.series_steps(part, f) * epochs
        want = min(sd.MAX_MEMBERS, max(1, sd.ENSEMBLE_STEPS // one))
        assert sd.default_members(part, f, epochs) == want, (k, epochs, f)
    assert sd.default_members(small, 1, 200) == sd.MAX_MEMBERS  # a small set: five members
    long = read_ts_like([np.tile(x, (1, 4000)) for x in X], y)
    assert sd.default_members(long, 1, 40) == 1  # a long set: one model, as before
    # ACSF1's training part (80 series of 1,460 steps, 40 epochs) stays one model; OSULeaf's (160 of 61) gets five
    assert sd.ENSEMBLE_STEPS // (80 * 1460 * 40) == 0 and sd.ENSEMBLE_STEPS // (160 * 61 * 62) >= sd.MAX_MEMBERS


def test_default_run_is_an_ensemble_by_the_rule_and_ensemble_1_is_one_model(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """Without --ensemble a new run trains default_members_of(opts) members; --ensemble 1 trains one model exactly
    as the default did before (same weights), and the options record holds the K the rule chose."""
    args = ["train", "--task", "classify", "--data", str(files["train"]), "--test-data", str(files["test"])]
    args += ["--epochs", "2", "--threads", "1"]
    opts = RunOptions(task="classify", data=str(files["train"]), test_data=str(files["test"]), epochs=2)
    k = series_app.default_members_of(opts)
    assert k == series_defaults.MAX_MEMBERS  # a tiny set
    assert cli.main([*args, "--out", str(tmp_path / "d")]) == 0
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    assert config["model"]["ensemble"] == k and config["options"]["options"]["ensemble"] == k
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["ensemble"] == k and len(metrics["members"]) == k
    assert cli.main(["gradients", str(tmp_path / "d")]) == 2  # the flow is one model's: refused in one line
    assert cli.main([*args, "--ensemble", "1", "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "config.json").read_text())
    assert one["model"].get("ensemble", 1) == 1 and (tmp_path / "one" / "curve.csv").is_file()
    # member 0 of the default ensemble is the single run of the same seed: same weights
    single = load_file(tmp_path / "one" / "model.safetensors")
    member = load_file(tmp_path / "d" / "members" / "0" / "model.safetensors")
    assert single.keys() == member.keys()
    for name in single:
        torch.testing.assert_close(member[name], single[name], rtol=0, atol=0)


def read_ts_like(X: list, y: list[str]):
    from rnnkit.data.arrays import SeriesSet

    return SeriesSet(X=[np.asarray(x, dtype=np.float64) for x in X], y=list(y), classes=sorted(set(y)), source="mem")


@pytest.mark.parametrize("norm", ["zscore", "both"])
def test_series_norm_run_saves_it_and_every_reader_applies_it(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], norm: str
) -> None:
    out = files["base"] / f"run-{norm}"
    args = ["train", "--task", "classify", "--data", files["train"], "--test-data", files["test"], "--out", out]
    code, _, err = rnnkit_main(capsys, *args, *TINY, "--series-norm", norm)
    assert code == 0, err
    config, m = read_json(out / "config.json"), read_json(out / "metrics.json")
    assert config["series_norm"] == norm and config["num_channels"] == 2
    assert config["model"]["input_features"] == (4 if norm == "both" else 2)
    split = prepare_series(str(files["train"]), test_data=str(files["test"]), seed=0, series_norm=norm)
    assert Standardizer.from_dict(config["scaler"]) == split.scaler
    want = Standardizer.fit(series_inputs.model_inputs(as_sequences(split.train.X), norm))
    assert split.scaler == want
    code, out_json, err = rnnkit_main(capsys, "evaluate", out, "--json", "--data", files["test"])
    assert code == 0, err
    assert json.loads(out_json)["test_accuracy"] == m["test_accuracy"]
    run = load_run(out)
    test = read_ts(files["test"])
    batch = series_batch(as_sequences(test.X), Standardizer.from_dict(config["scaler"]), series_norm=norm)
    assert batch.inputs.shape[2] == config["model"]["input_features"]
    probs = run.model.predict_proba(batch)
    code, out_lines, err = rnnkit_main(capsys, "predict", out, "--data", files["test"])
    assert code == 0, err
    assert [ln.split(" ")[1] for ln in out_lines.splitlines()] == [CLASSES[int(p.argmax())] for p in probs]
    code, _, err = rnnkit_main(capsys, *args, *TINY, "--series-norm", norm, "--resume")  # a finished run: same
    assert code == 0, err
    again = read_json(out / "metrics.json")
    assert again["test_accuracy"] == m["test_accuracy"] and read_json(out / "config.json")["series_norm"] == norm


def test_val_fraction_zero_trains_on_every_series_for_the_whole_schedule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rng = np.random.default_rng(12)
    X = rng.normal(size=(30, 3, 7))
    y = np.array(["a", "b", "c"] * 10)
    X[y == "b"] += 2.0
    np.savez(tmp_path / "d.npz", X=X, y=y)
    args = ["train", "--task", "classify", "--data", tmp_path / "d.npz", "--hidden", "8", "--epochs", "3"]
    args += ["--ensemble", "1"]  # one model: its curve and schedule below
    code, _, err = rnnkit_main(capsys, *args, "--out", tmp_path / "run", "--val-fraction", "0")
    assert code == 0, err
    m, split = read_json(tmp_path / "run" / "metrics.json"), read_json(tmp_path / "run" / "split.json")
    config = read_json(tmp_path / "run" / "config.json")
    assert split["val"] == [] and sorted(split["train"] + split["test"]) == list(range(30))
    assert [m["num_train"], m["num_val"], m["num_test"]] == [24, 0, 6]
    assert config["data"]["val_fraction"] == 0 and config["train"]["epochs"] == 3
    rows = (tmp_path / "run" / "curve.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert len(rows) == 3 and all(row.split(",")[3] == "" for row in rows)  # every epoch ran, none validated
    # the same split with the default carve: the test part is the same, the validation part goes to training
    carved = prepare_series(str(tmp_path / "d.npz"), seed=0)
    assert split["test"] == carved.record["test"]
    assert sorted(split["train"]) == sorted(carved.record["train"] + carved.record["val"])
    code, out, err = rnnkit_main(capsys, "evaluate", tmp_path / "run", "--json")  # rebuilds the same test part
    assert code == 0, err
    assert json.loads(out)["test_accuracy"] == m["test_accuracy"]
    code, _, err = rnnkit_main(capsys, *args, "--out", tmp_path / "run", "--val-fraction", "0", "--resume")
    assert code == 0, err
    assert read_json(tmp_path / "run" / "metrics.json")["test_accuracy"] == m["test_accuracy"]
    code, out, err = rnnkit_main(capsys, *args, "--out", tmp_path / "bad", "--val-fraction", "1")
    assert code == 2 and "--val-fraction" in err and not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------------------------------------- downsample
def test_downsample_series_is_the_mean_of_every_f_steps_by_hand() -> None:
    rng = np.random.default_rng(5)
    seqs = [rng.normal(size=(11, 2)), rng.normal(size=(3, 2)), rng.normal(size=(8, 2))]
    for f in (1, 2, 3, 4, 20):
        out = series_inputs.downsample_series(seqs, f)
        for s, o in zip(seqs, out, strict=True):
            want = []  # a hand loop: window k holds steps k·f … min(k·f + f, L) − 1
            for k in range(math.ceil(len(s) / f)):
                rows = [s[j] for j in range(k * f, min(k * f + f, len(s)))]
                want.append([sum(float(r[c]) for r in rows) / len(rows) for c in range(2)])
            assert o.shape == (math.ceil(len(s) / f), 2)
            np.testing.assert_allclose(o, np.array(want), rtol=1e-13, atol=1e-15)
    for s, o in zip(seqs, series_inputs.downsample_series(seqs, 1), strict=True):
        np.testing.assert_array_equal(o, s)  # f = 1: the series as they are


def test_auto_downsample_follows_the_rule() -> None:
    X, y = make_series(2, seed=0)  # 6–14 steps: read as they are
    assert series_inputs.auto_downsample(read_ts_like(X, y)) == 1
    for k in (10, 19, 60, 200):
        longer = read_ts_like([np.tile(x, (1, k)) for x in X], y)
        mean_len = sum(x.shape[1] * k for x in X) / len(X)
        want = math.ceil(mean_len / series_inputs.DOWNSAMPLE_TARGET)
        if not series_inputs.DOWNSAMPLE_SHORTEST < mean_len <= series_inputs.DOWNSAMPLE_LONGEST:
            want = 1  # short series and very long recordings are read as they are
        assert series_inputs.auto_downsample(longer) == want, k
    assert series_inputs.auto_downsample(read_ts_like([np.tile(x, (1, 10)) for x in X], y)) == 1
    assert series_inputs.auto_downsample(read_ts_like([np.tile(x, (1, 60)) for x in X], y)) > 1
    assert series_inputs.auto_downsample(read_ts_like([np.tile(x, (1, 200)) for x in X], y)) == 1
    # the default schedule counts the steps the model reads
    long = read_ts_like([np.tile(x, (1, 200)) for x in X], y)
    steps8 = sum(math.ceil(x.shape[1] * 200 / 8) for x in X)
    floor = max(series_app.FEWEST_EPOCHS, min(series_app.MIN_EPOCHS, series_app.MAX_STEPS // steps8))
    want = min(series_app.DEFAULTS["epochs"], max(floor, math.ceil(series_app.STEP_BUDGET / steps8)))
    assert series_app.default_epochs(long, 8) == want


def _trained(capsys: pytest.CaptureFixture[str], files: dict[str, Path], name: str, *extra: str):
    """Train a tiny run ``name`` on the fixture's files with ``extra`` flags: its folder, the train arguments
    (without ``extra`` and the size flags), its config and metrics."""
    out = files["base"] / name
    args = ["train", "--task", "classify", "--data", files["train"], "--test-data", files["test"], "--out", out]
    code, _, err = rnnkit_main(capsys, *args, *TINY, *extra)
    assert code == 0, err
    return out, args, read_json(out / "config.json"), read_json(out / "metrics.json")


def test_downsample_run_saves_it_and_train_and_predict_read_the_same_inputs(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    out, args, config, m = _trained(capsys, files, "run-ds", "--downsample", "3")
    assert config["downsample"] == 3 and config["series_norm"] == "both"
    assert config["options"]["options"]["downsample"] == 3  # the factor, as every setting, written out
    split = prepare_series(str(files["train"]), test_data=str(files["test"]), seed=0, series_norm="both", downsample=3)
    assert split.downsample == 3
    assert Standardizer.from_dict(config["scaler"]) == split.scaler
    pooled = series_inputs.downsample_series(as_sequences(split.train.X), 3)
    assert split.scaler == Standardizer.fit(series_inputs.model_inputs(pooled, "both"))  # on what the model reads
    # the training path's batch of the test series equals predict's batch, and both equal the hand pipeline
    test = read_ts(files["test"])
    scaler = Standardizer.from_dict(config["scaler"])
    train_path = series_app._series_batches(split.test, scaler, 64, 0, series_norm="both", downsample=3)
    idx = list(range(len(split.test)))
    a = train_path.collate(idx)
    b = series_batch(as_sequences(test.X), scaler, series_norm="both", downsample=3)
    torch.testing.assert_close(a.inputs, b.inputs, rtol=0, atol=0)
    assert a.lengths.tolist() == b.lengths.tolist() == [math.ceil(x.shape[1] / 3) for x in test.X]
    pooled_test = series_inputs.downsample_series(as_sequences(test.X), 3)
    hand = scaler.transform(series_inputs.model_inputs(pooled_test, "both"))
    for i, h in enumerate(hand):
        np.testing.assert_allclose(b.inputs[i, : len(h)].numpy(), h, rtol=1e-6, atol=1e-6)
    run = load_run(out)
    probs = run.model.predict_proba(b)
    code, out_lines, err = rnnkit_main(capsys, "predict", out, "--data", files["test"])
    assert code == 0, err
    assert [ln.split(" ")[1] for ln in out_lines.splitlines()] == [CLASSES[int(p.argmax())] for p in probs]
    code, out_json, err = rnnkit_main(capsys, "evaluate", out, "--json", "--data", files["test"])
    assert code == 0, err
    assert json.loads(out_json)["test_accuracy"] == m["test_accuracy"]
    code, _, err = rnnkit_main(capsys, *args, *TINY, "--downsample", "3", "--resume")  # resume keeps the factor
    assert code == 0, err
    assert read_json(out / "config.json")["downsample"] == 3
    # a run folder without the key (saved before --downsample) reads the series as they are
    assert series_app._factor(type("R", (), {"config": {k: v for k, v in config.items() if k != "downsample"}})) == 1


def test_downsample_out_of_range_is_one_line(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    out = files["base"] / "run-ds-bad"
    args = ["train", "--task", "classify", "--data", files["train"], "--test-data", files["test"], "--out", out]
    assert_one_line_error(*rnnkit_main(capsys, *args, *TINY, "--downsample", "-1"), "--downsample")
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------- augment
def test_augment_batch_by_hand_and_padding_stays_zero() -> None:
    from rnnkit.data.batching import collate_sequences

    rng = np.random.default_rng(8)
    seqs = [rng.normal(size=(5, 3)), rng.normal(size=(2, 3)), rng.normal(size=(4, 3))]
    batch = collate_sequences(seqs, targets=[0, 1, 2])
    batch = type(batch)(batch.inputs.double(), batch.lengths, batch.targets)
    assert series_inputs.augment_batch(batch, 0.0, torch.Generator().manual_seed(1)) is batch
    out = series_inputs.augment_batch(batch, 0.3, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)  # the same draws, in the documented order: scales, then jitter
    scale = 1.0 + 0.3 * torch.randn(3, 1, 3, generator=g, dtype=torch.float64)
    noise = 0.15 * torch.randn(3, 5, 3, generator=g, dtype=torch.float64)
    for b, s in enumerate(seqs):
        for t in range(5):
            for c in range(3):
                x = float(batch.inputs[b, t, c])
                want = x * float(scale[b, 0, c]) + float(noise[b, t, c]) if t < len(s) else 0.0
                assert float(out.inputs[b, t, c]) == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert torch.equal(out.lengths, batch.lengths) and torch.equal(out.targets, batch.targets)


def test_augmented_epochs_depend_on_seed_and_epoch_only(files: dict[str, Path]) -> None:
    split = prepare_series(str(files["train"]), test_data=str(files["test"]), seed=0, series_norm="both")
    batches = series_app._series_batches(split.train, split.scaler, 4, 0, series_norm="both")
    assert series_inputs.augmented_epochs(batches.epoch, 0.0, 0) == batches.epoch  # none: the plain batches
    aug = series_inputs.augmented_epochs(batches.epoch, 0.2, 7)
    again = series_inputs.augmented_epochs(batches.epoch, 0.2, 7)
    for e in (0, 3):
        a, b, plain = aug(e), again(e), batches.epoch(e)
        assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(a, b, strict=True))  # (seed, epoch) decide
        assert not all(torch.equal(x.inputs, y.inputs) for x, y in zip(a, plain, strict=True))
        assert all(torch.equal(x.targets, y.targets) for x, y in zip(a, plain, strict=True))
    assert not torch.equal(aug(0)[0].inputs, aug(1)[0].inputs)  # fresh draws every epoch


def test_augment_run_saves_it_and_scores_unaugmented_series(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    out, args, config, m = _trained(capsys, files, "run-aug", "--augment", "0.2")
    assert config["augment"] == 0.2
    code, out_json, err = rnnkit_main(capsys, "evaluate", out, "--json", "--data", files["test"])
    assert code == 0, err
    assert json.loads(out_json)["test_accuracy"] == m["test_accuracy"]
    run = load_run(out)
    test = read_ts(files["test"])
    batch = series_batch(as_sequences(test.X), Standardizer.from_dict(config["scaler"]), series_norm="both")
    probs = run.model.predict_proba(batch)  # the plain series: no augmentation outside training
    code, out_lines, err = rnnkit_main(capsys, "predict", out, "--data", files["test"])
    assert code == 0, err
    assert [ln.split(" ")[1] for ln in out_lines.splitlines()] == [CLASSES[int(p.argmax())] for p in probs]
    assert_one_line_error(*rnnkit_main(capsys, *args[:-1], out.with_name("bad"), "--augment", "-1"), "--augment")


def test_default_run_records_the_factor_the_rule_chose(ts_run: Path) -> None:
    config = read_json(ts_run / "config.json")
    assert config["options"]["options"]["downsample"] == 1 == config["downsample"]  # 6–14 steps: as they are
    run = load_run(ts_run)
    assert series_app._factor(run) == 1
