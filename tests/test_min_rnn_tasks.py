"""``--model mingru|minlstm`` everywhere a model name is accepted: every task kind (train one tiny epoch, then
predict or sample), the sklearn estimators, ``rnnkit memory`` rows, ``rnnkit gradients --compare``, ONNX export
(sequence and step graphs against the PyTorch model in onnxruntime) and the server.

Sampling and streaming use the layers' step form: a generator's samples at temperature 0 equal the argmax of its
whole-sequence logits fed the same symbols (checked below).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.batching import Batch
from rnnkit.layers import MinGRU, MinLSTM
from rnnkit.runs import load_run, predict, sample
from rnnkit.tasks import MODELS, ModelConfig, build_core, build_model

DATA = Path(__file__).parent / "fixtures" / "runs" / "v0.1.0" / "data"
TINY = ["--epochs", "1", "--hidden", "8", "--seed", "3"]
KINDS = {
    "classify": (["--task", "classify", "--data", str(DATA / "names")], ["predict", "Anna"]),
    "generate": (["--task", "generate", "--data", str(DATA / "names")], ["sample", "--category", "north"]),
    "tag": (["--task", "tag", "--data", str(DATA / "tag.conll")], ["predict", "the cat sat"]),
    "seq2seq": (["--task", "seq2seq", "--data", "embedded:cmudict", "--max-items", "200"], ["predict", "hello"]),
    "lm": (["--task", "lm", "--data", str(DATA / "lm.txt"), "--tbptt", "16,32"], ["predict", "the"]),
    "forecast": (["--task", "forecast", "--data", "embedded:sunspots", "--horizon", "3"], ["predict"]),
}
MINS = ["mingru", "minlstm"]


def test_registry_builds_batch_first_min_layers() -> None:
    assert {"mingru", "minlstm"} <= set(MODELS)
    core = build_core("minlstm", 3, 5, num_layers=2, dropout=0.1, bidirectional=True)
    assert isinstance(core, MinLSTM) and core.batch_first and core.dropout == 0.1
    out, h_n = core(torch.randn(2, 7, 3), lengths=[7, 4])
    assert out.shape == (2, 7, 10) and h_n.shape == (4, 2, 5)
    assert isinstance(build_core("mingru", 3, 5), MinGRU)


@pytest.mark.parametrize("model", MINS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_task_trains_and_answers(kind: str, model: str, tmp_path: Path, capsys) -> None:
    train, use = KINDS[kind]
    out = tmp_path / "run"
    assert main(["train", *train, "--model", model, *TINY, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 1
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["model"] == model
    capsys.readouterr()
    assert main([use[0], str(out), *use[1:]]) == 0
    answer = capsys.readouterr().out
    assert answer.strip(), f"{kind}: {use[0]} printed nothing"


@pytest.mark.parametrize("model", MINS)
def test_greedy_sampling_with_the_step_form_follows_the_whole_sequence_logits(model: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(task="generate", model=model, vocab_size=9, num_conditions=2, embed_dim=4, hidden_size=6,
                      num_layers=2, condition_mode="both")  # fmt: skip
    gen = build_model(cfg).eval()
    ids = gen.sample(1, n=1, temperature=0, max_len=6)[0]
    seq = torch.tensor([[1, *ids]])  # BOS, then the sampled symbols
    with torch.no_grad():
        logits = gen(Batch(seq, torch.tensor([seq.shape[1]]), None, torch.tensor([1])))[0][0]  # (T, V)
    logits[:, [0, 1, 3]] = -float("inf")  # sampling never picks PAD, BOS, UNK
    want = logits.argmax(-1).tolist()
    assert ids == want[: len(ids)]
    assert len(ids) == 6 or want[len(ids)] == 2  # stopped at max_len or at EOS


@pytest.mark.parametrize("model", MINS)
def test_sklearn_estimators_take_the_min_models(model: str) -> None:
    pytest.importorskip("sklearn")
    import numpy as np

    from rnnkit.sklearn import RNNClassifier, RNNForecaster

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 12))
    y = (X[:, :6].sum(1) > 0).astype(int)
    clf = RNNClassifier(model=model, hidden_size=8, epochs=2, random_state=0).fit(X, y)
    assert clf.predict(X).shape == (40,) and isinstance(clf.model_.core, (MinGRU, MinLSTM))
    series = np.sin(np.arange(120) / 5.0)
    fc = RNNForecaster(model=model, context=12, horizon=3, hidden_size=8, epochs=2, random_state=0).fit(series)
    assert np.isfinite(fc.predict()).all()


def test_memory_and_gradient_compare_accept_the_min_models(tmp_path: Path, capsys) -> None:
    from rnnkit.memory import DEFAULT_MODELS, run_memory

    assert {"mingru", "minlstm"} <= set(DEFAULT_MODELS)
    rows = run_memory("adding", [5], ["mingru", "minlstm"], steps=4, batch_size=8, test_size=16)
    assert [r.model for r in rows] == ["mingru", "minlstm"] and all(r.value == r.value for r in rows)
    plot = tmp_path / "flow.png"
    code = main(["gradients", "--compare", "mingru", "minlstm", "--length", "12", "--hidden", "6", "--plot", str(plot)])
    assert code == 0
    table = capsys.readouterr().out
    assert "mingru l0" in table and "minlstm l0" in table
    assert (tmp_path / "flow.csv").read_text().splitlines()[0] == "t,mingru l0,minlstm l0"


@pytest.mark.parametrize("model", MINS)
def test_onnx_export_with_explicit_state_matches_the_layers(model: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from rnnkit.export import export_model, verify_export

    torch.manual_seed(0)
    cfg = ModelConfig(task="generate", model=model, vocab_size=10, num_conditions=3, embed_dim=4, hidden_size=5,
                      num_layers=2, condition_mode="both")  # fmt: skip
    gen = build_model(cfg).eval()
    info = export_model(gen, tmp_path / "gen.onnx")
    assert [s["name"] for s in info["graphs"]["step"]["inputs"]] == ["ids", "category", "h"]
    assert [s["name"] for s in info["graphs"]["step"]["outputs"]] == ["logits", "h_out"]
    assert verify_export(gen, tmp_path / "gen.onnx") < 1e-5  # sequence graph, then the step graph fed its state
    cfg = ModelConfig(task="classify", model=model, vocab_size=12, num_classes=3, embed_dim=5, hidden_size=6,
                      num_layers=2, bidirectional=True)  # fmt: skip
    clf = build_model(cfg).eval()
    info = export_model(clf, tmp_path / "clf.onnx")
    assert list(info["graphs"]) == ["sequence"]  # two directions: no step graph
    assert verify_export(clf, tmp_path / "clf.onnx") < 1e-5


def test_server_predicts_and_samples_for_min_runs(tmp_path: Path, capsys) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from rnnkit.serve import create_app

    runs = {}
    for task, model in (("classify", "mingru"), ("generate", "minlstm")):
        runs[task] = tmp_path / task
        args = KINDS[task][0]
        assert main(["train", *args, "--model", model, *TINY, "--out", str(runs[task])]) == 0
    capsys.readouterr()
    with TestClient(create_app(list(runs.values()))) as client:
        r = client.post("/runs/classify/predict", json={"items": ["Anna", "Bo"], "top_k": 2})
        assert r.status_code == 200
        want = predict(load_run(runs["classify"]), ["Anna", "Bo"], top_k=2)
        assert [[t["label"] for t in p["top"]] for p in r.json()["predictions"]] == [[c for c, _ in w] for w in want]
        r = client.post("/runs/generate/sample", json={"category": "north", "num": 3, "seed": 7, "max_len": 10})
        assert r.status_code == 200
        assert r.json()["samples"] == sample(load_run(runs["generate"]), "north", 3, 0.8, "", 10, 7, None)


def test_bench_long_rows_and_the_cli_flag(monkeypatch, capsys) -> None:
    """Structure only (no timing asserts): every mode's row names the cell, shape, ratio and memory."""
    from rnnkit import bench_long

    row = bench_long.measure_long("minlstm", 6, "train", B=2, I=3, H=4, repeats=1)
    assert {"cell", "mode", "T", "B", "H", "ratio", "rnnkit_ms", "torch_ms", "proj_ms", "scan_ms"} <= set(row)
    assert row["cell"] == "minlstm" and row["T"] == 6 and row["ratio"] > 0 and row["saved_mb"] > 0
    assert row["ceiling"] == row["torch_ms"] / row["proj_ms"]  # torch over the projection alone, same run
    assert row["flop_ratio"] == (2 * (3 + 4) * 4 * 4) / (2 * 3 * 3 * 4)  # LSTM 2(I+H)·4H over minLSTM 2I·3H
    assert bench_long.flop_ratio("mingru", 64, 256) == 7.5  # GRU 2(I+H)·3H over minGRU 2I·2H
    monkeypatch.setattr(bench_long, "LONG_LENGTHS", (5, 7))
    monkeypatch.setattr(bench_long, "LONG_SHAPE", {"B": 2, "I": 3, "H": 4})
    assert main(["bench", "--long", "--quick", "--json", "--repeats", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["cell"], r["mode"], r["T"]) for r in rows] == [
        (c, m, t) for c in MINS for m, t in (("train", 5), ("forward", 5), ("step", 1))
    ]
    assert all(r["B"] == 2 and r["H"] == 4 and r["ratio"] > 0 for r in rows)
    assert "torch/rnnkit" in bench_long.format_long(rows)


