"""Tests of rnnkit.data.arrays: the aeon/sktime array layouts, ``.ts`` and ``.npz`` reading, missing values,
stratified splits, the per-channel standardizer, and the embedded BasicMotions files.

References: hand-written expected arrays (the small ``.ts`` file below), a plain-Python interpolation loop for
missing values, NumPy statistics for the standardizer, and aeon's own ``.ts`` loader on the files its wheel ships.
"""

from __future__ import annotations

import builtins
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.data.arrays import (
    SeriesSet,
    Standardizer,
    as_sequences,
    embedded_series_path,
    fill_missing,
    load_series,
    read_npz,
    read_ts,
    series_classes,
    stratified_split,
)

# Two dimensions, unequal lengths (4, 2, 5), missing values, comments, blank lines, mixed-case keys, CRLF endings.
SMALL_TS = """# a comment before the header
#
@problemName Tiny Problem
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equallength false
@classLabel true up down flat

@data
1.0,2.0,3.0,4.0:10,?,30,40:up
# a comment between series
5,?:-1.5,-2.5:down
?,1,?,?,7: 0,0,0,0,0 :flat
"""

# The series as written, channels first, with the '?' values filled by hand: linear interpolation inside a
# channel, the nearest value at the edges.
SMALL_X = [
    np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]]),
    np.array([[5.0, 5.0], [-1.5, -2.5]]),
    np.array([[1.0, 1.0, 3.0, 5.0, 7.0], [0.0, 0.0, 0.0, 0.0, 0.0]]),
]


def write(path: Path, text: str, crlf: bool = False) -> Path:
    path.write_bytes(text.replace("\n", "\r\n" if crlf else "\n").encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------------------- .ts
def test_read_ts_small_file_with_unequal_lengths_and_missing_values(tmp_path: Path) -> None:
    data = read_ts(write(tmp_path / "tiny.ts", SMALL_TS, crlf=True))
    assert data.problem == "Tiny Problem"
    assert data.classes == ["up", "down", "flat"]  # the header's order, not sorted
    assert data.y == ["up", "down", "flat"]
    assert data.lengths == [4, 2, 5] and data.num_channels == 2
    assert data.missing_filled == 5
    assert data.targets is None
    for got, want in zip(data.X, SMALL_X, strict=True):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)
    assert data.label_ids() == [0, 1, 2]
    # the channels-first list becomes time-major (L_i, C) sequences
    for seq, want in zip(as_sequences(data.X), SMALL_X, strict=True):
        np.testing.assert_array_equal(seq, want.T)


def test_read_ts_univariate_regression_and_unlabeled(tmp_path: Path) -> None:
    reg = read_ts(
        write(tmp_path / "reg.ts", "@problemname R\n@univariate true\n@targetlabel true\n@data\n1,2,3:0.5\n4,5:-2\n")
    )
    assert reg.y is None and reg.classes == []
    np.testing.assert_array_equal(reg.targets, [0.5, -2.0])
    assert reg.lengths == [3, 2] and reg.num_channels == 1
    plain = read_ts(write(tmp_path / "plain.ts", "@univariate true\n@classLabel false\n@data\n1,2,3\n4,5\n"))
    assert plain.y is None
    np.testing.assert_array_equal(plain.X[1], [[4.0, 5.0]])
    # no class list in the header: the labels, sorted numerically
    nolist = read_ts(write(tmp_path / "nolist.ts", "@univariate true\n@classLabel true\n@data\n1:10\n2:9\n3:10\n"))
    assert nolist.classes == ["9", "10"]


