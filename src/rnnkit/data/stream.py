"""One long token sequence (a book, a log, a corpus) as ``B`` parallel streams read in chunks, for truncated BPTT.

The classic "batchify": a stream of ``N`` tokens becomes ``B`` rows of ``S = (N − 1) // B`` steps, row ``b`` reading
the contiguous text ``tokens[b·S : (b+1)·S]`` and predicting the token after each one (``targets`` are the inputs
shifted by one). The ``N − 1 − B·S < B`` tokens left over at the end are not used. A :class:`TokenStream` yields
``ceil(S / chunk)`` batches of ``chunk`` steps (the last one may be shorter): batch ``n + 1`` continues every row of
batch ``n``, so a model that carries its state from one batch to the next (``rnnkit.train.fit`` with
``TrainConfig.tbptt``) reads each row as one unbroken sequence while gradients stop at chunk boundaries.

Memory: the tokens are stored once, in the narrowest integer type that holds the vocabulary (1 to 4 bytes a token),
and each chunk is converted to ``long`` only when it is yielded, so a stream costs about ``N`` bytes for a
character vocabulary, whatever the chunk and batch size.

Shape symbols: N tokens, B parallel streams (rows), S steps per row, K steps per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.batching import Batch
from rnnkit.data.vocab import Vocab

__all__ = ["TokenStream", "char_vocab", "encode_text", "synthetic_text"]


def _storage_dtype(max_id: int) -> torch.dtype:
    """The narrowest integer dtype that holds ids ``0 .. max_id``."""
    if max_id < 2**8:
        return torch.uint8
    if max_id < 2**15:
        return torch.int16
    return torch.int32


_NUMPY = {torch.uint8: np.uint8, torch.int16: np.int16, torch.int32: np.int32}


def char_vocab(text: str, fold_ascii: bool = False) -> Vocab:
    """The character vocabulary of ``text``: the same as ``Vocab.build([text])``, without a list of ``N`` symbols.

    ``Vocab.build`` splits the text into a list first (8 bytes a character); a set of the distinct characters is
    all a character vocabulary needs, so a book costs nothing extra here.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if fold_ascii:
        return Vocab.build([text], unit="char", fold_ascii=True)
    return Vocab(sorted(set(text)), unit="char")


