"""LSTM-FCN / MLSTM-FCN (rnnkit.tasks.fcn): shapes, padding invariance, float64 references for the masked batch
norm, the squeeze-and-excitation block, the pooling and the convolution, and the model through the command line
(train, evaluate, predict, serve, export) and the scikit-learn estimator."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import rnnkit.runs.kind  # noqa: F401  the built-in kinds
from cli_helpers import write_tiny_ts
from rnnkit import cli
from rnnkit.data.batching import Batch
from rnnkit.tasks import MODELS, ModelConfig, SequenceClassifier, SequenceRegressor, build_model
from rnnkit.tasks.fcn import LSTMFCN, ConvBlock, MaskedBatchNorm1d, SqueezeExcite, masked_mean

FCN = ("lstm-fcn", "mlstm-fcn")


def _config(model: str, task: str = "classify", bidirectional: bool = False, **kw) -> ModelConfig:
    return ModelConfig(
        task=task,
        model=model,
        input_features=3,
        num_classes=4 if task == "classify" else 0,
        num_outputs=2 if task != "classify" else 0,
        hidden_size=5,
        bidirectional=bidirectional,
        dropout=0.0,
        **kw,
    )


def _padded(
    seed: int, lengths: list[int], T: int | None = None, fill: float = 7.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, 3)`` float64 series with junk (``fill``) in the padding, and their lengths."""
    g = torch.Generator().manual_seed(seed)
    T = T or max(lengths)
    x = torch.randn(len(lengths), T, 3, generator=g, dtype=torch.float64)
    for b, n in enumerate(lengths):
        x[b, n:] = fill
    return x, torch.tensor(lengths)


def _lengths_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    return torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)


# ---------------------------------------------------------------------------------------------------------- registry
def test_both_models_are_in_the_one_registry_with_their_shapes() -> None:
    torch.manual_seed(0)
    for name in FCN:
        assert name in MODELS
        for bidirectional in (False, True):
            model = build_model(_config(name, bidirectional=bidirectional)).double().eval()
            D = 2 if bidirectional else 1
            assert isinstance(model.core, LSTMFCN) and model.core.summary_size == D * 5 + 128
            assert model.head.in_features == D * 5 + 128
            x, lengths = _padded(0, [9, 4, 1])
            logits, loss = model(Batch(x, lengths, torch.tensor([0, 3, 1])))
            assert logits.shape == (3, 4) and loss is not None and loss.ndim == 0
            summary = model.core.summary(x, lengths)
            assert summary.shape == (3, D * 5 + 128)
        se = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
        assert len(se) == (2 if name == "mlstm-fcn" else 0)  # after the first two conv blocks only
        widths = [(b.conv.out_channels, b.conv.kernel_size[0]) for b in model.core.blocks]
        assert widths == [(128, 8), (256, 5), (128, 3)]


def test_per_step_tasks_refuse_a_summary_core() -> None:
    for task in ("tag", "generate"):
        cfg = ModelConfig(task=task, model="lstm-fcn", vocab_size=10, num_classes=3, hidden_size=4)
        with pytest.raises(ValueError, match="output per step"):
            build_model(cfg)


# ---------------------------------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("name", FCN)
@pytest.mark.parametrize("task", ["classify", "regress"])
def test_padded_batch_equals_each_series_alone_in_eval_mode(name: str, task: str) -> None:
    torch.manual_seed(1)
    model = build_model(_config(name, task=task, bidirectional=True)).double()
    # a few training steps so that the running statistics are not the identity
    x, lengths = _padded(2, [12, 7, 3, 10])
    model.train()
    for _ in range(3):
        model(Batch(x, lengths))
    model.eval()
    out, _ = model(Batch(x, lengths))  # (B, C | K)
    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum(), list(model.parameters()), allow_unused=True)
    total = 0
    for b, n in enumerate(lengths.tolist()):
        alone, _ = model(Batch(x[b : b + 1, :n], lengths[b : b + 1]))
        torch.testing.assert_close(out[b : b + 1], alone, rtol=0, atol=1e-12)
        total = total + (alone * w[b : b + 1]).sum()
    # grads included: the padded batch's equal the sum of the series' own
    alone_grads = torch.autograd.grad(total, list(model.parameters()), allow_unused=True)
    for g, h in zip(grads, alone_grads, strict=True):
        if g is None or h is None:
            assert g is None and h is None
            continue
        torch.testing.assert_close(g, h, rtol=0, atol=1e-11)


