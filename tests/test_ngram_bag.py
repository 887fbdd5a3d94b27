"""The classifier's hashed character n-gram bag (``ModelConfig.ngram_buckets``, ``--ngram-buckets``; issue 16).

Checked against a hand-written float64 loop that frames each sequence alone as BOS … EOS, hashes every 1–5-gram
with the documented formula and sums the rows (forward and backward), for padding invariance, for the dropout
while training, and for the run folder and command line: a config without the keys builds the model it was built
with, bad values are one line and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnkit.data import collate_classification
from rnnkit.data.batching import Batch
from rnnkit.data.vocab import BOS, EOS
from rnnkit.tasks import ModelConfig, build_model
from rnnkit.tasks.classifier import NGRAM_ORDERS, HashedNgrams, ngram_hash

DATA = Path(__file__).parent / "fixtures" / "runs" / "v0.1.0" / "data" / "names"
BUCKETS = 97  # small, so that n-grams share rows as they do in a real bag


def _batch() -> Batch:
    """Three names of 3, 1 and 7 symbols, padded to 7 (the 1-symbol one is shorter than most n-grams)."""
    return collate_classification([[5, 6, 7], [8], [9, 10, 11, 4, 5, 6, 7]], [0, 2, 1])


def _hash(gram: list[int]) -> int:
    h = len(gram)
    for v in gram:
        h = (h * 1_000_003 + v) % BUCKETS
    return h


def _reference(bag: HashedNgrams, batch: Batch) -> torch.Tensor:
    """Each sequence alone: every n-gram of BOS x_1 … x_n EOS, its row of W, summed and divided by √(count)."""
    rows = []
    for b, n in enumerate(batch.lengths.tolist()):
        framed = [BOS, *batch.inputs[b, :n].tolist(), EOS]
        grams = [framed[j : j + k] for k in NGRAM_ORDERS for j in range(len(framed) - k + 1)]
        total = sum(bag.bag.weight[_hash(g)] for g in grams)
        rows.append(total / len(grams) ** 0.5)
    return torch.stack(rows)  # (B, C)


def _bag(dropout: float = 0.5) -> HashedNgrams:
    torch.manual_seed(0)
    bag = HashedNgrams(BUCKETS, 4, dropout).double().eval()
    torch.nn.init.normal_(bag.bag.weight)  # zero at the start; random here so that every row counts
    return bag


def test_the_hash_is_the_documented_polynomial() -> None:
    windows = torch.tensor([[1, 5, 6], [7, 8, 2], [3, 3, 3]])
    want = torch.tensor([_hash(w.tolist()) for w in windows])
    assert torch.equal(ngram_hash(windows, BUCKETS), want)
    big = torch.tensor([[2**31 - 1] * 5])  # the largest id: no int64 overflow on the way
    h = 5
    for _ in range(5):
        h = (h * 1_000_003 + 2**31 - 1) % 2**24
    assert ngram_hash(big, 2**24).tolist() == [h]


def test_the_bag_equals_the_hand_written_loop_forward_and_backward() -> None:
    bag, batch = _bag(), _batch()
    got = bag(batch.inputs, batch.lengths)
    want = _reference(bag, batch)
    assert got.shape == (3, 4) and want.abs().max() > 0.1
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    w = torch.randn(3, 4, dtype=torch.float64)
    (got * w).sum().backward()
    ours = bag.bag.weight.grad.clone()
    bag.zero_grad()
    (_reference(bag, batch) * w).sum().backward()
    assert ours.abs().sum() > 0
    torch.testing.assert_close(ours, bag.bag.weight.grad, rtol=0, atol=1e-12)


def test_padding_never_changes_the_bag() -> None:
    bag, batch = _bag(), _batch()
    noisy = batch.inputs.clone()
    noisy[1, 1:] = 9  # any id in the padded tail
    wider = torch.cat([batch.inputs, torch.full((3, 4), 7)], dim=1)  # more padding columns
    want = bag(batch.inputs, batch.lengths)
    torch.testing.assert_close(bag(noisy, batch.lengths), want, rtol=0, atol=0)
    torch.testing.assert_close(bag(wider, batch.lengths), want, rtol=0, atol=1e-12)
    short = batch.inputs[:, :1]  # T = 1 < the longest order: only the windows that fit
    torch.testing.assert_close(
        bag(short, torch.ones(3, dtype=torch.long)),
        _reference(bag, Batch(short, torch.ones(3, dtype=torch.long))),
        rtol=0,
        atol=1e-12,
    )


def test_dropout_only_while_training_and_renormalised() -> None:
    bag, batch = _bag(0.5), _batch()
    bag.train()
    torch.manual_seed(1)
    a = bag(batch.inputs, batch.lengths)
    assert not torch.allclose(a, _reference(bag, batch))  # some n-grams were dropped
    grams, inside = bag.grams(batch.inputs, batch.lengths)
    torch.manual_seed(1)
    keep = inside & (torch.rand(inside.shape) >= 0.5)
    want = torch.stack([bag.bag.weight[grams[b][keep[b]]].sum(0) / max(int(keep[b].sum()), 1) ** 0.5 for b in range(3)])
    torch.testing.assert_close(a, want, rtol=0, atol=1e-12)
    none = _bag(0.0).train()
    torch.testing.assert_close(none(batch.inputs, batch.lengths), _reference(none, batch), rtol=0, atol=1e-12)


def _clf(buckets: int) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="classify", model="gru", vocab_size=12, num_classes=3, embed_dim=4, hidden_size=5, dropout=0.0,
        bidirectional=True, ngram_buckets=buckets,
    )  # fmt: skip
    return build_model(cfg).double().eval()


def test_the_classifier_adds_the_bag_to_its_logits_and_starts_without_it() -> None:
    clf, batch = _clf(BUCKETS), _batch()
    plain = clf.head(clf.encode(batch))
    torch.testing.assert_close(clf(batch)[0], plain, rtol=0, atol=0)  # the bag starts at zero
    torch.nn.init.normal_(clf.bag.bag.weight)
    want = plain + _reference(clf.bag, batch)
    torch.testing.assert_close(clf(batch)[0], want, rtol=0, atol=1e-12)
    loss = clf(batch)[1]
    loss.backward()
    assert clf.bag.bag.weight.grad.abs().sum() > 0 and clf.head.weight.grad.abs().sum() > 0


def test_without_buckets_the_model_and_its_config_are_as_before() -> None:
    assert _clf(0).bag is None
    cfg = ModelConfig(task="classify", vocab_size=9, num_classes=2)
    assert "ngram_buckets" not in cfg.to_dict() and "ngram_dropout" not in cfg.to_dict()  # as before
    with_bag = ModelConfig(task="classify", vocab_size=9, num_classes=2, ngram_buckets=64, ngram_dropout=0.25)
    assert ModelConfig.from_dict(with_bag.to_dict()) == with_bag
    with pytest.raises(ValueError, match="needs token inputs"):
        build_model(ModelConfig(task="classify", input_features=3, num_classes=2, ngram_buckets=8))
    with pytest.raises(ValueError, match="needs token inputs"):
        build_model(ModelConfig(task="classify", model="window", vocab_size=9, num_classes=2, ngram_buckets=8))


def test_cli_flag_reaches_the_model_resumes_exports_and_refuses_bad_values(tmp_path: Path, capsys) -> None:
    from rnnkit.cli import main

    out = tmp_path / "run"
    tiny = ["--data", str(DATA), "--epochs", "1", "--hidden", "8", "--threads", "1"]
    assert main(["train", *tiny, "--ngram-buckets", "64", "--ngram-dropout", "0.25", "--out", str(out)]) == 0
    model = json.loads((out / "config.json").read_text())["model"]
    assert model["ngram_buckets"] == 64 and model["ngram_dropout"] == 0.25
    assert main(["train", "--resume", "--out", str(out)]) == 0
    assert main(["predict", str(out), "Anna"]) == 0
    assert main(["evaluate", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", *tiny, "--ngram-buckets", "0", "--out", str(tmp_path / "none")]) == 0
    assert "ngram_buckets" not in json.loads((tmp_path / "none" / "config.json").read_text())["model"]
    for bad in (["--ngram-buckets", "-1"], ["--ngram-buckets", str(2**24 + 1)], ["--ngram-dropout", "1"]):
        assert main(["train", *tiny, *bad, "--out", str(tmp_path / "b")]) == 2
        assert bad[0] in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main(["train", *tiny, "--task", "generate", "--ngram-buckets", "4", "--out", str(tmp_path / "g")]) == 2
    assert "--ngram-buckets is for --task classify" in capsys.readouterr().err
    assert main(["train", *tiny, "--model", "window", "--ngram-buckets", "4", "--out", str(tmp_path / "w")]) == 2
    assert "--ngram-buckets" in capsys.readouterr().err


def test_the_default_text_classifier_has_the_bag() -> None:
    from rnnkit.runs.text import DEFAULTS

    assert DEFAULTS["classify"]["ngram_buckets"] == 32768 and DEFAULTS["classify"]["ngram_dropout"] == 0.5
