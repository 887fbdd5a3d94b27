"""The trainer: reproducibility, exact resume, NaN stop, early stopping, curve CSV, progress and plots."""

from __future__ import annotations

import csv
import itertools
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnnkit.checkpoint import load_run_weights
from rnnkit.data.batching import Batch
from rnnkit.train import NonFiniteLossError, TrainConfig, Trainer, evaluate, fit, lr_factor
from rnnkit.train.checkpoints import load_checkpoint

V, C = 12, 3  # vocabulary size, classes


class TinyClassifier(nn.Module):
    """Embedding → dropout → torch.nn.GRU → last valid state → classes (dropout exercises the RNG)."""

    def __init__(self, hidden: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, 8, padding_idx=0)
        self.drop = nn.Dropout(dropout)
        self.rnn = nn.GRU(8, hidden, batch_first=True)
        self.out = nn.Linear(hidden, C)
        self.nan_at_call: int | None = None  # make the loss NaN at this training forward call (1-based)
        self.calls = 0

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.drop(self.emb(batch.inputs))  # (B, T, 8)
        packed = pack_padded_sequence(x, batch.lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)  # (1, B, H)
        logits = self.out(h[-1])  # (B, C)
        loss = None if batch.targets is None else F.cross_entropy(logits, batch.targets)
        if self.training:
            self.calls += 1
            if loss is not None and self.calls == self.nan_at_call:
                loss = loss * float("nan")
        return logits, loss


def make_items(n: int, seed: int) -> list[tuple[list[int], int]]:
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        ids = rng.integers(1, V, size=int(rng.integers(1, 9))).tolist()
        items.append((ids, int(sum(ids) % C)))
    return items


def collate(items: list[tuple[list[int], int]]) -> Batch:
    t = max(len(ids) for ids, _ in items)
    inputs = torch.zeros(len(items), t, dtype=torch.long)
    for b, (ids, _) in enumerate(items):
        inputs[b, : len(ids)] = torch.tensor(ids)
    return Batch(
        inputs=inputs,  # (B, T)
        lengths=torch.tensor([len(ids) for ids, _ in items]),  # (B,)
        targets=torch.tensor([y for _, y in items]),  # (B,)
    )


TRAIN, VAL = make_items(64, 1), make_items(24, 2)
VAL_BATCHES = [collate(VAL[i : i + 12]) for i in range(0, len(VAL), 12)]


