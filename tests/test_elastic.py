"""The DTW member (rnnkit.tasks.elastic) against references — a hand-written float64 DTW loop, aeon's own
``dtw_distance``, 1-NN by hand — and its part in a series run (``--dtw-steps``)."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import rnnkit.tasks.elastic as elastic
from cli_helpers import assert_one_line_error, rnnkit_main
from rnnkit import cli
from rnnkit.data.series_inputs import downsample_series
from rnnkit.runs.folder import load_run
from rnnkit.tasks.elastic import NearestSeries, class_minima, dtw_distances, pad_series


def _series(n: int, channels: int, lengths: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    return [g.standard_normal((int(g.integers(*lengths)), channels)).cumsum(0) for _ in range(n)]


def _dtw_loop(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook recurrence, cell by cell, in float64."""
    La, Lb = len(a), len(b)
    D = np.full((La + 1, Lb + 1), np.inf)
    D[0, 0] = 0.0
    for i in range(1, La + 1):
        for j in range(1, Lb + 1):
            cost = float(((a[i - 1] - b[j - 1]) ** 2).sum())
            D[i, j] = cost + min(D[i - 1, j - 1], D[i - 1, j], D[i, j - 1])
    return float(D[La, Lb])


def _distances(A: list[np.ndarray], B: list[np.ndarray], **kw: Any) -> np.ndarray:
    a, la = pad_series(A)
    b, lb = pad_series(B)
    return dtw_distances(a, la, b, lb, **kw).numpy()


def _method(name: str) -> str:
    if name == "compiled" and elastic._kernel() is None:
        pytest.skip(f"the compiled DTW kernel did not build here ({elastic.extension_status('dtw')})")
    return name


@pytest.mark.parametrize("method", ["compiled", "scan"])
@pytest.mark.parametrize("channels", [1, 3])
def test_dtw_equals_the_hand_loop_for_unequal_lengths_and_any_batching(channels: int, method: str) -> None:
    method = _method(method)
    A = _series(5, channels, (1, 14), seed=1)
    B = _series(11, channels, (2, 11), seed=2)  # the compiled kernel: a block of 8 pairs and one of 3
    A.append(np.ones((1, channels)))  # one step: only the first row and column
    expected = np.array([[_dtw_loop(a, b) for b in B] for a in A])
    got = _distances(A, B, method=method)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    if method == "scan":  # one series a batch (the compiled kernel has no batches)
        np.testing.assert_allclose(_distances(A, B, chunk_cells=1, method=method), got, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_distances(B, A, method=method), got.T, rtol=1e-12, atol=1e-12)  # symmetric
    assert np.all(np.diag(_distances(A, A, method=method)) == 0)


def test_the_compiled_kernel_and_the_scan_agree_on_many_pairs() -> None:
    _method("compiled")
    A, B = _series(7, 2, (1, 60), seed=5), _series(37, 2, (1, 70), seed=6)
    compiled = _distances(A, B, method="compiled")
    np.testing.assert_allclose(compiled, _distances(A, B, method="scan"), rtol=1e-11)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # any split between threads gives the same bits
    try:
        assert np.array_equal(_distances(A, B, method="compiled"), compiled)
    finally:
        torch.set_num_threads(threads)


def test_without_the_kernel_auto_scans_and_compiled_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    A, B = _series(3, 1, (2, 9), seed=7), _series(4, 1, (2, 9), seed=8)
    scanned = _distances(A, B, method="scan")
    monkeypatch.setattr(elastic, "_kernel", lambda: None)
    np.testing.assert_array_equal(_distances(A, B), scanned)
    with pytest.raises(ValueError, match="method='compiled' is unavailable"):
        _distances(A, B, method="compiled")
    with pytest.raises(ValueError, match="method must be one of"):
        _distances(A, B, method="fast")


@pytest.mark.parametrize("method", ["compiled", "scan"])
def test_dtw_equals_aeons_dtw_distance(method: str) -> None:
    distances = pytest.importorskip("aeon.distances")
    A = _series(4, 2, (5, 30), seed=3)
    B = _series(3, 2, (5, 30), seed=4)
    got = _distances(A, B, method=_method(method))
    for i, a in enumerate(A):
        for j, b in enumerate(B):  # aeon reads (C, L)
            assert got[i, j] == pytest.approx(distances.dtw_distance(a.T.copy(), b.T.copy()), rel=1e-12)


