"""The random-kernel ridge (rnnkit.tasks.kernels) against references: N leave-one-out refits, scikit-learn's ridge,
a hand loop over MiniRocket's features; and its part in a series run (--kernels)."""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error, rnnkit_main
from rnnkit import cli
from rnnkit.runs.folder import load_run
from rnnkit.tasks.kernels import (
    ALPHAS,
    KERNEL_LENGTH,
    KernelRidge,
    RandomKernels,
    kernel_weights,
    padded_chunks,
    ridge_loo,
    stretch_scan,
    stretch_scatter,
)

sklearn = pytest.importorskip("sklearn")


def _series(n: int, channels: int, lengths: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    return [g.standard_normal((int(g.integers(*lengths)), channels)).cumsum(0) for _ in range(n)]


def test_kernels_are_minirockets_84():
    w = kernel_weights()
    assert w.shape == (84, 1, KERNEL_LENGTH)
    assert torch.all(w.sum(2) == 0)  # -6 + 3·2: every kernel sums to zero
    twos = {tuple(torch.nonzero(w[k, 0] == 2).flatten().tolist()) for k in range(84)}
    assert twos == set(itertools.combinations(range(9), 3))


def test_ridge_leave_one_out_equals_refits_and_sklearn():
    from sklearn.linear_model import Ridge, RidgeClassifier

    g = torch.Generator().manual_seed(0)
    N, F, K = 14, 40, 3
    X = torch.randn(N, F, generator=g, dtype=torch.float64)
    Z = X - X.mean(0)
    y = torch.arange(N) % K
    Y = -torch.ones(N, K, dtype=torch.float64)
    Y[torch.arange(N), y] = 1.0
    for alpha in (0.01, 0.5, 30.0):
        a, coef, loo = ridge_loo(Z, Y, alphas=[alpha])
        assert a == alpha
        for i in range(N):  # leave series i out, refit with an unpenalised intercept, predict it
            keep = [j for j in range(N) if j != i]
            ref = Ridge(alpha=alpha).fit(Z[keep].numpy(), Y[keep].numpy()).predict(Z[i : i + 1].numpy())[0]
            np.testing.assert_allclose(loo[i].numpy(), ref, rtol=1e-7, atol=1e-8)
        ref = RidgeClassifier(alpha=alpha).fit(Z.numpy(), y.numpy()).decision_function(Z.numpy())
        np.testing.assert_allclose((Z @ (Z.T @ coef) + Y.mean(0)).numpy(), ref, rtol=1e-7, atol=1e-8)
    # the chosen penalty is the one with the lowest leave-one-out squared error
    errors = {a: float(((Y - ridge_loo(Z, Y, alphas=[a])[2]) ** 2).mean()) for a in ALPHAS}
    assert ridge_loo(Z, Y)[0] == min(errors, key=errors.get)


def _longest_stretch(above: np.ndarray) -> int:
    """The longest run of True in ``above`` ``(L,)``, step by step."""
    best = run = 0
    for a in above:
        run = run + 1 if a else 0
        best = max(best, run)
    return best


def _hand_features(mod: RandomKernels, s: np.ndarray) -> np.ndarray:
    """MiniRocket's PPV (and with ``stretch`` MultiRocket's LSPV after it, dilation by dilation) by explicit loops
    over dilations, kernels, biases and positions (float64)."""
    L = len(s)
    w = mod.weight[:, 0].double().numpy()  # (84, 9)
    out, start = [], 0
    for i, (d, n) in enumerate(zip(mod.dilations.tolist(), mod.counts.tolist(), strict=True)):
        half = 4 * d
        ppv, lspv = [], []
        for k in range(84):
            x = s @ mod.channel_mask[i, k].double().numpy()  # (L,): the pair's channel sum
            padded = (i + k) % 2 == 0
            conv = []
            for t in range(L) if padded else range(half, L - half):
                conv.append(sum(w[k, j] * (x[t + (j - 4) * d] if 0 <= t + (j - 4) * d < L else 0.0) for j in range(9)))
            conv = np.array(conv)
            for b in mod.biases[start + k * n : start + (k + 1) * n].double().numpy():
                ppv.append(float((conv > b).mean()) if len(conv) else 0.0)
                lspv.append(_longest_stretch(conv > b) / len(conv) if len(conv) else 0.0)
        out += ppv + (lspv if mod.pools == 2 else [])
        start += 84 * n
    return np.array(out)


def test_features_equal_a_hand_loop_and_padding_changes_nothing():
    series = _series(6, 2, (30, 60))
    mod = RandomKernels(2, 84 * 5).fit(series, seed=3)
    assert mod.num_features == 84 * 5
    feats = mod.transform(series).numpy()  # one padded batch: lengths 30..59
    for s, f in zip(series, feats, strict=True):
        alone = mod(torch.from_numpy(s).unsqueeze(0), None).numpy()[0]  # float64 input, no padding
        np.testing.assert_array_equal(np.round(alone, 12), np.round(_hand_features(mod, s), 12))
        np.testing.assert_allclose(f, alone, atol=0.0)


def test_longest_stretch_equals_a_hand_loop_and_padding_changes_nothing():
    series = _series(5, 2, (25, 50), seed=4)
    mod = RandomKernels(2, 2 * 84 * 3, stretch=True).fit(series, seed=5)
    assert mod.num_features == 2 * 84 * 3 and mod.biases.numel() == 84 * 3  # the features shared by PPV and LSPV
    feats = mod.transform(series).numpy()
    for s, f in zip(series, feats, strict=True):
        alone = mod(torch.from_numpy(s).unsqueeze(0), None).numpy()[0]
        np.testing.assert_array_equal(np.round(alone, 12), np.round(_hand_features(mod, s), 12))
        np.testing.assert_allclose(f, alone, atol=0.0)
    plain = RandomKernels(2, 84 * 3).fit(series, seed=5)  # the same draw: its PPV are the first half of each block
    assert torch.equal(plain.biases, mod.biases)


def test_the_exported_form_of_the_longest_stretch_equals_the_scan():
    g = torch.Generator().manual_seed(1)
    conv = torch.randn(3, 84, 41, generator=g, dtype=torch.float64).cumsum(2)
    conv[1, :, 30:] = -torch.inf  # steps a kernel does not keep end a run
    conv[2, :7, :] = -torch.inf  # no step kept: 0
    b = torch.randn(1, 84, 4, 1, generator=g, dtype=torch.float64) * 3
    scan, scatter = stretch_scan(conv, b), stretch_scatter(conv, b)
    assert scan.shape == (3, 84, 4) and torch.equal(scan, scatter)
    for i, k, j in itertools.product(range(3), range(84), range(4)):
        assert scan[i, k, j] == _longest_stretch((conv[i, k] - b[0, k, j, 0] > 0).numpy())
    assert torch.all(scan[2, :7] == 0)


def test_a_state_says_whether_it_has_stretches_and_one_without_reads_as_ppv_alone():
    series = _series(8, 1, (40, 41))
    labels = [i % 2 for i in range(8)]
    both = KernelRidge(RandomKernels(1, 336, stretch=True), 2).fit(series, labels, seed=1)
    assert "kernels.stretch" in both.state_dict()
    again = KernelRidge.from_state(both.state_dict())
    again.load_state_dict(both.state_dict())
    assert again.kernels.pools == 2
    np.testing.assert_array_equal(again.probabilities(series), both.probabilities(series))
    ppv = KernelRidge(RandomKernels(1, 168), 2).fit(series, labels, seed=1)  # as every state before the option
    assert "kernels.stretch" not in ppv.state_dict()
    alone = KernelRidge.from_state(ppv.state_dict())
    alone.load_state_dict(ppv.state_dict())
    assert alone.kernels.pools == 1 and alone.kernels.num_features == 168
    np.testing.assert_array_equal(alone.probabilities(series), ppv.probabilities(series))


def test_fit_is_seeded_and_state_round_trips():
    series = _series(8, 1, (40, 41))
    labels = [i % 2 for i in range(8)]
    a = KernelRidge(RandomKernels(1, 840), 2).fit(series, labels, seed=1)
    b = KernelRidge(RandomKernels(1, 840), 2).fit(series, labels, seed=1)
    c = KernelRidge(RandomKernels(1, 840), 2).fit(series, labels, seed=2)
    assert torch.equal(a.kernels.biases, b.kernels.biases) and not torch.equal(a.kernels.biases, c.kernels.biases)
    state = a.state_dict()
    again = KernelRidge.from_state(state)
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.probabilities(series), a.probabilities(series))
    p = a.probabilities(series)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert a.alpha.item() in ALPHAS and a.temperature.item() > 0