def train_batches(epoch: int, seed: int = 0, batch_size: int = 16) -> list[Batch]:
    order = np.random.default_rng([seed, epoch]).permutation(len(TRAIN))
    return [collate([TRAIN[j] for j in order[i : i + batch_size]]) for i in range(0, len(order), batch_size)]


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=4, batch_size=16, lr=1e-2, progress="none", patience=None, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def new_model(seed: int = 0) -> TinyClassifier:
    torch.manual_seed(seed)
    return TinyClassifier()


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def no_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "items_per_second")} for row in history]


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted 4-epoch run: (final weights, result)."""
    out = tmp_path_factory.mktemp("ref")
    model = new_model()
    result = fit(model, train_batches, VAL_BATCHES, cfg(), out)
    return weights(model), result


# ---------------------------------------------------------------------------------------------------------------


def test_run_folder_curve_and_result(reference, tmp_path: Path):
    final, result = reference
    out = result.out_dir
    assert result.stopped_reason == "completed" and result.epochs_run == 4 and result.steps == 16
    assert result.monitor == "val_loss" and result.best_epoch in range(1, 5)
    assert result.best_metric == min(r["val_loss"] for r in result.history)
    assert result.train_seconds > 0
    with open(out / "curve.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["step"]) for r in rows] == [4, 8, 12, 16]
    for col in ("train_loss", "val_loss", "val_accuracy", "lr", "grad_norm", "grad_norm_max", "seconds"):
        assert all(math.isfinite(float(r[col])) for r in rows), col
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    # model.safetensors holds the best weights, which the model also holds now
    m = TinyClassifier()
    load_run_weights(out, m)
    assert same(weights(m), final)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "curve.csv", "model.safetensors"]
    assert result.metrics()["epochs"] == 4


def test_same_seed_same_weights(reference):
    model = new_model()
    result = fit(model, train_batches, VAL_BATCHES, cfg())
    assert same(weights(model), reference[0])
    assert no_timing(result.history) == no_timing(reference[1].history)


def test_resume_after_crash_at_epoch_end_is_bitwise_identical(reference, tmp_path: Path):
    def crash(trainer: Trainer, row: dict) -> None:
        if row["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(new_model(), train_batches, VAL_BATCHES, cfg(), tmp_path, on_epoch_end=crash)
    model = new_model(seed=123)  # weights come from the checkpoint
    result = fit(model, train_batches, VAL_BATCHES, cfg(), tmp_path, resume=True)
    assert same(weights(model), reference[0])
    assert no_timing(result.history) == no_timing(reference[1].history)
    assert result.best_epoch == reference[1].best_epoch and result.steps == 16


def test_resume_mid_epoch_is_bitwise_identical(reference, tmp_path: Path):
    def stop(trainer: Trainer) -> None:
        if trainer.state["step"] == 6:  # epoch 2, batch 2 of 4
            trainer.request_stop()

    first = fit(new_model(), train_batches, VAL_BATCHES, cfg(), tmp_path, on_step=stop)
    assert first.stopped_reason == "interrupted" and first.steps == 6 and first.epochs_run == 1
    model = new_model(seed=5)
    result = fit(model, train_batches, VAL_BATCHES, cfg(), tmp_path, resume=True)
    assert result.stopped_reason == "completed"
    assert same(weights(model), reference[0])
    assert no_timing(result.history) == no_timing(reference[1].history)


def test_time_budget_stops_at_step_boundary_and_resumes_repeatedly(reference, tmp_path: Path):
    result = fit(new_model(), train_batches, VAL_BATCHES, cfg(max_minutes=1e-9), tmp_path)
    assert result.stopped_reason == "time" and result.steps == 1
    for _ in range(20):
        model = new_model(seed=9)
        result = fit(model, train_batches, VAL_BATCHES, cfg(max_minutes=1e-9), tmp_path, resume=True)
        if result.stopped_reason == "completed":
            break
    assert result.stopped_reason == "completed" and result.steps == 16
    assert same(weights(model), reference[0])
    assert no_timing(result.history) == no_timing(reference[1].history)


def test_sigint_stops_cleanly_after_saving(reference, tmp_path: Path):
    previous = signal.getsignal(signal.SIGINT)

    def ctrl_c(trainer: Trainer) -> None:
        if trainer.state["step"] == 5:
            os.kill(os.getpid(), signal.SIGINT)

    first = fit(new_model(), train_batches, VAL_BATCHES, cfg(), tmp_path, on_step=ctrl_c, handle_sigint=True)
    assert first.stopped_reason == "interrupted" and first.steps == 5
    assert signal.getsignal(signal.SIGINT) is previous
    model = new_model()
    fit(model, train_batches, VAL_BATCHES, cfg(), tmp_path, resume=True)
    assert same(weights(model), reference[0])


def test_sigint_while_the_run_is_set_up_is_not_lost(reference, tmp_path: Path):
    # Ctrl-C while the trainer counts the batches (before the first step): the run stops at the first step
    # boundary, saved, instead of forgetting the request
    pressed = []

    def batches(epoch: int) -> list[Batch]:
        if not pressed:
            pressed.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return train_batches(epoch)

    first = fit(new_model(), batches, VAL_BATCHES, cfg(), tmp_path, handle_sigint=True)
    assert first.stopped_reason == "interrupted" and first.steps <= 1
    model = new_model()
    fit(model, train_batches, VAL_BATCHES, cfg(), tmp_path, resume=True)
    assert same(weights(model), reference[0])


def test_resume_with_a_dataloader_and_bucket_sampler(tmp_path: Path):
    from torch.utils.data import DataLoader

    from rnnkit.data.batching import BucketBatchSampler

    lengths = [len(ids) for ids, _ in TRAIN]

    def loader() -> DataLoader:
        return DataLoader(TRAIN, batch_sampler=BucketBatchSampler(lengths, 16, seed=3), collate_fn=collate)

    # no validation data: the result is the last weights, so every step must match
    ref = new_model()
    ref_result = fit(ref, loader(), None, cfg(epochs=3))

    def stop(trainer: Trainer) -> None:
        if trainer.state["step"] == 7:  # mid-epoch: the DataLoader's iterator draws from torch's RNG
            trainer.request_stop()

    assert fit(new_model(), loader(), None, cfg(epochs=3), tmp_path, on_step=stop).steps == 7
    model = new_model()
    result = fit(model, loader(), None, cfg(epochs=3), tmp_path, resume=True)
    assert same(weights(model), weights(ref))
    assert no_timing(result.history) == no_timing(ref_result.history)


def test_nan_loss_stops_with_clear_error_and_last_good_checkpoint_loads(tmp_path: Path):
    saved = {}

    def keep(trainer: Trainer, row: dict) -> None:
        saved[row["epoch"]] = weights(trainer.model)

    model = new_model()
    model.nan_at_call = 7  # epoch 2, batch 3
    with pytest.raises(NonFiniteLossError) as info:
        fit(model, train_batches, VAL_BATCHES, cfg(), tmp_path, on_epoch_end=keep)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.epoch, err.step, err.quantity) == (2, 7, "loss") and math.isnan(err.value)
    msg = str(err)
    assert "epoch 2, step 7" in msg and "--lr" in msg and "--clip-norm" in msg and "checkpoint" in msg
    fresh = TinyClassifier()
    ck = load_checkpoint(tmp_path / "checkpoint", fresh, restore_rng=False)
    assert ck.state["epoch"] == 1 and ck.state["step"] == 4
    assert same(weights(fresh), saved[1])


def test_early_stopping_restores_best_weights(tmp_path: Path):
    scripted = iter([1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    at_epoch = {}

    def scripted_eval(model: nn.Module, batches) -> dict[str, float]:
        return {"loss": next(scripted), "accuracy": evaluate(model, batches)["accuracy"]}

    def keep(trainer: Trainer, row: dict) -> None:
        at_epoch[row["epoch"]] = weights(trainer.model)

    model = new_model()
    config = cfg(epochs=6, patience=2)
    result = fit(model, train_batches, VAL_BATCHES, config, tmp_path, evaluate_fn=scripted_eval, on_epoch_end=keep)
    assert result.stopped_reason == "early_stop"
    assert result.epochs_run == 4 and len(result.history) == 4
    assert result.best_epoch == 2 and result.best_metric == 0.5
    assert same(weights(model), at_epoch[2]) and not same(weights(model), at_epoch[4])
    m = TinyClassifier()
    load_run_weights(tmp_path, m)
    assert same(weights(m), at_epoch[2])
    # resuming a finished run trains nothing and returns the same result and weights
    again = new_model(seed=3)
    result2 = fit(again, train_batches, VAL_BATCHES, config, tmp_path, resume=True, evaluate_fn=scripted_eval)
    assert result2.stopped_reason == "early_stop" and result2.best_epoch == 2
    assert same(weights(again), at_epoch[2])


def test_monitor_max_metric(tmp_path: Path):
    result = fit(new_model(), train_batches, VAL_BATCHES, cfg(epochs=2, monitor="accuracy"))
    assert result.monitor == "val_accuracy"
    assert result.best_metric == max(r["val_accuracy"] for r in result.history)


def test_refusals(tmp_path: Path):
    fit(new_model(), train_batches, VAL_BATCHES, cfg(epochs=1), tmp_path)
    with pytest.raises(ValueError, match="already holds a training checkpoint"):
        fit(new_model(), train_batches, VAL_BATCHES, cfg(epochs=1), tmp_path)
    model = new_model(seed=4)
    before = weights(model)
    with pytest.raises(ValueError, match=r"lr: 0\.01 -> 0\.02"):
        fit(model, train_batches, VAL_BATCHES, cfg(epochs=1, lr=0.02), tmp_path, resume=True)
    assert same(before, weights(model))
    with pytest.raises(ValueError, match="holds no checkpoint"):
        fit(new_model(), train_batches, VAL_BATCHES, cfg(), tmp_path / "new", resume=True)
    with pytest.raises(TypeError, match="one-shot iterator"):
        fit(new_model(), iter(train_batches(0)), None, cfg())
    with pytest.raises(ValueError, match="no batches"):
        fit(new_model(), lambda epoch: [], None, cfg())
    with pytest.raises(ValueError, match=r"TrainConfig\.lr"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match=r"TrainConfig\.schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="do not include 'val_f1'"):
        fit(new_model(), train_batches, VAL_BATCHES, cfg(epochs=1, monitor="f1"))


def test_without_validation_keeps_last_weights():
    model = new_model()
    result = fit(model, train_batches, None, cfg(epochs=2))
    assert result.best_epoch == 2 and result.best_metric is None
    assert result.history[-1]["val_loss"] is None


def test_log_lines_when_not_a_terminal():
    lines: list[str] = []
    fit(new_model(), train_batches, VAL_BATCHES, cfg(epochs=2, progress="log", log_every=2), log=lines.append)
    step_lines = [s for s in lines if "step" in s and "items/s" in s]
    assert len(step_lines) == 4 and "eta" in step_lines[0]
    epoch_lines = [s for s in lines if s.startswith("epoch ") and "train_loss" in s]
    assert len(epoch_lines) == 2 and "val_loss" in epoch_lines[0]


def test_lr_schedule_warmup_then_decay():
    total = 100
    f = [lr_factor(s, total, "cosine", 0.1, 0.1) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(f[9:]))
    assert f[-1] == pytest.approx(0.1, abs=1e-3)
    assert lr_factor(50, total, "constant", 0.1, 0.1) == 1.0
    assert lr_factor(99, total, "linear", 0.0, 0.0) == pytest.approx(0.0101, abs=1e-3)
    assert lr_factor(0, total, "cosine", 0.0, 0.5) == 1.0


def test_optimizer_is_fused_adamw_equal_to_the_loop_form_in_float64():
    """build_optimizer takes PyTorch's fused AdamW on CPU; its steps equal torch.optim.AdamW's loop form in
    float64 (same groups: decay on matrices only), and either one's state_dict loads into the other."""
    from rnnkit.train.settings import build_optimizer

    torch.manual_seed(0)
    model = TinyClassifier(dropout=0.0).double()  # no dropout: both models see the same forward
    ref = TinyClassifier(dropout=0.0).double()
    ref.load_state_dict(model.state_dict())
    config = cfg(lr=1e-2, weight_decay=0.1)
    opt, _ = build_optimizer(model, config, total_steps=10)
    assert opt.defaults["fused"] is True
    params = list(ref.parameters())
    loop = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=1e-2,
        foreach=False,
    )
    batch = collate(TRAIN[:16])
    for _ in range(4):
        for m, o in ((model, opt), (ref, loop)):
            o.zero_grad()
            m(batch)[1].backward()
            o.step()
    for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14, msg=name)
    loop.load_state_dict(opt.state_dict())
    opt.load_state_dict(loop.state_dict())
    assert float(opt.state_dict()["state"][0]["step"]) == 4