def encode_text(text: str, vocab: Vocab) -> np.ndarray:
    """The ids ``(N,)`` of every symbol of ``text`` (unknown symbols → :data:`~rnnkit.data.vocab.UNK`).

    Unlike :meth:`Vocab.encode` it builds no Python list of ``N`` ints: the ids go straight into a compact array
    (uint8 / int16 / int32 by vocabulary size), so a book-length text costs about one byte a character.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    dtype = _NUMPY[_storage_dtype(len(vocab) - 1)]
    # a plain character vocabulary reads the string itself; words and ASCII folding need tokenize's list
    symbols = vocab.tokenize(text) if (vocab.unit != "char" or vocab.fold_ascii) else text
    return np.fromiter((vocab.id_of(s) for s in symbols), dtype=dtype, count=len(symbols))


class TokenStream:
    """``B`` parallel streams over one token sequence, yielded as :class:`Batch` chunks of ``K`` steps.

    Args:
        ids: the token ids ``(N,)`` (a list, array or tensor of non-negative ints), e.g. :func:`encode_text`.
        batch_size: ``B``, the parallel rows; ``N ≥ B + 1`` so that every row gets at least one step.
        chunk: ``K``, steps per yielded batch (use ``K1`` of ``TrainConfig.tbptt``); a chunk longer than a row
            yields the whole row in one batch.

    Iterating yields ``Batch(inputs (B, k) long, lengths (B,) = k, targets (B, k) long)`` for ``k = K`` (the last
    chunk: ``S − K·(n−1)``), with ``targets[b, t] = inputs[b, t + 1]`` inside a chunk and across chunk boundaries.
    Every pass yields the same chunks (an epoch restarts the streams from their beginnings); ``len()`` is the
    number of chunks.
    """

    def __init__(self, ids: Sequence[int] | np.ndarray | Tensor, batch_size: int, chunk: int) -> None:
        for name, v in (("batch_size", batch_size), ("chunk", chunk)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(ids, Tensor):
            arr = ids.detach().cpu().numpy()
        else:
            arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids must be one sequence (N,), got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"ids must be integers, got dtype {arr.dtype}")
        n = int(arr.size)
        if n < batch_size + 1:
            raise ValueError(
                f"a stream of {n} tokens is too short for batch_size={batch_size}: each of the {batch_size} rows "
                f"needs at least 2 tokens (input and target); give a longer text or a smaller --batch-size"
            )
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            raise ValueError(f"ids must be >= 0, got {lo}")
        self.batch_size = int(batch_size)
        self.chunk = int(chunk)
        self.steps = (n - 1) // self.batch_size  # S
        self.num_tokens = n
        used = self.batch_size * self.steps + 1
        self._ids = torch.from_numpy(np.ascontiguousarray(arr[:used])).to(_storage_dtype(hi))  # (B·S + 1,)
        self._inputs = self._ids[: used - 1].view(self.batch_size, self.steps)  # (B, S): row b reads ids[b·S + t]
        self._targets = self._ids[1:used].view(self.batch_size, self.steps)  # (B, S): the next token of each

    @property
    def tokens_used(self) -> int:
        """Tokens read as inputs: ``B·S`` (the rest of the sequence is not used)."""
        return self.batch_size * self.steps

    def __len__(self) -> int:
        return math.ceil(self.steps / self.chunk)

    def batch(self, index: int) -> Batch:
        """Chunk ``index`` (0-based) of the streams."""
        if not 0 <= index < len(self):
            raise IndexError(f"chunk index {index} out of range for {len(self)} chunks")
        s = index * self.chunk
        e = min(s + self.chunk, self.steps)
        return Batch(
            inputs=self._inputs[:, s:e].long(),  # (B, k)
            lengths=torch.full((self.batch_size,), e - s, dtype=torch.long),  # (B,)
            targets=self._targets[:, s:e].long(),  # (B, k)
        )

    def pairs(self) -> tuple[Tensor, Tensor]:
        """Every (input, target) pair the chunks hold, flattened: two ``(B·S,)`` tensors of the stored dtype."""
        return self._inputs.reshape(-1), self._targets.reshape(-1)

    def __iter__(self) -> Iterator[Batch]:
        for i in range(len(self)):
            yield self.batch(i)

    def __repr__(self) -> str:
        return (
            f"TokenStream(tokens={self.num_tokens}, batch_size={self.batch_size}, steps={self.steps}, "
            f"chunk={self.chunk})"
        )


# a small English-like word list for synthetic text: frequent words first, drawn with Zipf-like weights
_WORD_TEXT = (
    "the of and to a in that is was he for it with as his on be at by i this had not are but from or have an they "
    "which one you were her all she there would their we him been has when who will more no if out so said what up "
    "its about into than them can only other new some could time these two may then do first any my now such like "
    "our over man me even most made after also did many before must through back years where much your way well "
    "down should because each just those people how too little state good very make world still own see men work "
    "long get here between both life being under never day same another know while last might us great old year off "
    "come since against go came right used take three small house river light night water stone garden letter "
    "window morning evening country mountain city road ship door voice friend mother father table fire winter"
)
_WORDS = tuple(_WORD_TEXT.split())


def synthetic_text(num_chars: int, seed: int = 0) -> str:
    """A deterministic English-like text of exactly ``num_chars`` characters, for benchmarks and tests.

    Sentences of 4–14 words drawn from a fixed list with Zipf-like weights, a capital letter at the start, a full
    stop or comma punctuation, and a paragraph break every few sentences; seeded, so the same ``(num_chars, seed)``
    always gives the same text. It is no book (use a real text with ``--data``), but has words, spaces and lines
    for a character model to learn, and can be made as long as a benchmark needs.
    """
    if isinstance(num_chars, bool) or not isinstance(num_chars, (int, np.integer)) or num_chars < 1:
        raise ValueError(f"num_chars must be a positive integer, got {num_chars!r}")
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(_WORDS) + 1)
    weights /= weights.sum()
    parts: list[str] = []
    size = 0
    while size < num_chars:
        n_sent = int(rng.integers(2, 6))
        paragraph = []
        for _ in range(n_sent):
            words = [_WORDS[i] for i in rng.choice(len(_WORDS), size=int(rng.integers(4, 15)), p=weights)]
            if len(words) > 6 and rng.random() < 0.4:
                words[int(rng.integers(2, len(words) - 2))] += ","
            sentence = " ".join(words)
            paragraph.append(sentence[0].upper() + sentence[1:] + ".")
        text = " ".join(paragraph) + "\n"
        parts.append(text)
        size += len(text)
    return "".join(parts)[:num_chars]