def test_channels_are_standardized_in_float64_and_huge_values_refused():
    series = _series(6, 1, (30, 31))
    labels = [i % 2 for i in range(6)]
    ridge = KernelRidge(RandomKernels(1, 168), 2).fit(series, labels)
    scaled = KernelRidge(RandomKernels(1, 168), 2).fit([s * 1e30 + 7 for s in series], labels)
    # the kernels sum to zero and the biases come from the same scaled series: a univariate set's features and
    # probabilities do not depend on its units
    np.testing.assert_allclose(scaled.probabilities([s * 1e30 + 7 for s in series]), ridge.probabilities(series))
    with pytest.raises(ValueError, match="float32"):
        padded_chunks([np.full((5, 1), 1e300)], 1)


def test_too_few_features_or_series_are_refused():
    with pytest.raises(ValueError, match="at least 84"):
        RandomKernels(1, 50)
    with pytest.raises(ValueError, match="at least 168"):
        RandomKernels(1, 100, stretch=True)
    with pytest.raises(ValueError, match="at least 2 labeled"):
        KernelRidge(RandomKernels(1, 84), 2).fit(_series(1, 1, (20, 21)), [0])


# ------------------------------------------------------------------------------------------------- in a run
TINY = ["--hidden", "8", "--epochs", "1", "--batch-size", "8", "--ensemble", "1"]


