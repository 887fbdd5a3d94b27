"""The classifier's character n-gram branch (``ModelConfig.ngram_filters``, ``--ngram-filters``; issue 16).

Checked against a hand-written float64 loop over every window of each sequence alone (forward and backward), for
padding invariance, and for the run folder: a config without the key builds the model it was built with.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnkit.data.batching import Batch
from rnnkit.tasks import ModelConfig, build_model
from rnnkit.tasks.classifier import NGRAM_WIDTHS

DATA = Path(__file__).parent / "fixtures" / "runs" / "v0.1.0" / "data" / "names"
F = 3  # filters per width


def _clf(pool: str = "last", filters: int = F) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="classify", model="gru", vocab_size=12, num_classes=3, embed_dim=4, hidden_size=5, dropout=0.0,
        bidirectional=True, pool=pool, ngram_filters=filters,
    )  # fmt: skip
    return build_model(cfg).double().eval()


def _batch() -> Batch:
    seqs = [[5, 6, 7], [8], [9, 10, 11, 4, 5, 6, 7]]
    inputs = torch.zeros(3, 8, dtype=torch.long)
    for i, s in enumerate(seqs):
        inputs[i, : len(s)] = torch.tensor(s)
    return Batch(inputs, torch.tensor([len(s) for s in seqs]), torch.tensor([0, 2, 1]))


def _reference(clf, batch: Batch) -> torch.Tensor:
    """Each sequence alone, each width k, filter f and window start s in [−(k−1), n−1]: ReLU(b_f + Σ_i W_f[:, i] ·
    e_{s+i}) with e = 0 outside the sequence, then the max over the windows; the widths' features concatenated."""
    rows = []
    for b, n in enumerate(batch.lengths.tolist()):
        e = clf.inputs.embed(batch.inputs[b, :n])  # (n, E)
        feats = []
        for k, conv in zip(NGRAM_WIDTHS, clf.ngrams.convs, strict=True):
            for f in range(conv.out_channels):
                best = None
                for s in range(-(k - 1), n):
                    v = conv.bias[f]
                    for i in range(k):
                        if 0 <= s + i < n:
                            v = v + (conv.weight[f, :, i] * e[s + i]).sum()
                    v = torch.relu(v)
                    best = v if best is None else torch.maximum(best, v)
                feats.append(best)
        rows.append(torch.stack(feats))
    return torch.stack(rows)  # (B, 4·F)


def test_ngram_features_equal_the_hand_written_loop() -> None:
    clf, batch = _clf(), _batch()
    x = clf.inputs(batch.inputs, batch.lengths)
    got = clf.ngrams(x, batch.lengths)
    assert got.shape == (3, len(NGRAM_WIDTHS) * F)
    torch.testing.assert_close(got, _reference(clf, batch), rtol=0, atol=1e-12)
    summary = clf.encode(batch)  # the core's last states, then the n-gram features
    assert summary.shape == (3, 2 * 5 + len(NGRAM_WIDTHS) * F) and clf.head.in_features == summary.shape[1]
    torch.testing.assert_close(summary[:, 10:], got, rtol=0, atol=0)
    torch.testing.assert_close(summary[:, :10], clf.last_states(batch), rtol=0, atol=0)


def test_ngram_gradient_matches_the_reference_in_float64() -> None:
    clf, batch = _clf(), _batch()
    w = torch.randn(3, len(NGRAM_WIDTHS) * F, dtype=torch.float64)
    (clf.ngrams(clf.inputs(batch.inputs, batch.lengths), batch.lengths) * w).sum().backward()
    ours = {n: p.grad.clone() for n, p in clf.named_parameters() if n.startswith(("ngrams.", "inputs.embed"))}
    clf.zero_grad()
    (_reference(clf, batch) * w).sum().backward()
    assert set(ours) >= {"ngrams.convs.0.weight", "ngrams.convs.3.bias", "inputs.embed.weight"}
    for name, grad in ours.items():
        torch.testing.assert_close(grad, dict(clf.named_parameters())[name].grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pool", ["last", "last+max"])
def test_ngram_branch_ignores_padding(pool: str) -> None:
    clf, batch = _clf(pool), _batch()
    noisy = batch.inputs.clone()
    noisy[1, 1:] = 9  # any id in the padded tail
    torch.testing.assert_close(clf(Batch(noisy, batch.lengths))[0], clf(batch)[0], rtol=0, atol=0)
    wider = torch.cat([batch.inputs, torch.full((3, 4), 7)], dim=1)  # more padding columns
    torch.testing.assert_close(clf(Batch(wider, batch.lengths))[0], clf(batch)[0], rtol=0, atol=1e-12)


def test_without_filters_the_model_and_its_config_are_as_before() -> None:
    assert _clf(filters=0).ngrams is None
    cfg = ModelConfig(task="classify", vocab_size=9, num_classes=2)
    assert "ngram_filters" not in cfg.to_dict()  # config.json written as before
    torch.manual_seed(0)
    old = build_model(cfg)
    torch.manual_seed(0)
    new = build_model(ModelConfig.from_dict({**cfg.to_dict(), "ngram_filters": 0}))
    for (a, p), (b, q) in zip(old.state_dict().items(), new.state_dict().items(), strict=True):
        assert a == b and torch.equal(p, q)
    with_filters = ModelConfig(task="classify", vocab_size=9, num_classes=2, ngram_filters=8)
    assert ModelConfig.from_dict(with_filters.to_dict()) == with_filters
    with pytest.raises(ValueError, match="needs a recurrent core"):
        build_model(ModelConfig(task="classify", model="window", vocab_size=9, num_classes=2, ngram_filters=8))


def test_cli_flag_reaches_the_model_resumes_and_refuses_bad_values(tmp_path: Path, capsys) -> None:
    from rnnkit.cli import main

    out = tmp_path / "run"
    tiny = ["--data", str(DATA), "--epochs", "1", "--hidden", "8", "--threads", "1"]
    assert main(["train", *tiny, "--ngram-filters", "4", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["ngram_filters"] == 4
    assert main(["train", "--resume", "--out", str(out)]) == 0
    assert main(["predict", str(out), "Anna"]) == 0
    assert main(["evaluate", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", *tiny, "--ngram-filters", "-1", "--out", str(tmp_path / "b")]) == 2
    assert "--ngram-filters" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main(["train", *tiny, "--task", "generate", "--ngram-filters", "4", "--out", str(tmp_path / "g")]) == 2
    assert "--ngram-filters is for --task classify" in capsys.readouterr().err
    assert main(["train", *tiny, "--model", "window", "--ngram-filters", "4", "--out", str(tmp_path / "w")]) == 2
    assert "--ngram-filters" in capsys.readouterr().err


def test_the_library_refuses_what_the_command_line_refuses(tmp_path: Path) -> None:
    from rnnkit.runs import RunOptions, train_run

    opts = RunOptions(task="classify", data=str(DATA), hidden_size=8, epochs=1, options={"ngram_filters": 5000})
    with pytest.raises(ValueError, match=r"--ngram-filters must be an integer in \[0, 4096\]"):
        train_run(opts, tmp_path / "big")
    assert not (tmp_path / "big").exists()
