"""Tests of :mod:`rnnkit.diagnostics` and ``rnnkit gradients``.

The lecture's three show_grads tables digit for digit (float32), an off-lecture grid against the closed form,
float64 at the cancellation cell; gradient flow of a linear RNN ``h' = a·Q h + W_x x`` (Q orthogonal) whose
consecutive norm ratios must equal ``a``; the ``--compare`` and ``RUN`` modes end to end on tiny models; the
one-line error contract. Everything is tiny: the file runs in a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from rnnkit import ModelConfig, build_model, cli
from rnnkit.data.batching import Batch, collate_classification, collate_generation
from rnnkit.diagnostics import TinyRNN, gradient_flow, show_grads
from rnnkit.layers import Recurrent
from rnnkit.plots import matplotlib_available

# The lecture's printed tables, copied from the lecture (its print adds one leading space: f' Length={L:2d} ').
LECTURE = {
    "0.1": """\
Length= 1 h_init.grad = 0.200000, wh.grad = 2.000000, wy.grad = 0.200000
Length= 2 h_init.grad = 0.020000, wh.grad = 0.400000, wy.grad = 0.020000
Length= 3 h_init.grad = 0.002000, wh.grad = 0.060000, wy.grad = 0.002000
Length= 4 h_init.grad = 0.000200, wh.grad = 0.008000, wy.grad = 0.000200
Length= 5 h_init.grad = 0.000020, wh.grad = 0.001000, wy.grad = 0.000020
Length=10 h_init.grad = 0.000000, wh.grad = 0.000000, wy.grad = 0.000000""",
    "1": """\
Length= 1 h_init.grad = 2.000000, wh.grad = 2.000000, wy.grad = 2.000000
Length= 2 h_init.grad = 2.000000, wh.grad = 4.000000, wy.grad = 2.000000
Length= 3 h_init.grad = 2.000000, wh.grad = 6.000000, wy.grad = 2.000000
Length= 4 h_init.grad = 2.000000, wh.grad = 8.000000, wy.grad = 2.000000
Length= 5 h_init.grad = 2.000000, wh.grad = 10.000000, wy.grad = 2.000000
Length=10 h_init.grad = 2.000000, wh.grad = 20.000000, wy.grad = 2.000000""",
    "10": """\
Length= 1 h_init.grad = 20.000000, wh.grad = 2.000000, wy.grad = 20.000000
Length= 2 h_init.grad = 200.000000, wh.grad = 40.000000, wy.grad = 200.000000
Length= 3 h_init.grad = 2000.000000, wh.grad = 600.000000, wy.grad = 2000.000000
Length= 4 h_init.grad = 20000.000000, wh.grad = 8000.000000, wy.grad = 20000.000000
Length= 5 h_init.grad = 200000.000000, wh.grad = 100000.000000, wy.grad = 200000.000000
Length=10 h_init.grad = 0.000000, wh.grad = 0.000000, wy.grad = 0.000000""",
}


def expected_table(wh: str) -> list[str]:
    return [f"wh_init = {wh}"] + [" " + line for line in LECTURE[wh].splitlines()]


# ---------------------------------------------------------------------------------------------------------- TinyRNN
def test_tiny_rnn_parameters_in_lecture_order() -> None:
    rnn = TinyRNN(wh_init=0.1)
    assert [name for name, _ in rnn.named_parameters()] == ["h_init", "wh", "wy"]
    assert float(rnn.wx) == 0.0 and rnn.wh.dtype == torch.float32
    y, h = rnn(torch.ones(3))
    assert y.shape == (3,) and h.shape == (4,)


@pytest.mark.parametrize("wh", [0.1, 1, 10])
def test_show_grads_reproduces_the_lecture(wh: float) -> None:
    assert show_grads(wh) == expected_table(str(wh))


def test_cli_tiny_prints_the_three_tables_and_the_footnote(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gradients", "--tiny"]) == 0
    out = capsys.readouterr().out.splitlines()
    tables = [*expected_table("0.1"), "", *expected_table("1"), "", *expected_table("10")]
    assert out[: len(tables)] == tables
    footnote = " ".join(out[len(tables) :])
    assert "wh_init=10 Length=10" in footnote and "1e10 - 1 == 1e10" in footnote and "float64" in footnote


def test_cli_tiny_off_lecture_grid_matches_the_closed_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gradients", "--tiny", "--wh", "0.5", "2", "--lengths", "7"]) == 0
    out = capsys.readouterr().out.splitlines()
    L = 7
    for i, wh in enumerate((0.5, 2.0)):
        header, line = out[3 * i], out[3 * i + 1]
        assert header == f"wh_init = {wh:g}"
        ends, grad_wh = 2 * wh**L, 2 * L * wh ** (L - 1)  # h_init.grad = wy.grad = 2·w_hᴸ; wh.grad = 2L·w_hᴸ⁻¹
        assert line == f" Length={L:2d} h_init.grad = {ends:6.6f}, wh.grad = {grad_wh:6.6f}, wy.grad = {ends:6.6f}"
        numbers = [float(part.split("=")[-1]) for part in line.split(",")]
        assert numbers == pytest.approx([ends, grad_wh, ends], rel=1e-6)


def test_float64_has_no_cancellation_at_wh10_length10(capsys: pytest.CaptureFixture[str]) -> None:
    line = show_grads(10, [10], dtype=torch.float64)[1]
    assert line == (
        " Length=10 h_init.grad = 20000000000.000000, wh.grad = 20000000000.000000, wy.grad = 20000000000.000000"
    )
    assert cli.main(["gradients", "--tiny", "--wh", "10", "--lengths", "10", "--dtype", "float64"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == line


# ---------------------------------------------------------------------------------------------------------- flow
class LinearCell(nn.Module):
    """``h' = W_h h + W_x x`` (no bias, no nonlinearity): ``∂L/∂h_t = W_hᵀ ∂L/∂h_{t+1}`` exactly."""

    def __init__(self, input_size: int, hidden_size: int, device=None, dtype=None) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.W_h = nn.Parameter(torch.empty(hidden_size, hidden_size, device=device, dtype=dtype))
        self.W_x = nn.Parameter(torch.randn(hidden_size, input_size, device=device, dtype=dtype))

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return h @ self.W_h.T + x @ self.W_x.T  # (B, H)


