"""Truncated BPTT in the trainer, and the ``lm`` app that trains with it from the command line.

* ``K1 = K2 ≥ T`` is full BPTT: the same weights as the trainer without TBPTT.
* ``K2 ≥ K1``: every update's gradient equals a hand-truncated gradient computed independently — explicit loops over
  ``torch.nn.LSTMCell`` copies, the state run without gradient up to the window start ``max(0, c0 − (K2 − K1))`` and
  with gradient from there, the loss the mean over the chunk ``[c0, c1)`` only.
* A mid-epoch stop and resume carries the TBPTT state exactly; stateful evaluation of a stream in chunks equals one
  pass over it; bad input is refused with clear errors.
* ``rnnkit train --task lm --tbptt K1,K2`` end to end, with evaluate / predict and the one-line error contract.

Tiny float64 models (H=5, 2 layers) so that equalities hold to ~1e-12.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rnnkit.runs.lm
from rnnkit import cli
from rnnkit.data.batching import Batch
from rnnkit.data.stream import TokenStream, synthetic_text
from rnnkit.runs import load_run
from rnnkit.runs.lm import LanguageModel, continue_text, parse_tbptt
from rnnkit.tasks import ModelConfig
from rnnkit.train import TrainConfig, Trainer, evaluate, fit

V, E, H, L = 10, 3, 5, 2  # vocabulary, embedding, hidden, layers


def make_lm(seed: int = 0, dropout: float = 0.0, dtype: torch.dtype = torch.float64) -> LanguageModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(task="lm", model="lstm", vocab_size=V, embed_dim=E, hidden_size=H, num_layers=L, dropout=dropout)
    return LanguageModel(cfg).to(dtype)


def stream_batch(B: int, T: int, seed: int) -> Batch:
    """B streams of T steps: random ids and next-id targets (no padding)."""
    ids = torch.randint(4, V, (B, T + 1), generator=torch.Generator().manual_seed(seed))
    return Batch(inputs=ids[:, :-1], lengths=torch.full((B,), T), targets=ids[:, 1:])


def config(**kw) -> TrainConfig:
    base = {"epochs": 1, "lr": 1e-2, "progress": "none", "patience": None, "warmup": 0.0, "seed": 0}
    base.update(kw)
    return TrainConfig(**base)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("k", [12, 17])
def test_k1_equals_k2_at_least_T_is_full_bptt(k: int):
    batch = stream_batch(3, 12, seed=1)
    plain, tbptt = make_lm(), make_lm()
    fit(plain, [batch], None, config(epochs=3))
    fit(tbptt, [batch], None, config(epochs=3, tbptt=(k, k)))
    for name, w in weights(plain).items():
        assert torch.equal(w, tbptt.state_dict()[name]), name


class Reference(nn.Module):
    """The same network as ``make_lm`` built from torch.nn pieces, run one step at a time."""

    def __init__(self, lm: LanguageModel) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, E).double()
        self.cells = nn.ModuleList(nn.LSTMCell(E if k == 0 else H, H).double() for k in range(L))
        self.head = nn.Linear(H, V).double()
        with torch.no_grad():
            self.emb.weight.copy_(lm.embed.weight)
            for k, cell in enumerate(self.cells):
                for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, part).copy_(getattr(lm.core, f"{part}_l{k}"))
            self.head.weight.copy_(lm.head.weight)
            self.head.bias.copy_(lm.head.bias)

    def step(self, ids_t: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        x = self.emb(ids_t)  # (B, E)
        new = []
        for cell, (h, c) in zip(self.cells, state, strict=True):
            h, c = cell(x, (h, c))
            new.append((h, c))
            x = h  # (B, H)
        return self.head(x), new  # (B, V)

    def grads_of(self) -> dict[str, torch.Tensor]:
        """Gradients under the LanguageModel's parameter names."""
        out = {"embed.weight": self.emb.weight.grad, "head.weight": self.head.weight.grad}
        out["head.bias"] = self.head.bias.grad
        for k, cell in enumerate(self.cells):
            for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                out[f"core.{part}_l{k}"] = getattr(cell, part).grad
        return out


def hand_truncated_grads(lm: LanguageModel, batch: Batch, c0: int, c1: int, k1: int, k2: int) -> dict:
    """The gradient of the update for chunk [c0, c1): no grad before s = max(0, c0 − (K2 − K1)), grad after."""
    ref = Reference(lm)
    B = len(batch)
    state = [(torch.zeros(B, H, dtype=torch.float64), torch.zeros(B, H, dtype=torch.float64)) for _ in range(L)]
    s = max(0, c0 - (k2 - k1))
    with torch.no_grad():
        for t in range(s):
            _, state = ref.step(batch.inputs[:, t], state)
    state = [(h.detach(), c.detach()) for h, c in state]  # the truncation point
    losses = []
    for t in range(s, c1):
        logits, state = ref.step(batch.inputs[:, t], state)
        if t >= c0:
            losses.append(F.cross_entropy(logits, batch.targets[:, t], reduction="sum"))
    loss = torch.stack(losses).sum() / (B * (c1 - c0))  # the mean over the chunk's targets only
    loss.backward()
    return ref.grads_of()


