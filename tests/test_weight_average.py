"""Weight averaging (``TrainConfig.ema``, ``rnnkit train --ema``): the average against torch's AveragedModel and a
hand-unrolled float64 loop, what the trainer validates, keeps and saves, and resumes that equal an uninterrupted
run bit for bit."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from rnnkit.checkpoint import load_run_weights
from rnnkit.train import TrainConfig, Trainer, WeightAverage, ema_decay, evaluate, fit
from test_train import VAL_BATCHES, Interrupt, TinyClassifier, cfg, new_model, no_timing, same, train_batches, weights

DECAY = 0.9


class Normed(nn.Module):
    """Linear → BatchNorm1d → Linear: parameters and buffers (floating running statistics, an integer count)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn, self.b = nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.bn(self.a(x)))  # (B, 3) -> (B, 2)


def sgd_steps(model: nn.Module, steps: int, seed: int = 0):
    """``steps`` SGD steps on random float64 data, yielding after each one."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    for _ in range(steps):
        x = torch.randn(8, 3, generator=gen, dtype=torch.float64)  # (B, I)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        yield


def test_the_decay_schedule():
    assert ema_decay(0.999, 1) == 0.0 and ema_decay(0.999, 1, warmup=False) == 0.0  # the first update copies
    assert ema_decay(0.999, 2) == pytest.approx(1 / 11) and ema_decay(0.999, 2, warmup=False) == 0.999
    assert ema_decay(0.999, 100) == pytest.approx(99 / 109)
    assert ema_decay(0.999, 10**6) == 0.999  # the cap
    assert ema_decay(0.5, 5) == pytest.approx(4 / 14) and ema_decay(0.5, 20) == 0.5


def test_without_warmup_it_is_torchs_averaged_model():
    torch.manual_seed(0)
    model = Normed().double()
    ours = WeightAverage(model, DECAY, warmup=False)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(DECAY), use_buffers=True)
    for _ in sgd_steps(model, 7):
        ours.update()
        theirs.update_parameters(model)
    ref = theirs.module.state_dict()
    for name, avg in ours.averaged.items():
        if avg.is_floating_point():  # parameters and the running statistics, averaged alike
            torch.testing.assert_close(avg, ref[name], rtol=0, atol=1e-14)
        else:  # AveragedModel rounds an averaged count; the average keeps the model's latest
            assert torch.equal(avg, model.state_dict()[name]) and int(avg) == 7
    assert ours.updates == 7


def test_with_warmup_it_is_the_hand_unrolled_loop():
    torch.manual_seed(1)
    model = Normed().double()
    ours = WeightAverage(model, 0.99)
    ref: dict[str, torch.Tensor] = {}
    for n, _ in enumerate(sgd_steps(model, 12), start=1):
        ours.update()
        d = 0.0 if n == 1 else min(0.99, (n - 1) / (n + 9))
        for name, w in model.state_dict().items():
            w = w.detach().clone()
            ref[name] = w if n == 1 or not w.is_floating_point() else d * ref[name] + (1 - d) * w
    for name in ref:
        torch.testing.assert_close(ours.averaged[name], ref[name], rtol=0, atol=1e-14)
    # the average lags the weights: not equal to them after the warm-up
    assert not torch.equal(ours.averaged["a.weight"], model.a.weight.detach())


def test_swapped_in_holds_the_average_then_gives_the_weights_back():
    torch.manual_seed(2)
    model = Normed().double()
    avg = WeightAverage(model, DECAY)
    for _ in sgd_steps(model, 3):
        avg.update()
    raw = copy.deepcopy(model.state_dict())
    with avg.swapped_in(model):
        assert same(model.state_dict(), avg.averaged)
    assert same(model.state_dict(), raw)


def test_a_malformed_average_is_refused_and_nothing_changes():
    model = Normed()
    avg = WeightAverage(model, DECAY)
    before = avg.copy()
    good = {"updates": 3, "tensors": avg.copy()}
    for bad in (
        {"updates": -1, "tensors": good["tensors"]},
        {"updates": True, "tensors": good["tensors"]},
        {"updates": 3, "tensors": {k: v for k, v in good["tensors"].items() if k != "a.bias"}},
        {"updates": 3, "tensors": {**good["tensors"], "a.bias": torch.zeros(4)}},
        {"updates": 3},
    ):
        with pytest.raises(ValueError, match="weight average"):
            avg.load_state_dict(bad, "ck")
        assert same(avg.averaged, before) and avg.updates == 0
    avg.load_state_dict(good)
    assert avg.updates == 3
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        WeightAverage(model, 1.0)


@pytest.mark.parametrize("value", [1.0, -0.1, float("nan"), True])
def test_train_config_refuses_a_decay_outside_0_1(value):
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=value)


# ---------------------------------------------------------------------------------------------------------------
# the trainer


def ema_cfg(**kw) -> TrainConfig:
    return cfg(ema=0.8, **kw)


def test_the_trainer_keeps_the_average_of_every_step_without_validation():
    """Without validation the result is the average after the last step: the hand-computed EMA (float64) of
    the weights after every step."""
    seen = []
    model = new_model()
    fit(model, train_batches, None, ema_cfg(epochs=2), on_step=lambda t: seen.append(weights(t.model)))
    assert len(seen) == 8
    ref = {k: v.double() for k, v in seen[0].items()}
    for n, w in enumerate(seen[1:], start=2):
        d = min(0.8, (n - 1) / (n + 9))
        ref = {k: d * ref[k] + (1 - d) * w[k].double() for k in ref}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v.double(), ref[k], rtol=0, atol=1e-6)
    assert not torch.equal(model.rnn.weight_hh_l0, seen[-1]["rnn.weight_hh_l0"])  # not the raw weights


def test_validation_and_the_best_epoch_use_the_average(tmp_path: Path):
    at_epoch = {}

    def keep(trainer: Trainer, row: dict) -> None:
        at_epoch[row["epoch"]] = (trainer.average.copy(), weights(trainer.model), row)

    model = new_model()
    result = fit(model, train_batches, VAL_BATCHES, ema_cfg(epochs=4), tmp_path, on_epoch_end=keep)
    for epoch, (averaged, raw, row) in at_epoch.items():
        probe = TinyClassifier()
        probe.load_state_dict(averaged)
        assert evaluate(probe, VAL_BATCHES)["loss"] == pytest.approx(row["val_loss"], rel=1e-6), epoch
        probe.load_state_dict(raw)
        assert evaluate(probe, VAL_BATCHES)["loss"] != pytest.approx(row["val_loss"], rel=1e-6), epoch
    best = at_epoch[result.best_epoch][0]
    assert same(weights(model), best)
    saved = TinyClassifier()
    load_run_weights(tmp_path, saved)
    assert same(weights(saved), best)


@pytest.fixture(scope="module")
def ema_reference(tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted 4-epoch run with a weight average: (final weights, result)."""
    model = new_model()
    result = fit(model, train_batches, VAL_BATCHES, ema_cfg(), tmp_path_factory.mktemp("ema"))
    return weights(model), result


