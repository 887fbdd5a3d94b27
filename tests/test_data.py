"""Tests for rnnkit.data: vocabularies, file layouts, the embedded default, splits, collation and bucketing."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from rnnkit.data import (
    BOS,
    EOS,
    IGNORE_INDEX,
    PAD,
    UNK,
    Batch,
    BucketBatchSampler,
    LabeledItems,
    Vocab,
    apply_split,
    carve_validation,
    collate_classification,
    collate_generation,
    collate_sequences,
    default_names,
    exclude_items,
    fold_ascii,
    join_compound,
    load_data,
    read_csv,
    read_folder,
    read_lines,
    split_items,
)

# ---------------------------------------------------------------------------------------------------------------
# Vocab
# ---------------------------------------------------------------------------------------------------------------


def test_vocab_specials_and_round_trip():
    items = ["Ślusàrski", "Anna", "Jürgen", "O'Neil"]
    v = Vocab.build(items)
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)
    assert len(v) == 4 + len(set("".join(items)))
    assert v.symbols == sorted(v.symbols)  # deterministic order
    for s in items:
        ids = v.encode(s, add_bos=True, add_eos=True)
        assert ids[0] == BOS and ids[-1] == EOS and len(ids) == len(s) + 2
        assert min(ids[1:-1]) >= 4
        assert v.decode(ids) == s  # Unicode kept as is
    # decode stops at EOS and skips PAD/BOS
    ids = v.encode("Anna")
    assert v.decode([BOS, *ids, EOS, *v.encode("Jürgen"), PAD]) == "Anna"
    assert v.decode(torch.tensor([BOS, *ids, PAD, PAD])) == "Anna"
    with pytest.raises(ValueError, match="outside this vocabulary"):
        v.decode([len(v)])


def test_vocab_unknown_symbols_and_strict():
    v = Vocab.build(["abc", "abd"])
    assert v.encode("abz") == [v.id_of("a"), v.id_of("b"), UNK]
    assert v.decode(v.encode("abz")) == "ab\N{REPLACEMENT CHARACTER}"
    with pytest.raises(ValueError, match=r"unknown characters 'y', 'z' in 'zaby'"):
        v.encode("zaby", strict=True)
    assert v.encode("abc", strict=True) == v.encode("abc")


def test_vocab_min_count_word_unit_and_special_lookalikes():
    v = Vocab.build(["aab", "ac"], min_count=2)
    assert v.symbols == ["a"]
    w = Vocab.build(["the cat sat", "the <pad> dog"], unit="word")
    assert "<pad>" in w and w.id_of("<pad>") >= 4  # a data word never takes a special id
    ids = w.encode("the dog sat", add_eos=True)
    assert len(ids) == 4 and w.decode(ids) == "the dog sat"
    assert w.encode("the bird") == [w.id_of("the"), UNK]
    with pytest.raises(ValueError, match="unknown word 'bird'"):
        w.encode("the bird", strict=True)


def test_fold_ascii():
    assert fold_ascii("Ślusàrski") == "Slusarski"
    assert fold_ascii("Łukasz Żółć") == "Lukasz Zolc"
    assert fold_ascii("Jean-Claude O'Brien") == "Jean-Claude O'Brien"
    assert fold_ascii("Þórður Gauß 李") == "Thordur Gauss "
    v = Vocab.build(["Ślusàrski", "Nuñez"], fold_ascii=True)
    assert all(s.isascii() for s in v.symbols)
    assert v.decode(v.encode("Ślusàrski")) == "Slusarski"
    assert v.encode("Slusarski") == v.encode("Ślusàrski")


def test_vocab_json_round_trip_and_bad_input():
    v = Vocab.build(["Zoë", "Åsa"], fold_ascii=False)
    back = Vocab.from_dict(json.loads(json.dumps(v.to_dict())))
    assert back == v and back.encode("Zoë") == v.encode("Zoë")
    with pytest.raises(ValueError, match="not a saved vocabulary"):
        Vocab.from_dict({"unit": "char"})
    with pytest.raises(ValueError, match="unit must be"):
        Vocab.build(["a"], unit="byte")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero items"):
        Vocab.build([])
    with pytest.raises(TypeError):
        Vocab.build("abc")


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5))
def test_vocab_round_trip_property(items):
    v = Vocab.build(items)
    for s in items:
        assert v.decode(v.encode(s, add_bos=True, add_eos=True)) == s


# ---------------------------------------------------------------------------------------------------------------
# File layouts
# ---------------------------------------------------------------------------------------------------------------


def _names_folder(tmp_path: Path) -> Path:
    d = tmp_path / "names"
    d.mkdir()
    (d / "English.txt").write_text("Smith\n\n  Jones \nSmith\n", encoding="utf-8")
    (d / "French.txt").write_bytes("Dupont\r\nÉmile\r\n".encode())
    (d / "README.md").write_text("not data\n")
    return d


def test_read_folder(tmp_path):
    data = read_folder(_names_folder(tmp_path))
    assert data.items == ["Smith", "Jones", "Smith", "Dupont", "Émile"]
    assert data.labels == ["English"] * 3 + ["French"] * 2
    assert data.classes == ["English", "French"]
    assert data.label_ids() == [0, 0, 0, 1, 1]
    assert data.counts() == {"English": 3, "French": 2}
    data.require_classes(2)
    assert load_data(tmp_path / "names").items == data.items


def test_read_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"holds no \.txt files"):
        read_folder(empty)
    (empty / "Irish.txt").write_text("\n \n")
    with pytest.raises(ValueError, match=r"Irish\.txt is empty"):
        read_folder(empty)
    one = tmp_path / "one"
    one.mkdir()
    (one / "Irish.txt").write_text("Murphy\nKelly\n")
    data = read_folder(one)  # valid (generation) ...
    with pytest.raises(ValueError, match=r"1 class \('Irish'\); a classifier needs at least 2"):
        data.require_classes()  # ... but not for a classifier
    with pytest.raises(ValueError, match="has no labels"):
        LabeledItems(["a", "b"]).require_classes()
    latin = tmp_path / "latin"
    latin.mkdir()
    (latin / "German.txt").write_bytes(b"Hans\nJ\xfcrgen\n")
    with pytest.raises(ValueError, match=r"German\.txt is not UTF-8 text: byte 0xfc at offset 6"):
        read_folder(latin)


def test_read_lines(tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("\ufeffemma\nolivia\n\nava\n", encoding="utf-8")  # a BOM is dropped
    data = read_lines(f)
    assert data.items == ["emma", "olivia", "ava"] and data.labels is None and not data.is_labeled
    assert load_data(f).items == data.items
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="is empty"):
        read_lines(tmp_path / "blank.txt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_lines(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="no such path"):
        load_data(tmp_path / "nope")


def test_read_csv_layouts(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text('name,country\nSmith,England\n"Li, Wei",China\nWang,China\n')
    d = read_csv(f)
    assert d.items == ["Smith", "Li, Wei", "Wang"] and d.labels == ["England", "China", "China"]
    assert d.classes == ["China", "England"]
    # Two unnamed columns: the one with fewer distinct values is the label, whichever side it is on.
    g = tmp_path / "b.csv"
    g.write_text("lang;word\nde;Hund\nde;Katze\nen;dog\n")
    d = load_data(g)
    assert d.items == ["Hund", "Katze", "dog"] and d.labels == ["de", "de", "en"]
    # Several columns: named explicitly (by name or index).
    h = tmp_path / "c.tsv"
    h.write_text("id\tx\tkind\tnote\n1\tab\tA\t-\n2\tcd\tB\t-\n")
    d = read_csv(h, text_column="x", label_column="kind")
    assert d.items == ["ab", "cd"] and d.labels == ["A", "B"]
    assert read_csv(h, text_column=1, label_column=2).labels == ["A", "B"]
    assert read_csv(h, text_column="x").labels is None  # a named text column and no label-like column
    # One column: unlabeled.
    u = tmp_path / "u.csv"
    u.write_text("text\nhello\nworld\n")
    assert read_csv(u).labels is None


def test_read_csv_errors(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("name,country\nSmith,England\nJones\n")
    with pytest.raises(ValueError, match=r"line 3: 1 fields, but the header has 2"):
        read_csv(f)
    f.write_text("name,country\nSmith,England\n")
    with pytest.raises(ValueError, match=r"no label column 'lang'; its columns are \['name', 'country'\]"):
        read_csv(f, label_column="lang")
    f.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="name the text and label columns"):
        read_csv(f)
    f.write_text("name,country\n,England\n")
    with pytest.raises(ValueError, match="line 2: empty text"):
        read_csv(f)
    f.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        read_csv(f)
    f.write_text("name,country\n")
    with pytest.raises(ValueError, match="no rows"):
        read_csv(f)
    (tmp_path / "n.txt").write_text("x\n")
    with pytest.raises(ValueError, match=r"apply to \.csv/\.tsv files only"):
        load_data(tmp_path / "n.txt", text_column="x")


# ---------------------------------------------------------------------------------------------------------------
# The embedded default
# ---------------------------------------------------------------------------------------------------------------


def test_join_compound():
    assert join_compound("Ai+Bin") == "Aibin"
    assert join_compound("Abdel+Aziz") == "Abdelaziz"
    assert join_compound("Maria+da+Glória") == "Mariadaglória"
    assert join_compound("Anna") == "Anna"


def test_default_names_country():
    t0 = time.perf_counter()
    data = default_names()
    assert time.perf_counter() - t0 < 5
    assert len(data.classes) == 18
    assert {"China", "East Frisia", "Arabia/Persia", "U.S.A.", "the Netherlands"} <= set(data.classes)
    assert "other countries" not in data.classes
    assert 20_000 < len(data) < 35_000
    assert not any("+" in s for s in data.items)  # compounds joined
    assert len(set(data.items)) == len(data.items)  # one line per name, and no name in two categories
    assert all(s and s == s.strip() for s in data.items)
    label = dict(zip(data.items, data.labels, strict=True))
    assert label["Aibin"] == "China"  # "Ai+Bin" in the file
    assert any(not s.isascii() for s in data.items)  # Unicode kept (e.g. Icelandic "Aðalsteinn")
    counts = data.counts()
    assert min(counts.values()) > 500 and max(counts, key=counts.get) == "China"
    # Cached, but every call returns a fresh container.
    data.items.clear()
    t0 = time.perf_counter()
    again = default_names()
    assert time.perf_counter() - t0 < 0.5 and len(again) == len(label)


def test_default_names_gender_and_bad_task():
    data = default_names("gender")
    assert data.classes == ["F", "M"] and set(data.labels) == {"F", "M"}
    assert len(set(data.items)) == len(data.items) > 30_000
    assert not any("+" in s for s in data.items)
    with pytest.raises(ValueError, match="task must be"):
        default_names("age")  # type: ignore[arg-type]
    assert len(default_names(num_categories=5).classes) == 5


# ---------------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------------


def _synthetic(seed: int = 0) -> LabeledItems:
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for c, n in (("a", 200), ("b", 100), ("c", 20)):
        for i in range(n):
            items.append(f"{c}{i}x{rng.integers(1000)}")
            labels.append(c)
    items += ["a0x", "a0x", "shared", "shared", "shared"]  # an exact duplicate; a string with two labels
    labels += ["a", "a", "a", "b", "b"]
    return LabeledItems(items, labels)


def _distinct(split):
    return [set(part.items) for part in (split.train, split.val, split.test)]


def test_split_deterministic_disjoint_and_stratified():
    data = _synthetic()
    s1, s2 = split_items(data, seed=3), split_items(data, seed=3)
    assert s1.record == s2.record and s1.train.items == s2.train.items
    assert split_items(data, seed=4).record["test"] != s1.record["test"]
    tr, va, te = _distinct(s1)
    assert not (tr & va or tr & te or va & te)  # no string in two splits
    assert tr | va | te == set(data.items)
    # exact duplicate removed; the two-label string keeps both labels, in one split
    n_pairs = len(set(zip(data.items, data.labels, strict=True)))
    assert len(s1.train) + len(s1.val) + len(s1.test) == n_pairs
    shared_part = next(p for p in (s1.train, s1.val, s1.test) if "shared" in p.items)
    pairs = zip(shared_part.items, shared_part.labels, strict=True)
    assert sorted(lab for it, lab in pairs if it == "shared") == ["a", "b"]
    # stratified: each class ~10% in val and test
    for part in (s1.val, s1.test):
        c = Counter(part.labels)
        assert abs(c["a"] - 20) <= 1 and abs(c["b"] - 10) <= 1 and abs(c["c"] - 2) <= 1
        assert part.classes == data.classes
    assert json.loads(json.dumps(s1.record))["sizes"] == s1.record["sizes"]


def test_apply_split_carve_and_exclude():
    data = _synthetic()
    s = split_items(data, seed=1)
    again = apply_split(data, json.loads(json.dumps(s.record)))
    assert again.train.items == s.train.items and again.test.items == s.test.items
    with pytest.raises(ValueError, match="the data changed"):
        apply_split(LabeledItems([*data.items, "new"], [*data.labels, "a"]), s.record)
    c = carve_validation(s.train, val=0.2, seed=0)
    assert len(c.test) == 0 and not set(c.train.items) & set(c.val.items)
    assert abs(len(set(c.val.items)) - 0.2 * len(set(s.train.items))) <= 1
    trimmed = exclude_items(data, s.test)
    assert not set(trimmed.items) & set(s.test.items) and trimmed.classes == data.classes


def test_split_unlabeled_small_and_errors():
    data = LabeledItems([f"w{i}" for i in range(10)])
    s = split_items(data)
    assert (len(s.train), len(s.val), len(s.test)) == (8, 1, 1) and s.train.labels is None
    with pytest.raises(ValueError, match="needs at least 3"):
        split_items(LabeledItems(["a", "b", "a"]))
    with pytest.raises(ValueError, match=r"val fraction must be in \[0, 1\)"):
        split_items(data, val=1.5)
    with pytest.raises(ValueError, match="val \\+ test must be < 1"):
        split_items(data, val=0.5, test=0.5)


def test_split_default_dataset():
    data = default_names()
    s = split_items(data, seed=0)
    sizes = s.record["sizes"]
    assert sum(sizes.values()) == len(data)
    assert abs(sizes["test"] / len(data) - 0.1) < 0.002 and abs(sizes["val"] / len(data) - 0.1) < 0.002
    tr, va, te = _distinct(s)
    assert not (tr & va or tr & te or va & te)
    assert set(s.test.labels) == set(data.classes)


# ---------------------------------------------------------------------------------------------------------------
# Collation
# ---------------------------------------------------------------------------------------------------------------


def test_collate_classification():
    b = collate_classification([[5, 6, 7], [8], [9, 10]], [2, 0, 1])
    assert isinstance(b, Batch) and len(b) == 3
    assert b.inputs.dtype == torch.long and b.inputs.shape == (3, 3)
    assert b.inputs.tolist() == [[5, 6, 7], [8, PAD, PAD], [9, 10, PAD]]
    assert b.lengths.tolist() == [3, 1, 2] and b.targets.tolist() == [2, 0, 1] and b.condition is None
    assert collate_classification([[4]]).targets is None
    with pytest.raises(ValueError, match="item 1 of the batch is empty"):
        collate_classification([[4], []], [0, 1])
    with pytest.raises(ValueError, match="2 items but 1 labels"):
        collate_classification([[4], [5]], [0])
    assert b.to("cpu").inputs.equal(b.inputs)


def test_collate_generation():
    b = collate_generation([[5, 6, 7], [8]], conditions=[1, 0])
    assert b.inputs.tolist() == [[BOS, 5, 6, 7], [BOS, 8, PAD, PAD]]
    assert b.targets.tolist() == [[5, 6, 7, EOS], [8, EOS, IGNORE_INDEX, IGNORE_INDEX]]
    assert b.lengths.tolist() == [4, 2]
    assert b.condition.dtype == torch.long and b.condition.tolist() == [1, 0]
    v = collate_generation([[5], []], conditions=np.ones((2, 3)))
    assert v.condition.dtype == torch.float32 and v.condition.shape == (2, 3)
    assert v.targets.tolist() == [[5, EOS], [EOS, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="conditions must be 2"):
        collate_generation([[5], [6]], conditions=[1])
    # Round trip with a vocabulary
    voc = Vocab.build(["ab", "b"])
    g = collate_generation([voc.encode("ab"), voc.encode("b")])
    assert voc.decode(g.targets[0].clamp(min=0)) == "ab"
    assert voc.decode(g.inputs[1]) == "b"


def test_collate_sequences():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(4, 2)), rng.normal(size=(2, 2))]
    b = collate_sequences(xs, targets=[1, 0])
    assert b.inputs.shape == (2, 4, 2) and b.inputs.dtype == torch.float32
    assert b.inputs[1, 2:].abs().sum() == 0 and torch.allclose(b.inputs[1, :2].double(), torch.from_numpy(xs[1]))
    assert b.lengths.tolist() == [4, 2] and b.targets.dtype == torch.long
    step = collate_sequences(xs, targets=[np.array([0, 1, 1, 0]), np.array([1, 1])])
    assert step.targets.tolist() == [[0, 1, 1, 0], [1, 1, IGNORE_INDEX, IGNORE_INDEX]]
    reg = collate_sequences(xs, targets=[np.ones((4, 3)), np.ones((2, 3))])
    assert reg.targets.shape == (2, 4, 3) and reg.targets[1, 2:].abs().sum() == 0
    cf = collate_sequences([x.T for x in xs], channels_first=True)
    assert cf.inputs.equal(b.inputs)
    assert collate_sequences(np.zeros((3, 5, 2))).inputs.shape == (3, 5, 2)
    assert collate_sequences([np.arange(3.0)]).inputs.shape == (1, 3, 1)
    bad = [rng.normal(size=(3, 2))]
    bad[0][1, 1] = np.nan
    with pytest.raises(ValueError, match="sequence 0 contains NaN"):
        collate_sequences(bad)
    with pytest.raises(ValueError, match="different feature sizes"):
        collate_sequences([np.zeros((2, 2)), np.zeros((2, 3))])
    with pytest.raises(ValueError, match="empty"):
        collate_sequences([np.zeros((0, 2))])


# ---------------------------------------------------------------------------------------------------------------
# Bucketed batches
# ---------------------------------------------------------------------------------------------------------------


def _lengths(n: int = 1000) -> np.ndarray:
    return np.random.default_rng(0).integers(1, 40, size=n)


def test_bucket_sampler_covers_each_index_once_and_is_deterministic():
    lens = _lengths()
    s = BucketBatchSampler(lens, batch_size=32, shuffle=True, seed=7)
    epochs = []
    for epoch in (0, 1):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) == 32
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lens)))
        assert sum(len(b) != 32 for b in batches) == 1  # 1000 = 31 * 32 + 8: one partial batch
        epochs.append(batches)
    assert epochs[0] != epochs[1]
    t = BucketBatchSampler(lens, batch_size=32, shuffle=True, seed=7)
    t.set_epoch(1)
    assert list(t) == epochs[1]
    t.set_epoch(0)
    assert list(t) == epochs[0]
    u = BucketBatchSampler(lens, batch_size=32, shuffle=True, seed=8)
    assert list(u) != epochs[0]


def test_bucket_sampler_groups_similar_lengths():
    lens = _lengths(2000)
    s = BucketBatchSampler(lens, batch_size=32, seed=0)
    spread = np.mean([np.ptp(lens[b]) for b in s])
    rng = np.random.default_rng(0)
    random_spread = np.mean([np.ptp(lens[b]) for b in np.array_split(rng.permutation(len(lens)), 63)])
    assert spread < 0.2 * random_spread
    # Without shuffling: sorted by length, deterministic.
    e = BucketBatchSampler(lens, batch_size=32, shuffle=False)
    flat = [i for b in e for i in b]
    assert list(lens[flat]) == sorted(lens) and list(e) == list(e)


def test_bucket_sampler_drop_last_replicas_and_dataloader():
    lens = _lengths(100)
    d = BucketBatchSampler(lens, batch_size=32, drop_last=True)
    assert len(d) == 3 and all(len(b) == 32 for b in d)
    shards = [list(BucketBatchSampler(lens, 8, seed=1, num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(x) for x in shards}) == 1 and len(shards[0]) == len(BucketBatchSampler(lens, 8, num_replicas=3))
    assert {i for x in shards for b in x for i in b} == set(range(100))
    items = [list(range(4, 4 + int(n))) for n in lens]
    loader = DataLoader(
        items,
        batch_sampler=BucketBatchSampler(lens, 16, seed=0),
        collate_fn=lambda seqs: collate_generation(seqs),
    )
    seen = 0
    for b in loader:
        assert b.inputs.shape[1] == int(b.lengths.max()) and b.targets.shape == b.inputs.shape
        seen += len(b)
    assert seen == 100
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        BucketBatchSampler(lens, 0)
    with pytest.raises(ValueError, match="1-D sequence of ints"):
        BucketBatchSampler(np.ones((2, 2), dtype=int), 4)