SERIES_SEED = 20  # the data of the conftest's series_files fixture


@pytest.fixture(scope="module")
def kernel_run(tmp_path_factory: pytest.TempPathFactory, series_files: tuple[str, str]) -> Path:
    from test_series_classify import train_run

    return train_run(tmp_path_factory.mktemp("kr") / "run", series_files, *TINY, "--kernels", "840")


def test_a_run_averages_the_ridge_with_the_networks(kernel_run: Path, series_files: tuple[str, str]) -> None:
    from rnnkit.runs import classify_series as cs
    from rnnkit.runs.series_kernels import KERNELS_FILE, WEIGHTS, load_kernels

    config = json.loads((kernel_run / "config.json").read_text())
    record = config["kernels"]
    # --hydra and --kernel-pooling: the defaults
    assert record == {"features": 840, "seed": 0, "hydra": 64, "pooling": "ppv+lspv", "file": KERNELS_FILE}
    assert config["options"]["options"]["kernels"] == 840
    assert (kernel_run / KERNELS_FILE).is_file()
    run = load_run(kernel_run)
    part = cs.load_series(series_files[1], "test")
    networks, _ = cs._network_probabilities(run, part, labeled=False)
    ridge = load_kernels(run)
    assert ridge is not None and ridge.kernels.num_features == 840 and ridge.kernels.pools == 2
    assert ridge.competing is not None and ridge.competing.groups == 64
    kernels = ridge.probabilities([x.T for x in part.X])
    w = float(ridge.weight)
    assert w in WEIGHTS
    expected = (1 - w) * networks + w * kernels
    np.testing.assert_allclose(cs.series_probabilities(run, part.X), expected, rtol=1e-12)
    metrics = json.loads((kernel_run / "metrics.json").read_text())
    gold = np.array(part.label_ids())
    assert metrics["test_accuracy"] == round(float((expected.argmax(1) == gold).mean()), 4)
    assert metrics["kernels_accuracy"] == round(float((kernels.argmax(1) == gold).mean()), 4)
    assert metrics["networks_accuracy"] == round(float((networks.argmax(1) == gold).mean()), 4)
    assert metrics["kernels_weight"] == w
    assert metrics["processes"] == 1  # one process (torchrun's two: tests/test_ddp.py)
    nll = -np.log(expected[np.arange(len(gold)), gold]).mean()
    assert metrics["test_loss"] == pytest.approx(round(float(nll), 4), abs=1e-4)
    # without the config key the same folder is the networks alone (what runs before --kernels are)
    alone = replace(run, config={k: v for k, v in run.config.items() if k != "kernels"}, parts={})
    np.testing.assert_allclose(cs.series_probabilities(alone, part.X), networks, rtol=1e-12)


