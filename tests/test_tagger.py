"""The synced many→many tagger, CoNLL tagging data, and the ``tag`` task app end to end.

Covered: a padded batch equals each sequence alone (float64, outputs and gradients) for recurrent and window
cores; the loss equals a hand computation (padding ignored whatever its targets hold); ``predict_proba`` and
``predict``; a unidirectional GRU learns running parity (label_t = x_1 xor … xor x_t) to ≥ 0.99 per-step
accuracy in ~1 s; the CoNLL reader (comments, tabs or spaces, extra columns, -DOCSTART-, ragged lines named by
number), vocabularies, the collate and the seeded split; ``rnnkit train --task tag`` / ``evaluate`` / ``predict``
on a generated CoNLL file whose tag depends on the token and its right neighbour (a bidirectional GRU, the
default, learns it), and the one-line error contract. Everything is tiny and seeded: ~10 s on 2 CPU cores.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

import rnnkit.runs.tag  # noqa: F401  (registers the tag kind)
from rnnkit import cli
from rnnkit.data.batching import IGNORE_INDEX, Batch
from rnnkit.data.tagging import (
    TaggedSequences,
    build_tag_list,
    build_word_vocab,
    collate_tagging,
    encode_tags,
    encode_tokens,
    parse_conll,
    read_conll,
    split_sequences,
    write_conll,
)
from rnnkit.data.vocab import PAD, UNK
from rnnkit.runs import load_run
from rnnkit.tasks import ModelConfig, build_model
from rnnkit.tasks.tagger import SequenceTagger
from rnnkit.train import evaluate


def _tagger(model: str = "gru", bidirectional: bool = True, **kw) -> SequenceTagger:
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="tag",
        model=model,
        vocab_size=10,
        num_classes=3,
        embed_dim=4,
        hidden_size=5,
        dropout=0.0,
        bidirectional=bidirectional,
        window=3,
        **kw,
    )
    return SequenceTagger(cfg).double()


SEQS = [[4, 5, 6], [7], [8, 9, 4, 5, 6]]
TAGS = [[0, 1, 2], [2], [1, 1, 0, 2, 0]]


# ------------------------------------------------------------------------------------------------ the model
@pytest.mark.parametrize(
    ("model", "bidirectional", "layers"), [("gru", True, 2), ("lstm", False, 1), ("window", False, 1)]
)
def test_padded_batch_equals_each_sequence_alone_with_grads(model, bidirectional, layers):
    tagger = _tagger(model, bidirectional, num_layers=layers)
    batch = collate_tagging(SEQS, TAGS)
    batch.inputs[0, 3:] = 9  # whatever the padded tail holds, it changes nothing
    logits, loss = tagger(batch)
    n = sum(map(len, SEQS))
    grads_batch = torch.autograd.grad(loss * n, list(tagger.parameters()))  # the sum of the per-step losses
    total = 0.0
    for b, (s, t) in enumerate(zip(SEQS, TAGS, strict=True)):
        alone, l_b = tagger(collate_tagging([s], [t]))
        torch.testing.assert_close(logits[b, : len(s)], alone[0], rtol=0, atol=1e-12)
        total = total + l_b * len(s)
    grads_alone = torch.autograd.grad(total, list(tagger.parameters()))
    for ga, gb in zip(grads_alone, grads_batch, strict=True):
        torch.testing.assert_close(ga, gb, rtol=0, atol=1e-12)


def test_loss_equals_a_hand_computation_and_ignores_padding():
    tagger = _tagger()
    batch = collate_tagging(SEQS, TAGS)
    batch.targets[0, 1] = IGNORE_INDEX  # an ignored step inside a sequence
    logits, loss = tagger(batch)
    terms = []
    for b, tags in enumerate(batch.targets.tolist()):
        for t, y in enumerate(tags[: int(batch.lengths[b])]):
            if y != IGNORE_INDEX:
                row = logits[b, t].tolist()
                terms.append(math.log(sum(math.exp(v) for v in row)) - row[y])
    assert math.isclose(loss.item(), sum(terms) / len(terms), rel_tol=1e-12)
    # targets in the padded tail that are not IGNORE_INDEX still never count
    noisy = batch.targets.clone()
    noisy[1, 1:] = 2
    assert tagger(Batch(batch.inputs, batch.lengths, noisy))[1].item() == loss.item()
    assert tagger(Batch(batch.inputs, batch.lengths))[1] is None


def test_predict_proba_and_predict():
    tagger = _tagger().train()
    batch = collate_tagging(SEQS)
    probs = tagger.predict_proba(batch)
    assert tagger.training  # the mode is restored
    mask = torch.arange(5).unsqueeze(0) < batch.lengths.unsqueeze(1)
    torch.testing.assert_close(probs.sum(-1), mask.double())  # rows sum to 1, zero at padding
    pred = tagger.predict(batch)
    assert [len(p) for p in pred] == [3, 1, 5]
    assert pred == [probs[b, : len(s)].argmax(-1).tolist() for b, s in enumerate(SEQS)]


def test_tagger_rejects_bad_configs_and_targets():
    with pytest.raises(ValueError, match="at least 2 tags, got num_classes=1"):
        SequenceTagger(ModelConfig(task="tag", vocab_size=9, num_classes=1))
    tagger = _tagger()
    batch = collate_tagging(SEQS, TAGS)
    with pytest.raises(ValueError, match=r"tag ids of shape \(B, T\) = \(3, 5\), got \(3,\)"):
        tagger(Batch(batch.inputs, batch.lengths, torch.tensor([0, 1, 2])))
    with pytest.raises(ValueError, match="no step to score"):
        tagger(Batch(batch.inputs, batch.lengths, torch.full_like(batch.targets, IGNORE_INDEX)))
    assert isinstance(build_model(ModelConfig(task="tag", vocab_size=9, num_classes=2)), SequenceTagger)


def _parity_batch(n: int, g: torch.Generator, max_len: int = 12) -> Batch:
    ids, tags = [], []
    for _ in range(n):
        bits = torch.randint(0, 2, (int(torch.randint(1, max_len + 1, (1,), generator=g)),), generator=g)
        ids.append((bits + 4).tolist())  # bit 0 → id 4, bit 1 → id 5
        tags.append((bits.cumsum(0) % 2).tolist())  # running parity
    return collate_tagging(ids, tags)


def test_unidirectional_gru_learns_running_parity():
    """Stated threshold: ≥ 0.99 per-step accuracy on 500 new sequences of 1–12 bits after 150 Adam steps."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="tag",
        model="gru",
        vocab_size=6,
        num_classes=2,
        embed_dim=4,
        hidden_size=16,
        dropout=0.0,
        bidirectional=False,
    )
    tagger = SequenceTagger(cfg)  # left to right: h_t can carry x_1 xor … xor x_t
    opt = torch.optim.Adam(tagger.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        _, loss = tagger(_parity_batch(32, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = _parity_batch(500, torch.Generator().manual_seed(1))
    assert evaluate(tagger, [test])["accuracy"] >= 0.99


# ------------------------------------------------------------------------------------------------ CoNLL data
CONLL = """# a comment line
The\tDET
cat   NOUN

-DOCSTART-\tO
Dogs\tNOUN
# comments may sit inside a sequence
bark\tVERB


"""


def test_parse_conll_reads_tabs_spaces_comments_and_docstart():
    data = parse_conll(CONLL, source="x.conll")
    assert data.tokens == [["The", "cat"], ["Dogs", "bark"]]
    assert data.tags == [["DET", "NOUN"], ["NOUN", "VERB"]]
    assert data.lines == [2, 6] and data.num_tokens == 4
    four = parse_conll("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n")  # CoNLL-2003: token first, tag last
    assert four.tokens == [["EU", "rejects"]] and four.tags == [["B-ORG", "O"]]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a\tX\nb\n", "line 2: 'b' has 1 columns, but the file's first token line has 2"),
        ("a\tX\n\nb c\tY\n", "line 3: 'b c\\\\tY' has 3 columns"),
        ("a\nb\n", "line 1: 'a' has no tag"),
        ("# only a comment\n\n", "holds no tokens"),
    ],
)
def test_parse_conll_rejects_ragged_and_empty_input(text, match):
    with pytest.raises(ValueError, match=match):
        parse_conll(text, source="bad.conll")


def test_untagged_files_and_the_round_trip(tmp_path: Path):
    assert parse_conll("a\nb\n\nc\n", require_tags=False).tags is None
    tokens, tags = [["x", "y"], ["z"]], [["A", "B"], ["A"]]
    back = read_conll(write_conll(tmp_path / "t.conll", tokens, tags))
    assert (back.tokens, back.tags) == (tokens, tags)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_conll(tmp_path / "missing.conll")
    with pytest.raises(ValueError, match="sequence 0 has 2 tokens but 1 tags"):
        TaggedSequences([["a", "b"]], [["X"]])


def test_vocab_tags_encoding_and_collate():
    tokens = [["the", "cat"], ["the", "dog"]]
    vocab = build_word_vocab(tokens, min_count=2)
    assert vocab.unit == "word" and vocab.symbols == ["the"]
    assert encode_tokens(vocab, ["the", "cat", "emu"]) == [vocab.id_of("the"), UNK, UNK]
    tags = build_tag_list([["B", "A"]], [["C"]])
    assert tags == ["A", "B", "C"]
    assert encode_tags(["C", "A"], {t: i for i, t in enumerate(tags)}) == [2, 0]
    with pytest.raises(ValueError, match="tag 'Z' is not one of the model's tags"):
        encode_tags(["Z"], {"A": 0})
    batch = collate_tagging([[4, 5, 6], [7]], [[0, 1, 0], [1]])
    assert batch.inputs.tolist() == [[4, 5, 6], [7, PAD, PAD]]
    assert batch.targets.tolist() == [[0, 1, 0], [1, IGNORE_INDEX, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="one tag per token"):
        collate_tagging([[4, 5]], [[0]])


def test_split_is_seeded_disjoint_and_keeps_duplicates_together():
    tokens = [[f"w{i}", f"v{i % 7}"] for i in range(50)] + [["w0", "v0"]] * 3  # three copies of sequence 0
    data = TaggedSequences(tokens, [["A", "B"]] * len(tokens))
    parts = split_sequences(data, val=0.1, test=0.2, seed=3)
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == list(range(len(tokens)))
    groups = {name: {tuple(tokens[i]) for i in idx} for name, idx in parts.items()}
    assert (len(groups["test"]), len(groups["val"]), len(groups["train"])) == (10, 5, 35)  # of 50 distinct
    where = {i: name for name, idx in parts.items() for i in idx}
    assert {where[i] for i in (0, 50, 51, 52)} == {where[0]}  # identical sentences share a part
    assert split_sequences(data, val=0.1, test=0.2, seed=3) == parts
    assert split_sequences(data, val=0.1, test=0.2, seed=4) != parts
    with pytest.raises(ValueError, match="too few for a train/val/test split"):
        split_sequences(TaggedSequences([["a"], ["b"]], None), val=0.1, test=0.1)


# ------------------------------------------------------------------------------------------------ the CLI app
WORDS = ["ka", "lo", "mi", "nu", "po", "ri"]
TINY = ["--hidden", "16", "--embed", "8", "--epochs", "10", "--batch-size", "16", "--lr", "1e-2", "--dropout", "0"]


def _tag_of(word: str, right: str | None) -> str:
    """The tag depends on the token and its right neighbour: whether the neighbour comes later in WORDS."""
    if right is None:
        return "END"
    return "UP" if WORDS.index(right) > WORDS.index(word) else "DOWN"


def make_conll(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    tokens = [[rng.choice(WORDS) for _ in range(rng.randint(3, 8))] for _ in range(n)]
    tags = [[_tag_of(w, s[i + 1] if i + 1 < len(s) else None) for i, w in enumerate(s)] for s in tokens]
    return write_conll(path, tokens, tags)


def rnnkit_main(capsys: pytest.CaptureFixture[str], *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.fixture(scope="module")
def tag_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("tag")
    data = make_conll(base / "train.conll", 240, seed=0)
    out = base / "run"
    assert cli.main(["train", "--task", "tag", "--data", str(data), "--out", str(out), *TINY]) == 0
    return out, data


def test_train_writes_a_tag_run_folder(tag_run):
    out, _ = tag_run
    for name in ("config.json", "split.json", "model.safetensors", "metrics.json", "curve.csv", "confusion.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["app"], metrics["task"], metrics["model"]) == ("tag", "tag", "gru")
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["bidirectional"] is True and config["classes"] == ["DOWN", "END", "UP"]
    assert metrics["num_train"] + metrics["num_val"] + metrics["num_test"] == 240
    # stated threshold: a bi-GRU tags the held-out tokens at ≥ 0.95, far above the majority-tag baseline
    assert metrics["test_token_accuracy"] >= 0.95 > metrics["majority_token_accuracy"] + 0.3
    assert 0.9 <= metrics["macro_f1"] <= 1.0 and metrics["test_loss"] > 0


def test_metrics_agree_with_the_trainer_and_with_predict(tag_run, capsys, tmp_path: Path):
    out, data = tag_run
    run = load_run(out)
    split = json.loads((out / "split.json").read_text())
    test = read_conll(data).subset(split["test"])
    metrics = json.loads((out / "metrics.json").read_text())
    # evaluate --json scores the saved test part exactly as training did
    code, stdout, _ = rnnkit_main(capsys, "evaluate", out, "--json")
    assert code == 0
    again = json.loads(stdout)
    for key in ("test_token_accuracy", "macro_f1", "majority_token_accuracy", "test_loss", "num_test_tokens"):
        assert again[key] == metrics[key], key
    # the trainer's per-step accuracy is the same number
    ids = [encode_tokens(run.vocab, t) for t in test.tokens]
    tag_ids = [[run.classes.index(t) for t in tags] for tags in test.tags]
    assert round(evaluate(run.model, [collate_tagging(ids, tag_ids)])["accuracy"], 4) == metrics["test_token_accuracy"]
    # predict --data on the test sentences gives the predictions the accuracy counted
    path = write_conll(tmp_path / "test.conll", test.tokens, test.tags)
    code, stdout, _ = rnnkit_main(capsys, "predict", out, "--data", path)
    assert code == 0
    pairs = [p.rsplit("/", 1) for line in stdout.splitlines() for p in line.split()]
    gold = [t for tags in test.tags for t in tags]
    assert len(pairs) == len(gold)
    assert (
        round(sum(p[1] == g for p, g in zip(pairs, gold, strict=True)) / len(gold), 4) == metrics["test_token_accuracy"]
    )


def test_predict_prints_token_slash_tag(tag_run, capsys):
    out, _ = tag_run
    code, stdout, _ = rnnkit_main(capsys, "predict", out, "ka mi lo", "po zz")
    assert code == 0
    lines = stdout.splitlines()
    assert len(lines) == 2
    assert [p.split("/")[0] for p in lines[0].split()] == ["ka", "mi", "lo"]
    assert [p.split("/")[0] for p in lines[1].split()] == ["po", "zz"]  # an unknown word is read as UNK
    # the tags follow the rule the data was made with (learned to ≥ 0.95; these three are unambiguous)
    assert lines[0].split() == ["ka/UP", "mi/DOWN", "lo/END"]


def test_evaluate_on_another_file(tag_run, capsys, tmp_path: Path):
    out, _ = tag_run
    other = make_conll(tmp_path / "other.conll", 30, seed=9)
    code, stdout, _ = rnnkit_main(capsys, "evaluate", out, "--data", other, "--json")
    metrics = json.loads(stdout)
    assert code == 0 and metrics["num_sequences"] == 30 and metrics["test_token_accuracy"] >= 0.9


def test_explicit_test_file_and_window_model(capsys, tmp_path: Path):
    data = make_conll(tmp_path / "train.conll", 80, seed=1)
    test = make_conll(tmp_path / "test.conll", 20, seed=2)
    out = tmp_path / "run"
    args = ["train", "--task", "tag", "--data", data, "--test-data", test, "--out", out, "--model", "window"]
    code, stdout, err = rnnkit_main(capsys, *args, "--window", "2", "--max-items", "60", *TINY[:4], "--epochs", "1")
    assert code == 0, err
    assert "test token accuracy" in stdout and "majority-tag baseline" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_test"] == 20 and json.loads((out / "split.json").read_text())["test"] is None
    held_out = {tuple(t) for t in read_conll(test).tokens}
    kept = [t for t in read_conll(data).tokens[:60] if tuple(t) not in held_out]  # the first 60, minus test ones
    assert metrics["num_train"] + metrics["num_val"] == len(kept)
    assert json.loads((out / "config.json").read_text())["model"]["bidirectional"] is False


def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path: Path, tag_run):
    ragged = tmp_path / "ragged.conll"
    ragged.write_text("a\tX\nb\tY\n\nc\n", encoding="utf-8")
    out = tmp_path / "new"
    assert_one_line_error(*rnnkit_main(capsys, "train", "--task", "tag", "--data", ragged, "--out", out), "line 4")
    assert_one_line_error(*rnnkit_main(capsys, "train", "--task", "tag", "--out", out), "needs --data")
    one_tag = write_conll(tmp_path / "one.conll", [["a", f"b{i}"] for i in range(12)], [["X", "X"]] * 12)
    assert_one_line_error(*rnnkit_main(capsys, "train", "--task", "tag", "--data", one_tag, "--out", out), "only")
    assert not out.exists()
    run, data = tag_run
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    args = ["train", "--task", "tag", "--data", ragged, "--out", run, "--overwrite"]
    assert_one_line_error(*rnnkit_main(capsys, *args), "line 4")
    assert_one_line_error(*rnnkit_main(capsys, "train", "--task", "tag", "--data", data, "--out", run), "already")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    unknown = write_conll(tmp_path / "unknown.conll", [["ka"]], [["NEW"]])
    assert_one_line_error(*rnnkit_main(capsys, "evaluate", run, "--data", unknown), "'NEW'", "line 1")
    assert_one_line_error(*rnnkit_main(capsys, "predict", run), "at least one item")
    assert_one_line_error(*rnnkit_main(capsys, "predict", run, "ka", "--beam", "2"), "--beam")


def test_a_hash_token_is_a_token_and_a_hash_line_a_comment() -> None:
    from rnnkit.data.tagging import parse_conll

    text = "# a comment line\nI\tPRP\npaid\tVBD\n#\t#\n5\tCD\n"
    data = parse_conll(text, "t.conll")
    assert data.tokens == [["I", "paid", "#", "5"]] and data.tags == [["PRP", "VBD", "#", "CD"]]