@pytest.mark.parametrize("method", ["compiled", "scan"])
def test_bad_shapes_and_overflowing_costs_are_refused_on_both_paths(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    method = _method(method)
    a, la = pad_series(_series(2, 2, (3, 5)))
    b, lb = pad_series(_series(3, 1, (3, 5)))
    with pytest.raises(ValueError, match="the same channels"):
        dtw_distances(a, la, b, lb, method=method)
    with pytest.raises(ValueError, match="one integer per series"):
        dtw_distances(a, la.double(), a, la, method=method)
    with pytest.raises(ValueError, match="one integer per series"):
        dtw_distances(a, la[:1], a, la, method=method)
    if method == "scan":  # the member's own calls ("auto") take the scan
        monkeypatch.setattr(elastic, "_kernel", lambda: None)
    series, labels = _labeled()
    member = NearestSeries(2, 2).fit(series, labels, 64)
    with pytest.raises(ValueError, match="costs overflow"):  # inf in the kernel, inf − inf in the scan
        member.probabilities([np.full((10, 2), 1e160)])


def test_an_empty_series_is_refused() -> None:
    a, la = pad_series(_series(2, 1, (3, 5)))
    with pytest.raises(ValueError, match="at least one step"):
        dtw_distances(a, torch.tensor([3, 0]), a, la)
    with pytest.raises(ValueError, match="exceeds its series' padded length"):
        dtw_distances(a, la + a.shape[1], a, la)
    with pytest.raises(ValueError, match="no series"):
        pad_series([])


def _labeled(n_per_class: int = 6, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Two classes: a bump early or late in the series, at unequal lengths and levels."""
    g = np.random.default_rng(seed)
    series, labels = [], []
    for k in range(2):
        for _ in range(n_per_class):
            L = int(g.integers(20, 30))
            t = np.arange(L)
            centre = (0.25 if k == 0 else 0.75) * L + g.normal(0, 1)
            x = np.exp(-0.5 * ((t - centre) / 2.0) ** 2) * 3 + g.normal(0, 0.2, L) + g.normal(0, 0.3)
            series.append(np.stack([x, 10 * x + 5], 1))  # (L, 2): a second channel in other units
            labels.append(k)
    return series, labels


def test_the_member_is_1nn_dtw_and_its_leave_one_out_scores_are_by_hand() -> None:
    series, labels = _labeled()
    test, _ = _labeled(4, seed=9)
    member = NearestSeries(2, 2).fit(series, labels, steps=1000)
    assert int(member.factor) == 1
    mean, std = np.concatenate(series).mean(0), np.concatenate(series).std(0)
    ref = [(x - mean) / std for x in series]
    D = np.array([[_dtw_loop((x - mean) / std, r) for r in ref] for x in test])  # (n, N)
    nearest = np.array(labels)[D.argmin(1)]
    probs = member.probabilities(test)
    assert probs.shape == (len(test), 2) and np.allclose(probs.sum(1), 1)
    assert np.array_equal(probs.argmax(1), nearest)  # 1-NN DTW's prediction
    # the probabilities: softmax(τ · (−class minimum / scale))
    y = np.array(labels)
    minima = np.stack([D[:, y == k].min(1) for k in range(2)], 1)
    logits = float(member.temperature) * (-minima / float(member.scale))
    np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(logits), -1).numpy(), rtol=1e-10)
    # leave one out: each reference against the others; the scale is their median nearest distance
    R = np.array([[_dtw_loop(a, b) for b in ref] for a in ref])
    np.fill_diagonal(R, np.inf)
    assert float(member.scale) == pytest.approx(float(np.median(R.min(1))), rel=1e-12)
    loo_min = np.stack([R[:, y == k].min(1) for k in range(2)], 1)
    loo_logits = float(member.temperature) * (-loo_min / float(member.scale))
    expected = torch.softmax(torch.from_numpy(loo_logits), -1).numpy()
    assert member.loo_probabilities is not None
    np.testing.assert_allclose(member.loo_probabilities, expected, rtol=1e-10)
    # τ: the lowest leave-one-out cross-entropy on the kernel ridge's grid
    grid = np.exp(np.linspace(math.log(0.1), math.log(100.0), 121))
    losses = [
        -np.log(torch.softmax(torch.from_numpy(t * -loo_min / float(member.scale)), -1).numpy()[range(12), y]).mean()
        for t in grid
    ]
    assert float(member.temperature) == pytest.approx(float(grid[int(np.argmin(losses))]), rel=1e-9)


def test_long_series_are_averaged_to_about_steps_and_units_do_not_matter() -> None:
    series, labels = _labeled()
    test, _ = _labeled(3, seed=5)
    member = NearestSeries(2, 2).fit(series, labels, steps=8)
    mean_length = sum(len(x) for x in series) / len(series)
    f = math.ceil(mean_length / 8)
    assert int(member.factor) == f > 1
    assert int(member.lengths.max()) == max(-(-len(x) // f) for x in series)
    # the same as a member fitted on the series averaged by hand (channel scaling commutes with averaging)
    by_hand = NearestSeries(2, 2).fit(downsample_series(series, f), labels, steps=1000)
    assert int(by_hand.factor) == 1
    np.testing.assert_allclose(member.probabilities(test), by_hand.probabilities(downsample_series(test, f)), rtol=1e-9)
    # each channel standardized: other units per channel give the same probabilities
    rescale = np.array([3.0, -0.5]), np.array([100.0, 7.0])
    moved = [x * rescale[0] + rescale[1] for x in series]
    again = NearestSeries(2, 2).fit(moved, labels, steps=8)
    np.testing.assert_allclose(
        again.probabilities([x * rescale[0] + rescale[1] for x in test]), member.probabilities(test), rtol=1e-9
    )


def test_state_round_trips_and_a_lone_class_member_is_finite() -> None:
    series, labels = _labeled(3)
    labels[0] = 2  # a class with one reference: left out, it has no other of its class
    member = NearestSeries(2, 3).fit(series, labels, steps=16)
    assert member.loo_probabilities is not None and np.isfinite(member.loo_probabilities).all()
    assert member.loo_probabilities[0, 2] == 0.0
    state = {k: v.clone() for k, v in member.state_dict().items()}
    loaded = NearestSeries.from_state(state)
    loaded.load_state_dict(state)
    test, _ = _labeled(2, seed=7)
    np.testing.assert_array_equal(loaded.probabilities(test), member.probabilities(test))
    # a class without any reference scores probability 0
    absent = NearestSeries(2, 4).fit(series, labels, steps=16)
    assert np.all(absent.probabilities(test)[:, 3] == 0) and np.isfinite(absent.probabilities(test)).all()


def test_class_minima_and_bad_fits() -> None:
    D = torch.tensor([[3.0, 1.0, 2.0], [0.5, 4.0, 9.0]], dtype=torch.float64)
    got = class_minima(D, torch.tensor([0, 1, 0]), 3)
    assert got.tolist() == [[2.0, 1.0, math.inf], [0.5, 4.0, math.inf]]
    series, labels = _labeled(2)
    with pytest.raises(ValueError, match="at least 2 labeled series"):
        NearestSeries(2, 2).fit(series[:1], labels[:1], steps=8)
    with pytest.raises(ValueError, match="steps"):
        NearestSeries(2, 2).fit(series, labels, steps=0)


# ------------------------------------------------------------------------------------------------ in a run
TINY = ["--epochs", "2", "--hidden", "8", "--batch-size", "8", "--ensemble", "1", "--kernels", "168", "--hydra", "8"]


SERIES_SEED = 21  # the data of the conftest's series_files fixture


@pytest.fixture(scope="module")
def dtw_run(tmp_path_factory: pytest.TempPathFactory, series_files: tuple[str, str]) -> Path:
    from test_series_classify import train_run

    return train_run(tmp_path_factory.mktemp("dtw") / "run", series_files, *TINY, "--dtw-steps", "16")


def test_a_run_averages_the_dtw_member_with_the_ridge(dtw_run: Path, series_files: tuple[str, str]) -> None:
    from rnnkit.runs import classify_series as cs
    from rnnkit.runs.series_kernels import DTW_FILE, WEIGHTS, load_kernels, load_nearest

    config = json.loads((dtw_run / "config.json").read_text())
    assert config["dtw"] == {"steps": 16, "file": DTW_FILE}
    assert config["options"]["options"]["dtw_steps"] == 16
    run = load_run(dtw_run)
    part = cs.load_series(series_files[1], "test")
    series = [x.T for x in part.X]
    networks, _ = cs._network_probabilities(run, part, labeled=False)
    ridge, nearest = load_kernels(run), load_nearest(run)
    assert ridge is not None and nearest is not None
    kernels, dtw = ridge.probabilities(series), nearest.probabilities(series)
    w, v = float(ridge.weight), float(nearest.weight)
    assert w in WEIGHTS and v in WEIGHTS
    expected = (1 - w) * networks + w * ((1 - v) * kernels + v * dtw)
    np.testing.assert_allclose(cs.series_probabilities(run, part.X), expected, rtol=1e-12)
    metrics = json.loads((dtw_run / "metrics.json").read_text())
    gold = np.array(part.label_ids())
    assert metrics["test_accuracy"] == round(float((expected.argmax(1) == gold).mean()), 4)
    assert metrics["dtw_accuracy"] == round(float((dtw.argmax(1) == gold).mean()), 4)
    assert metrics["kernels_accuracy"] == round(float((kernels.argmax(1) == gold).mean()), 4)
    assert (metrics["dtw_weight"], metrics["kernels_weight"]) == (v, w)
    code = cli.main(["evaluate", str(dtw_run)])
    assert code == 0
    # the fixture's own shares may sit at the ends (v = 0, w = 1): with both at ½ every part shows
    # (and a softer member: on these easy series both static members are all but one-hot and agree)
    ridge.weight.fill_(0.5)
    nearest.weight.fill_(0.5)
    nearest.temperature.fill_(1e-3)
    dtw = nearest.probabilities(series)
    assert np.abs(dtw - kernels).max() > 0.05  # the member moves the probabilities
    half = 0.5 * networks + 0.5 * (0.5 * kernels + 0.5 * dtw)
    np.testing.assert_allclose(cs.series_probabilities(run, part.X), half, rtol=1e-12)
    # without the config key the same folder is the networks and the ridge alone (runs before --dtw-steps)
    before = replace(run, config={k: val for k, val in run.config.items() if k != "dtw"}, parts={})
    np.testing.assert_allclose(cs.series_probabilities(before, part.X), (1 - w) * networks + w * kernels, rtol=1e-12)


def test_the_shares_are_chosen_by_leave_one_out_and_on_validation(dtw_run: Path, series_files: tuple[str, str]) -> None:
    from rnnkit.runs import classify_series as cs
    from rnnkit.runs.series_kernels import choose_weight, fit_kernels, fit_nearest, load_kernels, load_nearest

    split = cs.prepare_series(series_files[0], test_data=series_files[1], seed=0, series_norm="both")
    run = load_run(dtw_run)
    ridge, nearest = load_kernels(run), load_nearest(run)
    assert ridge is not None and nearest is not None
    # v: the two kept members' leave-one-out probabilities over every labeled series
    parts = [split.train, split.val]
    labels = [i for p in parts for i in p.label_ids()]
    kept_r = fit_kernels(parts, split.classes, 168, seed=0, hydra=8, pooling="ppv+lspv")
    kept_d = fit_nearest(parts, split.classes, 16, seed=0)
    for key, value in kept_d.state_dict().items():
        if key != "weight":
            assert torch.equal(value, nearest.state_dict()[key]), key
    assert kept_r.loo_probabilities is not None and kept_d.loo_probabilities is not None
    assert float(nearest.weight) == choose_weight(kept_r.loo_probabilities, kept_d.loo_probabilities, labels)
    # w: the trial members (training part only), their own v, against the networks on the validation part
    trial_r = fit_kernels([split.train], split.classes, 168, seed=0, hydra=8, pooling="ppv+lspv")
    trial_d = fit_nearest([split.train], split.classes, 16, seed=0)
    assert trial_r.loo_probabilities is not None and trial_d.loo_probabilities is not None
    v = choose_weight(trial_r.loo_probabilities, trial_d.loo_probabilities, split.train.label_ids())
    val = [x.T for x in split.val.X]
    static = (1 - v) * trial_r.probabilities(val) + v * trial_d.probabilities(val)
    networks, _ = cs._network_probabilities(run, split.val, labeled=False)
    assert float(ridge.weight) == choose_weight(networks, static, split.val.label_ids())


def test_the_dtw_member_is_fitted_on_a_sample_above_the_limit(
    monkeypatch: pytest.MonkeyPatch, series_files: tuple[str, str]
) -> None:
    from rnnkit.runs import classify_series as cs
    from rnnkit.runs import series_kernels as sk

    split = cs.prepare_series(series_files[0], test_data=series_files[1], seed=0)
    parts = [split.train, split.val]
    labels = [i for p in parts for i in p.label_ids()]
    monkeypatch.setattr(sk, "DTW_MAX_SERIES", 12)
    member = sk.fit_nearest(parts, split.classes, 16, seed=3)
    keep = sk.ridge_sample(labels, 3, 12)
    assert len(member.labels) == len(keep) < len(labels)
    assert member.labels.tolist() == [labels[i] for i in keep]
    # v is still chosen over the series both members were fitted on
    ridge = sk.fit_kernels(parts, split.classes, 168, seed=3, hydra=8, pooling="ppv+lspv")
    assert ridge.loo_probabilities is not None and member.loo_probabilities is not None
    expected = sk.choose_weight(ridge.loo_probabilities[keep], member.loo_probabilities, [labels[i] for i in keep])
    assert sk.static_share(ridge, member, labels, 3) == expected


def test_the_default_has_no_dtw_member_and_a_resumed_run_keeps_its_own(
    tmp_path: Path, dtw_run: Path, series_files: tuple[str, str]
) -> None:
    from rnnkit.runs.options import RunOptions
    from rnnkit.runs.series_defaults import DEFAULTS, dtw_steps_of, options_from_config

    assert DEFAULTS["dtw_steps"] == 0  # not adopted (docs/leaderboard.md, board17 study)
    train, test = series_files
    for extra in ([], ["--dtw-steps", "0"]):
        out = tmp_path / f"none{len(extra)}"
        args = ["train", "--task", "classify", "--data", train, "--test-data", test, *TINY, *extra]
        assert cli.main([*args, "--out", str(out)]) == 0
        assert "dtw" not in json.loads((out / "config.json").read_text())
        assert not (out / "dtw.safetensors").exists()
        assert "dtw_accuracy" not in json.loads((out / "metrics.json").read_text())
    # a resumed run reads its own record back; a run saved before the option had none
    saved = json.loads((dtw_run / "config.json").read_text())
    assert dtw_steps_of(options_from_config(saved, RunOptions(task="classify"))) == 16
    old = {k: v for k, v in saved.items() if k != "dtw"}
    assert dtw_steps_of(options_from_config(old, RunOptions(task="classify"))) == 0


def test_bad_dtw_settings_and_files_get_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dtw_run: Path, series_files: tuple[str, str]
) -> None:
    train, test = series_files
    base = ["train", "--task", "classify", "--data", train, "--test-data", test, "--epochs", "1"]
    for extra, needle in (
        (["--kernels", "0", "--dtw-steps", "16"], "--kernels 0"),
        (["--dtw-steps", "-1"], "--dtw-steps"),
    ):
        out = tmp_path / "bad"
        assert_one_line_error(*rnnkit_main(capsys, *base, *extra, "--out", out), needle)
        assert not out.exists()
    resumed = tmp_path / "resumed"  # --resume continues the run as it was started: its member too
    shutil.copytree(dtw_run, resumed)
    again = ["train", "--task", "classify", "--data", train, "--test-data", test, *TINY, "--resume"]
    assert_one_line_error(*rnnkit_main(capsys, *again, "--dtw-steps", "32", "--out", resumed), "dtw_steps")
    broken = tmp_path / "broken"
    shutil.copytree(dtw_run, broken)
    (broken / "dtw.safetensors").write_bytes(b"not a safetensors file")
    assert_one_line_error(*rnnkit_main(capsys, "evaluate", broken), "dtw.safetensors")
    from safetensors.torch import load_file, save_file

    good = load_file(str(dtw_run / "dtw.safetensors"))
    for key, change, needle in (
        ("labels", lambda t: t + 100, "labels outside"),
        ("lengths", lambda t: t * 0, "lengths outside"),
        ("class_count", lambda t: t + 1, "class_count"),
        ("temperature", lambda t: t * float("nan"), "finite"),
        ("channel_std", lambda t: -t, "stds > 0"),
        ("channel_std", lambda t: t * float("nan"), "finite"),
        ("class_count", lambda t: torch.cat([t, torch.zeros(1, dtype=t.dtype)]), "belongs to another run"),
    ):
        save_file({**good, key: change(good[key])}, str(broken / "dtw.safetensors"))
        assert_one_line_error(*rnnkit_main(capsys, "evaluate", broken), "dtw.safetensors", needle)
    (broken / "dtw.safetensors").unlink()
    assert_one_line_error(*rnnkit_main(capsys, "evaluate", broken), "dtw.safetensors", "--dtw-steps")


def test_export_writes_the_dtw_member_and_its_formula_gives_the_runs_probabilities(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dtw_run: Path, series_files: tuple[str, str]
) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from safetensors.torch import load_file, save_file

    from rnnkit.data.arrays import Standardizer
    from rnnkit.runs import classify_series as cs

    halves = tmp_path / "halves"  # both shares at ½ and a softer member, so that every graph and the member count
    shutil.copytree(dtw_run, halves)
    for name in ("kernels.safetensors", "dtw.safetensors"):
        state = load_file(str(halves / name))
        soft = {"temperature": torch.tensor(1e-3, dtype=torch.float64)} if name == "dtw.safetensors" else {}
        save_file({**state, "weight": torch.tensor(0.5, dtype=torch.float64), **soft}, str(halves / name))
    dtw_run = halves
    output = tmp_path / "m.onnx"
    code, out, err = rnnkit_main(capsys, "export", dtw_run, "--output", output, "--check")
    assert code == 0, err
    assert "m.dtw.safetensors (the DTW member" in out
    info = json.loads((tmp_path / "m.onnx.json").read_text())
    assert info["dtw"]["file"] == "m.dtw.safetensors" and "dtw.weight" in info["kernels"]["combine"]
    run = load_run(dtw_run)
    part = cs.load_series(series_files[1], "test")
    series = [x.T for x in part.X]  # (L_i, C)
    batch = cs.series_batch(series, Standardizer.from_dict(run.config["scaler"]), series_norm=run.config["series_norm"])
    net = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"]).run(
        None, {"inputs": batch.inputs.numpy(), "lengths": batch.lengths.numpy()}
    )[0]
    raw = np.zeros((len(series), max(len(x) for x in series), series[0].shape[1]), np.float32)
    for i, x in enumerate(series):
        raw[i, : len(x)] = x
    ker = ort.InferenceSession(str(tmp_path / "m.kernels.onnx"), providers=["CPUExecutionProvider"])
    logits = ker.run(None, {"series": raw, "lengths": batch.lengths.numpy()})[0]
    # p_dtw from the exported tensors alone, as the JSON describes it (numpy, the hand loop)
    t = load_file(str(tmp_path / "m.dtw.safetensors"))
    f = int(t["factor"])
    mean, std = t["channel_mean"].numpy(), t["channel_std"].numpy()
    refs = [t["reference"][i, : int(n)].numpy() for i, n in enumerate(t["lengths"])]
    y = t["labels"].numpy()
    p_dtw = []
    for x in downsample_series([(s - mean) / std for s in series], f):
        d = np.array([_dtw_loop(x, r) for r in refs])
        scores = np.array([-d[y == k].min() / float(t["scale"]) for k in range(len(run.classes))])
        p_dtw.append(torch.softmax(torch.from_numpy(float(t["temperature"]) * scores), -1).numpy())
    w, v = info["kernels"]["weight"], info["dtw"]["weight"]
    assert (w, v) == (0.5, 0.5)
    static = (1 - v) * torch.softmax(torch.from_numpy(logits).double(), -1).numpy() + v * np.array(p_dtw)
    probs = (1 - w) * torch.softmax(torch.from_numpy(net).double(), -1).numpy() + w * static
    np.testing.assert_allclose(probs, cs.series_probabilities(run, part.X), atol=1e-5)
    # a later export of a run without the member to the same name removes the stale file
    plain = tmp_path / "plain"
    train, test = series_files
    args = ["train", "--task", "classify", "--data", train, "--test-data", test, *TINY, "--dtw-steps", "0"]
    assert cli.main([*args, "--out", str(plain)]) == 0
    code, _, err = rnnkit_main(capsys, "export", plain, "--output", output)
    assert code == 0, err
    assert not (tmp_path / "m.dtw.safetensors").exists()
    assert "dtw" not in json.loads((tmp_path / "m.onnx.json").read_text())
