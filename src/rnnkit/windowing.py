"""The lecture's windowing baseline: cut a sequence into fixed-length windows, each paired with a target.

The lecture breaks a sequence ``x`` into fixed-length windows ``w_j`` of length ``W`` and applies a standard
(non-recurrent) network ``f`` to each one::

    split(x, y) = {(w_j, y_j)}_{j=1}^{dim(x)/W}        ŷ_j = f(w_j)

:func:`split` builds those pairs for strings (cut into characters or words), token lists and real-valued arrays
(numpy arrays or torch tensors of shape ``(L, F)``, or ``(L,)``). Shape symbols: ``L`` sequence length, ``W``
window length, ``F`` features per element.

:class:`WindowCore` is the fixed-window model itself as a sequence core (``--model window --window W``): the MLP
``f`` applied to the causal window of the last ``W`` inputs at every step, in the registry's core contract, so
every task model can use it.
"""

from __future__ import annotations

import operator
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.dropout import Dropout
from rnnkit.masks import length_mask

__all__ = ["WindowCore", "split"]

Unit = Literal["char", "word"]


def split(
    x: str | Sequence[Any] | np.ndarray | torch.Tensor,
    y: Any = None,
    *,
    window: int,
    stride: int = 1,
    pad: Any = None,
    unit: Unit | None = None,
) -> list[tuple[Any, Any]]:
    """Cut ``x`` into windows of ``window`` elements and pair each with a target: the lecture's ``split(x, y)``.

    ``split(x, y) = {(w_j, y_j)}_{j=1}^{dim(x)/W}``: with ``stride=window``, ``y`` given and no ``pad``, a sequence
    of length ``L`` gives ``L // W`` non-overlapping windows (a tail shorter than ``W`` is dropped). The lecture's
    examples use ``stride=1`` (overlapping windows), the default.

    Targets:

    - ``y=None``: the target of a window is the element that follows it (next-element prediction). Without
      ``pad`` the pairs are ``(x[j-W:j], x[j])`` for ``j = W, W+stride, ...`` up to ``L-1``; an element is a
      target only if ``W`` elements precede it. With ``pad``, ``W`` copies of ``pad`` go before ``x``, so the pairs
      are ``(x_padded[j:j+W], x[j])`` for ``j = 0, stride, ...`` up to ``L-1``: one window per element at stride 1,
      the first one all padding (the lecture's ``("###", "H")``).
    - ``y`` given (any value: a label, a number, a tensor): every window carries ``y``. Without ``pad`` the windows
      are ``x[i:i+W]`` for ``i = 0, stride, ...`` up to ``L-W`` (every full window). With ``pad``, ``W-1`` copies of
      ``pad`` go before ``x``, so the first window ends at the first element and, at stride 1, every element ends
      exactly one window (``L`` windows).

    Sequences shorter than the window: with ``pad`` there is always at least one window (padding is on the left,
    never on the right). Without ``pad``, a sequence that yields no window at all — shorter than ``W`` with ``y``
    given, or not longer than ``W`` with ``y=None`` — raises ``ValueError`` (as ``numpy``'s ``sliding_window_view``
    and ``torch.Tensor.unfold`` do) rather than silently returning ``[]``; pass ``pad`` to keep it. An empty
    sequence always raises ``ValueError``.

    Args:
        x: the sequence. A ``str`` is cut by ``unit``; a list or tuple is a sequence of tokens (any objects); a
            numpy array or torch tensor of shape ``(L, F)`` (or ``(L,)``, or ``(L, *)``) is a sequence of ``L``
            elements along its first dimension.
        y: ``None`` for next-element targets, otherwise the target carried by every window.
        window: ``W``, the number of elements in each window (``>= 1``).
        stride: the step between the starts of consecutive windows (``>= 1``); ``stride=window`` gives
            non-overlapping windows.
        pad: ``None`` for no padding, else the padding element put on the left: a one-character ``str`` for
            ``unit="char"``, a non-empty ``str`` without whitespace (a pad word such as ``"<pad>"``) for
            ``unit="word"``, any token for a token list, and a number (or a row broadcastable to ``x.shape[1:]``)
            for arrays and tensors, cast to ``x``'s dtype (a value an integer dtype cannot hold raises).
        unit: strings only: ``"char"`` (the default for a ``str``) cuts into characters, keeping spaces and
            punctuation; ``"word"`` splits on whitespace and strips punctuation from both ends of each word
            (``"movie."`` → ``"movie"``, ``"don't"`` stays; a word that is all punctuation is dropped).

    Returns:
        A list of ``(window, target)`` pairs in order. Windows of a ``str`` are strings (characters joined with
        ``""``, words with ``" "``); of a tuple, tuples; of any other token sequence, lists; of an array or tensor,
        arrays or tensors of shape ``(W, *x.shape[1:])`` (views of one padded copy; copy before writing to them),
        on ``x``'s device and with ``x``'s dtype. Next-element targets are elements of ``x``: a character, a word,
        a token, or a row of shape ``x.shape[1:]``.

    Raises:
        TypeError: ``x`` of an unsupported type, ``window``/``stride`` not integers, ``unit`` given for a
            non-string ``x``, or ``pad`` of the wrong type for ``x``.
        ValueError: ``window < 1``, ``stride < 1``, an unknown ``unit``, an empty sequence, a sequence too short
            for one window without ``pad``, or a ``pad`` of the wrong length/shape/value.

    Examples:
        The lecture's two examples (stride 1):

        >>> pairs = split("Hello world!", window=3, pad="#", unit="char")
        >>> pairs[:5]
        [('###', 'H'), ('##H', 'e'), ('#He', 'l'), ('Hel', 'l'), ('ell', 'o')]
        >>> len(pairs), pairs[-1]
        (12, ('rld', '!'))
        >>> split("This is a great movie.", +1, window=2, unit="word")
        [('This is', 1), ('is a', 1), ('a great', 1), ('great movie', 1)]

        Non-overlapping windows, ``dim(x)/W`` of them:

        >>> split("abcdefg", "label", window=3, stride=3)
        [('abc', 'label'), ('def', 'label')]

        Real-valued sequences of shape ``(L, F)``:

        >>> w, t = split(np.arange(8.0).reshape(4, 2), window=2)[0]
        >>> w.shape, t.tolist()
        ((2, 2), [4.0, 5.0])
    """
    window = _positive_int(window, "window")
    stride = _positive_int(stride, "stride")
    if unit is not None and unit not in ("char", "word"):
        raise ValueError(f"unit must be 'char', 'word' or None, got {unit!r}")

    if isinstance(x, str):
        return _split_str(x, y, window, stride, pad, unit or "char")
    if unit is not None:
        raise TypeError(f"unit={unit!r} applies only when x is a str, but x is a {type(x).__name__}; leave unit=None")
    if isinstance(x, torch.Tensor):
        seq, n_pad = _pad_tensor(x, window, pad, y is None)
        return _pairs(seq, x, y, window, stride, n_pad, lambda s: s)
    if isinstance(x, np.ndarray):
        seq, n_pad = _pad_array(x, window, pad, y is None)
        return _pairs(seq, x, y, window, stride, n_pad, lambda s: s)
    if isinstance(x, (bytes, bytearray)):
        raise TypeError("x is bytes: decode it to a str first (x.decode()), or pass a list of ints")
    if isinstance(x, Sequence):
        tokens = list(x)
        _check_nonempty(len(tokens))
        n_pad = 0 if pad is None else _n_pad(window, y is None)
        seq = [pad] * n_pad + tokens
        make = tuple if isinstance(x, tuple) else list
        return _pairs(seq, tokens, y, window, stride, n_pad, make)
    raise TypeError(f"x must be a str, a list/tuple of tokens, a numpy array or a torch tensor, got {type(x).__name__}")


