"""``train --ensemble K`` (issue 16, point 3): the averaging module against a hand-written average in float64, and
an ensemble run through the command line (member 0 is the single run, metrics of the ensemble and every member,
evaluate, predict, ``export`` as one ONNX graph of the mean probabilities, ``--resume`` after an interruption in a
member giving the weights of an uninterrupted run, the members' curves on one figure, the run-folder format)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import rnnkit.runs.kind  # the built-in kinds (and the fit the resume test interrupts)
import rnnkit.train
from cli_helpers import assert_one_line_error, rnnkit_main, snapshot, write_tiny_ts
from rnnkit import cli
from rnnkit.data.arrays import Standardizer, as_sequences, read_ts
from rnnkit.data.batching import Batch
from rnnkit.runs import load_run
from rnnkit.runs.classify_series import series_batch
from rnnkit.tasks import Ensemble, ModelConfig, build_model


def _members_config(task: str, model: str = "gru") -> ModelConfig:
    kw = {"num_classes": 3} if task == "classify" else {"num_outputs": 2}
    return ModelConfig(task=task, model=model, input_features=2, hidden_size=4, dropout=0.0, ensemble=3, **kw)


@pytest.mark.parametrize("task", ["classify", "regress"])
def test_the_ensemble_averages_what_its_members_give(task: str) -> None:
    torch.manual_seed(0)
    model = build_model(_members_config(task)).double().eval()
    assert isinstance(model, Ensemble) and len(model.members) == 3
    x = torch.randn(4, 6, 2, dtype=torch.float64)
    lengths = torch.tensor([6, 3, 5, 1])
    targets = torch.tensor([0, 2, 1, 1]) if task == "classify" else torch.randn(4, 2, dtype=torch.float64)
    out, loss = model(Batch(x, lengths, targets))
    each = [m(Batch(x, lengths))[0] for m in model.members]  # K × (B, C | K)
    if task == "classify":
        mean_p = sum(torch.softmax(o, -1) for o in each) / 3  # (B, C)
        torch.testing.assert_close(torch.softmax(out, -1), mean_p, rtol=0, atol=1e-12)
        ref = -torch.log(mean_p[torch.arange(4), targets]).mean()
        torch.testing.assert_close(model.predict_proba(Batch(x, lengths)), mean_p, rtol=0, atol=1e-12)
    else:
        mean = sum(each) / 3
        torch.testing.assert_close(out, mean, rtol=0, atol=1e-12)
        ref = ((mean - targets) ** 2).mean()
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-12)
    (g,) = torch.autograd.grad(loss, model.members[1].head.weight)
    (g_ref,) = torch.autograd.grad(ref, model.members[1].head.weight)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-12)


def test_a_single_model_config_keeps_its_keys() -> None:
    single = ModelConfig(task="classify", input_features=2, num_classes=2).to_dict()
    assert "ensemble" not in single and ModelConfig.from_dict(single).ensemble == 1
    assert ModelConfig.from_dict(_members_config("classify").to_dict()).ensemble == 3
    with pytest.raises(ValueError, match="one output per sequence"):
        build_model(ModelConfig(task="generate", vocab_size=8, hidden_size=4, ensemble=2))


# ---------------------------------------------------------------------------------------------------------- CLI
def _write_ts(path: Path, n_per_class: int, seed: int) -> Path:
    return write_tiny_ts(path, n_per_class, seed, noise=0.3)


TINY = ["--hidden", "4", "--epochs", "2", "--batch-size", "8", "--kernels", "0"]  # the networks' ensemble alone


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ensemble")
    files = {
        "train": _write_ts(base / "TRAIN.ts", 8, 1),
        "val": _write_ts(base / "VAL.ts", 2, 2),
        "test": _write_ts(base / "TEST.ts", 3, 3),
    }
    data = _data_args(files)
    for name, more in (("ensemble", ["--ensemble", "2"]), ("single", ["--ensemble", "1"])):
        out = base / name
        assert cli.main([str(a) for a in ["train", *data, *TINY, *more, "--seed", "5", "--out", out]]) == 0
        files[name] = out
    files["base"] = base
    return files


def _data_args(files: dict[str, Path]) -> list:
    return ["--task", "classify", "--data", files["train"], "--val-data", files["val"], "--test-data", files["test"]]


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def _members_mean_probs(run: Path, test_file: Path):
    """The loaded run, the test set and the mean of its two members' probabilities ``(N, C)``, computed here from
    the members themselves (the run's own scaler and input normalisation)."""
    loaded, test, batch = _test_batch(run, test_file)
    return loaded, test, sum(member.predict_proba(batch) for member in loaded.model.members) / 2


def _test_batch(run: Path, test_file: Path):
    """The loaded run, the test set and its batch as the model reads it (standardised by the run's own scaler)."""
    loaded = load_run(run)
    test = read_ts(test_file)
    batch = series_batch(
        as_sequences(test.X),
        Standardizer.from_dict(loaded.config["scaler"]),
        series_norm=loaded.config.get("series_norm", "none"),
    )
    return loaded, test, batch


def test_the_run_folder_holds_the_members_and_the_metrics_of_each(runs: dict[str, Path]) -> None:
    run = runs["ensemble"]
    config = json.loads((run / "config.json").read_text())
    assert config["format_version"] == 3 and config["model"]["ensemble"] == 2
    single = json.loads((runs["single"] / "config.json").read_text())
    assert single["format_version"] == 2 and "ensemble" not in single["model"]
    for i in (0, 1):
        assert (run / "members" / str(i) / "model.safetensors").is_file()
        assert (run / "members" / str(i) / "curve.csv").is_file()
    m = _metrics(run)
    assert m["ensemble"] == 2 and [x["seed"] for x in m["members"]] == [5, 6]
    assert m["epochs"] == sum(x["epochs"] for x in m["members"])
    # member 0 trains exactly as the single run of the same seed does
    ens, one = load_file(run / "model.safetensors"), load_file(runs["single"] / "model.safetensors")
    for key, value in one.items():
        assert torch.equal(ens[f"members.0.{key}"], value), key
    assert m["members"][0]["test_accuracy"] == _metrics(runs["single"])["test_accuracy"]
    assert m["members"][0]["test_loss"] == _metrics(runs["single"])["test_loss"]
    # the ensemble's accuracy is that of the members' mean probabilities, computed here from their own files
    loaded, test, probs = _members_mean_probs(run, runs["test"])  # (N, C)
    gold = [loaded.classes.index(y) for y in test.y]
    acc = float(np.mean(probs.argmax(1).numpy() == np.array(gold)))
    assert m["test_accuracy"] == pytest.approx(acc, abs=1e-4)


def test_evaluate_and_predict_use_the_mean_probabilities(
    capsys: pytest.CaptureFixture[str], runs: dict[str, Path]
) -> None:
    run = runs["ensemble"]
    m = _metrics(run)
    capsys.readouterr()
    assert cli.main(["evaluate", str(run), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["test_accuracy"] == m["test_accuracy"] and e["test_loss"] == m["test_loss"]
    assert cli.main(["predict", str(run), "--data", str(runs["test"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    loaded, _, probs = _members_mean_probs(run, runs["test"])  # (N, C)
    for i, line in enumerate(lines):
        cls, p = line.split(": ")[1].split(" ")
        assert cls == loaded.classes[int(probs[i].argmax())] and float(p) == pytest.approx(
            float(probs[i].max()), abs=5e-4
        )


def test_the_top_folder_plots_every_members_curve(runs: dict[str, Path]) -> None:
    pytest.importorskip("matplotlib")
    png = runs["ensemble"] / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (runs["ensemble"] / "curve.csv").exists()  # the figure is drawn from the members' own curves


def test_plot_member_curves_draws_each_member(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from rnnkit.plots import plot_member_curves

    rows = [
        [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e + i, "val_accuracy": 0.5 + 0.1 * e} for e in (1, 2, 3)]
        for i in range(3)
    ]
    both = plot_member_curves(rows, tmp_path / "both.png", title="three members")
    train_only = [[{k: r[k] for k in ("epoch", "train_loss")} for r in m] for m in rows]
    no_val = plot_member_curves(train_only, tmp_path / "t.png")
    # loss and a metric: two panels side by side, twice as wide as the loss-only figure
    assert imread(both).shape[1] == 2 * imread(no_val).shape[1]
    with pytest.raises(ValueError, match="every member needs a training curve"):
        plot_member_curves([rows[0], []], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_export_writes_one_graph_of_the_mean_probabilities(
    capsys: pytest.CaptureFixture[str], runs: dict[str, Path]
) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run, onnx_file = runs["ensemble"], runs["base"] / "e.onnx"
    before = snapshot(run)
    code, out, err = rnnkit_main(capsys, "export", run, "--output", onnx_file)
    assert code == 0, err
    assert "no step graph: an ensemble" in out and "onnxruntime check: max |ONNX - PyTorch|" in out
    assert snapshot(run) == before  # written beside, not into the run
    assert json.loads(onnx_file.with_suffix(".onnx.json").read_text())["ensemble"] == 2
    _, _, probs = _members_mean_probs(run, runs["test"])  # (N, C), from the members themselves
    _, _, batch = _test_batch(run, runs["test"])
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(None, {"inputs": batch.inputs.float().numpy(), "lengths": batch.lengths.numpy()})
    got = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(got / got.sum(1, keepdims=True), probs.numpy(), atol=1e-5, rtol=0)


def test_an_interrupted_ensemble_resumes_to_the_weights_of_an_uninterrupted_one(
    capsys: pytest.CaptureFixture[str], runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[int] = []

    def fit(*args, **kwargs):  # member 1 (the second fit) stops in the middle of its second epoch, as Ctrl-C would
        calls.append(1)
        if len(calls) == 2:

            def on_step(trainer: rnnkit.train.Trainer) -> None:
                if trainer.state["step"] == 3:
                    trainer.request_stop()

            kwargs["on_step"] = on_step
        return rnnkit.train.fit(*args, **kwargs)

    out = tmp_path / "b"
    args = ["train", *_data_args(runs), *TINY, "--ensemble", "2", "--seed", "5", "--out", out]
    with monkeypatch.context() as m:
        m.setattr(rnnkit.runs.kind, "fit", fit)
        code, stdout, err = rnnkit_main(capsys, *args)
    # the members' progress lines, then one error line (an ensemble is scored only once every member is trained)
    assert code == 2 and stdout == "" and "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("rnnkit: error: interrupted in ensemble member 2") and "--resume" in last, err
    assert not (out / "model.safetensors").exists() and (out / "members" / "0" / "model.safetensors").is_file()

    code, _, err = rnnkit_main(capsys, "train", "--resume", "--out", out)
    assert code == 0, err
    assert "member 2/2 (seed 6): continuing" in err and "resuming" in err
    a, b = load_file(runs["ensemble"] / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after --resume"
    ma, mb = _metrics(runs["ensemble"]), _metrics(out)
    for key in ("test_accuracy", "test_loss", "epochs", "ensemble"):
        assert ma[key] == mb[key], key
    for x, y in zip(ma["members"], mb["members"], strict=True):
        assert {k: v for k, v in x.items() if k != "train_seconds"} == {
            k: v for k, v in y.items() if k != "train_seconds"
        }
    for i in ("0", "1"):
        ca = (runs["ensemble"] / "members" / i / "curve.csv").read_text().splitlines()
        cb = (out / "members" / i / "curve.csv").read_text().splitlines()
        assert [r.split(",")[:3] for r in ca] == [r.split(",")[:3] for r in cb]  # epoch, step, train loss

    # resuming the finished ensemble again changes no weights
    code, _, err = rnnkit_main(capsys, "train", "--resume", "--out", out)
    assert code == 0, err
    assert load_file(out / "model.safetensors").keys() == b.keys()
    assert all(torch.equal(load_file(out / "model.safetensors")[k], b[k]) for k in b)


def test_gradients_of_an_ensemble_refuse_in_one_line(capsys: pytest.CaptureFixture[str], runs: dict[str, Path]) -> None:
    before = snapshot(runs["ensemble"])
    code, out, err = rnnkit_main(capsys, "gradients", runs["ensemble"])
    assert_one_line_error(code, out, err, "an ensemble of 2 members", "gradient_flow(model.members[i], batch)")
    assert snapshot(runs["ensemble"]) == before


def test_resume_cannot_change_the_number_of_members(capsys: pytest.CaptureFixture[str], runs: dict[str, Path]) -> None:
    before = snapshot(runs["ensemble"])
    code, out, err = rnnkit_main(capsys, "train", "--resume", "--out", runs["ensemble"], "--ensemble", "3")
    assert_one_line_error(code, out, err, "an ensemble of 2", "cannot change --ensemble")
    assert snapshot(runs["ensemble"]) == before


def test_kinds_without_ensembles_refuse_the_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "names"
    data.mkdir()
    for cls in ("A", "B"):
        (data / f"{cls}.txt").write_text("\n".join(f"{cls}x{i}" for i in range(12)) + "\n", encoding="utf-8")
    capsys.readouterr()
    # text classify takes --ensemble since issue 16 (names); text generation has no ensembles
    code = cli.main(
        ["train", "--task", "generate", "--data", str(data), "--ensemble", "2", "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--ensemble does not apply" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_a_forecast_ensemble_averages_the_members_forecasts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rnnkit.runs.forecast import forecaster_of

    t = np.arange(160)
    values = np.sin(t / 5.0) * 10 + 0.5 * np.cos(t / 3.0) + 20
    csv = tmp_path / "s.csv"
    csv.write_text("value\n" + "\n".join(f"{v:.5f}" for v in values) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", "--task", "forecast", "--data", str(csv), "--context", "8", "--horizon", "2", "--ensemble", "2"]
    assert cli.main([*args, "--hidden", "4", "--epochs", "1", "--out", str(out)]) == 0
    m = _metrics(out)
    assert m["ensemble"] == 2 and [x["seed"] for x in m["members"]] == [0, 1]
    run = load_run(out)
    fc = forecaster_of(run)
    origins = np.array([40, 80, 120])
    series = values.reshape(-1, 1)
    each = [dataclasses.replace(fc, model=member).predict_at(series, origins) for member in run.model.members]
    np.testing.assert_allclose(fc.predict_at(series, origins), (each[0] + each[1]) / 2, rtol=1e-6, atol=1e-6)
    # evaluate: the ensemble's test metrics of metrics.json, computed again from the folder
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)
    for key in ("test_mae", "test_rmse", "test_mase", "test_smape"):
        assert e[key] == pytest.approx(m[key], rel=1e-6, abs=1e-6), key
    # served: the answer is what `rnnkit predict` prints for the same values (the ensemble's mean forecast)
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rnnkit.runs import predict_lines
    from rnnkit.serve import Limits, create_app

    items = [f"{v:.4f}" for v in values[-20:]]
    with TestClient(create_app([out], Limits())) as client:
        resp = client.post("/runs/run/predict", json={"items": items})
    assert resp.status_code == 200, resp.text
    assert resp.json()["lines"] == predict_lines(run, items)


def test_serve_answers_for_a_series_ensemble_as_for_a_single_run(runs: dict[str, Path]) -> None:
    """A series run is served its report; its predict box refuses items as for a single run (series come in files,
    ``rnnkit predict RUN --data FILE``, tested above)."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rnnkit.serve import Limits, create_app

    with TestClient(create_app([runs["ensemble"], runs["single"]], Limits())) as client:
        report = client.get("/runs/ensemble")
        assert report.status_code == 200, report.text
        assert report.json()["metrics"]["test_accuracy"] == _metrics(runs["ensemble"])["test_accuracy"]
        answers = [client.post(f"/runs/{name}/predict", json={"items": ["1,2,3"]}) for name in ("ensemble", "single")]
    assert answers[0].status_code == answers[1].status_code == 400
    assert answers[0].json() == answers[1].json()


def test_a_text_ensemble_evaluates_predicts_and_serves_the_mean_probabilities(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from cli_helpers import make_folder
    from rnnkit.runs import predict

    data = make_folder(tmp_path / "names")
    out = tmp_path / "run"
    args = ["train", "--task", "classify", "--data", data, "--ensemble", "2", "--hidden", "4", "--embed", "4"]
    code, _, err = rnnkit_main(capsys, *args, "--epochs", "1", "--out", out)
    assert code == 0, err
    m = _metrics(out)
    assert m["ensemble"] == 2 and len(m["members"]) == 2
    code, text, err = rnnkit_main(capsys, "evaluate", out, "--json")
    assert code == 0, err
    e = json.loads(text)
    assert e["test_accuracy"] == m["test_accuracy"] and e["test_loss"] == m["test_loss"]

    run = load_run(out)
    items = ["Aeiou", "Bcdfg", "Abe"]
    each = [predict(dataclasses.replace(run, model=member), items, top_k=2) for member in run.model.members]
    want = [{c: (dict(a)[c] + dict(b)[c]) / 2 for c in run.classes} for a, b in zip(*each, strict=True)]
    got = predict(run, items, top_k=2)
    for row, w in zip(got, want, strict=True):
        assert dict(row) == pytest.approx(w, abs=1e-6)
    code, text, err = rnnkit_main(capsys, "predict", out, *items)
    assert code == 0, err
    for line, w in zip(text.splitlines(), want, strict=True):  # "ITEM: CLASS p, CLASS p"
        top = line.split(": ", 1)[1].split(", ")[0].split(" ")
        assert float(top[1]) == pytest.approx(w[top[0]], abs=5e-4) and w[top[0]] == max(w.values())

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rnnkit.serve import Limits, create_app

    with TestClient(create_app([out], Limits())) as client:
        resp = client.post("/runs/run/predict", json={"items": items, "top_k": 2})
    assert resp.status_code == 200, resp.text
    for pred, w in zip(resp.json()["predictions"], want, strict=True):
        assert {t["label"]: t["prob"] for t in pred["top"]} == pytest.approx(w, abs=1e-6)