HEADER = "@problemName P\n@timeStamps false\n@missing false\n@univariate false\n@dimensions 2\n@equalLength true\n"
BAD_TS = {
    "dimensions": (HEADER + "@classLabel true a b\n@data\n1,2:3,4:a\n1,2:a\n", ":10:", "1 dimensions", "says 2"),
    "univariate": (
        "@univariate true\n@classLabel true a\n@data\n1,2:3,4:a\n",
        ":4:",
        "2 dimensions",
        "says 1",
    ),
    "equal_length": (HEADER + "@classLabel true a\n@data\n1,2:3,4:a\n1,2,3:3,4,5:a\n", "@equalLength true", "2..3"),
    "series_length": (
        "@dimensions 1\n@seriesLength 3\n@classLabel true a\n@data\n1,2,3:a\n1,2:a\n",
        ":6:",
        "@seriesLength 3",
    ),
    "missing_false": (HEADER + "@classLabel true a\n@data\n1,?:3,4:a\n", ":9:", "@missing false", "'?'"),
    "label_not_listed": (HEADER + "@classLabel true a b\n@data\n1,2:3,4:a\n1,2:3,4:c\n", ":10:", "'c'", "a b"),
    "timestamps": ("@timeStamps true\n@classLabel true a\n@data\n(0,1):a\n", "@timeStamps true", "not supported"),
    "no_data_line": ("@problemName P\n@classLabel true a\n", "no @data line"),
    "no_series": ("@classLabel true a\n@data\n", "no series after @data"),
    "unknown_key": ("@problemName P\n@frequency 12\n@data\n1,2\n", ":2:", "@frequency", "@classLabel"),
    "bad_bool": ("@missing maybe\n@data\n1\n", "@missing must be true or false", "'maybe'"),
    "twice": ("@missing true\n@missing false\n@data\n1\n", ":2:", "given twice"),
    "not_a_number": (HEADER + "@classLabel true a\n@data\n1,x:3,4:a\n", ":9:", "dimension 1, value 2", "'x'"),
    "empty_value": (HEADER + "@classLabel true a\n@data\n1,,2:3,4,5:a\n", "value 2", "empty value"),
    "infinite": ("@classLabel true a\n@data\n1,inf:a\n", "'inf'", "not finite"),
    "ragged_series": (HEADER.replace("true\n", "false\n") + "@classLabel true a\n@data\n1,2:3:a\n", "[1, 2]"),
    "all_missing": ("@missing true\n@classLabel true a\n@data\n1,2:a\n?,?:a\n", ":5:", "series 1, channel 0", "every"),
    "no_label": (HEADER + "@classLabel true a\n@data\n1,2\n", "no label"),
    "class_and_target": ("@classLabel true a\n@targetLabel true\n@data\n1:a\n", "contradict"),
    "data_before_header": ("1,2,3:a\n@data\n", ":1:", "header line"),
    "header_after_data": ("@classLabel true a\n@data\n1:a\n@missing true\n", ":4:", "after @data"),
    "bad_target": ("@targetLabel true\n@data\n1,2:0.5\n1,2:high\n", ":4:", "'high'", "not a number"),
}


@pytest.mark.parametrize("case", sorted(BAD_TS))
def test_read_ts_refuses_malformed_files_and_header_mismatches(tmp_path: Path, case: str) -> None:
    text, *needles = BAD_TS[case]
    with pytest.raises(ValueError) as info:
        read_ts(write(tmp_path / "bad.ts", text))
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


def test_read_ts_refuses_missing_files_and_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no such \.ts file"):
        read_ts(tmp_path / "nope.ts")
    with pytest.raises(ValueError, match="is a folder"):
        read_ts(tmp_path)
    with pytest.raises(ValueError, match="is empty"):
        read_ts(write(tmp_path / "empty.ts", "# only a comment\n\n"))


# ---------------------------------------------------------------------------------------------------------- arrays
def test_the_array_layouts_agree() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3, 6))  # (N, C, L)
    want = [X[i].T for i in range(4)]  # (L, C) each
    layouts = {
        "array": X,
        "list": list(X),
        "nested lists": X.tolist(),
        "tensor": torch.from_numpy(X),
        "float32": X.astype(np.float32),
        "ints": (X * 10).astype(np.int64),
    }
    for name, layout in layouts.items():
        got = as_sequences(layout)
        assert len(got) == 4, name
        for g, w in zip(got, want, strict=True):
            assert g.shape == (6, 3) and g.dtype == np.float64 and g.flags["C_CONTIGUOUS"], name
            ref = w.astype(np.float32).astype(np.float64) if name == "float32" else w
            ref = (w * 10).astype(np.int64).astype(np.float64) if name == "ints" else ref
            np.testing.assert_array_equal(g, ref, err_msg=name)
    # univariate: (N, L) == (N, 1, L) == a list of 1-D arrays
    U = rng.normal(size=(3, 5))
    a, b, c = as_sequences(U), as_sequences(U[:, None, :]), as_sequences(list(U))
    for x, y, z, u in zip(a, b, c, U, strict=True):
        np.testing.assert_array_equal(x, u[:, None])
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    # unequal lengths only as a list
    ragged = [rng.normal(size=(2, n)) for n in (3, 7, 1)]
    assert [s.shape for s in as_sequences(ragged)] == [(3, 2), (7, 2), (1, 2)]