def _positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1, or a TypeError/ValueError naming the argument."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _check_nonempty(length: int) -> None:
    if length == 0:
        raise ValueError("x is an empty sequence: split needs at least one element")


def _n_pad(window: int, next_element: bool) -> int:
    """Pad elements put before x: W for next-element targets (the first target is x[0]), W-1 when y is given
    (the first window ends at x[0])."""
    return window if next_element else window - 1


def _pairs(seq: Any, elems: Any, y: Any, window: int, stride: int, n_pad: int, make: Any) -> list[tuple[Any, Any]]:
    """The (window, target) pairs over ``seq`` (the padded sequence, ``n_pad`` pad elements then ``elems``)."""
    length = len(elems)
    if y is None:
        # Target x[j] follows the window seq[e-W:e] with e = j + n_pad (exclusive end in padded coordinates).
        first = window - n_pad  # 0 with pad, W without
        pairs = [(make(seq[j + n_pad - window : j + n_pad]), elems[j]) for j in range(first, length, stride)]
    else:
        pairs = [(make(seq[i : i + window]), y) for i in range(0, len(seq) - window + 1, stride)]
    if not pairs:  # only possible without pad: with pad every sequence of length >= 1 has a first window
        needed = window + 1 if y is None else window
        why = "next-element targets need" if y is None else "a window needs"
        raise ValueError(
            f"x has {length} element(s) but window={window}: {why} at least {needed}; "
            "pass pad=... to left-pad short sequences, or use a smaller window"
        )
    return pairs