def test_the_weight_is_chosen_on_validation_and_the_ridge_refit_on_train_and_validation(
    kernel_run: Path, series_files: tuple[str, str]
) -> None:
    from rnnkit.runs import classify_series as cs
    from rnnkit.runs.series_kernels import choose_weight, fit_kernels, load_kernels

    split = cs.prepare_series(series_files[0], test_data=series_files[1], seed=0, series_norm="both")
    assert len(split.val) > 0
    run = load_run(kernel_run)
    ridge = load_kernels(run)
    assert ridge is not None
    # the weight: the trial ridge (training part only) and the networks on the validation part
    trial = fit_kernels([split.train], split.classes, 840, seed=0, hydra=64, pooling="ppv+lspv")
    networks, _ = cs._network_probabilities(run, split.val, labeled=False)
    gold = split.val.label_ids()
    assert float(ridge.weight) == choose_weight(networks, trial.probabilities([x.T for x in split.val.X]), gold)
    # the member kept: refit on training and validation series (never the test part)
    again = fit_kernels([split.train, split.val], split.classes, 840, seed=0, hydra=64, pooling="ppv+lspv")
    for key, value in again.state_dict().items():
        if key != "weight":
            assert torch.equal(value, ridge.state_dict()[key]), key


def test_choose_weight_takes_the_lowest_cross_entropy() -> None:
    from rnnkit.runs.series_kernels import choose_weight

    gold = [0, 1, 1]
    right = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
    wrong = right[:, ::-1].copy()
    assert choose_weight(right, wrong, gold) == 0.0
    assert choose_weight(wrong, right, gold) == 1.0
    assert choose_weight(right, right, gold) == 0.0  # equals: the first
    half = np.array([[0.6, 0.4], [0.4, 0.6], [0.45, 0.55]])
    losses = {w: -np.log(((1 - w) * half + w * right)[[0, 1, 2], gold]).mean() for w in (0, 0.25, 0.5, 0.75, 1)}
    assert choose_weight(half, right, gold) == min(losses, key=losses.get)


def test_kernels_zero_writes_no_ridge(tmp_path: Path, series_files: tuple[str, str]) -> None:
    train, test = series_files
    out = tmp_path / "r0"
    args = ["train", "--task", "classify", "--data", train, "--test-data", test, *TINY, "--kernels", "0"]
    assert cli.main([*args, "--out", str(out)]) == 0
    assert "kernels" not in json.loads((out / "config.json").read_text())
    assert not (out / "kernels.safetensors").exists()
    assert "kernels_accuracy" not in json.loads((out / "metrics.json").read_text())


def test_a_resumed_run_keeps_its_pooling_and_one_without_the_key_had_ppv_alone(kernel_run: Path) -> None:
    from rnnkit.runs.options import RunOptions
    from rnnkit.runs.series_defaults import kernel_pooling_of, options_from_config

    config = json.loads((kernel_run / "config.json").read_text())
    assert kernel_pooling_of(options_from_config(config, RunOptions())) == "ppv+lspv"
    del config["kernels"]["pooling"]  # a run an earlier release wrote
    assert kernel_pooling_of(options_from_config(config, RunOptions())) == "ppv"


def test_bad_kernel_settings_and_files_get_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kernel_run: Path, series_files: tuple[str, str]
) -> None:
    train, test = series_files
    for value, words in (
        ("-1", "--kernels"),
        ("50", "at least 168"),
        ("50 --kernel-pooling ppv", "at least 84"),
        ("840 --kernel-pooling max", "--kernel-pooling"),
        ("0 --kernel-pooling ppv", "shapes the kernel ridge, which --kernels 0 turns off"),
    ):
        out = tmp_path / f"bad{value.replace(' ', '_')}"
        code, o, err = rnnkit_main(capsys, "train", "--task", "classify", "--data", train, "--kernels",
                                   *value.split(), "--out", out)  # fmt: skip
        assert_one_line_error(code, o, err, words)
        assert not out.exists()
    broken = tmp_path / "broken"
    shutil.copytree(kernel_run, broken)
    (broken / "kernels.safetensors").write_bytes(b"not a safetensors file")
    assert_one_line_error(*rnnkit_main(capsys, "predict", broken, "--data", test), "kernels.safetensors")
    (broken / "kernels.safetensors").unlink()
    assert_one_line_error(*rnnkit_main(capsys, "evaluate", broken), "kernels.safetensors: missing")
    config = json.loads((broken / "config.json").read_text())
    config["kernels"]["file"] = "../elsewhere.safetensors"  # a path out of the folder is not a run's file
    (broken / "config.json").write_text(json.dumps(config))
    assert_one_line_error(*rnnkit_main(capsys, "evaluate", broken), "kernels.file")


