"""The fixed-window model: WindowCore against hand-built windows, step == forward, the classifier's two window
losses by hand, greedy sampling, and ``rnnkit train --model window`` end to end."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit import cli
from rnnkit.data.batching import Batch
from rnnkit.data.vocab import BOS, EOS, UNK
from rnnkit.tasks import MODELS, ModelConfig, build_core, build_model
from rnnkit.windowing import WindowCore


def _core(W: int = 3, I: int = 2, H: int = 4, **kw) -> WindowCore:
    torch.manual_seed(0)
    return build_core("window", I, H, window=W, **kw).double().eval()


def test_window_is_registered_and_rejects_bidirectional():
    assert "window" in MODELS
    core = build_core("window", 2, 4, num_layers=3, window=4)
    assert isinstance(core, WindowCore) and core.window == 4
    assert sum(isinstance(m, torch.nn.Linear) for m in core.f) == 4  # 3 hidden layers + the output layer
    with pytest.raises(ValueError, match="no direction"):
        build_core("window", 2, 4, bidirectional=True)
    build_core("gru", 2, 4, window=3)  # recurrent cores ignore the window option


def test_output_is_the_mlp_of_the_left_padded_window():
    W, I = 3, 2
    core = _core(W, I)
    x = torch.randn(2, 5, I, dtype=torch.float64)
    out, h_n = core(x)
    assert out.shape == (2, 5, 4) and h_n.shape == (1, 2, 4)
    padded = torch.cat([torch.zeros(2, W - 1, I, dtype=torch.float64), x], dim=1)
    for t in range(5):
        w = padded[:, t : t + W].reshape(2, W * I)  # x[t-W+1..t], oldest first
        torch.testing.assert_close(out[:, t], core.f(w), rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n[0], out[:, -1])


def test_padding_invariance_with_lengths():
    core = _core()
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4])
    out, h_n = core(x, lengths=lengths)
    noisy = x.clone()
    for b, n in enumerate(lengths.tolist()):
        noisy[b, n:] = 7.0
    out2, h_n2 = core(noisy, lengths=lengths)
    torch.testing.assert_close(out2, out, rtol=0, atol=0)
    torch.testing.assert_close(h_n2, h_n, rtol=0, atol=0)
    for b, n in enumerate(lengths.tolist()):
        alone, h_alone = core(x[b : b + 1, :n])
        torch.testing.assert_close(out[b, :n], alone[0], rtol=0, atol=1e-12)
        assert bool((out[b, n:] == 0).all())
        torch.testing.assert_close(h_n[0, b], h_alone[0, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("W", [1, 3])
def test_step_equals_forward(W):
    core = _core(W, num_layers=2)
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    out, _ = core(x)
    state = None
    for t in range(5):
        y, state = core.step(x[:, t], state)
        assert state.shape == (2, W - 1, 2)
        torch.testing.assert_close(y, out[:, t], rtol=0, atol=1e-12)
    # the carried state is the context that continues a sequence
    more = torch.randn(2, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(core(more, state)[0], core(torch.cat([x, more], 1))[0][:, 5:], rtol=0, atol=1e-12)


def _clf(window_loss: str):
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="classify", model="window", vocab_size=10, num_classes=3, embed_dim=4, hidden_size=5, dropout=0.0,
        window=2, window_loss=window_loss,
    )  # fmt: skip
    return build_model(cfg).double().eval()


@pytest.mark.parametrize("window_loss", ["sum", "aggregate"])
def test_classifier_window_losses_by_hand(window_loss):
    clf = _clf(window_loss)
    batch = Batch(torch.tensor([[5, 6, 7], [8, 9, 0]]), torch.tensor([3, 2]), torch.tensor([2, 0]))
    logits, loss = clf(batch)
    out, _ = clf.core(clf.inputs.embed(batch.inputs), lengths=batch.lengths)
    rows = [clf.head(out[0, :3]), clf.head(out[1, :2])]  # ŷ_j of each valid window, (n_b, C)
    y = batch.targets.tolist()
    if window_loss == "sum":  # Σ_j CE(ŷ_j, y) / n_b, mean over the batch
        want = sum(-torch.log_softmax(r, 1)[:, c].sum() / len(r) for r, c in zip(rows, y, strict=True)) / 2
    else:  # CE(Σ_j ŷ_j, y), mean over the batch
        want = sum(-torch.log_softmax(r.sum(0), 0)[c] for r, c in zip(rows, y, strict=True)) / 2
    assert math.isclose(loss.item(), want.item(), rel_tol=1e-12)
    # test time: the average of the windows' probabilities
    mean_p = torch.stack([torch.softmax(r, 1).mean(0) for r in rows])
    torch.testing.assert_close(clf.predict_proba(batch), mean_p, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.softmax(logits, 1), mean_p, rtol=0, atol=1e-12)


def test_classifier_window_padding_and_bad_loss():
    clf = _clf("aggregate")
    inputs = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    batched = clf.predict_proba(Batch(inputs, torch.tensor([3, 1])))
    alone = clf.predict_proba(Batch(torch.tensor([[8]]), torch.tensor([1])))
    torch.testing.assert_close(batched[1], alone[0], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="window_loss"):
        build_model(ModelConfig(task="classify", model="window", vocab_size=9, num_classes=2, window_loss="max"))


def _greedy_by_forward(gen, condition, max_len):
    seq = [BOS]
    while len(seq) - 1 < max_len:
        cond = None if condition is None else torch.tensor([condition])
        logits, _ = gen(Batch(torch.tensor([seq]), torch.tensor([len(seq)]), None, cond))
        last = logits[0, -1].clone()
        last[[0, BOS, UNK]] = -float("inf")
        nxt = int(last.argmax())
        if nxt == EOS:
            break
        seq.append(nxt)
    return seq[1:]


def test_generator_greedy_sampling_equals_full_forward_and_needs_input_conditioning():
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="generate", model="window", vocab_size=11, num_conditions=3, condition_mode="input",
        embed_dim=4, hidden_size=6, dropout=0.0, window=3, num_layers=2,
    )  # fmt: skip
    gen = build_model(cfg).double().eval()
    for cond in (0, 2):
        assert gen.sample(cond, n=2, temperature=0, max_len=8) == [_greedy_by_forward(gen, cond, 8)] * 2
    with pytest.raises(ValueError, match="condition_mode='input'"):
        build_model(ModelConfig(task="generate", model="window", vocab_size=9, num_conditions=2))
    build_model(ModelConfig(task="generate", model="window", vocab_size=9))  # unconditional: any mode


@pytest.mark.parametrize("task", ["classify", "generate"])
def test_train_window_end_to_end(tmp_path, task):
    data = tmp_path / "data"
    data.mkdir()
    for cls, letters in {"Alpha": "aeiou", "Beta": "bcdfg"}.items():
        items = [cls[0] + letters[i % 5] + letters[(i * 3) % 5] + letters[i // 5] for i in range(20)]
        (data / f"{cls}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", "--task", task, "--data", data, "--out", out, "--model", "window", "--window", "3"]
    args += ["--epochs", "1", "--hidden", "8", "--embed", "4", "--batch-size", "8"]
    assert cli.main([str(a) for a in args]) == 0
    assert (out / "metrics.json").exists()
