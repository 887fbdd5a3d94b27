"""Seq2seq: the encoder–decoder against torch.nn references, padding, greedy and beam search against exhaustive
search, a reversal task learned, the CMU-dictionary reader and splits, and the ``seq2seq`` app end to end.

References: the model's logits equal a per-item recomputation with ``torch.nn`` cores (weights copied) and the
attention written out step by step; a padded batch equals each item alone, gradients included (float64);
greedy decoding is the argmax of a teacher-forced forward pass at every step; beam search of width 1 equals
greedy; a beam holding every candidate equals enumerating all outputs and scoring each with teacher-forced
forward passes (:meth:`Seq2Seq.score`). The dictionary counts come from an independent parse in this file.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import rnnkit.runs.kind
import rnnkit.runs.seq2seq as app  # the seq2seq kind
import rnnkit.train
from rnnkit import cli
from rnnkit.data.batching import IGNORE_INDEX
from rnnkit.data.g2p import (
    ARPABET,
    Lexicon,
    apply_lexicon_split,
    closest_reference,
    cmudict_path,
    g2p_scores,
    read_cmudict,
    read_pairs,
    split_lexicon,
)
from rnnkit.data.vocab import BOS, EOS, PAD, UNK
from rnnkit.runs import load_run
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.seq2seq import Seq2Seq, collate_pairs

REFERENCE_CORES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}  # rnnkit's "gru" is torch's reset-after form


def tiny(model: str = "gru", attention: bool = True, bidirectional: bool = True, layers: int = 1, **kw) -> Seq2Seq:
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="seq2seq",
        model=model,
        vocab_size=kw.pop("vocab_size", 9),
        target_vocab_size=kw.pop("target_vocab_size", 8),
        embed_dim=4,
        hidden_size=5,
        num_layers=layers,
        bidirectional=bidirectional,
        dropout=0.0,
        attention=attention,
        **kw,
    )
    return Seq2Seq(cfg).double().eval()


SOURCES = [[4, 5, 6], [7], [8, 4, 5, 6, 7], [5, 5]]
TARGETS = [[4, 5], [6, 7, 4, 5], [], [7]]


# ---------------------------------------------------------------------------------------------------------- batches
def test_collate_pairs_pads_both_sides_and_appends_eos():
    b = collate_pairs([[4, 5, 6], [7]], [[8], [9, 10, 11]])
    assert b.inputs.tolist() == [[4, 5, 6], [7, PAD, PAD]]
    assert b.lengths.tolist() == [3, 1]
    ign = IGNORE_INDEX
    assert b.targets.tolist() == [[8, EOS, ign, ign], [9, 10, 11, EOS]]
    assert collate_pairs([[4]]).targets is None
    with pytest.raises(ValueError, match="2 sources but 1 targets"):
        collate_pairs([[4], [5]], [[6]])
    with pytest.raises(ValueError, match="empty"):
        collate_pairs([[]], [[4]])


# ---------------------------------------------------------------------------------------------------------- forward
def reference_logits(m: Seq2Seq, src: list[int], tgt: list[int]) -> torch.Tensor:
    """One item, no padding: torch.nn cores with the model's weights, the bridge and Luong attention by hand."""
    cfg = m.config
    L, H, D = cfg.num_layers, cfg.hidden_size, 2 if cfg.bidirectional else 1
    cls = REFERENCE_CORES[cfg.model]
    enc = cls(cfg.embed_dim, H, L, batch_first=True, bidirectional=cfg.bidirectional).double()
    enc.load_state_dict(m.encoder.state_dict())
    dec = cls(cfg.embed_dim, H, L, batch_first=True).double()
    dec.load_state_dict(m.decoder.state_dict())
    e_out, e_state = enc(m.inputs.embed.weight[src].unsqueeze(0))  # (1, S, D·H)
    parts = e_state if isinstance(e_state, tuple) else (e_state,)
    init = []
    for j, part in enumerate(parts):
        layers = []
        for layer in range(L):
            cat = torch.cat([part[layer * D + d, 0] for d in range(D)])  # (D·H,)
            s = m.bridge[j][layer](cat)
            layers.append(torch.tanh(s) if j == 0 else s)
        init.append(torch.stack(layers).unsqueeze(1))  # (L, 1, H)
    dec_in = torch.tensor([BOS, *tgt])
    y, _ = dec(m.target_embed.weight[dec_in].unsqueeze(0), init[0] if len(init) == 1 else tuple(init))
    rows = []
    for t in range(y.shape[1]):
        h = y[0, t]  # (H,)
        if cfg.attention:
            scores = torch.stack([h @ (m.attn_key.weight @ e_out[0, s]) for s in range(len(src))])
            alpha = torch.exp(scores - scores.max())
            alpha = alpha / alpha.sum()
            context = sum(alpha[s] * e_out[0, s] for s in range(len(src)))
            h = torch.tanh(m.attn_out.weight @ torch.cat([context, h]) + m.attn_out.bias)
        rows.append(m.head.weight @ h + m.head.bias)
    return torch.stack(rows)  # (T, V')


