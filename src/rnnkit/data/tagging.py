"""Tagging data: CoNLL-style files of ``token  tag`` lines, their vocabularies, a seeded split and the collate.

File format (what :func:`read_conll` reads and :func:`write_conll` writes)::

    # a comment line (skipped)
    The      DET
    cat      NOUN
    sat      VERB

    Dogs     NOUN
    bark     VERB

One token per line, its tag in the last whitespace-separated column (tab or spaces); a blank line ends a
sequence. Files with more columns (CoNLL-2003: ``token POS chunk NER``) are read as token = first column, tag =
last column; every token line of a file must have the same number of columns, and a ``-DOCSTART-`` line ends a
sequence like a blank one. A file of one column holds tokens only (inputs to tag, no tags).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnnkit.data.batching import IGNORE_INDEX, Batch, _check_ids, _pad_ids
from rnnkit.data.datasets import _existing, _read_text
from rnnkit.data.vocab import PAD, UNK, Vocab

__all__ = [
    "TaggedSequences",
    "build_tag_list",
    "build_word_vocab",
    "collate_tagging",
    "encode_tags",
    "encode_tokens",
    "parse_conll",
    "read_conll",
    "split_sequences",
    "unk_rate",
    "write_conll",
]


@dataclass
class TaggedSequences:
    """Token sequences and their per-token tags (``tags`` None for untagged input), read from ``source``.

    ``lines[i]`` is the 1-based line number where sequence ``i`` starts in the file (0 when not from a file).
    """

    tokens: list[list[str]]
    tags: list[list[str]] | None
    source: str = ""
    lines: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.lines:
            self.lines = [0] * len(self.tokens)
        if self.tags is not None:
            if len(self.tags) != len(self.tokens):
                raise ValueError(f"{len(self.tokens)} token sequences but {len(self.tags)} tag sequences")
            for i, (toks, tags) in enumerate(zip(self.tokens, self.tags, strict=True)):
                if len(toks) != len(tags):
                    raise ValueError(f"sequence {i} has {len(toks)} tokens but {len(tags)} tags")
        for i, toks in enumerate(self.tokens):
            if not toks:
                raise ValueError(f"sequence {i} is empty; every sequence needs at least one token")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def is_tagged(self) -> bool:
        return self.tags is not None

    @property
    def num_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)

    def subset(self, indices: Iterable[int]) -> TaggedSequences:
        """The sequences at ``indices``, in that order."""
        idx = list(indices)
        return TaggedSequences(
            [self.tokens[i] for i in idx],
            None if self.tags is None else [self.tags[i] for i in idx],
            self.source,
            [self.lines[i] for i in idx],
        )

    def fingerprint(self) -> str:
        """A short hash of every token and tag: a saved split refuses data whose fingerprint changed."""
        h = hashlib.blake2b(digest_size=8)
        for i, toks in enumerate(self.tokens):
            tags = self.tags[i] if self.tags is not None else []
            h.update(("\x1f".join(toks) + "\x1e" + "\x1f".join(tags) + "\x1d").encode())
        return h.hexdigest()


def parse_conll(text: str, source: str = "<text>", require_tags: bool = True) -> TaggedSequences:
    """Parse CoNLL-style text (see the module docstring) into :class:`TaggedSequences`.

    Args:
        text: the file's text.
        source: the name used in error messages.
        require_tags: a one-column text (tokens only) is an error; with False it gives ``tags=None``.

    Raises:
        ValueError: a line whose column count differs from the first token line's (naming the line), a
            one-column text when ``require_tags``, or no token at all.
    """
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    starts: list[int] = []
    toks: list[str] = []
    tgs: list[str] = []
    columns = 0
    first_line = 0

    def close() -> None:
        nonlocal toks, tgs
        if toks:
            tokens.append(toks)
            tags.append(tgs)
            starts.append(first_line)
        toks, tgs = [], []

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("-DOCSTART-"):
            close()
            continue
        parts = line.split()
        # a comment, unless it is a token line whose token is "#" (Penn Treebank tags "#" as #)
        if line.startswith("#") and not (parts[0] == "#" and columns > 1 and len(parts) == columns):
            continue
        if columns == 0:
            columns = len(parts)
            if columns == 1 and require_tags:
                raise ValueError(
                    f"{source}, line {number}: {line!r} has no tag; expected 'token<TAB>tag' (one token and its "
                    "tag per line, a blank line between sequences)"
                )
        elif len(parts) != columns:
            raise ValueError(
                f"{source}, line {number}: {line!r} has {len(parts)} columns, but the file's first token line has "
                f"{columns}; every line needs 'token<TAB>tag' (a token cannot contain spaces)"
            )
        if not toks:
            first_line = number
        toks.append(parts[0])
        tgs.append(parts[-1])
    close()
    if not tokens:
        raise ValueError(f"{source} holds no tokens; expected 'token<TAB>tag' lines, a blank line between sequences")
    return TaggedSequences(tokens, tags if columns > 1 else None, source, starts)


def read_conll(path: str | Path, require_tags: bool = True) -> TaggedSequences:
    """Read a CoNLL-style file (UTF-8); see :func:`parse_conll`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed line (named by its number), no tokens, a folder, or a file that is not UTF-8.
    """
    p = _existing(path, "file")
    return parse_conll(_read_text(p), source=str(p), require_tags=require_tags)


def write_conll(path: str | Path, tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> Path:
    """Write sequences as ``token<TAB>tag`` lines with a blank line after each sequence; returns the path."""
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} token sequences but {len(tags)} tag sequences")
    out: list[str] = []
    for i, (toks, tgs) in enumerate(zip(tokens, tags, strict=True)):
        if len(toks) != len(tgs) or not toks:
            raise ValueError(f"sequence {i} has {len(toks)} tokens and {len(tgs)} tags; they must match and be > 0")
        for tok, tag in zip(toks, tgs, strict=True):
            if not tok or not tag or len(tok.split()) != 1 or len(tag.split()) != 1:
                raise ValueError(f"sequence {i}: token {tok!r} / tag {tag!r} must be non-empty and without spaces")
            out.append(f"{tok}\t{tag}")
        out.append("")
    p = Path(path)
    p.write_text("\n".join(out) + "\n", encoding="utf-8")
    return p


def build_word_vocab(tokens: Sequence[Sequence[str]], min_count: int = 1) -> Vocab:
    """A word-level :class:`~rnnkit.data.vocab.Vocab` of the tokens seen at least ``min_count`` times.

    Rarer tokens encode as ``UNK``; with ``min_count=2`` the words seen once in training stand for the unknown
    words met later, so the ``UNK`` embedding gets trained.
    """
    return Vocab.build([" ".join(t) for t in tokens], unit="word", min_count=min_count)


def build_tag_list(*tag_sequences: Iterable[Sequence[str]]) -> list[str]:
    """The distinct tags of every given collection of tag sequences, sorted (tag id = position)."""
    return sorted({tag for seqs in tag_sequences for tags in seqs for tag in tags})


def encode_tokens(vocab: Vocab, tokens: Sequence[str]) -> list[int]:
    """Token ids; a token outside the vocabulary becomes ``UNK`` (tokens are whole words: no re-splitting)."""
    return [vocab.id_of(t) for t in tokens]


def encode_tags(tags: Sequence[str], index: dict[str, int], where: str = "") -> list[int]:
    """Tag ids from ``index`` (tag → id); an unknown tag raises ``ValueError`` naming it and the known tags."""
    try:
        return [index[t] for t in tags]
    except KeyError as e:
        known = ", ".join(sorted(index))
        raise ValueError(f"{where or 'the data'}: tag {e.args[0]!r} is not one of the model's tags ({known})") from None


def collate_tagging(token_ids: Sequence[Sequence[int]], tag_ids: Sequence[Sequence[int]] | None = None) -> Batch:
    """Pad tagged sequences into ``Batch(inputs (B, T) long, lengths (B,), targets (B, T) long | None)``.

    ``inputs`` are padded with ``PAD``, ``targets`` with :data:`~rnnkit.data.batching.IGNORE_INDEX`.
    """
    seqs = _check_ids(token_ids, allow_empty=False)
    targets = None
    if tag_ids is not None:
        tgs = [list(map(int, t)) for t in tag_ids]
        if len(tgs) != len(seqs) or any(len(a) != len(b) for a, b in zip(seqs, tgs, strict=False)):
            raise ValueError("every token sequence needs exactly one tag per token")
        targets = _pad_ids(tgs, IGNORE_INDEX)  # (B, T)
    return Batch(
        inputs=_pad_ids(seqs, PAD),  # (B, T)
        lengths=torch.tensor([len(s) for s in seqs], dtype=torch.long),  # (B,)
        targets=targets,
    )


def _rank(seed: int, tokens: Sequence[str]) -> bytes:
    # a hash of the sentence, not an RNG stream: a sequence's part depends only on it and the seed
    return hashlib.blake2b(f"{seed}\x00{' '.join(tokens)}".encode(), digest_size=8).digest()


def split_sequences(data: TaggedSequences, val: float = 0.1, test: float = 0.1, seed: int = 0) -> dict[str, list[int]]:
    """Indices of the train/val/test sequences, by sentence, deterministic in ``seed``.

    Identical token sequences form one group (so a sentence never sits in train and test at once); groups are
    ordered by a seeded hash; the first ``max(1, round(G·test))`` go to test, the next ``max(1, round(G·val))``
    to validation (none for a fraction of 0), the rest to train.

    Raises:
        ValueError: bad fractions or too few distinct sequences to give every part one.
    """
    for name, f in (("val", val), ("test", test)):
        if not isinstance(f, (int, float)) or not 0 <= f < 1:
            raise ValueError(f"{name} fraction must be in [0, 1), got {f!r}")
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, toks in enumerate(data.tokens):
        groups.setdefault(tuple(toks), []).append(i)
    G = len(groups)
    n_test = max(1, round(G * test)) if test > 0 else 0
    n_val = max(1, round(G * val)) if val > 0 else 0
    if n_test + n_val >= G:
        raise ValueError(
            f"{data.source or 'the data'} has {G} distinct sequences: too few for a train/val/test split "
            f"({n_test} test + {n_val} validation would leave no training data); give more data or --test-data"
        )
    order = sorted(groups, key=lambda k: _rank(seed, k))
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for j, key in enumerate(order):
        name = "test" if j < n_test else "val" if j < n_test + n_val else "train"
        parts[name] += groups[key]
    return {k: sorted(v) for k, v in parts.items()}


def unk_rate(vocab: Vocab, data: TaggedSequences) -> float:
    """Fraction of ``data``'s tokens that encode as ``UNK``."""
    n = data.num_tokens
    return sum(1 for toks in data.tokens for t in toks if vocab.id_of(t) == UNK) / n if n else 0.0