def _words(text: str) -> list[str]:
    """Whitespace-separated words with punctuation stripped from both ends; all-punctuation words dropped."""
    words = []
    for raw in text.split():
        start, end = 0, len(raw)
        while start < end and unicodedata.category(raw[start]).startswith("P"):
            start += 1
        while end > start and unicodedata.category(raw[end - 1]).startswith("P"):
            end -= 1
        if start < end:
            words.append(raw[start:end])
    return words


def _split_str(text: str, y: Any, window: int, stride: int, pad: Any, unit: Unit) -> list[tuple[Any, Any]]:
    elems = list(text) if unit == "char" else _words(text)
    if not elems:
        what = "an empty string" if not text else f"{text!r}, which has no words once punctuation is dropped"
        raise ValueError(f"x is {what}: split needs at least one element")
    n_pad = 0
    if pad is not None:
        if not isinstance(pad, str):
            raise TypeError(f"pad must be a str when x is a str, got {type(pad).__name__} {pad!r}")
        if unit == "char" and len(pad) != 1:
            raise ValueError(f"pad must be one character for unit='char', got {pad!r}")
        if unit == "word" and (not pad or any(ch.isspace() for ch in pad)):
            raise ValueError(f"pad must be a non-empty word without whitespace for unit='word', got {pad!r}")
        n_pad = _n_pad(window, y is None)
    seq = [pad] * n_pad + elems
    joiner = "" if unit == "char" else " "
    return _pairs(seq, elems, y, window, stride, n_pad, joiner.join)


def _check_pad_value(pad: Any) -> None:
    if isinstance(pad, (str, bytes)):
        raise TypeError(f"pad must be a number (or a row of numbers) when x is an array or tensor, got {pad!r}")


