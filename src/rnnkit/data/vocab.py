"""Symbol vocabularies: characters or words to ids and back, with fixed special ids.

Ids 0..3 are always the special symbols (:data:`PAD`, :data:`BOS`, :data:`EOS`, :data:`UNK`); the symbols seen
in the training items follow in code-point order, so a vocabulary built twice from the same items is
identical. A :class:`Vocab` round-trips through JSON (:meth:`Vocab.to_dict` / :meth:`Vocab.from_dict`) and is
saved in a run folder's ``config.json``.
"""

from __future__ import annotations

import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal

PAD = 0
"""Padding id; padded input positions hold it and never change a result."""
BOS = 1
"""Beginning-of-item id: the first input of a generator."""
EOS = 2
"""End-of-item id: the last target of a generator; :meth:`Vocab.decode` stops at it."""
UNK = 3
"""Id of every symbol not in the vocabulary (unless ``strict=True``)."""
SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
"""Display names of ids 0..3. They never collide with data: a word ``"<pad>"`` in the data gets its own id."""

Unit = Literal["char", "word"]

# Letters that Unicode NFD does not decompose into a base letter + combining marks; the PyTorch tutorial drops
# them ("Łukasz" -> "ukasz"), we transliterate them instead so that folding keeps every letter.
_TRANSLITERATE = {
    "Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "Đ": "D", "đ": "d", "Ð": "D", "ð": "d", "Þ": "Th", "þ": "th",
    "Æ": "Ae", "æ": "ae", "Œ": "Oe", "œ": "oe", "ß": "ss", "ı": "i", "Ħ": "H", "ħ": "h", "Ŀ": "L", "ŀ": "l",
    "Ŧ": "T", "ŧ": "t", "Ĳ": "IJ", "ĳ": "ij", "Ŋ": "Ng", "ŋ": "ng", "ĸ": "k", "ſ": "s",
}  # fmt: skip
ASCII_KEEP = frozenset(string.ascii_letters + " .,;'-")
"""Characters :func:`fold_ascii` keeps: the PyTorch tutorial's ``ascii_letters + " .,;'"``, plus ``-``."""


def fold_ascii(text: str) -> str:
    """Fold ``text`` to ASCII the way the PyTorch char-RNN tutorial does.

    Decompose (NFD), drop combining marks (``"Ślusàrski" -> "Slusarski"``), transliterate the few letters that
    do not decompose (``ł -> l``, ``ø -> o``, ``ß -> ss``, ``æ -> ae``, ...), and drop every character outside
    :data:`ASCII_KEEP`. Two differences from the tutorial: it drops ``ł``-like letters instead of
    transliterating them, and it drops ``-`` (kept here: hyphenated names such as ``Jean-Claude`` stay
    readable).
    """
    out = []
    for ch in unicodedata.normalize("NFD", text):
        if unicodedata.category(ch) == "Mn":
            continue
        ch = _TRANSLITERATE.get(ch, ch)
        out.append("".join(c for c in ch if c in ASCII_KEEP))
    return "".join(out)