@pytest.mark.parametrize(("k1", "k2", "pre_chunked"), [(4, 7, False), (3, 8, True), (4, 4, False), (5, 13, True)])
def test_every_update_equals_a_hand_truncated_gradient(k1: int, k2: int, pre_chunked: bool):
    """TBPTT(K1, K2) through fit: each update's gradient == the independent truncated gradient (weights held fixed)."""
    T, B = 13, 2
    batch = stream_batch(B, T, seed=2)
    lm = make_lm(seed=3)
    w0 = weights(lm)
    recorded: list[dict[str, torch.Tensor]] = []

    def on_step(trainer: Trainer) -> None:
        recorded.append({n: p.grad.clone() for n, p in trainer.model.named_parameters()})
        trainer.model.load_state_dict(w0)  # every update is taken at the same weights, as the reference

    if pre_chunked:  # the same streams given as K1-step batches (as TokenStream yields them) instead of one batch
        data = [
            Batch(batch.inputs[:, a : a + k1], torch.full((B,), min(k1, T - a)), batch.targets[:, a : a + k1])
            for a in range(0, T, k1)
        ]
    else:
        data = [batch]
    fit(lm, data, None, config(clip_norm=None, tbptt=(k1, k2)), on_step=on_step)
    chunks = [(c0, min(c0 + k1, T)) for c0 in range(0, T, k1)]
    assert len(recorded) == len(chunks)
    for (c0, c1), got in zip(chunks, recorded, strict=True):
        want = hand_truncated_grads(make_lm(seed=3), batch, c0, c1, k1, k2)
        for name, g in want.items():
            torch.testing.assert_close(got[name], g, rtol=1e-10, atol=1e-12, msg=f"chunk [{c0}, {c1}) {name}")


def test_resume_mid_epoch_carries_the_state_exactly(tmp_path: Path):
    ids = torch.randint(4, V, (200,), generator=torch.Generator().manual_seed(4))
    stream = TokenStream(ids, batch_size=4, chunk=5)  # 10 chunks per epoch
    cfg = config(epochs=2, tbptt=(5, 9))
    full = make_lm(dropout=0.2, dtype=torch.float32)
    fit(full, stream, None, cfg, tmp_path / "full")

    def stop_at_4(trainer: Trainer) -> None:
        if trainer.state["step"] == 4:
            trainer.request_stop()

    part = make_lm(dropout=0.2, dtype=torch.float32)
    result = fit(part, stream, None, cfg, tmp_path / "part", on_step=stop_at_4)
    assert result.stopped_reason == "interrupted" and result.steps == 4
    resumed = make_lm(seed=9, dropout=0.2, dtype=torch.float32)  # other weights: the checkpoint must replace them
    result = fit(resumed, stream, None, cfg, tmp_path / "part", resume=True)
    assert result.steps == 20
    for name, w in weights(full).items():
        assert torch.equal(w, resumed.state_dict()[name]), name


def test_stateful_evaluation_of_chunks_equals_one_pass():
    lm = make_lm(seed=5)
    ids = torch.randint(4, V, (61,), generator=torch.Generator().manual_seed(6))
    stream = TokenStream(ids, batch_size=3, chunk=7)  # 20 steps per row: chunks of 7, 7, 6
    x, y = stream.pairs()
    whole = Batch(inputs=x.long().view(3, 20), lengths=torch.full((3,), 20), targets=y.long().view(3, 20))
    want = evaluate(lm, [whole])
    got = evaluate(lm, stream, stateful=True)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-12)
    assert got["accuracy"] == want["accuracy"]
    restarted = evaluate(lm, stream)  # without carrying the state every chunk restarts: a different number
    assert restarted["loss"] != pytest.approx(want["loss"], rel=1e-6)


def test_tbptt_refusals():
    for bad in [(5, 3), (0, 2), (2,), (True, 3), "64"]:
        with pytest.raises(ValueError, match=r"TrainConfig\.tbptt"):
            TrainConfig(tbptt=bad)
    assert TrainConfig(tbptt=[8, 16]).tbptt == (8, 16) and TrainConfig(tbptt=8).tbptt == (8, 8)

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, batch):
            return None, self.w.sum()

    good = stream_batch(2, 6, seed=7)
    with pytest.raises(ValueError, match="forward_stateful"):
        fit(Plain(), [good], None, config(tbptt=(3, 3)))
    padded = Batch(good.inputs, torch.tensor([6, 4]), good.targets)
    with pytest.raises(ValueError, match="without padding"):
        fit(make_lm(), [padded], None, config(tbptt=(3, 3)))
    with pytest.raises(ValueError, match="has 3 rows but the previous one had 2"):
        fit(make_lm(), [good, stream_batch(3, 6, seed=8)], None, config(tbptt=(3, 3)))
    one_target = Batch(good.inputs, good.lengths, good.targets[:, 0])
    with pytest.raises(ValueError, match="one target per step"):
        fit(make_lm(), [one_target], None, config(tbptt=(3, 3)))
    with pytest.raises(ValueError, match="forward_stateful"):
        evaluate(Plain(), [good], stateful=True)