def test_resume_mid_epoch_with_an_average_is_bitwise_identical(ema_reference, tmp_path: Path):
    def stop(trainer: Trainer) -> None:
        if trainer.state["step"] == 6:  # epoch 2, batch 2 of 4
            trainer.request_stop()

    first = fit(new_model(), train_batches, VAL_BATCHES, ema_cfg(), tmp_path, on_step=stop)
    assert first.stopped_reason == "interrupted" and first.steps == 6
    model = new_model(seed=5)  # weights and average come from the checkpoint
    result = fit(model, train_batches, VAL_BATCHES, ema_cfg(), tmp_path, resume=True)
    assert same(weights(model), ema_reference[0])
    assert no_timing(result.history) == no_timing(ema_reference[1].history)


@pytest.mark.parametrize("crash_after", [1, 2])
def test_resume_after_an_epoch_end_with_an_average_is_bitwise_identical(ema_reference, tmp_path: Path, crash_after):
    def crash(trainer: Trainer, row: dict) -> None:
        if row["epoch"] == crash_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(new_model(), train_batches, VAL_BATCHES, ema_cfg(), tmp_path, on_epoch_end=crash)
    model = new_model(seed=9)
    result = fit(model, train_batches, VAL_BATCHES, ema_cfg(), tmp_path, resume=True)
    assert same(weights(model), ema_reference[0])
    assert no_timing(result.history) == no_timing(ema_reference[1].history)
    assert result.best_epoch == ema_reference[1].best_epoch