class Vocab:
    """A character or word vocabulary with fixed special ids ``PAD=0, BOS=1, EOS=2, UNK=3``.

    Build it from the training items with :meth:`build`; items are split into symbols by :meth:`tokenize`
    (characters for ``unit="char"``, whitespace-separated words for ``unit="word"``), after ASCII folding when
    ``fold_ascii`` is set. Unicode is kept as is by default.

    Args:
        symbols: the regular symbols, in id order; symbol ``symbols[k]`` gets id ``4 + k``.
        unit: ``"char"`` or ``"word"``.
        fold_ascii: fold every item with :func:`fold_ascii` before splitting it into symbols.
        max_len: the most symbols an item may have (``None``: no limit); :meth:`encode` refuses a longer item
            with a ``ValueError`` naming its length and the limit. Saved with the vocabulary, so a run applies
            the limit it was trained with to whatever it is later given.
    """

    def __init__(
        self, symbols: Iterable[str], unit: Unit = "char", fold_ascii: bool = False, max_len: int | None = None
    ) -> None:
        if unit not in ("char", "word"):
            raise ValueError(f"unit must be 'char' or 'word', got {unit!r}")
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
            raise ValueError(f"max_len must be a positive integer or None (no limit), got {max_len!r}")
        self.unit: Unit = unit
        self.fold_ascii = bool(fold_ascii)
        self.max_len = max_len
        self.symbols: list[str] = list(symbols)
        self._stoi: dict[str, int] = {}
        for i, s in enumerate(self.symbols, start=len(SPECIALS)):
            if not isinstance(s, str) or not s:
                raise ValueError(f"vocabulary symbols must be non-empty strings, got {s!r}")
            if unit == "char" and len(s) != 1:
                raise ValueError(f"a character vocabulary holds single characters, got {s!r}")
            if s in self._stoi:
                raise ValueError(f"duplicate vocabulary symbol {s!r}")
            self._stoi[s] = i

    # -- construction ---------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        items: Iterable[str],
        unit: Unit = "char",
        min_count: int = 1,
        fold_ascii: bool = False,
        max_len: int | None = None,
    ) -> Vocab:
        """Build a vocabulary from training items.

        Args:
            items: the training items (strings).
            unit: ``"char"`` or ``"word"``.
            min_count: keep symbols seen at least this many times; rarer ones will encode as :data:`UNK`.
            fold_ascii: fold items to ASCII first (see :func:`fold_ascii`).
            max_len: the most symbols an item may have, checked by :meth:`encode` (``None``: no limit).

        Returns:
            A vocabulary whose regular symbols are sorted by code point (deterministic).
        """
        if isinstance(items, str):
            raise TypeError("items must be a list of strings, not one string")
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
        probe = cls([], unit=unit, fold_ascii=fold_ascii, max_len=max_len)
        counts: Counter[str] = Counter()
        n = 0
        for item in items:
            counts.update(probe.tokenize(item))
            n += 1
        if n == 0:
            raise ValueError("cannot build a vocabulary from zero items")
        kept = sorted(s for s, c in counts.items() if c >= min_count)
        return cls(kept, unit=unit, fold_ascii=fold_ascii, max_len=max_len)

    # -- mapping --------------------------------------------------------------------------------------------
    def tokenize(self, item: str) -> list[str]:
        """Split ``item`` into symbols: its characters, or its whitespace-separated words (after folding)."""
        if not isinstance(item, str):
            raise TypeError(f"items must be strings, got {type(item).__name__}: {item!r}")
        if self.fold_ascii:
            item = fold_ascii(item)
        return list(item) if self.unit == "char" else item.split()

    def encode(self, item: str, add_bos: bool = False, add_eos: bool = False, strict: bool = False) -> list[int]:
        """Map ``item`` to ids ``[BOS]? + symbol ids + [EOS]?``.

        Args:
            item: one item (a name, a sentence).
            add_bos: prepend :data:`BOS`.
            add_eos: append :data:`EOS`.
            strict: raise ``ValueError`` naming the unknown symbols instead of mapping them to :data:`UNK`
                (use it at predict time, where an unknown symbol is the user's input error).

        Returns:
            A list of ints, length ``len(tokenize(item)) + add_bos + add_eos``.

        Raises:
            ValueError: the item has more than :attr:`max_len` symbols, or (``strict``) unknown symbols.
        """
        symbols = self.tokenize(item)
        if self.max_len is not None and len(symbols) > self.max_len:
            kind = "characters" if self.unit == "char" else "words"
            shown = item if len(item) <= 30 else item[:27] + "..."
            raise ValueError(
                f"item {shown!r} has {len(symbols)} {kind}, more than the maximum of {self.max_len}; shorten it, "
                "or train with a larger maximum length"
            )
        ids = [self._stoi.get(s, UNK) for s in symbols]
        if strict and UNK in ids:
            unknown = sorted({s for s, i in zip(symbols, ids, strict=True) if i == UNK})
            shown = ", ".join(repr(s) for s in unknown)
            kind = "character" if self.unit == "char" else "word"
            raise ValueError(
                f"unknown {kind}{'s' if len(unknown) > 1 else ''} {shown} in {item!r}: not in the training "
                f"vocabulary ({len(self.symbols)} symbols); remove {'them' if len(unknown) > 1 else 'it'} or "
                "train on data that contains them"
            )
        return [BOS] * add_bos + ids + [EOS] * add_eos

    def decode(self, ids: Iterable[int], unk: str = "\N{REPLACEMENT CHARACTER}") -> str:
        """Map ids back to text: stop at the first :data:`EOS`, skip :data:`PAD` and :data:`BOS`.

        Args:
            ids: ids (a list, or a 1-D tensor/array; ``int()`` is applied to each).
            unk: the text written for :data:`UNK`.

        Returns:
            The item: characters joined with ``""``, words with ``" "``.
        """
        out: list[str] = []
        for raw in ids:
            i = int(raw)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            if i == UNK:
                out.append(unk)
            elif len(SPECIALS) <= i < len(self):
                out.append(self.symbols[i - len(SPECIALS)])
            else:
                raise ValueError(f"id {i} is outside this vocabulary (ids 0..{len(self) - 1})")
        return ("" if self.unit == "char" else " ").join(out)

    def id_of(self, symbol: str) -> int:
        """The id of one regular symbol (:data:`UNK` if absent)."""
        return self._stoi.get(symbol, UNK)

    def __len__(self) -> int:
        """``V``: the number of ids, the 4 specials included."""
        return len(SPECIALS) + len(self.symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._stoi

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        mine = (self.unit, self.fold_ascii, self.max_len, self.symbols)
        return mine == (other.unit, other.fold_ascii, other.max_len, other.symbols)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking container: compare, don't hash

    def __repr__(self) -> str:
        limit = "" if self.max_len is None else f", max_len={self.max_len}"
        return f"Vocab(unit={self.unit!r}, size={len(self)}, fold_ascii={self.fold_ascii}{limit})"

    # -- JSON -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description, enough to rebuild this vocabulary exactly (``max_len`` only when set)."""
        out: dict[str, Any] = {
            "unit": self.unit,
            "fold_ascii": self.fold_ascii,
            "specials": list(SPECIALS),
            "symbols": list(self.symbols),
        }
        if self.max_len is not None:
            out["max_len"] = self.max_len
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Vocab:
        """Rebuild a vocabulary from :meth:`to_dict`'s output; a malformed dict raises ``ValueError``."""
        if not isinstance(d, Mapping) or not isinstance(d.get("symbols"), list):
            raise ValueError("not a saved vocabulary: expected a mapping with a 'symbols' list")
        specials = d.get("specials", list(SPECIALS))
        if list(specials) != list(SPECIALS):
            raise ValueError(f"saved vocabulary has specials {specials!r}; rnnkit uses {list(SPECIALS)!r}")
        return cls(
            d["symbols"],
            unit=d.get("unit", "char"),
            fold_ascii=bool(d.get("fold_ascii", False)),
            max_len=d.get("max_len"),
        )