@pytest.mark.parametrize("model", sorted(REFERENCE_CORES))
@pytest.mark.parametrize("attention", [True, False], ids=["attention", "plain"])
def test_forward_equals_torch_nn_reference_and_hand_loss(model, attention):
    m = tiny(model, attention, layers=2)
    batch = collate_pairs(SOURCES, TARGETS)
    logits, loss = m(batch)
    assert logits.shape == (4, 5, 8)
    total, count = 0.0, 0
    for i, (s, t) in enumerate(zip(SOURCES, TARGETS, strict=True)):
        ref = reference_logits(m, s, t)
        torch.testing.assert_close(logits[i, : len(t) + 1], ref, rtol=1e-10, atol=1e-10)
        logp = torch.log_softmax(ref, dim=-1)
        gold = [*t, EOS]
        total -= sum(float(logp[k, g].detach()) for k, g in enumerate(gold))
        count += len(gold)
    assert loss.item() == pytest.approx(total / count, rel=1e-10)


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru", "gru-before"])
@pytest.mark.parametrize("attention", [True, False], ids=["attention", "plain"])
def test_padded_batch_equals_each_item_alone_with_gradients(model, attention):
    m = tiny(model, attention, layers=2)
    params = [p for p in m.parameters() if p.requires_grad]
    batch = collate_pairs(SOURCES, TARGETS)
    logits, loss = m(batch)
    n_tokens = int((batch.targets != IGNORE_INDEX).sum())
    grads = torch.autograd.grad(loss * n_tokens, params, allow_unused=True)
    alone_grads = [torch.zeros_like(p) for p in params]
    for i, (s, t) in enumerate(zip(SOURCES, TARGETS, strict=True)):
        li, lossi = m(collate_pairs([s], [t]))
        torch.testing.assert_close(logits[i, : len(t) + 1], li[0], rtol=1e-10, atol=1e-12)
        item_grads = torch.autograd.grad(lossi * (len(t) + 1), params, allow_unused=True)
        for acc, g in zip(alone_grads, item_grads, strict=True):
            if g is not None:
                acc += g
    for p, g, ga in zip(params, grads, alone_grads, strict=True):
        torch.testing.assert_close(torch.zeros_like(p) if g is None else g, ga, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------- decoding
def sharpened(model: str, attention: bool, target_vocab_size: int = 8, seed: int = 0) -> Seq2Seq:
    """An untrained model with peaked, EOS-shy output distributions, so that outputs have various lengths."""
    m = tiny(model, attention, target_vocab_size=target_vocab_size)
    torch.manual_seed(seed)
    with torch.no_grad():
        m.head.weight.copy_(torch.randn_like(m.head.weight) * 2.0)
        m.head.bias.normal_(0.0, 1.0)
        m.head.bias[EOS] -= 1.0
    return m


@pytest.mark.parametrize("model", ["lstm", "gru"])
@pytest.mark.parametrize("attention", [True, False], ids=["attention", "plain"])
def test_greedy_is_the_argmax_of_teacher_forced_forward_passes(model, attention):
    m = sharpened(model, attention)
    outs = m.greedy(SOURCES, max_len=6)
    assert any(len(o) > 0 for o in outs)
    logits, _ = m(collate_pairs(SOURCES, outs))
    for i, out in enumerate(outs):
        row = logits[i].clone()
        row[:, [PAD, BOS, UNK]] = -float("inf")
        if len(out) == 6:  # max_len reached: EOS was forced
            assert row[: len(out)].argmax(-1).tolist() == out
        else:
            assert row[: len(out) + 1].argmax(-1).tolist() == [*out, EOS]
        assert all(4 <= s < 8 for s in out)


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru", "gru-before"])
@pytest.mark.parametrize("attention", [True, False], ids=["attention", "plain"])
def test_beam_of_width_one_is_greedy(model, attention):
    rng = random.Random(1)
    sources = [[rng.randrange(4, 9) for _ in range(rng.randint(1, 6))] for _ in range(12)]
    for seed in range(3):
        m = sharpened(model, attention, seed=seed)
        assert m.beam_search(sources, beam=1, max_len=7) == m.greedy(sources, max_len=7)


def partly_trained(model: str, symbols: int, seed: int, steps: int = 30) -> Seq2Seq:
    """A model after a few Adam steps on reversal over ``symbols`` letters: its outputs have lengths that follow the
    source, and its distributions are still flat enough that greedy decoding misses the best output."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    V = 4 + symbols
    cfg = ModelConfig(
        task="seq2seq", model=model, vocab_size=V, target_vocab_size=V, embed_dim=4, hidden_size=5,
        bidirectional=True, attention=True, dropout=0.0,
    )  # fmt: skip
    m = Seq2Seq(cfg).double()
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    for _ in range(steps):
        src = [[rng.randrange(4, V) for _ in range(rng.randint(1, 3))] for _ in range(16)]
        _, loss = m(collate_pairs(src, [s[::-1] for s in src]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.mark.parametrize(
    ("model", "symbols", "max_len"),
    [("gru", 2, 3), ("lstm", 2, 4), ("rnn", 3, 3)],
    ids=["gru-A2-n3", "lstm-A2-n4", "rnn-A3-n3"],
)
def test_beam_holding_every_candidate_equals_exhaustive_search(model, symbols, max_len):
    alphabet = list(range(4, 4 + symbols))
    # the candidates: every output of 0..max_len ordinary symbols (then EOS), the set beam_search documents
    candidates = [list(c) for n in range(max_len + 1) for c in itertools.product(alphabet, repeat=n)]
    assert len(candidates) == sum(symbols**n for n in range(max_len + 1))
    sources = [list(c) for n in (1, 2, 3) for c in itertools.product(alphabet, repeat=n)][:12]
    lengths, greedy_misses = set(), 0
    for seed in range(3):
        m = partly_trained(model, symbols, seed)
        best = []
        for src in sources:
            scores = m.score([src] * len(candidates), candidates)  # teacher-forced forward passes, one per candidate
            best.append(candidates[int(scores.argmax())])
        for beam in (len(candidates), len(candidates) + 7):
            assert m.beam_search(sources, beam=beam, max_len=max_len) == best
        lengths |= {len(b) for b in best}
        greedy_misses += sum(g != b for g, b in zip(m.greedy(sources, max_len), best, strict=True))
        assert all(o in candidates for o in m.beam_search(sources, beam=3, max_len=max_len))
    # the test has teeth: the exhaustive answers have various lengths and greedy decoding misses some of them
    assert len(lengths) > 1 and greedy_misses > 0


def test_decoding_and_construction_errors():
    m = tiny()
    with pytest.raises(ValueError, match="beam must be an integer ≥ 1, got 0"):
        m.beam_search([[4]], beam=0, max_len=3)
    with pytest.raises(ValueError, match="max_len must be an integer ≥ 1"):
        m.greedy([[4]], max_len=0)
    with pytest.raises(ValueError, match=r"source ids must lie in \[0, 9\), got 12"):
        m.greedy([[4, 12]], max_len=3)
    with pytest.raises(ValueError, match=r"needs batch\.targets"):
        m(collate_pairs([[4]]))
    with pytest.raises(ValueError, match="no recurrent state"):
        tiny("window")
    with pytest.raises(ValueError, match="target_vocab_size"):
        tiny(target_vocab_size=4)


def test_reversal_is_learned():
    """Reverse sequences of 2–6 symbols over 8: 400 Adam steps on fresh batches of 32 (lr 5e-3 decaying linearly
    to 0); greedy and beam-3 outputs are exactly right on ≥ 98% of 200 held-out sequences (seeds 0–3 give 100%)."""
    torch.manual_seed(0)
    rng = random.Random(0)
    V = 12

    def sample(n: int) -> tuple[list[list[int]], list[list[int]]]:
        src = [[rng.randrange(4, V) for _ in range(rng.randint(2, 6))] for _ in range(n)]
        return src, [s[::-1] for s in src]

    cfg = ModelConfig(
        task="seq2seq", model="gru", vocab_size=V, target_vocab_size=V, embed_dim=16, hidden_size=32,
        bidirectional=True, attention=True, dropout=0.0,
    )  # fmt: skip
    m = Seq2Seq(cfg)
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / 400)  # linear decay to 0
    test_src, test_tgt = sample(200)
    for _ in range(400):
        _, loss = m(collate_pairs(*sample(32)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    for outs in (m.greedy(test_src, max_len=8), m.beam_search(test_src, beam=3, max_len=8)):
        exact = sum(o == t for o, t in zip(outs, test_tgt, strict=True)) / len(test_tgt)
        assert exact >= 0.98, exact


# ---------------------------------------------------------------------------------------------------------- g2p data
def independent_cmudict_counts(keep_stress: bool) -> dict[str, set[tuple[str, ...]]]:
    """Parse the dictionary file again, another way: token lists, explicit character checks."""
    out: dict[str, set[tuple[str, ...]]] = {}
    for line in Path(cmudict_path()).read_text(encoding="utf-8").split("\n"):
        if "#" in line:
            line = line[: line.index("#")]
        tokens = line.split()
        if not tokens:
            continue
        word = tokens[0].lower()
        if word.endswith(")") and "(" in word:
            word = word[: word.rindex("(")]
        if not word or any(not ("a" <= ch <= "z" or ch == "'") for ch in word) or word.strip("'") == "":
            continue
        phones = tuple(t if keep_stress else "".join(ch for ch in t if not ch.isdigit()) for t in tokens[1:])
        out.setdefault(word, set()).add(phones)
    return out


@pytest.fixture(scope="module")
def cmu() -> Lexicon:
    return read_cmudict()


def test_cmudict_counts_grouping_and_stress(cmu):
    ref = independent_cmudict_counts(keep_stress=False)
    assert len(cmu) == len(ref) > 120_000
    assert cmu.num_pairs == sum(map(len, ref.values()))
    assert {w: set(p) for w, p in cmu.entries.items()} == ref
    assert cmu.entries["read"] == [("R", "EH", "D"), ("R", "IY", "D")]  # read, read(2) grouped, file order
    raw = Path(cmudict_path()).read_text(encoding="utf-8")
    assert re.search(r"^a\.m\. ", raw, re.M) and "a.m." not in cmu.entries  # dots and hyphens are dropped
    phones_file = Path(cmudict_path()).with_name("cmudict.phones").read_text(encoding="utf-8").split("\n")
    phonemes = {line.split()[0] for line in phones_file if line.strip()}
    symbols = {p for prons in cmu.entries.values() for pron in prons for p in pron}
    assert symbols == phonemes == set(ARPABET) and len(ARPABET) == 39
    stressed = read_cmudict(keep_stress=True)
    assert set(stressed.entries) == set(cmu.entries)
    assert {w: set(p) for w, p in stressed.entries.items()} == independent_cmudict_counts(keep_stress=True)
    s_symbols = {p for prons in stressed.entries.values() for pron in prons for p in pron}
    assert {p.rstrip("012") for p in s_symbols} == phonemes and "AH0" in s_symbols and len(s_symbols) > 39


def test_cmudict_split_is_by_distinct_word_nested_and_seeded(cmu):
    split = split_lexicon(cmu, val=0.05, test=0.1, seed=0)
    parts = [set(split.train.entries), set(split.val.entries), set(split.test.entries)]
    assert sum(map(len, parts)) == len(cmu) and set.union(*parts) == set(cmu.entries)
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert abs(len(parts[2]) - 0.1 * len(cmu)) <= 2 and abs(len(parts[1]) - 0.05 * len(cmu)) <= 2
    assert split.train.entries["read"] == cmu.entries["read"] or "read" not in parts[0]  # alternatives travel along
    small = split_lexicon(cmu, seed=0, max_items=2000)
    assert len(small.train) + len(small.val) + len(small.test) == 2000
    assert set(small.test.entries) <= parts[2] and set(small.train.entries) <= parts[0]
    again = apply_lexicon_split(cmu, json.loads(json.dumps(small.record)))
    assert again.test.entries == small.test.entries and again.train.entries == small.train.entries
    other = split_lexicon(cmu, seed=1, max_items=2000)
    assert set(other.test.entries) != set(small.test.entries)


def test_read_pairs_groups_alternatives_and_rejects_bad_lines(tmp_path):
    f = tmp_path / "pairs.tsv"
    f.write_text("ab\tB A\n\ncd\tD C\nab\tX\nab\tB A\n", encoding="utf-8")
    lex = read_pairs(f)
    assert lex.entries == {"ab": [("B", "A"), ("X",)], "cd": [("D", "C")]} and lex.num_pairs == 3
    f.write_text("ab\tB A\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs.tsv:2: expected 'source<TAB>target symbols'"):
        read_pairs(f)
    f.write_text("ab\t  \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs.tsv:1: the target is empty"):
        read_pairs(f)


def test_g2p_scores_by_hand():
    refs = [[("R", "EH", "D"), ("R", "IY", "D")], [("K", "AE", "T")], [("AH", "B", "AW", "T")]]
    hyps = [["R", "IY", "D"], ["K", "AH", "T", "S"], ["B", "AW", "T"]]
    # word 1 matches its second reference (0 edits of 3); word 2: 1 substitution + 1 insertion of 3;
    # word 3: 1 deletion of 4
    assert g2p_scores(refs, hyps) == {"wer": pytest.approx(2 / 3), "per": pytest.approx((0 + 2 + 1) / (3 + 3 + 4))}
    assert closest_reference(["R", "IY", "D"], refs[0]) == ("R", "IY", "D")
    assert closest_reference(["R", "D"], refs[0]) == ("R", "EH", "D")  # a tie: the first reference


# ---------------------------------------------------------------------------------------------------------- the app
TINY = ["--hidden", "12", "--embed", "8", "--batch-size", "16", "--dropout", "0.1", "--beam", "2"]


def rnnkit_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def reverse_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pairs file for the reversal task: 240 distinct strings over a–f → their letters reversed, upper case."""
    rng = random.Random(0)
    words: set[str] = set()
    while len(words) < 240:
        words.add("".join(rng.choice("abcdef") for _ in range(rng.randint(2, 5))))
    path = tmp_path_factory.mktemp("data") / "reverse.tsv"
    path.write_text("".join(f"{w}\t{' '.join(w[::-1].upper())}\n" for w in sorted(words)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reverse_run(tmp_path_factory: pytest.TempPathFactory, reverse_pairs: Path) -> Path:
    out = tmp_path_factory.mktemp("runs") / "rev"
    args = ["train", "--task", "seq2seq", "--data", reverse_pairs, *TINY, "--epochs", "3", "--out", out]
    assert cli.main([str(a) for a in args]) == 0
    return out


def test_app_trains_evaluates_and_predicts(capsys, reverse_run, reverse_pairs):
    files = {p.name for p in reverse_run.iterdir()}
    assert {"config.json", "split.json", "model.safetensors", "metrics.json", "curve.csv", "checkpoint"} <= files
    config = json.loads((reverse_run / "config.json").read_text())
    assert config["app"] == "seq2seq" and config["model"]["attention"] and config["model"]["task"] == "seq2seq"
    assert config["vocab"]["symbols"] == list("abcdef") and config["target_vocab"]["symbols"] == list("ABCDEF")
    assert config["train"]["max_minutes"] is None  # a pairs file trains without a time cap unless asked
    metrics = json.loads((reverse_run / "metrics.json").read_text())
    for key in ("test_wer", "test_per", "test_greedy_wer", "test_greedy_per", "test_loss", "train_seconds"):
        assert key in metrics
    assert metrics["app"] == metrics["task"] == "seq2seq" and metrics["beam"] == 2
    split = json.loads((reverse_run / "split.json").read_text())
    assert metrics["num_test"] == len(split["test"]) > 0 and metrics["num_train"] == len(split["train"])
    assert not set(split["train"]) & set(split["test"])

    # evaluate on the saved test split reproduces metrics.json (a second path to the same numbers)
    code, out, err = rnnkit_main(capsys, "evaluate", reverse_run, "--json")
    assert code == 0, err
    again = json.loads(out)
    for key in ("test_wer", "test_per", "test_greedy_wer", "test_greedy_per", "test_loss"):
        assert again[key] == metrics[key], key
    assert again["num_items"] == metrics["num_test"]

    # predict: one line per word, equal to the model's own beam search; --data reads a pairs file's sources
    run = load_run(reverse_run)
    words = split["test"][:4]
    code, out, err = rnnkit_main(capsys, "predict", reverse_run, *words)
    assert code == 0, err
    tv = app._vocabs(run)[1]
    expected = app.decode(run.model, [run.vocab.encode(w) for w in words], beam=2)
    assert out.splitlines() == [f"{w}: {tv.decode(h)}" for w, h in zip(words, expected, strict=True)]
    longest = max(len(w) for w in words)
    greedy = run.model.greedy([run.vocab.encode(w) for w in words], app.max_output_len(longest))
    code, out, err = rnnkit_main(capsys, "predict", reverse_run, *words, "--beam", "1")
    assert out.splitlines() == [f"{w}: {tv.decode(h)}" for w, h in zip(words, greedy, strict=True)]
    code, out, err = rnnkit_main(capsys, "predict", reverse_run, "--data", reverse_pairs)
    assert code == 0, err
    pairs = [line.split("\t") for line in reverse_pairs.read_text().splitlines()]
    predicted = dict(line.split(": ", 1) for line in out.splitlines())
    assert list(predicted) == [src for src, _ in pairs]

    # evaluate on the whole file agrees with scoring predict's outputs by hand
    code, out, err = rnnkit_main(capsys, "evaluate", reverse_run, "--data", reverse_pairs, "--json")
    assert code == 0, err
    on_file = json.loads(out)
    by_hand = g2p_scores([[tuple(tgt.split())] for _, tgt in pairs], [predicted[src].split() for src, _ in pairs])
    assert on_file["num_items"] == 240
    assert on_file["test_wer"] == round(by_hand["wer"], 4) and on_file["test_per"] == round(by_hand["per"], 4)


def test_app_errors_are_one_line_and_never_touch_a_run(capsys, reverse_run, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in reverse_run.iterdir()}
    code, _, err = rnnkit_main(capsys, "predict", reverse_run, "abz", "xa")
    assert code == 2 and err.count("\n") == 1 and "'z'" in err and "unknown character" in err
    code, _, err = rnnkit_main(capsys, "predict", reverse_run)
    assert code == 2 and "give words" in err
    missing = tmp_path / "missing.tsv"
    code, _, err = rnnkit_main(
        capsys, "train", "--task", "seq2seq", "--data", missing, "--out", reverse_run, "--overwrite"
    )
    assert code == 2 and "no such file" in err
    bad = tmp_path / "bad.tsv"
    bad.write_text("ab\tB A\nab B A\n", encoding="utf-8")
    code, _, err = rnnkit_main(capsys, "train", "--task", "seq2seq", "--data", bad, "--out", reverse_run, "--overwrite")
    assert code == 2 and "bad.tsv:2" in err
    code, _, err = rnnkit_main(capsys, "train", "--task", "seq2seq", "--data", bad, "--out", reverse_run)
    assert code == 2 and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in reverse_run.iterdir()} == before


def test_app_resume_after_interruption_gives_the_same_weights(capsys, tmp_path, monkeypatch, reverse_pairs):
    args = ["train", "--task", "seq2seq", "--data", reverse_pairs, *TINY, "--epochs", "2", "--seed", "3"]
    code, _, err = rnnkit_main(capsys, *args, "--out", tmp_path / "a")
    assert code == 0, err

    def interrupting_fit(*a, **kw):
        def on_step(trainer: rnnkit.train.Trainer) -> None:
            if trainer.state["step"] == trainer.state["steps_per_epoch"] + 3:  # in the middle of epoch 2
                trainer.request_stop()

        return rnnkit.train.fit(*a, on_step=on_step, **kw)

    with monkeypatch.context() as m:
        m.setattr(rnnkit.runs.kind, "fit", interrupting_fit)  # the train skeleton calls fit
        code, out, err = rnnkit_main(capsys, *args, "--out", tmp_path / "b")
    assert code == 0 and "(interrupted)" in out, err
    code, _, err = rnnkit_main(capsys, "train", "--task", "seq2seq", "--resume", "--out", tmp_path / "b", "--beam", "4")
    assert code == 2 and "cannot change beam" in err
    code, out, err = rnnkit_main(capsys, "train", "--task", "seq2seq", "--resume", "--out", tmp_path / "b")
    assert code == 0 and "resuming" in err, err
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = json.loads((tmp_path / "a" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert mb["stopped_reason"] == "completed"
    assert all(ma[k] == mb[k] for k in ("test_wer", "test_per", "test_loss", "best_epoch"))


def test_app_with_an_explicit_test_file(capsys, tmp_path, reverse_pairs):
    lines = reverse_pairs.read_text().splitlines()
    test_file = tmp_path / "test.tsv"
    test_file.write_text("\n".join(lines[:30]) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", "--task", "seq2seq", "--data", reverse_pairs, "--test-data", test_file, *TINY, "--epochs", "1"]
    args += ["--beam", "1"]  # greedy: the beam metrics are the greedy ones
    code, _, err = rnnkit_main(capsys, *args, "--out", out)
    assert code == 0, err
    split = json.loads((out / "split.json").read_text())
    test_words = sorted(line.split("\t")[0] for line in lines[:30])
    assert split["test"] == test_words and not set(split["train"]) & set(test_words) and split["val"]
    assert len(split["train"]) + len(split["val"]) == 240 - 30
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["beam"] == 1 and (metrics["test_wer"], metrics["test_per"]) == (
        metrics["test_greedy_wer"],
        metrics["test_greedy_per"],
    )
    code, stdout, err = rnnkit_main(capsys, "evaluate", out, "--json")  # the saved test file, read again
    assert code == 0, err
    again = json.loads(stdout)
    assert again["num_items"] == 30 and again["test_wer"] == metrics["test_wer"]


def test_app_on_the_cmu_dictionary(capsys, tmp_path):
    out = tmp_path / "g2p"
    args = ["train", "--task", "seq2seq", "--max-items", "300", "--epochs", "1", "--hidden", "8", "--embed", "4"]
    code, stdout, err = rnnkit_main(capsys, *args, "--beam", "2", "--out", out)
    assert code == 0, err
    assert "test WER" in stdout and "PER" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["data"] == "embedded:cmudict" and config["data"]["max_items"] == 300
    assert config["train"]["max_minutes"] == app.DEFAULT_MAX_MINUTES  # the safety net of the default data
    assert set(config["target_vocab"]["symbols"]) <= set(ARPABET)
    split = json.loads((out / "split.json").read_text())
    assert split["sizes"]["test"] + split["sizes"]["val"] + split["sizes"]["train"] == 300
    code, stdout, err = rnnkit_main(capsys, "predict", out, "Hello", "don't")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].startswith("Hello: ") and lines[1].startswith("don't: ")
    assert all(p in ARPABET for line in lines for p in line.split(": ", 1)[1].split())


def test_app_evaluate_after_an_explicit_validation_file(capsys, tmp_path, reverse_pairs):
    # split.json's "val" then lists words of the other file: evaluate must rebuild only the test part
    lines = reverse_pairs.read_text().splitlines()
    val_file = tmp_path / "val.tsv"
    val_file.write_text("\n".join(lines[:20]) + "\n", encoding="utf-8")
    train_file = tmp_path / "train.tsv"
    train_file.write_text("\n".join(lines[20:80]) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", "--task", "seq2seq", "--data", train_file, "--val-data", val_file, *TINY, "--epochs", "1"]
    code, _, err = rnnkit_main(capsys, *args, "--out", out)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    code, stdout, err = rnnkit_main(capsys, "evaluate", out, "--json")
    assert code == 0, err
    again = json.loads(stdout)
    assert again["num_items"] == metrics["num_test"] and again["test_wer"] == metrics["test_wer"]