@pytest.mark.parametrize(
    ("X", "error", "needle"),
    [
        (np.zeros(5), ValueError, "shape (5,)"),
        (np.zeros((2, 3, 4, 5)), ValueError, "(N, C, L)"),
        (np.zeros((0, 2, 3)), ValueError, "no series"),
        ([], ValueError, "no series"),
        ([np.zeros((2, 3)), np.zeros((2, 0))], ValueError, "series 1 is empty"),
        ([np.zeros((2, 3)), np.zeros((3, 3))], ValueError, "series 1 has 3 channels but series 0 has 2"),
        ([np.zeros((2, 3)), np.zeros((2, 3, 1))], ValueError, "series 1 has shape (2, 3, 1)"),
        ([np.zeros((0, 3))], ValueError, "no channels"),
        (np.array([[1.0, np.nan]]), ValueError, "fill_missing"),
        (np.array([[1.0, np.inf]]), ValueError, "inf"),
        (np.array([["a", "b"]]), TypeError, "numbers"),
        ("abc", TypeError, "not str"),
    ],
)
def test_as_sequences_refuses_bad_input(X: object, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as info:
        as_sequences(X)
    assert needle in str(info.value)


def _fill_reference(v: list[float]) -> list[float]:
    """Missing values of one channel filled by an independent plain-Python loop."""
    seen = [i for i, x in enumerate(v) if not math.isnan(x)]
    out = []
    for i, x in enumerate(v):
        if not math.isnan(x):
            out.append(x)
            continue
        left = [j for j in seen if j < i]
        right = [j for j in seen if j > i]
        if not left:
            out.append(v[right[0]])
        elif not right:
            out.append(v[left[-1]])
        else:
            a, b = left[-1], right[0]
            out.append(v[a] + (v[b] - v[a]) * (i - a) / (b - a))
    return out


def test_fill_missing_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(1)
    series = []
    for n in (1, 2, 5, 9, 17):
        x = rng.normal(size=(3, n))
        x[rng.random(size=x.shape) < 0.4] = np.nan
        x[:, 0] = np.where(np.isnan(x).all(axis=1), 1.0, x[:, 0])  # no channel entirely missing
        series.append(x)
    filled, count = fill_missing(series)
    assert count == sum(int(np.isnan(x).sum()) for x in series)
    for got, x in zip(filled, series, strict=True):
        for c in range(x.shape[0]):
            np.testing.assert_allclose(got[c], _fill_reference(x[c].tolist()), rtol=0, atol=1e-12)
        assert not np.isnan(x).all(axis=1).any()
    with pytest.raises(ValueError, match="series 1, channel 1: every value is missing"):
        fill_missing([np.ones((2, 3)), np.array([[1.0, 2.0], [np.nan, np.nan]])])


# ---------------------------------------------------------------------------------------------------------- .npz
def test_read_npz_round_trip_labels_and_missing(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(5, 2, 4))
    y = np.array(["b", "a", "b", "c", "a"])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    data = read_npz(tmp_path / "d.npz")
    assert data.y == list(y) and data.classes == ["a", "b", "c"] and data.missing_filled == 0
    for got, want in zip(data.X, X, strict=True):
        np.testing.assert_array_equal(got, want)
    # the same series as a .ts file read the same
    lines = ["@dimensions 2", "@classLabel true b a c", "@data"]
    lines += [
        ":".join(",".join(repr(float(v)) for v in ch) for ch in x) + f":{lab}" for x, lab in zip(X, y, strict=True)
    ]
    ts = read_ts(write(tmp_path / "d.ts", "\n".join(lines) + "\n"))
    for a, b in zip(ts.X, data.X, strict=True):
        np.testing.assert_array_equal(a, b)
    # integer labels sort numerically; univariate (N, L); NaN filled; y optional
    U = rng.normal(size=(3, 4))
    U[1, 2] = np.nan
    np.savez(tmp_path / "u.npz", X=U, y=np.array([10, 2, 2]))
    u = read_npz(tmp_path / "u.npz")
    assert u.classes == ["2", "10"] and u.y == ["10", "2", "2"] and u.missing_filled == 1
    assert u.X[1][0, 2] == pytest.approx((U[1, 1] + U[1, 3]) / 2, abs=1e-15)
    np.savez(tmp_path / "x.npz", X=U[[0]])
    assert read_npz(tmp_path / "x.npz").y is None


def test_read_npz_refuses_object_arrays_and_bad_files(tmp_path: Path) -> None:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((2, 3)), np.zeros((2, 5))
    np.savez(tmp_path / "ragged.npz", X=ragged, y=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"object array.*never unpickles.*\.ts file"):
        read_npz(tmp_path / "ragged.npz")
    np.savez(tmp_path / "nox.npz", data=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"arrays \['data'\]; expected X"):
        read_npz(tmp_path / "nox.npz")
    np.savez(tmp_path / "short.npz", X=np.zeros((3, 4)), y=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"y has shape \(2,\); expected \(3,\)"):
        read_npz(tmp_path / "short.npz")
    np.savez(tmp_path / "floaty.npz", X=np.zeros((2, 4)), y=np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="non-integer"):
        read_npz(tmp_path / "floaty.npz")
    np.savez(tmp_path / "rank.npz", X=np.zeros(4))
    with pytest.raises(ValueError, match=r"X has shape \(4,\)"):
        read_npz(tmp_path / "rank.npz")
    write(tmp_path / "text.npz", "not a zip")
    with pytest.raises(ValueError, match=r"not a NumPy \.npz file"):
        read_npz(tmp_path / "text.npz")
    with pytest.raises(ValueError, match=r"expected a \.ts file, an \.npz file"):
        load_series(tmp_path / "data.csv")


# ---------------------------------------------------------------------------------------------------------- splits
def test_stratified_split_is_deterministic_disjoint_and_per_class() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 2 + ["d"]
    kept, carved = stratified_split(labels, 0.2, seed=3)
    assert (kept, carved) == stratified_split(labels, 0.2, seed=3)
    assert stratified_split(labels, 0.2, seed=4) != (kept, carved)
    assert sorted(kept + carved) == list(range(len(labels))) and not set(kept) & set(carved)
    counts = {c: sum(labels[i] == c for i in carved) for c in "abcd"}
    assert counts == {"a": 2, "b": 1, "c": 1, "d": 0}  # round(0.2 n), at least 1, at most n - 1
    with pytest.raises(ValueError, match=r"fraction must lie in \(0, 1\)"):
        stratified_split(labels, 1.0)
    assert series_classes(["10", "b", "2", "a", "2"]) == ["2", "10", "a", "b"]


# ---------------------------------------------------------------------------------------------------------- scaling
def test_standardizer_matches_numpy_and_round_trips_through_json() -> None:
    rng = np.random.default_rng(5)
    seqs = [rng.normal(loc=[1.0, -3.0, 7.0], scale=[2.0, 0.5, 1.0], size=(n, 3)) for n in (4, 9, 2)]
    for s in seqs:
        s[:, 2] = 7.0  # a constant channel
    scaler = Standardizer.fit(seqs)
    stacked = np.vstack(seqs)
    np.testing.assert_allclose(scaler.mean, stacked.mean(0), rtol=1e-14)
    np.testing.assert_allclose(scaler.std[:2], stacked[:, :2].std(0), rtol=1e-14)
    assert scaler.std[2] == 1.0  # constant: centred only
    out = np.vstack(scaler.transform(seqs))
    np.testing.assert_allclose(out[:, :2].mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out[:, :2].std(0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(out[:, 2], 0.0)
    again = Standardizer.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again == scaler
    with pytest.raises(ValueError, match=r"\(L_i, 3\)"):
        scaler.transform([np.zeros((4, 2))])
    with pytest.raises(ValueError, match="positive 'std'"):
        Standardizer.from_dict({"mean": [0.0], "std": [0.0]})
    with pytest.raises(ValueError, match="lists 'mean' and 'std'"):
        Standardizer.from_dict({"mean": [0.0]})


# ---------------------------------------------------------------------------------------------------------- embedded
def test_embedded_files_are_found_without_importing_aeon(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aeon")
    real_import = builtins.__import__

    def no_aeon(name: str, *args: object, **kwargs: object) -> object:
        if name.split(".")[0] in ("aeon", "sktime"):
            raise AssertionError(f"{name} was imported; importing aeon takes seconds")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m.split(".")[0] == "aeon"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_aeon)
    assert len(load_series("embedded:basicmotions", "test")) == 40


def test_basicmotions_and_japanese_vowels_match_aeons_reader() -> None:
    pytest.importorskip("aeon")  # the reference loader
    path = embedded_series_path("embedded:basicmotions", "train")
    assert path.name == "BasicMotions_TRAIN.ts"
    train = load_series("embedded:basicmotions", "train")
    test = load_series("embedded:basicmotions", "test")
    assert isinstance(train, SeriesSet) and len(train) == 40 and len(test) == 40
    assert train.num_channels == 6 and set(train.lengths) == {100}
    assert train.classes == ["Standing", "Running", "Walking", "Badminton"]
    assert train.source == "embedded:basicmotions (train)"
    from aeon.datasets import load_from_ts_file

    for name in ("BasicMotions/BasicMotions_TEST.ts", "JapaneseVowels/JapaneseVowels_TRAIN.ts"):
        f = path.parent.parent / name
        X_ref, y_ref = load_from_ts_file(str(f))
        ours = read_ts(f)
        assert len(ours) == len(X_ref)
        for a, b in zip(ours.X, X_ref, strict=True):
            np.testing.assert_array_equal(a, b)
        assert [s.lower() for s in ours.y] == [str(s).lower() for s in y_ref]  # aeon lower-cases labels
    with pytest.raises(ValueError, match="unknown embedded series"):
        embedded_series_path("embedded:nope", "train")