def _pad_array(x: np.ndarray, window: int, pad: Any, next_element: bool) -> tuple[np.ndarray, int]:
    """x with the pad rows prepended (x itself without pad), and the number of pad rows."""
    if x.ndim == 0:
        raise ValueError("x is a 0-d array: split needs a sequence of shape (L, F) or (L,)")
    _check_nonempty(x.shape[0])
    if pad is None:
        return x, 0
    if x.dtype.kind in "biufc":  # a numeric array: the pad must be numeric too
        _check_pad_value(pad)
        pad_arr = np.asarray(pad)
        if pad_arr.dtype.kind not in "biufc" or (pad_arr.dtype.kind == "c" and x.dtype.kind != "c"):
            raise TypeError(f"pad must be a real number (or a row of them) for x of dtype {x.dtype}, got {pad!r}")
    else:  # e.g. an array of strings or objects: any pad the dtype holds
        pad_arr = np.asarray(pad, dtype=x.dtype)
    try:
        row = np.broadcast_to(pad_arr, x.shape[1:])
    except ValueError:
        raise ValueError(
            f"pad of shape {pad_arr.shape} does not broadcast to a row of x, shape {x.shape[1:]}"
        ) from None
    with np.errstate(invalid="ignore"):  # NaN/inf cast to an int dtype: caught by the check below
        row_cast = row.astype(x.dtype)
    if x.dtype.kind in "biu" and not np.array_equal(row_cast, row):
        raise ValueError(f"pad={pad!r} cannot be held exactly by x's dtype {x.dtype}")
    n_pad = _n_pad(window, next_element)
    block = np.broadcast_to(row_cast, (n_pad, *x.shape[1:]))  # (n_pad, *F)
    return np.concatenate([block, x], axis=0), n_pad  # (n_pad + L, *F)


def _pad_tensor(x: torch.Tensor, window: int, pad: Any, next_element: bool) -> tuple[torch.Tensor, int]:
    """x with the pad rows prepended (x itself without pad), and the number of pad rows."""
    if x.dim() == 0:
        raise ValueError("x is a 0-d tensor: split needs a sequence of shape (L, F) or (L,)")
    _check_nonempty(x.shape[0])
    if pad is None:
        return x, 0
    _check_pad_value(pad)
    try:
        pad_t = torch.as_tensor(pad)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"pad must be a number (or a row of numbers) when x is a tensor, got {pad!r}") from None
    if pad_t.dtype.is_complex and not x.dtype.is_complex:
        raise TypeError(f"pad must be a real number (or a row of them) for x of dtype {x.dtype}, got {pad!r}")
    try:
        row = torch.broadcast_to(pad_t, x.shape[1:])
    except RuntimeError:
        raise ValueError(
            f"pad of shape {tuple(pad_t.shape)} does not broadcast to a row of x, shape {tuple(x.shape[1:])}"
        ) from None
    row_cast = row.to(dtype=x.dtype)
    if not (x.dtype.is_floating_point or x.dtype.is_complex) and not torch.equal(row_cast.to(row.dtype), row):
        raise ValueError(f"pad={pad!r} cannot be held exactly by x's dtype {x.dtype}")
    n_pad = _n_pad(window, next_element)
    block = row_cast.to(x.device).expand(n_pad, *x.shape[1:])  # (n_pad, *F)
    return torch.cat([block, x], dim=0), n_pad  # (n_pad + L, *F)


def _check_lengths(lengths: Sequence[int] | Tensor, T: int, B: int) -> Tensor:
    """``lengths`` as a ``(B,)`` long tensor, each in ``[1, T]`` (the recurrent layers' rule), else ValueError."""
    lens = torch.as_tensor(lengths)
    if lens.dim() != 1 or lens.shape[0] != B:
        raise ValueError(f"lengths must be 1-D with one entry per sequence (B={B}), got shape {tuple(lens.shape)}")
    if lens.is_floating_point() or lens.is_complex() or lens.dtype == torch.bool:
        raise ValueError(f"lengths must hold integers, got dtype {lens.dtype}")
    lens = lens.to(torch.long)
    if B and (int(lens.min()) < 1 or int(lens.max()) > T):
        raise ValueError(f"lengths must lie in [1, T={T}], got values from {int(lens.min())} to {int(lens.max())}")
    return lens


