"""Tests of :mod:`rnnkit.windowing`: the lecture's two ``split`` examples exactly, strides (overlapping and
``stride=window``), short sequences with and without ``pad``, token lists, numpy/torch ``(L, F)`` arrays against an
independent reference, the docstring's doctests, and argument errors.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import rnnkit.windowing
from rnnkit.windowing import split


def reference_pairs(seq: list, y: object, window: int, stride: int, pad: object) -> list[tuple[list, object]]:
    """The documented rule written out by hand on a plain list: (window elements, target) pairs."""
    length = len(seq)
    pairs = []
    if y is None:
        padded = ([pad] * window if pad is not None else []) + seq
        offset = window if pad is not None else 0
        first = 0 if pad is not None else window
        for j in range(first, length, stride):  # j indexes the target in seq
            pairs.append((padded[j + offset - window : j + offset], seq[j]))
    else:
        padded = ([pad] * (window - 1) if pad is not None else []) + seq
        for i in range(0, len(padded) - window + 1, stride):
            pairs.append((padded[i : i + window], y))
    return pairs


# ---- the lecture's examples ---------------------------------------------------------------------------------------


def test_lecture_hello_world_in_full() -> None:
    pairs = split("Hello world!", window=3, pad="#", unit="char")
    assert pairs == [
        ("###", "H"),
        ("##H", "e"),
        ("#He", "l"),
        ("Hel", "l"),
        ("ell", "o"),
        ("llo", " "),
        ("lo ", "w"),
        ("o w", "o"),
        (" wo", "r"),
        ("wor", "l"),
        ("orl", "d"),
        ("rld", "!"),
    ]
    # One window per element, each target the element the window precedes.
    assert [t for _, t in pairs] == list("Hello world!")


def test_lecture_movie_review() -> None:
    assert split("This is a great movie.", +1, window=2, unit="word") == [
        ("This is", +1),
        ("is a", +1),
        ("a great", +1),
        ("great movie", +1),
    ]


def test_unit_defaults_to_char_for_strings() -> None:
    text = "Hello world!"
    assert split(text, window=3, pad="#") == split(text, window=3, pad="#", unit="char")


def test_docstring_examples() -> None:
    result = doctest.testmod(rnnkit.windowing, verbose=False)
    assert result.attempted >= 5
    assert result.failed == 0


# ---- strides ------------------------------------------------------------------------------------------------------


def test_stride_equal_window_gives_dim_x_over_w_windows() -> None:
    # The lecture's formula: dim(x)/W non-overlapping windows when y is given.
    assert split("abcdefghi", "y", window=3, stride=3) == [("abc", "y"), ("def", "y"), ("ghi", "y")]
    # A tail shorter than W is dropped.
    assert split("abcdefgh", "y", window=3, stride=3) == [("abc", "y"), ("def", "y")]
    for length in range(3, 20):
        assert len(split(list(range(length)), 0, window=3, stride=3)) == length // 3


def test_stride_with_next_element_targets() -> None:
    assert split("abcdefg", window=2, stride=2) == [("ab", "c"), ("cd", "e"), ("ef", "g")]
    assert split("abcdefg", window=2, stride=3) == [("ab", "c"), ("de", "f")]
    assert split("abcdefg", window=3, stride=3) == [("abc", "d"), ("def", "g")]
    # With pad the first target is the first element; then every stride-th one.
    assert split("abcde", window=2, stride=2, pad="_") == [("__", "a"), ("ab", "c"), ("cd", "e")]


def test_stride_with_label_and_pad() -> None:
    # With y given, W-1 pad elements: the first window ends at the first element.
    assert split("abcde", 7, window=3, pad="#") == [
        ("##a", 7),
        ("#ab", 7),
        ("abc", 7),
        ("bcd", 7),
        ("cde", 7),
    ]
    assert split("abcde", 7, window=3, stride=2, pad="#") == [("##a", 7), ("abc", 7), ("cde", 7)]


@pytest.mark.parametrize("window", [1, 2, 3, 5])
@pytest.mark.parametrize("stride", [1, 2, 3, 5])
@pytest.mark.parametrize("y", [None, "label"])
@pytest.mark.parametrize("pad", [None, "#"])
def test_matches_reference_rule(window: int, stride: int, y: object, pad: object) -> None:
    for length in range(1, 12):
        text = "abcdefghijk"[:length]
        expected = [("".join(w), t) for w, t in reference_pairs(list(text), y, window, stride, pad)]
        if expected:
            assert split(text, y, window=window, stride=stride, pad=pad) == expected
        else:
            with pytest.raises(ValueError, match="pad="):
                split(text, y, window=window, stride=stride, pad=pad)


# ---- short sequences ----------------------------------------------------------------------------------------------


def test_short_sequence_with_pad_is_left_padded() -> None:
    assert split("ab", window=4, pad="#") == [("####", "a"), ("###a", "b")]
    assert split("ab", "y", window=4, pad="#") == [("###a", "y"), ("##ab", "y")]
    assert split("a", "y", window=1, pad="#") == [("a", "y")]
    assert split(["x"], window=3, pad="<pad>") == [(["<pad>", "<pad>", "<pad>"], "x")]


def test_short_sequence_without_pad_raises() -> None:
    with pytest.raises(ValueError, match=r"x has 2 element\(s\) but window=3.*pad="):
        split("ab", "y", window=3)
    # Next-element targets need W + 1 elements: a sequence of exactly W has no target.
    with pytest.raises(ValueError, match="at least 4"):
        split("abc", window=3)
    with pytest.raises(ValueError, match="window=5"):
        split(np.zeros((3, 2)), window=5)
    # Exactly long enough: one window.
    assert split("abc", "y", window=3) == [("abc", "y")]
    assert split("abcd", window=3) == [("abc", "d")]


@pytest.mark.parametrize("x", ["", [], (), np.zeros((0, 3)), torch.zeros(0, 3)])
def test_empty_sequence_raises(x: object) -> None:
    with pytest.raises(ValueError, match="empty"):
        split(x, window=1, pad=0 if not isinstance(x, str) else "#")


# ---- words --------------------------------------------------------------------------------------------------------


def test_word_unit_drops_punctuation() -> None:
    text = "Well... it's a “great” movie, isn't it?! — yes."
    pairs = split(text, "pos", window=1, unit="word")
    assert [w for w, _ in pairs] == ["Well", "it's", "a", "great", "movie", "isn't", "it", "yes"]


def test_word_unit_next_word_targets_and_pad() -> None:
    assert split("This is a great movie.", window=2, unit="word", pad="<pad>") == [
        ("<pad> <pad>", "This"),
        ("<pad> This", "is"),
        ("This is", "a"),
        ("is a", "great"),
        ("a great", "movie"),
    ]
    assert split("This is a great movie.", window=2, unit="word") == [
        ("This is", "a"),
        ("is a", "great"),
        ("a great", "movie"),
    ]


# ---- token lists --------------------------------------------------------------------------------------------------


def test_token_lists() -> None:
    tokens = [3, 1, 4, 1, 5]
    assert split(tokens, window=2) == [([3, 1], 4), ([1, 4], 1), ([4, 1], 5)]
    assert split(tokens, window=2, pad=0) == [([0, 0], 3), ([0, 3], 1), ([3, 1], 4), ([1, 4], 1), ([4, 1], 5)]
    assert split(tokens, "odd", window=3, stride=2) == [([3, 1, 4], "odd"), ([4, 1, 5], "odd")]
    # Tuples give tuple windows; the pad can be any token.
    assert split(("a", "b", "c"), window=2, pad="<s>") == [
        (("<s>", "<s>"), "a"),
        (("<s>", "a"), "b"),
        (("a", "b"), "c"),
    ]
    # The input is not modified.
    assert tokens == [3, 1, 4, 1, 5]


# ---- arrays and tensors -------------------------------------------------------------------------------------------


def _reference_array_pairs(x: np.ndarray, y: object, window: int, stride: int, pad: float | None) -> list:
    rows = [x[i] for i in range(len(x))]
    pad_row = None if pad is None else np.full(x.shape[1:], pad, dtype=x.dtype)
    return reference_pairs(rows, y, window, stride, pad_row)


@pytest.mark.parametrize("y", [None, 1.5])
@pytest.mark.parametrize("pad", [None, 0.0, -1.0])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_numpy_array_l_by_f(y: object, pad: float | None, stride: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))  # (L, F)
    window = 3
    got = split(x, y, window=window, stride=stride, pad=pad)
    expected = _reference_array_pairs(x, y, window, stride, pad)
    assert len(got) == len(expected) > 0
    for (w, t), (w_ref, t_ref) in zip(got, expected, strict=True):
        assert isinstance(w, np.ndarray) and w.shape == (window, 3) and w.dtype == x.dtype
        np.testing.assert_array_equal(w, np.stack(w_ref))
        if y is None:
            assert t.shape == (3,)
            np.testing.assert_array_equal(t, t_ref)
        else:
            assert t == y


@pytest.mark.parametrize("y", [None, torch.tensor(1)])
@pytest.mark.parametrize("pad", [None, 0.0])
@pytest.mark.parametrize("stride", [1, 2])
def test_torch_tensor_l_by_f(y: object, pad: float | None, stride: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)  # (L, F)
    window = 2
    got = split(x, y, window=window, stride=stride, pad=pad)
    expected = _reference_array_pairs(x.numpy(), None if y is None else "y", window, stride, pad)
    assert len(got) == len(expected) > 0
    for (w, t), (w_ref, t_ref) in zip(got, expected, strict=True):
        assert isinstance(w, torch.Tensor) and w.shape == (window, 4) and w.dtype == torch.float64
        np.testing.assert_array_equal(w.numpy(), np.stack(w_ref))
        if y is None:
            assert t.shape == (4,)
            np.testing.assert_array_equal(t.numpy(), t_ref)
        else:
            assert t is y


def test_array_pad_rows_and_gradients() -> None:
    x = torch.arange(6.0).reshape(3, 2).requires_grad_()  # (L=3, F=2)
    pairs = split(x, window=2, pad=torch.tensor([-1.0, -2.0]))
    assert torch.equal(pairs[0][0], torch.tensor([[-1.0, -2.0], [-1.0, -2.0]]))
    assert torch.equal(pairs[1][0], torch.tensor([[-1.0, -2.0], [0.0, 1.0]]))
    assert torch.equal(pairs[2][1], torch.tensor([4.0, 5.0]))
    # Windows stay differentiable with respect to x.
    sum(w.sum() for w, _ in pairs).backward()
    assert torch.equal(x.grad, torch.tensor([[2.0, 2.0], [1.0, 1.0], [0.0, 0.0]]))


def test_one_dimensional_and_integer_arrays() -> None:
    pairs = split(np.arange(5), window=2, pad=-1)
    assert [w.tolist() for w, _ in pairs] == [[-1, -1], [-1, 0], [0, 1], [1, 2], [2, 3]]
    assert [int(t) for _, t in pairs] == [0, 1, 2, 3, 4]
    assert all(w.dtype == np.arange(5).dtype for w, _ in pairs)
    tpairs = split(torch.arange(5), 0, window=3, stride=3)
    assert [w.tolist() for w, _ in tpairs] == [[0, 1, 2]]


# ---- errors -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"window": 0}, ValueError, "window must be >= 1"),
        ({"window": -2}, ValueError, "window must be >= 1"),
        ({"window": 2.0}, TypeError, "window must be an int"),
        ({"window": True}, TypeError, "window must be an int"),
        ({"window": 2, "stride": 0}, ValueError, "stride must be >= 1"),
        ({"window": 2, "stride": "1"}, TypeError, "stride must be an int"),
        ({"window": 2, "unit": "sentence"}, ValueError, "unit must be"),
        ({"window": 2, "pad": 0}, TypeError, "pad must be a str"),
        ({"window": 2, "pad": "##"}, ValueError, "pad must be one character"),
        ({"window": 2, "pad": ""}, ValueError, "pad must be one character"),
        ({"window": 2, "pad": "a b", "unit": "word"}, ValueError, "pad must be a non-empty word"),
    ],
)
def test_bad_arguments_on_strings(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        split("some text here", **kwargs)


def test_unit_on_non_string_raises() -> None:
    with pytest.raises(TypeError, match="unit='word' applies only when x is a str"):
        split(["a", "b", "c"], window=1, unit="word")
    with pytest.raises(TypeError, match="unit='char'"):
        split(np.zeros((3, 2)), window=1, unit="char")


@pytest.mark.parametrize("x", [np.zeros((4, 2)), torch.zeros(4, 2)])
def test_bad_pad_for_arrays(x: object) -> None:
    with pytest.raises(TypeError, match="pad must be a"):
        split(x, window=2, pad="#")
    with pytest.raises(ValueError, match="pad of shape"):
        split(x, window=2, pad=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("x", [np.arange(4), torch.arange(4)])
def test_pad_not_representable_in_integer_dtype(x: object) -> None:
    with pytest.raises(ValueError, match="cannot be held exactly"):
        split(x, window=2, pad=0.5)
    with pytest.raises(ValueError, match="cannot be held exactly"):
        split(x, window=2, pad=float("nan"))


@pytest.mark.parametrize("x", [b"bytes", 42, {"a": 1}, np.float64(3.0), torch.tensor(3.0)])
def test_unsupported_x(x: object) -> None:
    with pytest.raises((TypeError, ValueError), match="x "):
        split(x, window=1)