def test_min_rnn_accuracy_summary_is_mean_sd_and_the_gap_to_the_peer(tmp_path, capsys) -> None:
    """benchmarks/min_rnn_accuracy.py --summarise: mean ± sample sd over seeds, relative gap (loss: sign flipped)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "min_rnn_accuracy.py"
    spec = importlib.util.spec_from_file_location("min_rnn_accuracy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [{"task": "gender", "model": m, "params": 100, "test_accuracy": v} for m, v in
            (("gru", 0.8), ("gru", 0.9), ("mingru", 0.78), ("mingru", 0.8))]  # fmt: skip
    rows += [{"task": "generate", "model": m, "params": 50, "test_loss": v} for m, v in (("lstm", 2), ("minlstm", 2.1))]
    (tmp_path / "r.json").write_text(json.dumps(rows))
    assert mod.main(["--summarise", str(tmp_path / "r.json")]) == 0
    lines = {tuple(line.split()[:2]): line for line in capsys.readouterr().out.splitlines()}
    assert "0.8500 ± 0.0707" in lines[("gender", "gru")]  # sd of (0.8, 0.9) with n − 1
    assert "0.7900 ± 0.0141" in lines[("gender", "mingru")] and lines[("gender", "mingru")].endswith("-7.1%")
    assert lines[("generate", "minlstm")].endswith("-5.0%")  # a 5% higher loss is 5% worse
