"""The settings the name tasks' defaults use (issue 16): pooling over time, label smoothing, character dropout.

Each is checked against a reference computed by hand in float64 (torch.nn.GRU after a weight copy for the
pooled summary), and a run folder without them (rnnkit 0.1.0 and every run since) still loads and resumes with
the model it was built with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rnnkit.data.batching import Batch
from rnnkit.data.vocab import PAD, UNK
from rnnkit.runs import RunOptions
from rnnkit.runs.text import DEFAULTS, ClassifyKind, GenerateKind
from rnnkit.tasks import ModelConfig, build_model
from rnnkit.tasks.classifier import drop_tokens, pool_names

DATA = Path(__file__).parent / "fixtures" / "runs" / "v0.1.0" / "data" / "names"


def _clf(pool: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="classify", model="gru", vocab_size=12, num_classes=3, embed_dim=4, hidden_size=5, dropout=0.0,
        bidirectional=True, num_layers=2, pool=pool, **kw,
    )  # fmt: skip
    return build_model(cfg).double().eval()


def _batch() -> Batch:
    seqs = [[5, 6, 7], [8], [9, 10, 11, 4, 5]]
    inputs = torch.zeros(3, 6, dtype=torch.long)
    for i, s in enumerate(seqs):
        inputs[i, : len(s)] = torch.tensor(s)
    return Batch(inputs, torch.tensor([len(s) for s in seqs]), torch.tensor([0, 2, 1]))


def _reference_summary(clf, batch: Batch, parts: list[str]) -> torch.Tensor:
    """torch.nn.GRU with the classifier's weights, run on each sequence alone: last states, mean and max by hand."""
    H, L = clf.config.hidden_size, clf.config.num_layers
    ref = torch.nn.GRU(4, H, num_layers=L, bidirectional=True, batch_first=True).double()
    ref.load_state_dict({k: v for k, v in clf.core.state_dict().items() if k in ref.state_dict()}, strict=True)
    rows = []
    for i, n in enumerate(batch.lengths.tolist()):
        x = clf.inputs.embed(batch.inputs[i : i + 1, :n])  # (1, n, E)
        out, h_n = ref(x)  # (1, n, 2H), (2L, 1, H)
        got = {"last": torch.cat([h_n[-2, 0], h_n[-1, 0]]), "mean": out[0].mean(0), "max": out[0].max(0).values}
        rows.append(torch.cat([got[p] for p in parts]))
    return torch.stack(rows)


@pytest.mark.parametrize("pool", ["last", "mean", "max", "last+max", "last+mean+max"])
def test_pooled_summary_equals_torch_gru_per_sequence(pool: str) -> None:
    clf, batch = _clf(pool), _batch()
    parts = pool.split("+")
    summary = clf.encode(batch)
    assert summary.shape == (3, len(parts) * 2 * 5)
    torch.testing.assert_close(summary, _reference_summary(clf, batch, parts), rtol=0, atol=1e-10)
    assert clf.head.in_features == summary.shape[1]


def test_pooled_gradient_matches_the_reference_in_float64() -> None:
    clf, batch = _clf("last+mean+max"), _batch()
    H = clf.config.hidden_size
    ref = torch.nn.GRU(4, H, num_layers=2, bidirectional=True, batch_first=True).double()
    ref.load_state_dict(clf.core.state_dict(), strict=False)
    w = torch.randn(3, 6 * H, dtype=torch.float64)
    (clf.encode(batch) * w).sum().backward()
    rows = []
    for i, n in enumerate(batch.lengths.tolist()):
        out, h_n = ref(clf.inputs.embed(batch.inputs[i : i + 1, :n]).detach())
        rows.append(torch.cat([h_n[-2, 0], h_n[-1, 0], out[0].mean(0), out[0].max(0).values]))
    (torch.stack(rows) * w).sum().backward()
    ours = dict(clf.core.named_parameters())
    for name, p in ref.named_parameters():
        assert name in ours, name
        torch.testing.assert_close(ours[name].grad, p.grad, rtol=1e-9, atol=1e-11)


def test_pooling_ignores_padding() -> None:
    clf, batch = _clf("last+mean+max"), _batch()
    noisy = batch.inputs.clone()
    noisy[1, 1:] = 9  # any id in the padded tail
    torch.testing.assert_close(clf(Batch(noisy, batch.lengths))[0], clf(batch)[0], rtol=0, atol=0)


def test_pool_names_refuse_unknown_and_repeated_parts() -> None:
    assert pool_names("last+max") == ["last", "max"]
    for bad in ("", "sum", "last+last", "last+"):
        with pytest.raises(ValueError, match="pool must be"):
            pool_names(bad)


def test_label_smoothing_trains_on_smoothed_targets_and_evaluates_plain_nll() -> None:
    clf, batch = _clf("last", label_smoothing=0.2), _batch()
    logits, loss = clf(batch)  # eval mode: the plain cross-entropy
    logp = torch.log_softmax(logits, dim=1)
    plain = -logp[torch.arange(3), batch.targets].mean()
    assert math.isclose(loss.item(), plain.item(), rel_tol=1e-12)
    clf.train()  # dropout is 0: the same logits, the smoothed loss (1 - ε) NLL + ε · mean over classes of -log p
    _, smoothed = clf(batch)
    by_hand = (0.8 * -logp[torch.arange(3), batch.targets] + 0.2 * -logp.mean(1)).mean()
    assert math.isclose(smoothed.item(), by_hand.item(), rel_tol=1e-10)