def test_export_writes_the_ridge_graph_and_the_two_graphs_give_the_runs_probabilities(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, kernel_run: Path, series_files: tuple[str, str]
) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from rnnkit.data.arrays import Standardizer
    from rnnkit.runs import classify_series as cs

    output = tmp_path / "m.onnx"
    code, out, err = rnnkit_main(capsys, "export", kernel_run, "--output", output, "--check")
    assert code == 0, err
    assert "m.kernels.onnx (kernels): series (B, T, 2) float32, lengths (B,) int64 -> logits (B, 3)" in out
    assert "onnxruntime check" in out
    info = json.loads((tmp_path / "m.onnx.json").read_text())
    assert set(info["graphs"]) == {"sequence", "kernels"} and info["graphs"]["kernels"]["file"] == "m.kernels.onnx"
    run = load_run(kernel_run)
    part = cs.load_series(series_files[1], "test")
    series = [x.T for x in part.X]  # (L_i, C)
    batch = cs.series_batch(series, Standardizer.from_dict(run.config["scaler"]), series_norm=run.config["series_norm"])
    seq = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    net = seq.run(None, {"inputs": batch.inputs.numpy(), "lengths": batch.lengths.numpy()})[0]
    raw = np.zeros((len(series), max(len(x) for x in series), 2), np.float32)
    for i, x in enumerate(series):
        raw[i, : len(x)] = x
    ker = ort.InferenceSession(str(tmp_path / "m.kernels.onnx"), providers=["CPUExecutionProvider"])
    logits = ker.run(None, {"series": raw, "lengths": batch.lengths.numpy()})[0]
    w = info["kernels"]["weight"]
    probs = (1 - w) * torch.softmax(torch.from_numpy(net), -1) + w * torch.softmax(torch.from_numpy(logits), -1)
    np.testing.assert_allclose(probs.numpy(), cs.series_probabilities(run, part.X), atol=1e-5)
    # a later export of a run without a ridge to the same name removes the stale kernel graph
    plain = tmp_path / "plain"
    train, test = series_files
    args = ["train", "--task", "classify", "--data", train, "--test-data", test, *TINY, "--kernels", "0"]
    assert cli.main([*args, "--out", str(plain)]) == 0
    code, out, err = rnnkit_main(capsys, "export", plain, "--output", output)
    assert code == 0, err
    assert not (tmp_path / "m.kernels.onnx").exists()
    assert "kernels" not in json.loads((tmp_path / "m.onnx.json").read_text())


def test_an_export_whose_kernel_graph_fails_leaves_the_earlier_export_as_it_was(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kernel_run: Path
) -> None:
    pytest.importorskip("onnx")
    from cli_helpers import snapshot
    from rnnkit.export import writer

    output = tmp_path / "m.onnx"
    info = writer.export_run(load_run(kernel_run), output)
    assert set(info["graphs"]) == {"sequence", "kernels"}
    before = snapshot(tmp_path)

    def broken(*args: object) -> None:
        raise RuntimeError("kernel graph failed")

    monkeypatch.setattr(writer, "_KernelGraph", broken)
    with pytest.raises(RuntimeError, match="kernel graph failed"):
        writer.export_run(load_run(kernel_run), output)
    assert snapshot(tmp_path) == before  # every graph is made before any file is written, the JSON last


