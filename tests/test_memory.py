"""rnnkit memory: readouts and losses by hand, equal parameter budgets, the command end to end."""

from __future__ import annotations

import csv

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.synthetic import TASKS, describe_task, make_task
from rnnkit.memory import DEFAULT_MODELS, MemoryModel, hidden_for_budget


def _model(task: str, model: str, T: int = 6, hidden: int = 5) -> MemoryModel:
    torch.manual_seed(0)
    return MemoryModel(describe_task(task, T), model, hidden, window=3).double()


def test_adding_readout_is_the_last_state_and_the_loss_is_mse():
    net = _model("adding", "gru")
    batch = make_task("adding", 6, 4, generator=1)
    batch.inputs, batch.targets = batch.inputs.double(), batch.targets.double()
    y, loss = net(batch)
    out, _ = net.core(batch.inputs)  # (B, T, H)
    want = net.head(out[:, -1]).squeeze(-1)  # (B,)
    torch.testing.assert_close(y, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(loss, ((want - batch.targets) ** 2).mean(), rtol=0, atol=1e-12)


def test_window_readout_is_the_lecture_aggregate_sum_of_window_predictions():
    net = _model("temporal-order", "window", T=10)
    batch = make_task("temporal-order", 10, 3, generator=2)
    y, loss = net(batch)
    out, _ = net.core(net.embed(batch.inputs))  # (B, T, H): one output per window
    summed = net.head(out).sum(dim=1)  # Σ_j ŷ_j: (B, C)
    torch.testing.assert_close(y, summed, rtol=0, atol=1e-12)
    want = -torch.log_softmax(summed, dim=1).gather(1, batch.targets.unsqueeze(1)).mean()
    torch.testing.assert_close(loss, want, rtol=0, atol=1e-12)


def test_copy_reads_every_step():
    net = _model("copy", "lstm", T=3)
    batch = make_task("copy", 3, 2, generator=3)
    y, loss = net(batch)
    assert y.shape == (2, 23, 9)
    logp = torch.log_softmax(y, dim=-1)
    want = -logp.gather(2, batch.targets.unsqueeze(2)).mean()
    torch.testing.assert_close(loss, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("task", TASKS)
def test_default_models_get_parameter_counts_within_ten_percent_of_the_lstm(task):
    info = describe_task(task, 20)
    budget = sum(p.numel() for p in MemoryModel(info, "lstm", 64, 10).parameters())
    for model in DEFAULT_MODELS:
        h = hidden_for_budget(info, model, budget, 10)
        count = sum(p.numel() for p in MemoryModel(info, model, h, 10).parameters())
        assert abs(count - budget) <= 0.1 * budget, (model, h, count, budget)


@pytest.mark.parametrize("task", TASKS)
def test_memory_quick_end_to_end(task, tmp_path, capsys):
    assert main(["memory", "--task", task, "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out
    with (tmp_path / f"memory-{task}.csv").open() as f:
        rows = list(csv.DictReader(f))
    lengths = {int(r["T"]) for r in rows}
    assert len(rows) == len(DEFAULT_MODELS) * len(lengths)
    assert {r["model"] for r in rows} == set(DEFAULT_MODELS)
    pytest.importorskip("matplotlib")
    assert (tmp_path / f"memory-{task}.png").stat().st_size > 0


def test_memory_bad_input_exits_2(tmp_path, capsys):
    assert main(["memory", "--lengths", "0", "--out", str(tmp_path)]) == 2
    assert main(["memory", "--models", "transformer", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("rnnkit: error:") for line in err)


@pytest.mark.parametrize("model", ["lstm-fcn", "mlstm-fcn"])
def test_memory_does_not_offer_summary_cores(model, tmp_path, capsys):
    """LSTM-FCN's convolution branch alone is far over the LSTM's parameter budget (and copy needs per-step
    outputs): `rnnkit memory` refuses it as an unknown choice, in one line, and says why in its help."""
    assert main(["memory", "--models", model, "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnnkit: error:") and "invalid choice" in err[0]
    assert not any(tmp_path.iterdir())
    budget = sum(p.numel() for p in MemoryModel(describe_task("adding", 10), "lstm", 64).parameters())
    from rnnkit.tasks.registry import build_core

    conv = sum(p.numel() for n, p in build_core(model, 2, 1).named_parameters() if not n.startswith("lstm."))
    assert conv > 10 * budget