def test_a_resume_cannot_change_the_decay(tmp_path: Path):
    fit(new_model(), train_batches, VAL_BATCHES, ema_cfg(epochs=1), tmp_path)
    with pytest.raises(ValueError, match=r"ema: 0\.8 -> 0\.9"):
        fit(new_model(), train_batches, VAL_BATCHES, cfg(epochs=1, ema=0.9), tmp_path, resume=True)


def test_a_checkpoint_from_before_averaging_resumes(tmp_path: Path):
    """A checkpoint whose saved settings have no ``ema`` (written before it existed) continues as a run without
    averaging, and ends as the uninterrupted run does."""

    def crash(trainer: Trainer, row: dict) -> None:
        if row["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(new_model(), train_batches, VAL_BATCHES, cfg(epochs=2), tmp_path, on_epoch_end=crash)
    latest = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())["current"]
    state_file = tmp_path / "checkpoint" / latest / "state.json"
    doc = json.loads(state_file.read_text())
    del doc["state"]["config"]["ema"]
    assert "averaged" not in doc
    state_file.write_text(json.dumps(doc))
    model = new_model(seed=3)
    fit(model, train_batches, VAL_BATCHES, cfg(epochs=2), tmp_path, resume=True)
    ref = new_model()
    fit(ref, train_batches, VAL_BATCHES, cfg(epochs=2))
    assert same(weights(model), weights(ref))


def test_without_ema_nothing_changes(tmp_path: Path):
    """ema=0 (the default) keeps no average and writes none into the checkpoint."""
    trainer = Trainer(new_model(), train_batches, VAL_BATCHES, cfg(epochs=1), tmp_path)
    trainer.fit()
    assert trainer.average is None
    latest = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())["current"]
    assert "averaged" not in json.loads((tmp_path / "checkpoint" / latest / "state.json").read_text())


# ---------------------------------------------------------------------------------------------------------------
# the command line

NAMES = Path(__file__).parent / "fixtures" / "runs" / "v0.1.0" / "data" / "names"


def test_cli_ema_is_recorded_used_and_kept_on_resume(tmp_path: Path, capsys):
    from rnnkit.cli import main
    from rnnkit.runs.text import DEFAULTS

    out = tmp_path / "run"
    args = ["train", "--task", "generate", "--data", str(NAMES), "--epochs", "2", "--hidden", "8", "--seed", "1"]
    assert main([*args, "--ema", "0.95", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["ema"] == 0.95 == config["options"]["ema"]
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0  # the saved weights are the average the run scored
    assert json.loads(capsys.readouterr().out)["test_nll_per_char"] == metrics["test_nll_per_char"]
    assert main([*args, "--ema", "0.9", "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot change ema" in err
    assert main([*args, "--ema", "1", "--out", str(tmp_path / "bad")]) == 2
    assert "argument --ema: expected a finite number in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    plain = tmp_path / "plain"
    assert main([*args, "--out", str(plain)]) == 0  # without --ema: the kind's default
    assert json.loads((plain / "config.json").read_text())["train"]["ema"] == DEFAULTS["generate"].get("ema", 0.0)