class WindowCore(nn.Module):
    """The lecture's fixed-window model ``ŷ_j = f(w_j)`` as a batch-first sequence core (registry name ``window``).

    At every step ``t`` the window ``w_t = [x_{t-W+1}, …, x_t]`` (oldest first, left zero-padded, so the first
    window ends at the first element: ``split(x, y, pad=0)`` at stride 1) goes through the MLP ``f``::

        Linear(W·I → H) → act → [Dropout → Linear(H → H) → act] × (num_layers − 1) → Linear(H → H)

    ``num_layers`` counts the hidden layers of ``f`` (``1``: the two-Linear MLP), ``dropout`` acts between
    them. A window has no direction, so ``bidirectional=True`` raises ValueError.

    ``forward(x (B, T, I), hx=None, lengths=None) -> (output (B, T, H), h_n (1, B, H))``: ``output[:, t]`` is
    ``f(w_t)``, zero at ``t >= lengths[b]``; ``h_n`` is each sequence's last valid window output. ``hx``, when
    given, is the context ``(B, W−1, I)`` that precedes ``x`` (in place of the zero padding), the state that
    :meth:`step` carries. The model has no recurrent state: ``h_n`` is an output, not a state to continue from.

    ``per_step_readout = True`` tells task models that each step's output is an independent window prediction:
    the classifier reads every window (not only ``h_n``) and the generator can condition only through the input.
    """

    per_step_readout = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        window: int = 5,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        nonlinearity: str = "tanh",
    ) -> None:
        super().__init__()
        if bidirectional:
            raise ValueError("the window model has no direction: bidirectional must be False")
        self.window = _positive_int(window, "window")
        self.num_layers = _positive_int(num_layers, "num_layers")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        act = nn.Tanh if nonlinearity == "tanh" else nn.ReLU
        layers: list[nn.Module] = [nn.Linear(self.window * input_size, hidden_size), act()]
        for _ in range(self.num_layers - 1):
            layers += [Dropout(dropout), nn.Linear(hidden_size, hidden_size), act()]
        layers.append(nn.Linear(hidden_size, hidden_size))
        self.f = nn.Sequential(*layers)

    def _context(self, x: Tensor, hx: Tensor | None) -> Tensor:
        """The ``W−1`` inputs before ``x``: ``hx`` or zeros, ``(B, W−1, I)``."""
        shape = (x.shape[0], self.window - 1, self.input_size)
        if hx is None:
            return x.new_zeros(shape)
        if tuple(hx.shape) != shape:
            raise ValueError(f"the window context must have shape {shape}, got {tuple(hx.shape)}")
        return hx.to(x.dtype)

    def forward(self, x: Tensor, hx: Tensor | None = None, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"x must have shape (B, T, {self.input_size}), got {tuple(x.shape)}")
        B, T, _ = x.shape
        if T == 0:
            raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")
        w = self.f[0].weight
        if x.dtype != w.dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the weights are {w.dtype}: use x.to({w.dtype}) or module.to({x.dtype})"
            )
        padded = torch.cat([self._context(x, hx), x], dim=1)  # (B, W−1+T, I)
        windows = padded.unfold(1, self.window, 1)  # (B, T, I, W): windows[:, t] ends at x[:, t]
        windows = windows.transpose(2, 3).reshape(B, T, self.window * self.input_size)  # (B, T, W·I) oldest first
        out = self.f(windows)  # (B, T, H)
        if lengths is None:
            last = torch.full((B,), T - 1, dtype=torch.long, device=x.device)
        else:
            lengths = _check_lengths(lengths, T, B).to(x.device)  # (B,)
            valid = length_mask(lengths, T, device=x.device)  # (B, T)
            out = out * valid.unsqueeze(2).to(out.dtype)
            last = lengths - 1
        h_n = out[torch.arange(B, device=x.device), last].unsqueeze(0)  # (1, B, H)
        return out, h_n

    def step(self, x_t: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step: ``x_t`` ``(B, I)``, ``state`` the last ``W−1`` inputs ``(B, W−1, I)`` (None: zeros).

        Returns ``(y_t (B, H), state)``, equal to ``forward`` on the whole sequence at that step.
        """
        window = torch.cat([self._context(x_t.unsqueeze(1), state), x_t.unsqueeze(1)], dim=1)  # (B, W, I)
        y = self.f(window.reshape(x_t.shape[0], self.window * self.input_size))  # (B, H)
        return y, window[:, 1:]