@pytest.mark.parametrize("a", [0.7, 1.3])
def test_linear_rnn_norm_ratios_equal_a(a: float) -> None:
    torch.manual_seed(0)
    T, B, I, H = 12, 3, 4, 6
    layer = Recurrent(LinearCell, I, H, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(H, H, dtype=torch.float64))
    with torch.no_grad():
        layer.cells[0].W_h.copy_(a * Q)
    w = torch.randn(H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    flow = gradient_flow(layer, x, loss_fn=lambda out, h_n: (out[-1] @ w).sum())  # loss on the last step only
    norms = flow.norms["l0"]
    assert len(norms) == T
    ratios = [norms[t] / norms[t + 1] for t in range(T - 1)]
    assert ratios == pytest.approx([a] * (T - 1), abs=1e-10)
    assert norms[-1] == pytest.approx(float(w.norm()), abs=1e-12)


def test_reverse_direction_and_lengths_are_indexed_by_time() -> None:
    torch.manual_seed(1)
    layer = Recurrent(LinearCell, 2, 3, bidirectional=True, dtype=torch.float64)
    with torch.no_grad():
        for cell in layer.cells:
            cell.W_h.copy_(0.5 * torch.eye(3, dtype=torch.float64))
    x = torch.randn(5, 2, 2, dtype=torch.float64)
    flow = gradient_flow(layer, x, lengths=[5, 3])  # default loss: the last valid step's output sum
    fwd, rev = flow.norms["l0"], flow.norms["l0_reverse"]
    assert len(fwd) == len(rev) == 5
    # forward: only the last valid step is read, so the norm halves going back in time, row by row
    # reverse: its last valid output is its first step (time len−1), so only that step carries gradient
    assert fwd[4] == pytest.approx(3**0.5 / 1)  # only row 0 runs at t=4: ‖ones(3)‖
    assert rev[0] == pytest.approx(0.0) and rev[4] == pytest.approx(3**0.5)


@pytest.mark.parametrize("task, model", [("classify", "lstm"), ("generate", "gru")])
def test_task_model_flow_replays_the_models_own_loss(task: str, model: str) -> None:
    torch.manual_seed(2)
    kw = {"num_classes": 3, "bidirectional": True} if task == "classify" else {"num_conditions": 2}
    net = build_model(ModelConfig(task=task, model=model, vocab_size=9, embed_dim=4, hidden_size=5, num_layers=2, **kw))
    net.eval()
    ids = [[4, 5, 6, 7], [8, 5], [6, 6, 7]]
    if task == "classify":
        batch = collate_classification(ids, [0, 2, 1])
    else:
        batch = collate_generation(ids, [0, 1, 1])
    flow = gradient_flow(net, batch)
    assert flow.loss == pytest.approx(float(net(batch)[1].detach()), abs=1e-6)  # the same loss as forward's
    labels = {"l0", "l1"} | ({"l0_reverse", "l1_reverse"} if task == "classify" else set())
    assert set(flow.norms) == labels
    T = int(batch.lengths.max())
    assert all(len(v) == T and all(x >= 0 for x in v) for v in flow.norms.values())


@pytest.mark.parametrize("model", ["lstm-fcn", "mlstm-fcn"])
def test_lstm_fcn_flow_is_its_lstm_branchs_under_the_whole_loss(model: str) -> None:
    """The LSTM-FCN's flow is measured at its LSTM branch's states. Reference (float64): the last step's state
    enters the loss only through the summary ``(B, H + 128)``, so ``‖∂L/∂h_T‖`` is the norm of ``∂L/∂summary``'s
    first ``H`` columns, averaged over the batch (all of length T here)."""
    torch.manual_seed(3)
    cfg = ModelConfig(task="classify", model=model, input_features=2, num_classes=3, hidden_size=5, num_layers=2)
    net = build_model(cfg).double().eval()
    B, T = 4, 6
    x = torch.randn(B, T, 2, dtype=torch.float64)
    batch = Batch(x, torch.full((B,), T), torch.tensor([0, 2, 1, 1]))
    flow = gradient_flow(net, batch)
    assert flow.loss == pytest.approx(float(net(batch)[1].detach()), abs=1e-12)  # the whole model's loss
    assert set(flow.norms) == {"l0", "l1"} and all(len(v) == T for v in flow.norms.values())
    summary = net.core.summary(x, batch.lengths).detach().requires_grad_()  # (B, H + 128)
    loss = torch.nn.functional.cross_entropy(net.head(summary), batch.targets)
    (g,) = torch.autograd.grad(loss, summary)
    want = g[:, :5].norm(dim=1).mean()  # the top layer's last state
    assert flow.norms["l1"][T - 1] == pytest.approx(float(want), rel=1e-10)
    # unequal lengths: one norm per step of the longest series, all finite and not all zero
    ragged = gradient_flow(net, Batch(x, torch.tensor([6, 2, 4, 1]), batch.targets))
    assert all(len(v) == T for v in ragged.norms.values()) and max(ragged.norms["l0"]) > 0


# ---------------------------------------------------------------------------------------------------------- CLI
def test_cli_compare_writes_csv_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "flow.png"
    args = ["gradients", "--compare", "rnn", "lstm", "gru", "--length", "6", "--hidden", "4", "--batch-size", "2"]
    assert cli.main([*args, "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "first/last" in out and "lstm l0" in out
    with open(tmp_path / "flow.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["t", "rnn l0", "lstm l0", "gru l0"] and len(rows) == 7
    assert all(float(v) > 0 for row in rows[1:] for v in row[1:])
    if matplotlib_available():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def make_folder(path: Path) -> Path:
    """Two classes, 12 names each, their letters disjoint."""
    rng = random.Random(0)
    path.mkdir()
    for cls, letters in (("Alpha", "aeiou"), ("Beta", "bcdfg")):
        items = sorted({cls[0] + "".join(rng.choice(letters) for _ in range(rng.randint(2, 5))) for _ in range(12)})
        (path / f"{cls}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    return path


def test_cli_gradients_on_a_trained_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_folder(tmp_path / "data")
    run = tmp_path / "run"
    tiny = ["--epochs", "1", "--hidden", "8", "--embed", "4", "--model", "gru", "--bidirectional"]
    assert cli.main(["train", "--data", str(data), "--out", str(run), *tiny]) == 0
    capsys.readouterr()
    assert cli.main(["gradients", str(run)]) == 0
    out = capsys.readouterr().out
    assert "gru l0 " in out and "gru l0_reverse" in out
    with open(run / "gradient_flow.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["t", "gru l0", "gru l0_reverse"] and len(rows) > 2


def test_cli_gradients_on_an_lstm_fcn_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The series default (LSTM-FCN, bidirectional): ``gradients RUN`` gives the flow through its LSTM branch."""
    from cli_helpers import write_tiny_ts

    data = write_tiny_ts(tmp_path / "TRAIN.ts", 8, 1, noise=0.3)
    run = tmp_path / "run"
    tiny = ["--task", "classify", "--model", "lstm-fcn", "--epochs", "1", "--hidden", "4", "--batch-size", "8"]
    tiny += ["--ensemble", "1"]  # one model: the default trains an ensemble (refused by gradients, one line)
    assert cli.main(["train", "--data", str(data), "--out", str(run), *tiny]) == 0
    capsys.readouterr()
    assert cli.main(["gradients", str(run)]) == 0
    assert "lstm-fcn l0 " in capsys.readouterr().out
    with open(run / "gradient_flow.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["t", "lstm-fcn l0", "lstm-fcn l0_reverse"] and len(rows) > 2
    assert any(float(r[1]) > 0 for r in rows[1:])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["gradients", "MISSING_RUN"], "does not exist"),
        (["gradients"], "exactly one of RUN, --tiny or --compare"),
        (["gradients", "--compare", "rnn", "nosuch"], "unknown model 'nosuch'"),
        (["gradients", "--tiny", "--compare", "rnn"], "exactly one of"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rnnkit: error: ") and message in err