@pytest.mark.parametrize("name", FCN)
def test_training_mode_ignores_how_far_a_batch_is_padded(name: str) -> None:
    """Batch statistics over valid steps only: the same batch padded to T = 12 or 20 trains identically."""
    torch.manual_seed(2)
    short = build_model(_config(name)).double().train()
    long = build_model(_config(name)).double().train()
    long.load_state_dict(short.state_dict())
    x, lengths = _padded(3, [12, 5, 8])
    x_long = torch.cat([x, torch.full((3, 8, 3), -3.0, dtype=torch.float64)], dim=1)  # (B, 20, 3)
    targets = torch.tensor([0, 2, 1])
    (a, la), (b, lb) = short(Batch(x, lengths, targets)), long(Batch(x_long, lengths, targets))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    la.backward()
    lb.backward()
    for (n, p), q in zip(short.named_parameters(), long.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-11, msg=n)
    for (n, s), t in zip(short.state_dict().items(), long.state_dict().values(), strict=True):
        torch.testing.assert_close(s, t, rtol=0, atol=1e-12, msg=n)  # running statistics too


# ---------------------------------------------------------------------------------------------------------- references
def test_masked_batch_norm_equals_torch_on_the_valid_steps_forward_and_backward() -> None:
    torch.manual_seed(3)
    x, lengths = _padded(4, [6, 2, 5])
    x = x.transpose(1, 2).contiguous().requires_grad_(True)  # (B, C=3, T=6)
    mask = _lengths_mask(lengths, 6)
    bn = MaskedBatchNorm1d(3).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    ref = nn.BatchNorm1d(3).double()
    ref.load_state_dict(bn.state_dict())
    y = bn(x, mask)
    # the reference: torch's batch norm on the valid positions alone, as N rows of C features
    xr = x.detach().clone().requires_grad_(True)
    valid = xr.transpose(1, 2)[mask]  # (N, C)
    yr = ref(valid)
    torch.testing.assert_close(y.transpose(1, 2)[mask], yr, rtol=0, atol=1e-12)
    assert torch.all(y.transpose(1, 2)[~mask] == 0)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (yr * w.transpose(1, 2)[mask]).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(bn.weight.grad, ref.weight.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(bn.running_mean, ref.running_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(bn.running_var, ref.running_var, rtol=0, atol=1e-12)
    # eval mode: the running statistics, per position
    bn.eval()
    ref.eval()
    torch.testing.assert_close(bn(x, mask).transpose(1, 2)[mask], ref(valid), rtol=0, atol=1e-12)
    # no mask (and a full mask): exactly nn.BatchNorm1d
    full = torch.ones(3, 6, dtype=torch.bool)
    bn.train()
    ref.train()
    torch.testing.assert_close(bn(x, full), ref(x), rtol=0, atol=1e-12)


def test_squeeze_excite_and_pooling_match_a_hand_written_loop() -> None:
    torch.manual_seed(4)
    B, C, T = 3, 32, 7
    lengths = torch.tensor([7, 3, 1])
    x = torch.randn(B, C, T, dtype=torch.float64, requires_grad=True)
    mask = _lengths_mask(lengths, T)
    se = SqueezeExcite(C).double()
    assert se.reduce.weight.shape == (2, C) and se.reduce.bias is None  # reduction 16, no biases
    y = se(x, mask)
    pooled = masked_mean(y, mask)
    rows, pools = [], []
    W1, W2 = se.reduce.weight, se.expand.weight
    for b in range(B):
        n = int(lengths[b])
        z = [sum(float(x[b, c, t].detach()) for t in range(n)) / n for c in range(C)]  # squeeze, valid steps only
        z = torch.tensor(z, dtype=torch.float64)
        s = torch.sigmoid(W2 @ torch.relu(W1 @ z))  # (C,)
        rows.append(x[b] * s.unsqueeze(1))  # (C, T)
        pools.append(rows[-1][:, :n].mean(1))  # (C,)
    torch.testing.assert_close(y, torch.stack(rows), rtol=0, atol=1e-12)
    torch.testing.assert_close(pooled, torch.stack(pools), rtol=0, atol=1e-12)
    # backward: the same function written with torch ops per sequence
    g = torch.randn(B, C, dtype=torch.float64)
    (gx,) = torch.autograd.grad((pooled * g).sum(), x)
    xs = x.detach().clone().requires_grad_(True)
    total = 0
    for b in range(B):
        n = int(lengths[b])
        s = torch.sigmoid(W2.detach() @ torch.relu(W1.detach() @ xs[b, :, :n].mean(1)))
        total = total + ((xs[b, :, :n] * s.unsqueeze(1)).mean(1) * g[b]).sum()
    total.backward()
    torch.testing.assert_close(gx, xs.grad, rtol=0, atol=1e-12)


def test_conv_block_pads_as_torch_same_padding() -> None:
    torch.manual_seed(5)
    for k in (8, 5, 3):
        block = ConvBlock(3, 4, k).double().eval()
        ref = nn.Conv1d(3, 4, k, padding="same").double()
        ref.load_state_dict(block.conv.state_dict())
        x = torch.randn(2, 3, 11, dtype=torch.float64)
        mask = torch.ones(2, 11, dtype=torch.bool)
        bn = block.norm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about even kernels with padding="same"
            expected = torch.relu(
                (ref(x) - bn.running_mean.view(1, -1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1) + bn.eps)
            )
        torch.testing.assert_close(block(x, mask), expected * bn.weight.view(1, -1, 1) + 0, rtol=0, atol=1e-12)


def test_the_recurrent_branch_is_an_lstm_read_to_each_last_valid_step() -> None:
    torch.manual_seed(6)
    core = LSTMFCN(3, 5, bidirectional=True).double().eval()
    ref = nn.LSTM(3, 5, batch_first=True, bidirectional=True).double()
    ref.load_state_dict(core.lstm.state_dict())
    x, lengths = _padded(7, [6, 2])
    summary = core.summary(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        _, (h, _) = ref(x[b : b + 1, :n])
        torch.testing.assert_close(summary[b, :10], h.transpose(0, 1).reshape(-1), rtol=0, atol=1e-12)


def test_the_sklearn_estimator_takes_the_model_name() -> None:
    from rnnkit.sklearn import RNNClassifier

    rng = np.random.default_rng(0)
    X = [rng.normal(size=(2, int(rng.integers(5, 9)))) + (i % 2) for i in range(16)]  # (C, L_i), aeon's layout
    y = [i % 2 for i in range(16)]
    clf = RNNClassifier(model="lstm-fcn", hidden_size=4, epochs=2, batch_size=8, random_state=0).fit(X, y)
    assert isinstance(clf.model_, SequenceClassifier) and isinstance(clf.model_.core, LSTMFCN)
    assert clf.predict_proba(X).shape == (16, 2)
    assert not isinstance(clf.model_, SequenceRegressor)


# ---------------------------------------------------------------------------------------------------------- CLI
def _write_ts(path: Path, n_per_class: int, seed: int) -> Path:
    return write_tiny_ts(path, n_per_class, seed, noise=0.1)


@pytest.fixture(scope="module")
def fcn_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("fcn")
    train, test = _write_ts(base / "TRAIN.ts", 8, 1), _write_ts(base / "TEST.ts", 3, 2)
    out = base / "run"
    args = ["train", "--task", "classify", "--data", train, "--test-data", test, "--model", "mlstm-fcn"]
    args += ["--hidden", "4", "--epochs", "1", "--batch-size", "8", "--ensemble", "1", "--out", out]
    assert cli.main([str(a) for a in args]) == 0
    return {"run": out, "test": test, "base": base}


def test_one_epoch_through_the_command_line_then_evaluate_and_predict(
    capsys: pytest.CaptureFixture[str], fcn_run: dict[str, Path]
) -> None:
    run = fcn_run["run"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "mlstm-fcn" and metrics["epochs"] == 1 and metrics["num_test"] == 6
    capsys.readouterr()
    assert cli.main(["evaluate", str(run), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_accuracy"] == metrics["test_accuracy"] and evaluated["test_loss"] == metrics["test_loss"]
    assert cli.main(["predict", str(run), "--data", str(fcn_run["test"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all(line.split(": ")[1].split(" ")[0] in ("up", "down") for line in lines)


def test_export_writes_one_whole_series_graph(capsys: pytest.CaptureFixture[str], fcn_run: dict[str, Path]) -> None:
    """The run exports (its graph is compared with PyTorch in tests/test_export.py): the whole-series graph, no
    step graph (the convolutions read the whole series), and the onnxruntime check of `rnnkit export` passes."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    capsys.readouterr()
    code = cli.main(["export", str(fcn_run["run"]), "--output", str(fcn_run["base"] / "m.onnx")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "no step graph: the LSTM-FCN's convolutional branch reads the whole sequence" in out
    assert "onnxruntime check: max |ONNX - PyTorch|" in out
    assert (fcn_run["base"] / "m.onnx").is_file() and not (fcn_run["base"] / "m.step.onnx").exists()


def test_a_text_classifier_on_lstm_fcn_is_served(tmp_path: Path) -> None:
    """Token inputs are embedded into real vectors: the model classifies text too, and serve answers for it."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rnnkit.runs import load_run, predict
    from rnnkit.serve import Limits, create_app

    data = tmp_path / "names"
    data.mkdir()
    for cls, letters in {"Alpha": "aeiou", "Beta": "bcdfg"}.items():
        items = sorted({cls[0] + letters[j % 5] + letters[(j * 7) % 5] * (1 + j % 3) for j in range(40)})
        (data / f"{cls}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", "--task", "classify", "--data", str(data), "--model", "lstm-fcn", "--out", str(out)]
    assert cli.main([*args, "--hidden", "4", "--embed", "4", "--epochs", "1", "--batch-size", "8"]) == 0
    with TestClient(create_app([out], Limits())) as client:
        resp = client.post("/runs/run/predict", json={"items": ["Aeia", "Bcdd"], "top_k": 1})
        assert resp.status_code == 200, resp.text
        body = resp.json()
    want = predict(load_run(out), ["Aeia", "Bcdd"], top_k=1)
    assert [p["item"] for p in body["predictions"]] == ["Aeia", "Bcdd"]
    for got, row in zip(body["predictions"], want, strict=True):
        assert got["top"][0]["label"] == row[0][0] and got["top"][0]["prob"] == pytest.approx(row[0][1], abs=1e-6)