def test_serve_answers_with_the_ridge_and_the_networks_averaged(
    kernel_run: Path, series_files: tuple[str, str]
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from rnnkit.runs import classify_series as cs
    from rnnkit.serve import Limits, create_app

    part = cs.load_series(series_files[1], "test")
    items = [x.T.tolist() for x in part.X[:3]]  # 3 × L_i × C
    run = load_run(kernel_run)
    expected = cs.series_probabilities(run, part.X[:3])  # (3, classes): networks and ridge averaged
    with TestClient(create_app([kernel_run], Limits()), raise_server_exceptions=False) as client:
        resp = client.post(f"/runs/{kernel_run.name}/predict", json={"items": items, "top_k": 1})
        assert resp.status_code == 200, resp.text
        for i, got in enumerate(resp.json()["predictions"]):
            best = int(expected[i].argmax())
            assert got["top"][0]["label"] == run.classes[best]
            assert got["top"][0]["prob"] == round(float(expected[i, best]), 6)
        bad = client.post(f"/runs/{kernel_run.name}/predict", json={"series": [[1e300, 0.0]] * 5})
        # beyond float32 once scaled: one JSON 400 line (the networks' batch refuses it first), the server stays up
        assert bad.status_code == 400 and set(bad.json()) == {"error"} and "\n" not in bad.json()["error"]
        assert client.post(f"/runs/{kernel_run.name}/predict", json={"items": items[:1]}).status_code == 200


def test_without_a_validation_part_the_weight_is_the_fallback(tmp_path: Path, series_files: tuple[str, str]) -> None:
    from rnnkit.runs.series_defaults import KERNEL_WEIGHT
    from rnnkit.runs.series_kernels import load_kernels

    train, test = series_files
    out = tmp_path / "noval"
    args = ["train", "--task", "classify", "--data", train, "--test-data", test, *TINY, "--kernels", "168"]
    assert cli.main([*args, "--val-fraction", "0", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_val"] == 0 and metrics["kernels_weight"] == KERNEL_WEIGHT
    ridge = load_kernels(load_run(out))
    assert ridge is not None and float(ridge.weight) == KERNEL_WEIGHT and ridge.kernels.num_features == 168


def test_the_kernel_graph_keeps_the_ridge_in_float64_and_leaves_the_runs_module_as_it_was() -> None:
    from rnnkit.export.graphs import _KernelGraph
    from rnnkit.tasks.hydra import CompetingKernels

    series = _series(10, 2, (30, 45), seed=6)
    labels = [i % 3 for i in range(10)]
    ridge = KernelRidge(RandomKernels(2, 336, stretch=True), 3, CompetingKernels(2, 4)).fit(series, labels, seed=2)
    ridge.scale[:50] *= 1e-4  # features whose training spread is tiny: their z-scores run into thousands
    graph = _KernelGraph(ridge)
    assert ridge.coef.dtype == ridge.mean.dtype == ridge.channel_mean.dtype == torch.float64  # not cast in place
    x, lengths = padded_chunks(series, 2)[0]  # in the data's units, as the graph reads them
    scaled, _ = padded_chunks(series, 2, ridge.channel_mean.numpy(), ridge.channel_std.numpy())[0]
    with torch.no_grad():
        ref = ridge(scaled, lengths)  # (B, K) float64
        got = graph(x, lengths)  # (B, K) float32
    assert got.dtype == torch.float32 and float(ref.abs().max()) > 10  # logits large enough to show the rounding
    # float32 features, then the ridge in float64 as the module computes it: only the last cast rounds the logits
    torch.testing.assert_close(got.double(), ref, rtol=2e-7, atol=0.0)  # float32 end to end: 1.2e-6 here


def test_ridge_sample_keeps_every_class_in_its_share() -> None:
    from collections import Counter

    from rnnkit.runs.series_kernels import RIDGE_MAX_SERIES, ridge_sample

    labels = [0] * 30 + [1] * 10 + [2]
    assert ridge_sample(labels, 0) == list(range(41))  # under the limit: every series
    assert RIDGE_MAX_SERIES >= 1000
    keep = ridge_sample(labels, 0, limit=20)
    assert keep == sorted(set(keep))
    # each class keeps round(share · n), at least one: 30 → 15, 10 → 5, the single series of class 2 stays
    assert Counter(labels[i] for i in keep) == {0: 15, 1: 5, 2: 1}
    assert ridge_sample(labels, 0, limit=20) == keep  # seeded
    assert ridge_sample(labels, 1, limit=20) != keep


def test_the_ridge_is_fitted_on_a_sample_above_the_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, series_files: tuple[str, str]
) -> None:
    from rnnkit.data.arrays import as_sequences
    from rnnkit.runs import classify_series as cs
    from rnnkit.runs import series_kernels as sk
    from rnnkit.tasks.hydra import CompetingKernels
    from rnnkit.tasks.kernels import KernelRidge, RandomKernels
    from test_series_classify import rnnkit_main

    split = cs.prepare_series(series_files[0], test_data=series_files[1], seed=0)
    parts = [split.train, split.val]
    series = [x for part in parts for x in as_sequences(part.X)]
    labels = [i for part in parts for i in part.label_ids()]
    monkeypatch.setattr(sk, "RIDGE_MAX_SERIES", len(labels) // 2)
    keep = sk.ridge_sample(labels, 3)
    assert len(keep) < len(labels) and len({labels[i] for i in keep}) == len(split.classes)
    ridge = sk.fit_kernels(parts, split.classes, 840, 3, hydra=8, pooling="ppv+lspv")
    C, K = split.train.num_channels, len(split.classes)
    direct = KernelRidge(RandomKernels(C, 840, stretch=True), K, CompetingKernels(C, 8))
    direct.fit([series[i] for i in keep], [labels[i] for i in keep], 3)
    for key, value in direct.state_dict().items():
        assert torch.equal(value, ridge.state_dict()[key]), key
    # a run fits its ridge on the sample and says so; the networks read every series
    train, test = series_files
    args = ["train", "--task", "classify", "--data", train, "--test-data", test, *TINY, "--kernels", "168"]
    code, out, err = rnnkit_main(capsys, *args, "--out", tmp_path / "run")
    assert code == 0, err
    assert f"fitted on about {len(labels) // 2:,} of the {len(labels):,} labeled series" in out + err


def test_feature_groups_cover_every_column_once_in_order() -> None:
    from rnnkit.tasks.hydra import CompetingKernels
    from rnnkit.tasks.kernels import feature_groups

    series = _series(12, 2, (30, 50))
    for stretch, hydra in ((False, 0), (True, 0), (False, 8), (True, 8)):
        kernels = RandomKernels(2, 1000, stretch=stretch).fit(series)
        competing = CompetingKernels(2, hydra) if hydra else None
        if competing is not None:
            competing.draw(series, 0)
        groups = feature_groups(kernels, competing)
        expected = ["ppv"] + (["lspv"] if stretch else []) + (["hydra"] if hydra else [])
        assert list(groups) == expected
        F = kernels.num_features + (competing.num_features if competing else 0)
        owner = np.full(F, "", dtype=object)
        for name, cols in groups.items():
            for c in cols:
                assert (owner[c] == "").all()
                owner[c] = name
        assert (owner != "").all()  # every column in exactly one group
        # the proportions and the stretches alternate per dilation, as RandomKernels.features writes them
        x, lengths = padded_chunks(series[:3], 2)[0]
        feats = kernels(x, lengths)
        for c in groups["ppv"]:
            assert torch.all((feats[:, c] >= 0) & (feats[:, c] <= 1))
        if stretch:  # a stretch of positive steps never exceeds their proportion
            for p, s in zip(groups["ppv"], groups["lspv"], strict=True):
                assert torch.all(feats[:, s] <= feats[:, p] + 1e-6)


def _standardized(ridge: KernelRidge, series: list[np.ndarray]) -> torch.Tensor:
    """The standardized features ``(N, F)`` float64 a fitted ridge solved on."""
    X = torch.cat([ridge.transform_features(x, n).double() for x, n in ridge._chunks(series)])
    return (X - ridge.mean) / ridge.scale


def _assert_one_group_ridge_is_the_reference(series: list[np.ndarray], labels: list[int], Y: torch.Tensor) -> None:
    """With MiniRocket's features alone there is nothing to choose (and no sample): the ridge on all of them, on
    every series, equals ``ridge_loo``'s."""
    plain = KernelRidge(RandomKernels(1, 840), Y.shape[1]).fit(series, labels, 0)
    assert plain.chosen_groups() == ("ppv",)
    alpha, dual, _ = ridge_loo(Zp := _standardized(plain, series), Y)
    assert float(plain.alpha) == alpha
    ref = Zp.T @ dual
    torch.testing.assert_close(plain.coef, ref, rtol=1e-6, atol=1e-7 * float(ref.abs().max()))


def test_the_ridge_reads_the_feature_groups_with_the_lowest_leave_one_out_error() -> None:
    from rnnkit.tasks.hydra import CompetingKernels
    from rnnkit.tasks.kernels import feature_groups, gram_loo

    series = _series(40, 1, (40, 60), seed=3)
    labels = [i % 3 for i in range(40)]
    series = [
        x + 0.5 * (lab + 1) * np.sin(np.arange(len(x)) / (2 + lab))[:, None]
        for x, lab in zip(series, labels, strict=True)
    ]
    ridge = KernelRidge(RandomKernels(1, 840, stretch=True), 3, CompetingKernels(1, 8)).fit(series, labels, 0)
    # the standardized features and targets the fit solved on
    Z = _standardized(ridge, series)
    Y = -torch.ones(40, 3, dtype=torch.float64)
    Y[torch.arange(40), labels] = 1.0
    groups = feature_groups(ridge.kernels, ridge.competing)

    def columns(combo):
        return torch.tensor(sorted(i for name in combo for c in groups[name] for i in range(c.start, c.stop)))

    combos = [("ppv",), ("ppv", "lspv"), ("ppv", "hydra"), ("ppv", "lspv", "hydra")]
    errors = {}
    for combo in combos:  # each combination solved on its own columns, by the reference ridge_loo
        Zs = Z[:, columns(combo)]
        alpha, dual, loo = ridge_loo(Zs, Y)
        errors[combo] = (float(((Y - loo) ** 2).mean()), alpha, Zs.T @ dual)
        # the Gram form gives the same solution
        a2, err2, dual2, _ = gram_loo(Zs @ Zs.T, Y)
        assert a2 == alpha and err2 == pytest.approx(errors[combo][0], rel=1e-12)
        torch.testing.assert_close(dual2, dual, rtol=1e-9, atol=1e-12)
    best = min(errors, key=lambda c: errors[c][0])
    assert ridge.chosen_groups() == best
    cols = columns(best)
    # α: the reference's, or one whose leave-one-out error ties with it to rounding. At the small-α end the
    # errors are flat to 1e-4 (0.75634 at α = 10⁻³, 0.75624 at 10^-1.67), and rounding (the Gram summed per
    # group in the fit, Zs Zsᵀ in the reference; the features recomputed here) moves them in the fifth digit,
    # where 1 − diag(H_α) is small: on an Intel Xeon the fit picks α = 10^-2.33 where the reference picks
    # 10^-1.67, their reference errors 4e-6 apart (relative); on an AMD EPYC with AVX-512 α = 10⁻³, 1.3e-4 apart
    alpha = float(ridge.alpha)
    at_alpha = ridge_loo(Z[:, cols], Y, alphas=[alpha])
    assert float(((Y - at_alpha[2]) ** 2).mean()) == pytest.approx(errors[best][0], rel=5e-4)
    want = Z[:, cols].T @ at_alpha[1]
    scale = float(want.abs().max())  # the Gram summed per group rounds apart from Zs Zsᵀ at α = 10⁻³
    torch.testing.assert_close(ridge.coef[cols], want, rtol=1e-6, atol=1e-7 * scale)
    left_out = torch.ones(Z.shape[1], dtype=torch.bool)
    left_out[cols] = False
    assert torch.all(ridge.coef[left_out] == 0)  # the groups left out weigh nothing
    _assert_one_group_ridge_is_the_reference(series, labels, Y)  # one group only: nothing to choose


def test_above_the_limit_the_groups_are_chosen_on_a_sample_and_solved_on_every_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rnnkit.tasks.kernels as kernels_module
    from rnnkit.tasks.hydra import CompetingKernels
    from rnnkit.tasks.kernels import feature_groups

    series = _series(40, 1, (40, 60), seed=5)
    labels = [i % 2 for i in range(40)]
    series = [x + lab * np.cos(np.arange(len(x)) / 3)[:, None] for x, lab in zip(series, labels, strict=True)]
    monkeypatch.setattr(kernels_module, "SELECT_MAX_SERIES", 24)
    ridge = KernelRidge(RandomKernels(1, 840, stretch=True), 2, CompetingKernels(1, 8)).fit(series, labels, 0)
    Z = _standardized(ridge, series)
    Y = -torch.ones(40, 2, dtype=torch.float64)
    Y[torch.arange(40), labels] = 1.0
    rows = torch.from_numpy(np.sort(np.random.default_rng(0).choice(40, 24, replace=False)))
    Zs = Z[rows] - Z[rows].mean(0)  # the sample, centered on its own
    groups = feature_groups(ridge.kernels, ridge.competing)

    def columns(combo):
        return torch.tensor(sorted(i for name in combo for c in groups[name] for i in range(c.start, c.stop)))

    combos = [("ppv", "lspv", "hydra"), ("ppv", "lspv"), ("ppv", "hydra"), ("ppv",)]
    errors = {c: float(((Y[rows] - ridge_loo(Zs[:, columns(c)], Y[rows])[2]) ** 2).mean()) for c in combos}
    best = min(combos, key=lambda c: errors[c])  # the first of equals: the larger combination
    assert ridge.chosen_groups() == best
    alpha, dual, _ = ridge_loo(Z[:, columns(best)], Y)  # solved on all 40 series
    assert float(ridge.alpha) == alpha
    ref = Z[:, columns(best)].T @ dual
    torch.testing.assert_close(ridge.coef[columns(best)], ref, rtol=1e-6, atol=1e-7 * float(ref.abs().max()))
    _assert_one_group_ridge_is_the_reference(series, labels, Y)  # one group only: no sample either
