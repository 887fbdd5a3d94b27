"""Property-based tests (hypothesis): random input never crashes rnnkit with anything but its documented errors.

Covered: the data readers (:func:`load_data`, :func:`read_csv`, :func:`read_lines`, :func:`read_folder`) on
random bytes and on random CSV-like text, and the real-valued readers (CSV series, ``.ts``); :func:`split_items`
and :func:`apply_split`; :func:`rnnkit.windowing.split` against a naive implementation of the lecture's rule; the
collate functions' padding; the recurrent layers' and the window core's ``lengths`` (a padded batch equals each
sequence run alone, outputs, final states and input gradients, in float64); :class:`Vocab` round trips with
``max_len``; and the checkpoint loader on randomly edited ``state.json`` files and flipped bytes (only
:class:`CheckpointError`, and nothing modified).

Every test is bounded (``max_examples`` 60–80, no deadline) and derandomized, so the file runs the same examples
each time in a few seconds.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from torch import nn

from rnnkit.checkpoint import CheckpointError
from rnnkit.data import (
    IGNORE_INDEX,
    LabeledItems,
    Vocab,
    apply_split,
    collate_classification,
    collate_generation,
    collate_sequences,
    load_data,
    read_csv,
    read_folder,
    read_lines,
    split_items,
)
from rnnkit.layers import GRU, LSTM, RNN
from rnnkit.train.checkpoints import load_checkpoint, save_checkpoint
from rnnkit.windowing import WindowCore, split

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The errors the readers document: FileNotFoundError for a missing path, ValueError for everything in a file.
READER_ERRORS = (ValueError, FileNotFoundError)


def _check_items(data: LabeledItems) -> None:
    """What every successful read guarantees."""
    assert isinstance(data, LabeledItems) and len(data) > 0
    for item in data.items:
        assert isinstance(item, str) and item and item == item.strip()
    if data.labels is not None:
        assert len(data.labels) == len(data.items)
        assert all(lab and lab == lab.strip() for lab in data.labels)
        assert set(data.labels) <= set(data.classes) and len(set(data.classes)) == len(data.classes)


def _expected_lines(raw: bytes) -> list[str] | None:
    """An independent reading of a one-item-per-line file: None when it is not UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.removeprefix("\ufeff")
    return [line.strip() for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ readers


@FUZZ
@given(raw=st.binary(max_size=300), suffix=st.sampled_from([".txt", ".csv", ".tsv", ""]))
@example(raw=b'""\n', suffix=".csv")  # a row of one empty quoted cell: no header at all
@example(raw=b"\xef\xbb\xbf", suffix=".csv")  # only a byte-order mark
@example(raw=b"text,label\nab", suffix=".csv")  # a ragged row
@example(raw=b"a\x00b\n", suffix=".csv")  # a NUL byte
@example(raw=b"Caf\xe9\n", suffix=".txt")  # latin-1, not UTF-8
@example(raw=b"\n \n\t\n", suffix=".txt")  # blank lines only
@example(raw=b'text\n"' + b"a" * 131_100 + b'"\n', suffix=".csv")  # a cell over the csv module's field limit
def test_readers_on_random_bytes(raw: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(raw)
        try:
            data = load_data(path)
        except READER_ERRORS as e:
            assert path.name in str(e) and "\n" not in str(e).strip()  # one line, naming the file
            if suffix not in (".csv", ".tsv"):
                expected = _expected_lines(raw)
                assert expected is None or expected == []  # refused only when not UTF-8 or empty
            return
        _check_items(data)
        if suffix not in (".csv", ".tsv"):
            assert data.items == _expected_lines(raw)
            assert data.labels is None


_CELL = st.text(alphabet=st.sampled_from([*"ab é,;|\t\"'\n\r\x00-", "\u2028", "\ufeff"]), max_size=6)


@FUZZ
@given(
    rows=st.lists(st.lists(_CELL, min_size=0, max_size=4), min_size=0, max_size=8),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    bom=st.booleans(),
    text_column=st.sampled_from([None, "text", "nope", 0, 5]),
    label_column=st.sampled_from([None, "label", 1]),
)
def test_read_csv_on_random_tables(rows, delimiter, bom, text_column, label_column) -> None:
    text = "\n".join(delimiter.join(r) for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
        try:
            data = read_csv(path, text_column=text_column, label_column=label_column)
        except ValueError as e:
            assert "t.csv" in str(e)
            return
        _check_items(data)


@FUZZ
@given(
    lines=st.lists(st.text(max_size=8), max_size=10),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_read_lines_equals_an_independent_reading(lines: list[str], newline: str) -> None:
    raw = newline.join(lines).encode("utf-8", errors="surrogatepass")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lines.txt"
        path.write_bytes(raw)
        expected = _expected_lines(raw)
        if not expected:
            with pytest.raises(ValueError):
                read_lines(path)
            return
        assert read_lines(path).items == expected


@FUZZ
@given(
    files=st.dictionaries(
        st.text(alphabet="abcXY_.", min_size=1, max_size=5),
        st.binary(max_size=40) | st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass")),
        max_size=4,
    )
)
def test_read_folder_on_random_files(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cats"
        folder.mkdir()
        for name, raw in files.items():
            (folder / f"{name}.txt").write_bytes(raw)
        try:
            data = read_folder(folder)
        except ValueError as e:
            assert str(e)
            return
        _check_items(data)
        expected = {}
        for name, raw in files.items():
            if not name.startswith("."):
                expected[name] = _expected_lines(raw)
        assert sorted(set(data.labels)) == sorted(expected)
        for name, lines in expected.items():
            assert [it for it, lab in zip(data.items, data.labels, strict=True) if lab == name] == lines


_SERIES_CELL = st.one_of(
    st.text(alphabet="0123456789.-eE:;? \tabT", max_size=8),
    st.sampled_from(["nan", "inf", "-inf", "2020-01-01", "2020-01-02", "2019-12-31", "date", ""]),
)
_TS_LINES = st.lists(
    st.sampled_from(
        ["@problemName x", "@timeStamps false", "@missing true", "@univariate true", "@univariate false",
         "@dimensions 2", "@equalLength false", "@seriesLength 3", "@classLabel true a b", "@classLabel false",
         "@data", "1,2,3:a", "1,2:3,4:b", "?,1:a", "1,2,3", "(1,2),(2,3):a", "", "# c", "1e999:a", "nan,1:b",
         ":a", "1,,2:a", "@targetlabel true"]
    ),
    max_size=10,
)  # fmt: skip


@FUZZ
@given(
    raw=st.binary(max_size=200)
    | st.lists(st.lists(_SERIES_CELL, max_size=4), max_size=8).map(lambda r: "\n".join(map(",".join, r)).encode()),
    ts_lines=_TS_LINES,
    ts_raw=st.none() | st.binary(max_size=60),
)
def test_series_readers_raise_only_documented_errors(raw: bytes, ts_lines: list[str], ts_raw: bytes | None) -> None:
    """The real-valued readers (CSV series, UEA/UCR .ts): a result, or ValueError/FileNotFoundError."""
    from rnnkit.data.arrays import read_ts
    from rnnkit.data.series import read_series_csv

    with tempfile.TemporaryDirectory() as tmp:
        csv_path, ts_path = Path(tmp) / "s.csv", Path(tmp) / "s.ts"
        csv_path.write_bytes(raw)
        ts_path.write_bytes(ts_raw if ts_raw is not None else "\n".join(ts_lines).encode())
        for read, path in ((read_series_csv, csv_path), (read_ts, ts_path)):
            try:
                out = read(path)
            except READER_ERRORS as e:
                assert str(e)
                continue
            assert len(out) > 0


# ------------------------------------------------------------------------------------------------ split


@FUZZ
@given(
    pairs=st.lists(st.tuples(st.text(alphabet="abcd", min_size=1, max_size=3), st.sampled_from("XYZ")), max_size=40),
    labeled=st.booleans(),
    val=st.sampled_from([0.0, 0.1, 0.25, 0.5]),
    test=st.sampled_from([0.0, 0.1, 0.3]),
    seed=st.integers(0, 3),
)
def test_split_items_properties(pairs, labeled, val, test, seed) -> None:
    data = LabeledItems([p[0] for p in pairs], [p[1] for p in pairs] if labeled else None, source="fuzz")
    try:
        s = split_items(data, val=val, test=test, seed=seed)
    except ValueError as e:
        assert "fuzz" in str(e) or "fraction" in str(e) or "val + test" in str(e)
        return
    parts = {"train": s.train, "val": s.val, "test": s.test}
    strings = {name: set(p.items) for name, p in parts.items()}
    # by distinct item: no string in two parts; together they hold every distinct (item, label) pair
    assert not strings["train"] & strings["val"] and not strings["train"] & strings["test"]
    assert not strings["val"] & strings["test"]
    got = {(it, lab) for p in parts.values() for it, lab in zip(p.items, p.labels or [None] * len(p), strict=True)}
    assert got == {(it, lab if labeled else None) for it, lab in pairs}
    assert len(s.train) > 0 and (val == 0 or len(s.val) > 0) and (test == 0 or len(s.test) > 0)
    for p in parts.values():
        assert p.classes == data.classes
    # deterministic, and rebuilt exactly from its JSON record
    again = split_items(data, val=val, test=test, seed=seed)
    assert again.record == s.record
    rebuilt = apply_split(data, json.loads(json.dumps(s.record)))
    for name in parts:
        assert getattr(rebuilt, name).items == parts[name].items
        assert getattr(rebuilt, name).labels == parts[name].labels


# ------------------------------------------------------------------------------------------------ windowing.split


def naive_split(elems: list, y, window: int, stride: int, pad) -> list[tuple[list, object]]:
    """The lecture's split rule written out directly (see rnnkit.windowing.split's docstring)."""
    n = len(elems)
    if y is None:
        if pad is None:
            return [(elems[j - window : j], elems[j]) for j in range(window, n, stride)]
        padded = [pad] * window + elems
        return [(padded[j : j + window], elems[j]) for j in range(0, n, stride)]
    if pad is None:
        return [(elems[i : i + window], y) for i in range(0, n - window + 1, stride)]
    padded = [pad] * (window - 1) + elems
    return [(padded[i : i + window], y) for i in range(0, n, stride)]


@FUZZ
@given(
    text=st.text(alphabet="ab c.", max_size=12),
    window=st.integers(1, 5),
    stride=st.integers(1, 4),
    y=st.sampled_from([None, "label", 1]),
    pad=st.sampled_from([None, "#"]),
    kind=st.sampled_from(["str", "list", "tuple", "numpy", "torch"]),
)
def test_windowing_split_matches_the_naive_rule(text, window, stride, y, pad, kind) -> None:
    elems = list(text)
    if kind == "str":
        x, make = text, "".join
    elif kind == "list":
        x, make = elems, list
    elif kind == "tuple":
        x, make = tuple(elems), list
    else:
        codes = [float(ord(c)) for c in elems]
        x = np.array(codes).reshape(-1, 1) if kind == "numpy" else torch.tensor(codes, dtype=torch.float64)
        elems = codes
        pad = None if pad is None else -1.0
        make = list
    expected = naive_split(elems, y, window, stride, pad)
    if not expected:
        with pytest.raises(ValueError):
            split(x, y, window=window, stride=stride, pad=pad)
        return
    got = split(x, y, window=window, stride=stride, pad=pad)
    assert len(got) == len(expected)
    for (w, t), (ew, et) in zip(got, expected, strict=True):
        if kind in ("numpy", "torch"):
            w = np.asarray(w).reshape(-1).tolist()
            t = float(np.asarray(t).reshape(-1)[0]) if y is None else t
        assert (make(w) if kind == "tuple" else w) == make(ew) and t == et


@FUZZ
@given(
    x=st.one_of(
        st.none(),
        st.integers(),
        st.binary(max_size=3),
        st.text(max_size=3),
        st.lists(st.integers(), max_size=3),
        st.builds(np.zeros, st.tuples(st.integers(0, 3), st.integers(0, 2))),
        st.builds(lambda n: torch.zeros(n), st.integers(0, 3)),
    ),
    window=st.one_of(st.integers(-2, 4), st.floats(allow_nan=True), st.booleans(), st.none()),
    stride=st.one_of(st.integers(-1, 3), st.just(1.5)),
    pad=st.one_of(st.none(), st.text(max_size=2), st.integers(-3, 300), st.floats(), st.lists(st.floats(), max_size=3)),
    unit=st.sampled_from([None, "char", "word", "byte"]),
)
def test_windowing_split_raises_only_documented_errors(x, window, stride, pad, unit) -> None:
    try:
        pairs = split(x, window=window, stride=stride, pad=pad, unit=unit)
    except (TypeError, ValueError) as e:
        assert str(e)
        return
    assert isinstance(pairs, list) and pairs


# ------------------------------------------------------------------------------------------------ collate / padding


@FUZZ
@given(seqs=st.lists(st.lists(st.integers(4, 30), min_size=0, max_size=7), min_size=1, max_size=6))
def test_collate_pads_on_the_right_and_keeps_every_item(seqs: list[list[int]]) -> None:
    lengths = [len(s) for s in seqs]
    gen = collate_generation(seqs, conditions=list(range(len(seqs))))
    for b, s in enumerate(seqs):
        n = len(s) + 1
        assert int(gen.lengths[b]) == n
        assert gen.inputs[b, :n].tolist() == [1, *s] and gen.inputs[b, n:].eq(0).all()
        assert gen.targets[b, :n].tolist() == [*s, 2] and gen.targets[b, n:].eq(IGNORE_INDEX).all()
    if min(lengths) == 0:
        with pytest.raises(ValueError, match="empty"):
            collate_classification(seqs, list(range(len(seqs))))
        return
    clf = collate_classification(seqs, list(range(len(seqs))))
    assert clf.inputs.shape == (len(seqs), max(lengths))
    for b, s in enumerate(seqs):
        assert clf.inputs[b, : len(s)].tolist() == s and clf.inputs[b, len(s) :].eq(0).all()
    assert clf.lengths.tolist() == lengths and clf.targets.tolist() == list(range(len(seqs)))


@FUZZ
@given(
    lengths=st.lists(st.integers(0, 6), min_size=0, max_size=5),
    features=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    poison=st.sampled_from([None, float("nan"), float("inf"), -float("inf")]),
    rank3=st.booleans(),
)
def test_collate_sequences_padding_and_refusals(lengths, features, poison, rank3) -> None:
    rng = np.random.default_rng(len(lengths))
    seqs = [rng.normal(size=(n, features[i % len(features)])) for i, n in enumerate(lengths)]
    poisoned = bool(seqs) and poison is not None and lengths[0] > 0
    if poisoned:
        seqs[0][lengths[0] // 2, 0] = poison
    rank3 = rank3 and bool(seqs)
    if rank3:
        seqs[-1] = seqs[-1][None]  # one sequence of rank 3
    bad = not seqs or min(lengths) == 0 or rank3 or poisoned or len({s.shape[-1] for s in seqs}) > 1
    if bad:
        with pytest.raises((ValueError, TypeError)):
            collate_sequences(seqs)
        return
    batch = collate_sequences(seqs)
    assert batch.inputs.shape == (len(seqs), max(lengths), seqs[0].shape[1])
    for b, s in enumerate(seqs):
        n = s.shape[0]
        assert torch.equal(batch.inputs[b, :n], torch.from_numpy(s.astype(np.float32)))
        assert batch.inputs[b, n:].eq(0).all()
    assert batch.lengths.tolist() == lengths


# ------------------------------------------------------------------------------------------------ layers' lengths

CORES = {
    "rnn": lambda i, h, layers, bi: RNN(i, h, layers, batch_first=True, bidirectional=bi),
    "lstm": lambda i, h, layers, bi: LSTM(i, h, layers, batch_first=True, bidirectional=bi),
    "gru": lambda i, h, layers, bi: GRU(i, h, layers, batch_first=True, bidirectional=bi),
    "gru-before": lambda i, h, layers, bi: GRU(i, h, layers, batch_first=True, bidirectional=bi, reset="before"),
    "window": lambda i, h, layers, bi: WindowCore(i, h, window=3, num_layers=layers),
}


def _h(out) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@settings(FUZZ, max_examples=80)
@given(
    name=st.sampled_from(sorted(CORES)),
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    extra=st.integers(0, 2),
    layers=st.integers(1, 2),
    bidirectional=st.booleans(),
    as_tensor=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_padding_never_changes_a_result(name, lengths, extra, layers, bidirectional, as_tensor, seed) -> None:
    """Each row of a padded batch (random lengths, any order, extra padding) equals its sequence run alone:
    outputs at valid steps, zeros after, the final state, and the input gradients (float64)."""
    bidirectional = bidirectional and name != "window"
    torch.manual_seed(seed)
    core = CORES[name](3, 4, layers, bidirectional).double()
    B, T = len(lengths), max(lengths) + extra
    x = torch.randn(B, T, 3, dtype=torch.float64, requires_grad=True)
    lens = torch.tensor(lengths) if as_tensor else list(lengths)
    out, h_n = core(x, lengths=lens)  # (B, T, D·H), (L·D, B, H)
    h_n = _h(h_n)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    for b, n in enumerate(lengths):
        xb = x.detach()[b : b + 1, :n].clone().requires_grad_(True)
        out_b, h_b = core(xb)  # (1, n, D·H)
        h_b = _h(h_b)
        torch.testing.assert_close(out[b, :n], out_b[0], rtol=1e-10, atol=1e-12)
        assert out[b, n:].eq(0).all()  # (empty when n == T)
        torch.testing.assert_close(h_n[:, b], h_b[:, 0], rtol=1e-10, atol=1e-12)
        (out_b[0] * weights[b, :n]).sum().backward()
        torch.testing.assert_close(x.grad[b, :n], xb.grad[0], rtol=1e-10, atol=1e-12)
        assert x.grad[b, n:].eq(0).all()


@FUZZ
@given(
    name=st.sampled_from(sorted(CORES)),
    lengths=st.one_of(
        st.lists(st.integers(-2, 8), min_size=0, max_size=4),
        st.lists(st.floats(0, 5), min_size=1, max_size=3),
        st.just([[1, 2]]),
    ),
    shape=st.sampled_from([(2, 4, 3), (2, 4, 5), (4, 3), (2, 0, 3), (1, 2, 4, 3)]),
)
def test_bad_lengths_and_shapes_raise_value_or_type_errors(name, lengths, shape) -> None:
    torch.manual_seed(0)
    core = CORES[name](3, 4, 1, False)
    x = torch.randn(*shape)
    try:
        core(x, lengths=lengths)
    except (ValueError, TypeError) as e:
        assert str(e)
        return
    # accepted: then the input and the lengths were valid
    assert x.dim() in (2, 3) and x.shape[-1] == 3 and 0 not in x.shape
    if name == "window":
        assert x.dim() == 3


# ------------------------------------------------------------------------------------------------ vocab


@FUZZ
@given(
    items=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6),
    unit=st.sampled_from(["char", "word"]),
    max_len=st.one_of(st.none(), st.integers(1, 6)),
    probe=st.text(max_size=10),
)
def test_vocab_max_len_round_trip_and_refusal(items, unit, max_len, probe) -> None:
    vocab = Vocab.build(items, unit=unit, max_len=max_len)
    back = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert back == vocab and back.max_len == max_len
    n = len(vocab.tokenize(probe))
    if max_len is not None and n > max_len:
        with pytest.raises(ValueError, match=f"{n} .*maximum of {max_len}"):
            vocab.encode(probe)
    else:
        ids = vocab.encode(probe, add_bos=True, add_eos=True)
        assert len(ids) == n + 2


# ------------------------------------------------------------------------------------------------ checkpoint loader


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(2, 3, batch_first=True)
        self.out = nn.Linear(3, 2)


def _trained_parts(seed: int):
    torch.manual_seed(seed)
    model = _Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for _ in range(2):
        out, _ = model.rnn(torch.randn(2, 3, 2))
        loss = model.out(out).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, opt, sched


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    model, opt, sched = _trained_parts(0)
    save_checkpoint(folder, model, opt, sched, {"epoch": 1, "step": 2, "history": [{"epoch": 1, "loss": 0.5}]})
    return folder


def _paths(obj, prefix=()):
    """Every path into a JSON document."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=5,
) | st.sampled_from([{"__tensor__": "nope"}, {"__tuple__": 1}, {"__dict__": [[[1], 2]]}, {"__float__": "x"}])


def _snapshot(model, opt, sched):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        copy.deepcopy(opt.state_dict()),
        copy.deepcopy(sched.state_dict()),
        torch.get_rng_state(),
    )


def _same_snapshot(a, b) -> bool:
    wa, oa, sa, ra = a
    wb, ob, sb, rb = b
    same_w = wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    same_o = repr(oa["param_groups"]) == repr(ob["param_groups"]) and oa["state"].keys() == ob["state"].keys()
    same_o = same_o and all(
        torch.equal(oa["state"][i][k], ob["state"][i][k]) for i in oa["state"] for k in oa["state"][i]
    )
    return same_w and same_o and repr(sa) == repr(sb) and torch.equal(ra, rb)


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_loader_on_edited_state_json_refuses_cleanly_or_loads(saved_checkpoint: Path, data) -> None:
    """Replace a random part of state.json with random JSON: the load either succeeds or raises CheckpointError,
    and then the model, optimizer, scheduler and RNG are exactly as before."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        import shutil

        shutil.copytree(saved_checkpoint, folder)
        sub = next(p for p in folder.iterdir() if p.is_dir())
        doc = json.loads((sub / "state.json").read_text())
        paths = sorted(_paths(doc), key=repr)
        path = data.draw(st.sampled_from(paths))
        value = data.draw(_JSON)
        if path == ():
            doc = value
        else:
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = value
        (sub / "state.json").write_text(json.dumps(doc))
        model, opt, sched = _trained_parts(7)
        torch.manual_seed(3)
        before = _snapshot(model, opt, sched)
        try:
            load_checkpoint(folder, model, opt, sched, restore_rng=False)
        except CheckpointError as e:
            assert str(e)
            assert _same_snapshot(before, _snapshot(model, opt, sched)), f"modified by a refused load: {path}"
            return
        # loaded: the optimizer and scheduler must still work
        out, _ = model.rnn(torch.randn(2, 3, 2))
        model.out(out).pow(2).mean().backward()
        opt.step()
        sched.step()


@FUZZ
@given(
    which=st.sampled_from(["model.safetensors", "state.safetensors", "latest.json"]),
    offset=st.integers(0, 10_000),
    byte=st.integers(0, 255),
    truncate=st.booleans(),
)
def test_loader_on_corrupted_bytes(saved_checkpoint: Path, which: str, offset: int, byte: int, truncate: bool):
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ckpt"
        shutil.copytree(saved_checkpoint, folder)
        target = folder / which if which == "latest.json" else next(p for p in folder.iterdir() if p.is_dir()) / which
        raw = bytearray(target.read_bytes())
        offset %= len(raw)
        if truncate:
            raw = raw[:offset]
        elif raw[offset] == byte:
            return  # no change
        else:
            raw[offset] = byte
        target.write_bytes(bytes(raw))
        model, opt, sched = _trained_parts(7)
        before = _snapshot(model, opt, sched)
        try:
            load_checkpoint(folder, model, opt, sched, restore_rng=False)
        except CheckpointError:
            assert _same_snapshot(before, _snapshot(model, opt, sched))
            return
        # only a change that leaves latest.json meaning the same may load (e.g. whitespace)
        assert which == "latest.json"
