"""Tests of forecasting: rnnkit.tasks.forecaster (rollout, baselines, Forecaster) and the ``forecast`` task app
(``rnnkit train --task forecast``, ``evaluate``, ``predict``) on tiny series made here.

References: hand loops for the baselines and their metrics, the model called step by step for the recursive
rollout (float64), each padded row run alone, a sine wave learned to a stated error, and two runs whose data differ
only in the future (nothing before the cut may change).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import rnnkit.runs.forecast  # noqa: F401  (registers the forecast kind)
from rnnkit import cli
from rnnkit import metrics as M
from rnnkit.data.batching import Batch, NonFiniteValues
from rnnkit.data.series import Scaler, chronological_split, make_windows
from rnnkit.runs import load_run
from rnnkit.runs.forecast import forecaster_of
from rnnkit.tasks import build_model
from rnnkit.tasks.forecaster import (
    Forecaster,
    choose_blend,
    forecast,
    forecast_config,
    naive_forecast,
    seasonal_naive_forecast,
    window_batches,
)
from rnnkit.train import TrainConfig, fit, seed_everything

TINY = ["--hidden", "8", "--epochs", "2", "--batch-size", "32", "--context", "12", "--horizon", "3"]


def wave(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 2)``: a noisy sine of period 10 plus an offset (the target) and a second channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    level = 5 + np.sin(2 * np.pi * t / 10) + 0.1 * rng.normal(size=n)
    other = np.cos(2 * np.pi * t / 10) + 0.1 * rng.normal(size=n)
    return np.stack([level, other], axis=1)


def write_csv(path: Path, values: np.ndarray, names: list[str] | None = None) -> Path:
    names = names or ["level", "other"][: values.shape[1]]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["date", *names])
        for i, row in enumerate(values):
            w.writerow([(date(2001, 1, 1) + timedelta(days=i)).isoformat(), *[repr(float(v)) for v in row]])
    return path


def main(*args: str | Path) -> int:
    return cli.main([str(a) for a in args])


# ---------------------------------------------------------------------------------------------------------- baselines
def test_baselines_match_hand_loops() -> None:
    y = np.array([3.0, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8])
    origins = np.array([3, 5, 6, 7])
    k = 5
    naive = naive_forecast(y, origins, k)
    np.testing.assert_array_equal(naive, [[y[t]] * k for t in origins])
    for m in (1, 2, 3):
        ref = np.zeros((len(origins), k))
        for i, t in enumerate(origins):
            for j in range(1, k + 1):
                s = t + j
                while s > t:  # step back whole seasons until the value is known at the origin
                    s -= m
                ref[i, j - 1] = y[s]
        np.testing.assert_array_equal(seasonal_naive_forecast(y, origins, k, m), ref)
    np.testing.assert_array_equal(seasonal_naive_forecast(y, origins, k, 1), naive)
    with pytest.raises(ValueError, match="needs 5 past values"):
        seasonal_naive_forecast(y, origins, k, 5)


def test_baseline_errors_by_hand_with_zeros() -> None:
    from rnnkit.runs.forecast.scores import _errors

    truth = np.array([[0.0, 2.0], [0.0, 0.0]])
    pred = np.array([[0.0, 1.0], [1.0, 0.0]])
    e = _errors("naive", truth, pred, mase_scale=0.5)
    abs_err = [0, 1, 1, 0]
    assert e["naive_mae"] == pytest.approx(sum(abs_err) / 4)
    assert e["naive_rmse"] == pytest.approx(math.sqrt(sum(a * a for a in abs_err) / 4))
    # sMAPE terms 2|F−A|/(|A|+|F|): 0 (both zero), 2/3, 2, 0 (both zero) → mean · 100
    assert e["naive_smape"] == pytest.approx(100 * (0 + 2 / 3 + 2 + 0) / 4, rel=1e-5)
    assert e["naive_mase"] == pytest.approx(0.5 / 0.5)


# ---------------------------------------------------------------------------------------------------------- rollout
def tiny_model(f: int, k: int, strategy: str = "direct", model: str = "gru", context: int = 6) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(forecast_config(model, f, k, strategy, hidden_size=5, context=context)).double().eval()


@pytest.mark.parametrize("relative", [False, True])
def test_recursive_rollout_equals_calling_the_model_step_by_step(relative: bool) -> None:
    model, context, k = tiny_model(1, 1, "recursive"), 6, 4
    x = torch.randn(3, 9, 1, dtype=torch.float64)
    got = forecast(model, x, k, "recursive", context=context, relative=relative)
    hist, ref = x.clone(), []
    for _ in range(k):
        win = hist[:, -context:]  # (B, C, 1)
        last = win[:, -1:] if relative else torch.zeros_like(win[:, -1:])
        pred, _ = model(Batch(win - last, torch.full((3,), context)))
        y = pred[:, :1] + last[:, 0]  # (B, 1)
        ref.append(y)
        hist = torch.cat([hist, y.unsqueeze(2)], dim=1)
    torch.testing.assert_close(got, torch.cat(ref, 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("relative", [False, True])
def test_recursive_horizon_one_equals_direct_one_step(relative: bool) -> None:
    model = tiny_model(1, 1, "recursive")
    x = torch.randn(4, 7, 1, dtype=torch.float64)
    rec = forecast(model, x, 1, "recursive", context=6, relative=relative)
    direct = forecast(model, x, 1, "direct", context=6, relative=relative)
    torch.testing.assert_close(rec, direct, rtol=0, atol=0)
    # a direct model: forecast == the model's own outputs on the last C steps
    dm = tiny_model(2, 3)
    x2 = torch.randn(2, 6, 2, dtype=torch.float64)
    torch.testing.assert_close(forecast(dm, x2, 2), dm(Batch(x2, torch.tensor([6, 6])))[0][:, :2])
    torch.testing.assert_close(forecast(dm, x2[0], 3), dm(Batch(x2[:1], torch.tensor([6])))[0][0])


@pytest.mark.parametrize(
    ("strategy", "model_name"), [("recursive", "gru"), ("direct", "lstm"), ("recursive", "window")]
)
def test_padded_batch_equals_each_row_alone(strategy: str, model_name: str) -> None:
    f = 1 if strategy == "recursive" else 2
    model = tiny_model(f, 3, strategy, model_name)
    lengths = [9, 4, 7]
    x = torch.full((3, 9, f), 1e3, dtype=torch.float64)  # padding holds garbage: it must never matter
    rows = [torch.randn(n, f, dtype=torch.float64) for n in lengths]
    for b, r in enumerate(rows):
        x[b, : len(r)] = r
    got = forecast(model, Batch(x, torch.tensor(lengths)), 3, strategy, context=6, relative=True)
    for b, r in enumerate(rows):
        alone = forecast(model, r, 3, strategy, context=6, relative=True)
        torch.testing.assert_close(got[b], alone, rtol=1e-12, atol=1e-12)


def test_forecast_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="only input channel, but there are 2; use strategy 'direct'"):
        forecast(tiny_model(2, 1), torch.zeros(5, 2), 3, "recursive")
    with pytest.raises(ValueError, match="only input channel, but there are 2"):
        forecast_config("gru", 2, 3, "recursive")
    with pytest.raises(ValueError, match="predicts 3 steps, not 5"):
        forecast(tiny_model(1, 3), torch.zeros(5, 1), 5, "direct")
    with pytest.raises(ValueError, match="unknown strategy 'both'"):
        forecast(tiny_model(1, 3), torch.zeros(5, 1), 2, "both")
    with pytest.raises(ValueError, match=r"history must have shape \(T, F\)"):
        forecast(tiny_model(1, 3), torch.zeros(5), 2)


# ---------------------------------------------------------------------------------------------------------- sine
@pytest.mark.parametrize(("strategy", "relative"), [("direct", False), ("direct", True), ("recursive", True)])
def test_sine_is_forecast_to_a_stated_error(strategy: str, relative: bool) -> None:
    """sin(2πt/25), context 25, horizon 5, GRU H=16, 12 epochs: test MAE < 0.08 (amplitude 1; naive MAE ≈ 0.45)."""
    n, period, context, k = 500, 25, 25, 5
    y = np.sin(2 * np.pi * np.arange(n) / period)[:, None]
    sp = chronological_split(n)
    sc = Scaler.fit(y[: sp.train_end])
    z = sc.transform(y)
    kt = k if strategy == "direct" else 1
    train = make_windows(z, 0, context, kt, 0, sp.train_end)
    val = make_windows(z, 0, context, kt, sp.train_end, sp.val_end)
    test = make_windows(z, 0, context, k, sp.val_end, n)
    seed_everything(0)
    model = build_model(forecast_config("gru", 1, k, strategy, hidden_size=16, context=context))
    fit(
        model,
        lambda e: window_batches(train, 32, relative=relative, shuffle=True, seed=e),
        window_batches(val, 256, relative=relative),
        TrainConfig(epochs=12, lr=1e-2, progress="none"),
    )
    fc = Forecaster(model, sc, 0, context, k, strategy, relative)
    pred = fc.predict_at(y, test.origins)  # (M, K) original units
    truth = sc.inverse(test.targets, 0)
    naive = naive_forecast(y[:, 0], test.origins, k)
    assert M.mae(truth, pred) < 0.08
    assert M.mae(truth, pred) < 0.2 * M.mae(truth, naive)
    # Forecaster.predict_at == forecast() on one standardized context, mapped back by hand (float32 model: a
    # batch of one rounds differently from the batch of all windows)
    t = int(test.origins[7])
    one = forecast(model, torch.as_tensor(z[t - context + 1 : t + 1]), k, strategy, relative=relative)
    np.testing.assert_allclose(pred[7], one.double().numpy() * sc.std[0] + sc.mean[0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------- no peeking
def test_the_future_changes_nothing_before_the_cutoff() -> None:
    """Values after the train/validation cut replaced: scaler, training windows, trained weights and every
    prediction for windows that end before the cut are bitwise the same."""
    a = wave(300)
    sp = chronological_split(len(a))
    b = a.copy()
    b[sp.train_end :] = np.random.default_rng(5).normal(size=b[sp.train_end :].shape) * 50 + 100
    context, k, runs = 12, 3, []
    for values in (a, b):
        sc = Scaler.fit(values[: sp.train_end])
        z = sc.transform(values)
        train = make_windows(z, 0, context, k, 0, sp.train_end)
        seed_everything(0)
        model = build_model(forecast_config("gru", 2, k, hidden_size=8, context=context))
        fit(model, lambda e, w=train: window_batches(w, 32, shuffle=True, seed=e), None, TrainConfig(epochs=2))
        fc = Forecaster(model, sc, 0, context, k, "direct", True)
        before = np.arange(context - 1, sp.train_end)  # windows whose last input is before the cut
        runs.append((sc, train, model.state_dict(), fc.predict_at(values, before)))
    (sa, ta, wa, pa), (sb, tb, wb, pb) = runs
    np.testing.assert_array_equal(sa.mean, sb.mean)
    np.testing.assert_array_equal(sa.std, sb.std)
    np.testing.assert_array_equal(ta.inputs, tb.inputs)
    np.testing.assert_array_equal(ta.targets, tb.targets)
    assert all(torch.equal(wa[key], wb[key]) for key in wa)
    np.testing.assert_array_equal(pa, pb)


# ---------------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    root = tmp_path_factory.mktemp("fc")
    values = wave(240)
    data = write_csv(root / "wave.csv", values)
    out = root / "run"
    assert main("train", "--task", "forecast", "--data", data, "--target-column", "level", *TINY, "--out", out) == 0
    return out, data, values


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_train_writes_a_complete_run_with_baselines_by_hand(trained, capsys) -> None:
    out, _, values = trained
    for name in ("config.json", "split.json", "model.safetensors", "metrics.json", "curve.csv", "forecast.png"):
        assert (out / name).is_file(), name
    m, split = read_json(out / "metrics.json"), read_json(out / "split.json")
    assert (m["app"], m["task"], m["model"], m["strategy"]) == ("forecast", "forecast", "gru", "direct")
    assert m["season"] == 7 and m["horizon"] == 3 and m["context"] == 12  # daily dates → weekly season
    assert (split["n"], split["train_end"], split["val_end"]) == (240, 168, 204)
    assert split["test"] == ["2001-07-24", "2001-08-28"]

    y, k, s = values[:, 0], 3, m["season"]
    origins = range(split["val_end"] - 1, split["n"] - k)
    scale = sum(abs(y[t] - y[t - s]) for t in range(s, split["train_end"])) / (split["train_end"] - s)
    for prefix, back in (("naive", lambda t, j: t), ("seasonal_naive", lambda t, j: t + j - s * math.ceil(j / s))):
        errs, terms = [], []
        for t in origins:
            for j in range(1, k + 1):
                a, f = y[t + j], y[back(t, j)]
                errs.append(f - a)
                terms.append(2 * abs(f - a) / (abs(a) + abs(f)))
        mae = sum(abs(e) for e in errs) / len(errs)
        assert m[f"{prefix}_mae"] == pytest.approx(mae, rel=1e-5)
        assert m[f"{prefix}_rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errs) / len(errs)), rel=1e-5)
        assert m[f"{prefix}_smape"] == pytest.approx(100 * sum(terms) / len(terms), rel=1e-5)
        assert m[f"{prefix}_mase"] == pytest.approx(mae / scale, rel=1e-5)

    # the model's metrics: the saved run's forecasts scored independently with rnnkit.metrics (mase from the
    # training part), and the same numbers again from `rnnkit evaluate`
    run = load_run(out)
    fc = forecaster_of(run)
    o = np.array(list(origins))
    pred = fc.predict_at(values, o)
    truth = y[o[:, None] + np.arange(1, k + 1)]
    assert m["test_mae"] == pytest.approx(M.mae(truth, pred), rel=1e-5)
    assert m["test_mase"] == pytest.approx(M.mase(truth, pred, y[: split["train_end"]], s), rel=1e-5)
    assert {"window_mae", "window_rmse", "window_smape", "window_mase", "epochs", "train_seconds"} <= set(m)
    capsys.readouterr()
    assert main("evaluate", out, "--json") == 0
    ev = json.loads(capsys.readouterr().out)
    for key in ("test_mae", "test_rmse", "test_smape", "test_mase", "naive_mae", "seasonal_naive_mase"):
        assert ev[key] == m[key], key
    assert ev["num_windows"] == m["num_test_windows"] == len(o)


def test_evaluate_and_predict_on_other_data(trained, tmp_path: Path, capsys) -> None:
    out, _, values = trained
    fc = forecaster_of(load_run(out))
    other = wave(60, seed=3)
    path = write_csv(tmp_path / "other.csv", other)
    capsys.readouterr()
    assert main("evaluate", out, "--data", path, "--json") == 0
    ev = json.loads(capsys.readouterr().out)
    o = np.arange(12 - 1, 60 - 3)  # every window: context 12 ≥ season 7
    assert ev["num_windows"] == len(o)
    truth = other[o[:, None] + np.arange(1, 4), 0]
    assert ev["test_mae"] == pytest.approx(M.mae(truth, fc.predict_at(other, o)), rel=1e-5)

    assert main("predict", out, "--horizon", "2") == 0  # after the end of the run's own series
    lines = capsys.readouterr().out.splitlines()
    ref = fc.next_values(values, 2)
    assert [ln.split(":")[0] for ln in lines] == ["step 1", "step 2"]
    np.testing.assert_allclose([float(ln.split(":")[1]) for ln in lines], ref, rtol=1e-5)
    assert main("predict", out, "--data", path) == 0
    got = [float(ln.split(":")[1]) for ln in capsys.readouterr().out.splitlines()]
    np.testing.assert_allclose(got, fc.next_values(other, 3), rtol=1e-5)


def test_values_beyond_float32_after_scaling_are_one_line_not_nan(trained, tmp_path: Path, capsys) -> None:
    """A series whose values the run's scaling takes beyond float32 (the model's dtype) is refused in one line with
    exit code 2 by predict and evaluate, instead of forecasts of nan or inf; values inside the range still work."""
    out, _, _ = trained
    huge = wave(60, seed=4)
    huge[-1] = 1e300
    path = write_csv(tmp_path / "huge.csv", huge)
    capsys.readouterr()
    for command in (("predict", out, "--data", path), ("evaluate", out, "--data", path)):
        assert main(*command) == 2
        err = capsys.readouterr().err
        assert "beyond the float32 range" in err and "1e+300" in err and len(err.strip().splitlines()) == 1
        assert "Traceback" not in err
    with pytest.raises(NonFiniteValues, match="after the run's scaling"):
        forecaster_of(load_run(out)).next_values(huge)
    big = wave(60, seed=4) * 1e20  # large, but within float32 after scaling
    assert main("predict", out, "--data", write_csv(tmp_path / "big.csv", big)) == 0
    got = [float(ln.split(":")[1]) for ln in capsys.readouterr().out.splitlines()]
    assert all(np.isfinite(got))


def test_univariate_recursive_window_run_and_predict_from_values(tmp_path: Path, capsys) -> None:
    values = wave(200)[:, :1]
    data = write_csv(tmp_path / "uni.csv", values)
    out = tmp_path / "uni"
    args = ["--strategy", "recursive", "--model", "window", "--season", "10"]
    assert main("train", "--task", "forecast", "--data", data, *TINY, *args, "--out", out) == 0
    m = read_json(out / "metrics.json")
    assert m["strategy"] == "recursive" and m["season"] == 10 and m["model"] == "window"
    assert {m[f"window_{e}"] for e in ("mae", "rmse")} == {m[f"test_{e}"] for e in ("mae", "rmse")}
    cfg = read_json(out / "config.json")
    assert cfg["model"]["num_outputs"] == 1 and cfg["model"]["window"] == 12
    sc = Scaler.from_dict(cfg["forecast"]["scaler"])
    np.testing.assert_allclose(sc.mean, values[: cfg["forecast"]["split"]["train_end"]].mean(0), rtol=1e-12)

    # --resume of a finished run: the same options, the same weights and metrics
    assert main("train", "--task", "forecast", "--data", data, *TINY, *args, "--out", out, "--resume") == 0
    again = read_json(out / "metrics.json")
    assert {k: v for k, v in again.items() if k != "train_seconds"} == {
        k: v for k, v in m.items() if k != "train_seconds"
    }

    items = [repr(float(v)) for v in values[-20:, 0]]
    capsys.readouterr()
    assert main("predict", out, *items, "--horizon", "5") == 0  # recursive: any horizon
    got = [float(ln.split(":")[1]) for ln in capsys.readouterr().out.splitlines()]
    np.testing.assert_allclose(got, forecaster_of(load_run(out)).next_values(values[-20:], 5), rtol=1e-5)
    assert main("predict", out, "1", "two", *items) == 2
    assert "'two' is not a number" in capsys.readouterr().err
    assert main("predict", out, "1", "2") == 2
    assert "reads 12 past steps; give at least 12 values (got 2)" in capsys.readouterr().err


def test_the_test_part_never_reaches_training(trained, tmp_path: Path) -> None:
    out, _, values = trained
    changed = values.copy()
    changed[204:] += 100.0  # the test part (split.json: val_end 204)
    data = write_csv(tmp_path / "changed.csv", changed)
    out2 = tmp_path / "changed"
    assert main("train", "--task", "forecast", "--data", data, "--target-column", "level", *TINY, "--out", out2) == 0
    a, b = read_json(out / "config.json")["forecast"], read_json(out2 / "config.json")["forecast"]
    assert a["scaler"] == b["scaler"] and a["mase_scale"] == b["mase_scale"]
    wa, wb = load_file(out / "model.safetensors"), load_file(out2 / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[key], wb[key]) for key in wa)


def test_bad_input_exits_2_and_keeps_the_run(trained, tmp_path: Path, capsys) -> None:
    out, data, _ = trained
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    nan = tmp_path / "nan.csv"
    nan.write_text("date,level\n2001-01-01,1\n2001-01-02,nan\n", encoding="utf-8")
    cases = [
        (["--data", nan], "row 3, column 'level': 'nan' is not a finite number"),
        (["--data", data, "--strategy", "recursive"], "use --strategy direct"),
        (["--data", data, "--context", "500"], "too few for --context 500"),
        (["--data", data, "--target-column", "nope"], "no column 'nope'"),
        (["--data", data, "--val-data", data], "leave out --val-data"),
        (["--data", data, "--value-columns", "level,,other"], "has an empty name"),
        (["--data", data, "--model", "window", "--bidirectional"], "window model has no direction"),
        (["--data", tmp_path / "missing.csv"], "does not exist"),
    ]
    for args, message in cases:
        capsys.readouterr()
        code = main("train", "--task", "forecast", *args, "--hidden", "4", "--out", out, "--overwrite")
        err = capsys.readouterr().err
        assert code == 2, args
        assert err.startswith("rnnkit: error: ") and message in err and "Traceback" not in err, err
    assert main("train", "--task", "forecast", "--data", data, "--horizon", "4", "--out", out, "--resume") == 2
    assert "cannot change horizon" in capsys.readouterr().err
    assert main("predict", out, "--horizon", "4") == 2
    assert "predicts 3 steps, not 4" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


# ---------------------------------------------------------------------------------------------------------- blend
def test_choose_blend_is_the_grid_minimum_by_hand() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(20, 3))
    model = truth + 0.5 * rng.normal(size=(20, 3))
    naive = truth + 0.5 * rng.normal(size=(20, 3))  # as good as the model, independent errors: a blend helps
    seasonal = truth + 2.0 * rng.normal(size=(20, 3))
    w, m, mae = choose_blend(truth, model, {1: naive, 4: seasonal}, margin=0.0)
    grid = {}
    for ww in (0.0, 0.25, 0.5, 0.75, 1.0):
        for mm, base in ((1, naive), (4, seasonal)):
            errs = [abs(truth[i, j] - (ww * model[i, j] + (1 - ww) * base[i, j])) for i in range(20) for j in range(3)]
            grid[(ww, mm)] = sum(errs) / len(errs)
    assert (w, m) == min(grid, key=grid.get) and 0 < w < 1
    assert mae == pytest.approx(grid[(w, m)], rel=1e-12)
    assert choose_blend(truth, truth.copy(), {1: naive})[:2] == (1.0, 1)  # a perfect model stays alone
    # with the default margin: the grid's best is taken only when it beats the best baseline by 5 %
    naive_mae = grid[(0.0, 1)]
    want = (w, m) if mae < 0.95 * naive_mae else (0.0, 1)
    assert choose_blend(truth, model, {1: naive, 4: seasonal})[:2] == want
    barely = 0.99 * (naive - truth) + truth  # 1 % better than naive on every window: naive alone
    assert choose_blend(truth, barely, {1: naive})[:2] == (0.0, 1)
    assert choose_blend(truth, barely, {1: naive}, margin=0.0)[0] > 0
    assert choose_blend(truth, model, {1: truth.copy(), 4: truth.copy()})[:2] == (0.0, 1)  # ties: the naive one
    assert choose_blend(truth, truth.copy(), {1: truth.copy()}, margin=0.0)[:2] == (1.0, 1)  # grid tie: the model
    assert choose_blend(truth, truth.copy(), {1: truth.copy()})[:2] == (0.0, 1)  # no clear gain: the baseline


def test_blended_forecaster_is_the_weighted_sum_by_hand(trained) -> None:
    out, _, values = trained
    fc = forecaster_of(load_run(out))
    o = np.arange(30, 60)
    alone = replace(fc, blend=1.0).predict_at(values, o)
    blended = replace(fc, blend=0.25, blend_season=7).predict_at(values, o)
    y = values[:, 0]
    for i, t in enumerate(o):
        for j in range(1, fc.horizon + 1):
            assert blended[i, j - 1] == pytest.approx(0.25 * alone[i, j - 1] + 0.75 * y[t + j - 7], rel=1e-12)


def test_the_blend_is_chosen_on_the_validation_windows(trained) -> None:
    out, _, values = trained
    cfg, m = read_json(out / "config.json"), read_json(out / "metrics.json")
    f = cfg["forecast"]
    assert f["blend_choice"] is True and set(f["blend"]) == {"weight", "season"}
    fc = forecaster_of(load_run(out))
    assert (fc.blend, fc.blend_season) == (f["blend"]["weight"], f["blend"]["season"])
    assert (m["blend_weight"], m["blend_season"]) == (fc.blend, fc.blend_season)
    # by hand: every weight and both baselines (naive, and seasonal-naive m=7 ≤ context 12) on the validation windows
    y, k, split = values[:, 0], fc.horizon, f["split"]
    o = np.arange(split["train_end"] - 1, split["val_end"] - k)
    model = replace(fc, blend=1.0).predict_at(values, o)
    maes = {}
    for w in (1.0, 0.75, 0.5, 0.25, 0.0):
        for s in (1, 7):
            errs = [
                abs(y[t + j] - (w * model[i, j - 1] + (1 - w) * y[t + j - s * math.ceil(j / s)]))
                for i, t in enumerate(o)
                for j in range(1, k + 1)
            ]
            maes[(w, s)] = sum(errs) / len(errs)
    best = min(maes.values())
    base = min(maes[(0.0, 1)], maes[(0.0, 7)])
    if best < 0.95 * base:  # a clear gain: the grid's best
        assert maes[(fc.blend, fc.blend_season)] == pytest.approx(best, rel=1e-9)
    else:  # else the best baseline alone
        assert fc.blend == 0.0 and maes[(0.0, fc.blend_season)] == pytest.approx(base, rel=1e-9)
    assert m["val_blend_mae"] == pytest.approx(maes[(fc.blend, fc.blend_season)], rel=1e-5)
    assert m["val_model_mae"] == pytest.approx(maes[(1.0, 1)], rel=1e-5)


def test_no_blend_and_runs_saved_before_the_blend_forecast_with_the_model_alone(trained, tmp_path: Path) -> None:
    out, data, values = trained
    old = tmp_path / "old"
    shutil.copytree(out, old)
    cfg = read_json(old / "config.json")
    for key in ("blend", "blend_choice"):
        cfg["forecast"].pop(key)
    (old / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    fc_old, fc = forecaster_of(load_run(old)), forecaster_of(load_run(out))
    assert (fc_old.blend, fc_old.blend_season) == (1.0, 1)
    o = np.arange(30, 60)
    np.testing.assert_array_equal(fc_old.predict_at(values, o), replace(fc, blend=1.0).predict_at(values, o))
    plain = tmp_path / "plain"
    assert main("train", "--task", "forecast", "--data", data, "--target-column", "level", *TINY, "--no-blend",
                "--out", plain) == 0  # fmt: skip
    m = read_json(plain / "metrics.json")
    assert read_json(plain / "config.json")["forecast"]["blend_choice"] is False and "blend_weight" not in m
    assert forecaster_of(load_run(plain)).blend == 1.0