def test_token_dropout_replaces_symbols_by_unk_only_while_training() -> None:
    ids = torch.tensor([[5, 6, 7, PAD], [8, 9, PAD, PAD]])
    torch.manual_seed(0)
    dropped = drop_tokens(ids, 0.5)
    assert ((dropped == ids) | (dropped == UNK)).all() and (dropped[ids == PAD] == PAD).all()
    assert (dropped == UNK).any()
    torch.manual_seed(0)  # the same draws: a symbol is replaced exactly where a uniform number falls below p
    hit = (torch.rand(ids.shape) < 0.5) & (ids != PAD)
    assert torch.equal(dropped, ids.masked_fill(hit, UNK))
    assert torch.equal(drop_tokens(ids, 0.0), ids)
    clf, batch = _clf("last", token_dropout=0.5), _batch()
    torch.testing.assert_close(clf(batch)[0], _clf("last")(batch)[0], rtol=0, atol=0)  # eval: no dropout


def test_a_saved_model_config_without_the_new_settings_builds_the_old_model() -> None:
    cfg = ModelConfig(task="classify", vocab_size=9, num_classes=2)
    d = cfg.to_dict()
    assert not {"pool", "label_smoothing", "token_dropout", "ensemble"} & set(d)  # written as before
    assert ModelConfig.from_dict(d) == cfg
    new = ModelConfig(task="classify", vocab_size=9, num_classes=2, pool="last+max", label_smoothing=0.1)
    assert ModelConfig.from_dict(new.to_dict()) == new


@pytest.mark.parametrize("kind", [ClassifyKind(), GenerateKind()])
def test_restore_takes_the_new_settings_from_the_saved_model(kind) -> None:
    """A run written before the settings existed (no key in its model section, none in its options) resumes with
    the model it was built with, not with today's defaults; one written with them keeps its own."""
    saved = {
        "model": {**ModelConfig(task=kind.name).to_dict(), "window": 5},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.01},
        "data": {
            "data": str(DATA), "seed": 0, "text_column": None, "label_column": None, "unit": "char",
            "fold_ascii": False, "conditional": True,
        },
    }  # fmt: skip
    old = kind.options_from_config(saved, RunOptions())
    assert old.options["token_dropout"] == 0.0
    if kind.name == "classify":
        assert old.options["pool"] == "last" and old.options["label_smoothing"] == 0.0
    saved["model"]["token_dropout"] = 0.3
    assert kind.options_from_config(saved, RunOptions()).options["token_dropout"] == 0.3
    record = {"task": kind.name, "options": {}}
    with_record = {**saved, "options": record}
    assert kind.restore(with_record, RunOptions()).options["token_dropout"] == 0.3
    assert set(DEFAULTS[kind.name]) >= {"token_dropout"}


def test_cli_flags_reach_the_model_and_resume(tmp_path: Path, capsys) -> None:
    from rnnkit.cli import main

    out = tmp_path / "run"
    tiny = ["--data", str(DATA), "--epochs", "1", "--hidden", "8", "--threads", "1", "--out", str(out)]
    flags = ["--pool", "last+mean", "--label-smoothing", "0.1", "--token-dropout", "0.2"]
    assert main(["train", *tiny, *flags]) == 0
    model = json.loads((out / "config.json").read_text())["model"]
    assert (model["pool"], model["label_smoothing"], model["token_dropout"]) == ("last+mean", 0.1, 0.2)
    assert main(["train", "--resume", "--out", str(out)]) == 0  # finished: returns at once, same settings
    assert main(["predict", str(out), "Anna"]) == 0
    capsys.readouterr()
    assert main(["train", *tiny[:-2], "--out", str(tmp_path / "g"), "--task", "generate", "--pool", "max"]) == 2
    assert "--pool is for --task classify" in capsys.readouterr().err
    assert main(["train", *tiny[:-2], "--out", str(tmp_path / "b"), "--label-smoothing", "1.5"]) == 2
    assert "--label-smoothing" in capsys.readouterr().err
    assert main(["train", *tiny[:-2], "--out", str(tmp_path / "p"), "--pool", "sum"]) == 2  # a usage error
    assert "pool must be last, mean, max" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_text_classify_ensemble_averages_its_members_probabilities(tmp_path: Path, capsys) -> None:
    from rnnkit.cli import main
    from rnnkit.data import collate_classification
    from rnnkit.runs import load_run
    from rnnkit.runs.text import predict, saved_test_data

    out = tmp_path / "ens"
    tiny = ["--data", str(DATA), "--epochs", "1", "--hidden", "8", "--threads", "1", "--ensemble", "2"]
    assert main(["train", *tiny, "--out", str(out)]) == 0
    capsys.readouterr()
    run = load_run(out)
    assert run.config["model"]["ensemble"] == 2 and len(run.model.members) == 2
    names = saved_test_data(run).items[:4]
    got = predict(run, names, top_k=len(run.classes))
    batch = collate_classification([run.vocab.encode(n) for n in names])
    mean = sum(m.predict_proba(batch) for m in run.model.members) / 2  # (N, C), each member alone
    member = run.parts["ngram"]  # the run's count member, mixed with the members' mean (tests/test_counts.py)
    w = member.weight
    mean = (1 - w) * mean + w * torch.from_numpy(member.probabilities([run.vocab.encode(n) for n in names]))
    for i, row in enumerate(got):
        for c, p in row:
            assert math.isclose(p, float(mean[i, run.classes.index(c)]), rel_tol=1e-5, abs_tol=1e-7)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ensemble"] == 2 and len(metrics["members"]) == 2