# ---------------------------------------------------------------------------------------------------------- lm app
TINY = ["--hidden", "16", "--embed", "8", "--epochs", "1", "--batch-size", "8", "--lr", "0.01"]


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "book.txt"
    path.write_text(synthetic_text(12_000, seed=1), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lm_run(book: Path) -> Path:
    out = book.parent / "run"
    assert cli.main(["train", "--task", "lm", "--data", str(book), "--tbptt", "16,32", "--out", str(out), *TINY]) == 0
    return out


def test_lm_train_writes_a_run_with_char_metrics(lm_run: Path, book: Path):
    metrics = json.loads((lm_run / "metrics.json").read_text())
    assert metrics["app"] == "lm" and metrics["task"] == "lm" and metrics["tbptt"] == "16,32"
    assert metrics["test_bits_per_char"] == pytest.approx(metrics["test_nll_per_char"] / np.log(2), abs=2e-4)
    assert metrics["num_train_chars"] + metrics["num_val_chars"] + metrics["num_test_chars"] == 12_000
    # even one epoch of a tiny model beats the uniform guess over the text's characters
    assert metrics["test_bits_per_char"] < np.log2(metrics["vocab_size"] - 4)
    split = json.loads((lm_run / "split.json").read_text())
    assert split["test"] == [11_400, 12_000]
    config = json.loads((lm_run / "config.json").read_text())
    assert config["train"]["tbptt"] == [16, 32] and config["app"] == "lm"
    run = load_run(lm_run)
    assert isinstance(run.model, LanguageModel)


def test_lm_evaluate_and_predict(lm_run: Path, book: Path, capsys: pytest.CaptureFixture[str]):
    metrics = json.loads((lm_run / "metrics.json").read_text())
    assert cli.main(["evaluate", str(lm_run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_nll_per_char"] == metrics["test_nll_per_char"]  # the saved test part, re-read
    assert cli.main(["predict", str(lm_run), "The river", "the", "--horizon", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("The river") and len(lines[0]) >= len("The river") + 30
    run = load_run(lm_run)
    # streaming inference: a prefix read in chunks with the state carried gives what one pass gives
    text = synthetic_text(1200, seed=2)
    a = continue_text(run.model, run.vocab, text, 20, seed=3)
    monkey = rnnkit.runs.lm.EVAL_CHUNK
    try:
        rnnkit.runs.lm.EVAL_CHUNK = 7
        b = continue_text(run.model, run.vocab, text, 20, seed=3)
    finally:
        rnnkit.runs.lm.EVAL_CHUNK = monkey
    assert a == b


def test_lm_explicit_test_file_and_fold_ascii(book: Path, capsys: pytest.CaptureFixture[str]):
    test_file = book.parent / "other.txt"
    test_file.write_text("Über the river, the old garden.\n" * 20, encoding="utf-8")
    out = book.parent / "explicit"
    argv = ["train", "--task", "lm", "--data", str(book), "--test-data", str(test_file), "--fold-ascii"]
    assert cli.main([*argv, "--tbptt", "16", "--out", str(out), *TINY]) == 0
    split = json.loads((out / "split.json").read_text())
    assert split["explicit"] and split["train"] == [0, 11_400] and split["val"] == [11_400, 12_000]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_test_chars"] == len(test_file.read_text()) and metrics["tbptt"] == "16,16"
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--json"]) == 0  # the saved test part is the explicit file
    assert json.loads(capsys.readouterr().out)["test_nll_per_char"] == metrics["test_nll_per_char"]
    assert "Ü" not in load_run(out).vocab and load_run(out).vocab.fold_ascii


def test_lm_errors_are_one_line(lm_run: Path, book: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    def error(*argv: str) -> str:
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and "Traceback" not in err and len(err.splitlines()) == 1, (out, err)
        return err

    assert "--tbptt takes K1,K2" in error("train", "--task", "lm", "--data", str(book), "--tbptt", "8,4", "--out", "x")
    assert "use it with --task lm" in error("train", "--task", "generate", "--tbptt", "8", "--out", str(tmp_path / "g"))
    assert "needs --data FILE" in error("train", "--task", "lm", "--out", str(tmp_path / "n"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert "is empty" in error("train", "--task", "lm", "--data", str(empty), "--out", str(tmp_path / "e"))
    assert "unknown character" in error("predict", str(lm_run), "The river §")
    assert "cannot change" in error(
        "train", "--task", "lm", "--data", str(book), "--tbptt", "8,8", "--resume", "--out", str(lm_run)
    )
    assert not (tmp_path / "e").exists() and not (tmp_path / "n").exists()
    assert parse_tbptt("64") == (64, 64) and parse_tbptt([8, 16]) == (8, 16)


def test_a_fresh_process_loads_an_lm_run(lm_run: Path):
    # the lm task model registers itself when its kind is imported: load_run must import it before building
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "rnnkit", "predict", str(lm_run), "The ", "--horizon", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("The ") and len(proc.stdout.rstrip("\n")) >= len("The ")