def test_optimizer_steps_are_seen_by_caches_keyed_on_the_version():
    """The fused kernel writes parameters without bumping their versions; the trainer's optimizer bumps them, so
    the compiled engine's cached layout of W_hh follows: after a step, eval output = a fresh copy's."""
    import copy

    from rnnkit.tasks import ModelConfig, build_model
    from rnnkit.train.settings import build_optimizer

    torch.manual_seed(0)
    config = ModelConfig(task="generate", model="lstm", vocab_size=12, embed_dim=4, hidden_size=8, num_layers=2)
    model = build_model(config)
    opt, _ = build_optimizer(model, cfg(lr=1e-2), total_steps=4)
    batch = Batch(torch.randint(4, 12, (3, 5)), torch.tensor([5, 3, 2]), torch.randint(4, 12, (3, 5)))
    model.eval()
    with torch.no_grad():
        model(batch)  # the engine lays W_hh out for the eval path
    versions = [p._version for p in model.parameters()]
    model.train()
    opt.zero_grad()
    model(batch)[1].backward()
    opt.step()
    assert all(p._version > v for p, v in zip(model.parameters(), versions, strict=True))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch)[0], copy.deepcopy(model)(batch)[0], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# plots


def test_plots_write_pngs(reference, tmp_path: Path):
    pytest.importorskip("matplotlib")
    from rnnkit.plots import plot_confusion, plot_curves

    result = reference[1]
    p1 = plot_curves(result.out_dir / "curve.csv", tmp_path / "curves.png")
    p2 = plot_curves(result.history, tmp_path / "curves2.png", title="run")
    names = [f"Category{i}" for i in range(18)]
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 30, size=(18, 18)) + np.diag(np.full(18, 100))
    matrix[3] = 0  # a class with no items
    p3 = plot_confusion(matrix, names, tmp_path / "confusion.png")
    for p in (p1, p2, p3):
        assert p is not None and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="shape"):
        plot_confusion(matrix, names[:5], tmp_path / "bad.png")


def test_plots_return_none_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import builtins

    from rnnkit import plots

    real_import = builtins.__import__

    def no_mpl(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib (simulated)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    assert not plots.matplotlib_available()
    assert plots.plot_curves([{"epoch": 1, "train_loss": 1.0}], tmp_path / "c.png") is None
    assert plots.plot_confusion([[1, 0], [0, 1]], ["a", "b"], tmp_path / "m.png") is None
    assert not list(tmp_path.iterdir())
