"""Tests of :mod:`rnnkit.data.synthetic`: shapes and dtypes, determinism per seed, every target recomputed
independently from the inputs with plain Python loops (the sum of the marked values, the copied symbols, the order
class), the documented positions of markers, delimiter and relevant symbols, the baselines (formula against an
empirical computation of the baseline strategy), the task descriptions, and argument errors.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.data.batching import Batch
from rnnkit.data.synthetic import (
    ADDING_BASELINE_MSE,
    TASKS,
    TEMPORAL_ORDER_CHANCE,
    describe_task,
    make_adding,
    make_copy,
    make_task,
    make_temporal_order,
)

# The documented conventions, written out again here rather than imported, so that a changed constant fails a test.
RESERVED = 4  # ids 0..3 PAD/BOS/EOS/UNK
COPY_BLANK, COPY_DELIM = 4, 13  # a_0 and a_9
COPY_DATA = set(range(5, 13))  # a_1 .. a_8
TO = {s: 4 + k for k, s in enumerate("abcdBEXY")}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------------------
# Shapes, dtypes, determinism
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "T", "input_shape", "input_dtype", "target_shape", "target_dtype"),
    [
        ("adding", 7, (5, 7, 2), torch.float32, (5,), torch.float32),
        ("copy", 7, (5, 27), torch.long, (5, 27), torch.long),
        ("temporal-order", 13, (5, 13), torch.long, (5,), torch.long),
    ],
)
def test_shapes_and_dtypes(name, T, input_shape, input_dtype, target_shape, target_dtype):
    batch = make_task(name, T, 5, seeded(0))
    assert isinstance(batch, Batch)
    assert tuple(batch.inputs.shape) == input_shape and batch.inputs.dtype == input_dtype
    assert tuple(batch.targets.shape) == target_shape and batch.targets.dtype == target_dtype
    assert batch.lengths.dtype == torch.long and batch.lengths.tolist() == [input_shape[1]] * 5
    assert batch.condition is None
    spec = describe_task(name, T)
    assert spec.seq_len == input_shape[1]
    assert spec.input_kind == ("values" if input_dtype.is_floating_point else "tokens")
    if spec.input_kind == "tokens":
        assert batch.inputs.min() >= 0 and batch.inputs.max() < spec.input_size
    else:
        assert batch.inputs.shape[-1] == spec.input_size


@pytest.mark.parametrize("name", TASKS)
def test_determinism_per_seed(name):
    a, b = make_task(name, 20, 16, seeded(3)), make_task(name, 20, 16, seeded(3))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.inputs, make_task(name, 20, 16, 3).inputs)  # an int seed means the same
    assert not torch.equal(a.inputs, make_task(name, 20, 16, seeded(4)).inputs)
    g = seeded(3)
    first, second = make_task(name, 20, 16, g), make_task(name, 20, 16, g)  # the generator advances
    assert torch.equal(first.inputs, a.inputs) and not torch.equal(second.inputs, first.inputs)


def test_per_task_functions_equal_make_task():
    for fn, name in ((make_adding, "adding"), (make_copy, "copy"), (make_temporal_order, "temporal-order")):
        assert torch.equal(fn(12, 4, seeded(1)).inputs, make_task(name, 12, 4, seeded(1)).inputs)


# ----------------------------------------------------------------------------------------------------------
# Targets recomputed from the inputs; positions obey the documented rules
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [2, 3, 10, 51])
def test_adding_targets_and_markers(T):
    batch = make_adding(T, 64, seeded(T))
    half = T // 2
    for b in range(64):
        values = batch.inputs[b, :, 0].tolist()
        marker = batch.inputs[b, :, 1].tolist()
        assert all(0.0 <= v < 1.0 for v in values)
        marked = [t for t, m in enumerate(marker) if m != 0.0]
        assert all(marker[t] == 1.0 for t in marked)
        assert len(marked) == 2 and marked[0] < half <= marked[1] < T
        assert batch.targets[b].item() == pytest.approx(values[marked[0]] + values[marked[1]], abs=1e-6)


def test_adding_marker_positions_cover_both_halves():
    batch = make_adding(10, 2000, seeded(0))
    positions = batch.inputs[:, :, 1].nonzero()[:, 1]
    assert set(positions.tolist()) == set(range(10))  # every position of each half can be marked


@pytest.mark.parametrize("T", [1, 5, 30])
def test_copy_targets_and_layout(T):
    batch = make_copy(T, 32, seeded(T))
    for b in range(32):
        x, y = batch.inputs[b].tolist(), batch.targets[b].tolist()
        assert len(x) == len(y) == T + 20
        data = x[:10]
        assert all(s in COPY_DATA for s in data)
        assert x[10 : T + 9] == [COPY_BLANK] * (T - 1)
        assert x[T + 9] == COPY_DELIM and x[-11] == COPY_DELIM
        assert x[T + 10 :] == [COPY_BLANK] * 10
        # targets: blank class 0 for T + 10 steps, then the data symbols a_i as classes i, in order
        assert y == [0] * (T + 10) + [s - COPY_BLANK for s in data]


@pytest.mark.parametrize("T", [10, 37, 100])
def test_temporal_order_targets_and_positions(T):
    batch = make_temporal_order(T, 64, seeded(T))
    for b in range(64):
        x = batch.inputs[b].tolist()
        assert x[0] == TO["B"] and x[-1] == TO["E"]
        relevant = [t for t, s in enumerate(x) if s in (TO["X"], TO["Y"])]
        assert len(relevant) == 2
        t1, t2 = relevant
        assert T // 10 <= t1 <= 2 * T // 10 and T // 2 <= t2 <= 6 * T // 10
        assert all(x[t] in {TO[c] for c in "abcd"} for t in range(1, T - 1) if t not in relevant)
        order = ("X" if x[t1] == TO["X"] else "Y") + ("X" if x[t2] == TO["X"] else "Y")
        assert batch.targets[b].item() == ["XX", "XY", "YX", "YY"].index(order)


def test_temporal_order_windows_at_paper_length():
    x = make_temporal_order(100, 3000, seeded(0)).inputs
    t1 = (x[:, :30] >= TO["X"]).nonzero()[:, 1]
    t2 = (x[:, 30:] >= TO["X"]).nonzero()[:, 1] + 30
    assert set(t1.tolist()) == set(range(10, 21)) and set(t2.tolist()) == set(range(50, 61))


def test_temporal_order_classes_balanced():
    counts = torch.bincount(make_temporal_order(20, 8000, seeded(1)).targets, minlength=4).double() / 8000
    assert torch.allclose(counts, torch.full((4,), TEMPORAL_ORDER_CHANCE, dtype=torch.float64), atol=0.02)


# ----------------------------------------------------------------------------------------------------------
# Baselines: formula against the strategy's empirical metric
# ----------------------------------------------------------------------------------------------------------


def test_adding_baseline_constant_one_predictor():
    assert abs(ADDING_BASELINE_MSE - 1 / 6) < 1e-15
    targets = make_adding(50, 200_000, seeded(0)).targets.double()
    mse = ((targets - 1.0) ** 2).mean().item()
    assert mse == pytest.approx(1 / 6, abs=0.003)  # std. error of the mean ≈ 0.0004
    assert describe_task("adding", 50).baseline == ADDING_BASELINE_MSE


@pytest.mark.parametrize("T", [1, 10, 100])
def test_copy_baseline_memoryless_strategy(T):
    batch = make_copy(T, 256, seeded(T))
    n_steps = T + 20
    probs = torch.zeros(256, n_steps, 9, dtype=torch.float64)  # (B, T + 20, classes)
    probs[:, : T + 10, 0] = 1.0  # blank with certainty before the copy phase
    probs[:, T + 10 :, 1:] = 1.0 / 8  # uniform over the 8 data symbols during it
    log_probs = probs.clamp_min(1e-300).log()
    ce = F.nll_loss(log_probs.reshape(-1, 9), batch.targets.reshape(-1)).item()
    expected = 10 * math.log(8) / (T + 20)
    assert ce == pytest.approx(expected, rel=1e-12)
    assert describe_task("copy", T).baseline == pytest.approx(expected, rel=1e-12)


def test_temporal_order_chance_baseline():
    targets = make_temporal_order(30, 20_000, seeded(2)).targets
    accuracy = (targets == 0).double().mean().item()  # a constant guess
    assert accuracy == pytest.approx(TEMPORAL_ORDER_CHANCE, abs=0.015)
    assert describe_task("temporal-order", 30).baseline == 0.25 and describe_task("temporal-order", 30).higher_is_better


def test_describe_task():
    adding, copy, order = (describe_task(n, 40) for n in ("adding", "copy", "temporal-order"))
    assert (adding.input_kind, adding.input_size, adding.output_kind) == ("values", 2, "regression")
    assert adding.num_classes == 1 and not adding.higher_is_better
    assert adding.metric == "mse" and adding.seq_len == 40
    assert (copy.seq_len, copy.input_size, copy.output_kind, copy.num_classes) == (60, 14, "per-step", 9)
    assert copy.metric == "cross_entropy" and not copy.higher_is_better
    assert (order.input_size, order.output_kind, order.num_classes, order.metric) == (12, "class", 4, "accuracy")


# ----------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: make_task("parity", 10, 2), ValueError, "unknown task 'parity'"),
        (lambda: make_adding(1, 2), ValueError, "T must be >= 2"),
        (lambda: make_copy(0, 2), ValueError, "T must be >= 1"),
        (lambda: make_temporal_order(9, 2), ValueError, "T must be >= 10"),
        (lambda: make_copy(10, 0), ValueError, "batch_size must be >= 1"),
        (lambda: make_adding(10.0, 2), TypeError, "T must be an int"),
        (lambda: make_adding(10, 2, generator="seed"), TypeError, "generator must be"),
        (lambda: describe_task("copy", 0), ValueError, "T must be >= 1"),
    ],
)
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
