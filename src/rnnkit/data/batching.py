"""The one batch format every task model takes, and how items become batches.

Shape symbols (used across rnnkit): T time, B batch, I input features, H hidden, L layers, D directions,
C classes or condition size, V vocabulary size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from rnnkit.data.vocab import BOS, EOS, PAD

IGNORE_INDEX = -100
"""Target value at padded positions; every loss in rnnkit ignores it (torch's cross-entropy default)."""

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest float32 (about 3.4e38): a real value beyond it would become inf in a batch."""


class NonFiniteValues(ValueError):
    """Values a float32 batch cannot hold: NaN, inf, or a magnitude beyond :data:`FLOAT32_MAX`, which the cast to
    float32 would turn into inf. A ``ValueError`` (one line, exit code 2 on the command line); ``rnnkit serve``
    answers it as a request whose values lie beyond what its run computes."""


def check_float32(a: np.ndarray, what: str) -> None:
    """Refuse ``a`` (any shape) before its cast to float32 when a value is NaN, inf or beyond float32's range."""
    if not np.isfinite(a).all():
        raise NonFiniteValues(f"{what} contains NaN or inf; fill or drop those values first")
    if a.size and np.issubdtype(a.dtype, np.floating):
        big = np.abs(a).max()  # finite: no overflow here
        if big > FLOAT32_MAX:
            raise NonFiniteValues(
                f"{what}: a value of magnitude {big:.3g} lies beyond the float32 range (|x| <= {FLOAT32_MAX:.3g}) "
                "that batches are computed in; rescale the values"
            )


@dataclass
class Batch:
    """A batch of variable-length sequences, padded on the right.

    Attributes:
        inputs: token ids ``(B, T)`` (long) or real values ``(B, T, F)`` (float); positions
            ``t >= lengths[b]`` are padding (id 0 = PAD for tokens, 0.0 for values) and never change a result.
        lengths: ``(B,)`` long, each in ``[1, T]``, any order.
        targets: ``None`` (inference), class ids ``(B,)`` for one label per sequence, or per-step ids
            ``(B, T)`` with :data:`IGNORE_INDEX` at padded positions.
        condition: ``None``, category ids ``(B,)`` (long) or condition vectors ``(B, C)`` (float).
    """

    inputs: Tensor
    lengths: Tensor
    targets: Tensor | None = None
    condition: Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        """Return a copy with every tensor on ``device`` (``lengths`` included)."""
        return replace(
            self,
            inputs=self.inputs.to(device),
            lengths=self.lengths.to(device),
            targets=None if self.targets is None else self.targets.to(device),
            condition=None if self.condition is None else self.condition.to(device),
        )

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


# ----------------------------------------------------------------------------------------------------------
# Collate: lists of items -> one padded Batch
# ----------------------------------------------------------------------------------------------------------


def _check_ids(encoded_items: Sequence[Sequence[int]], allow_empty: bool) -> list[list[int]]:
    if isinstance(encoded_items, Tensor):
        raise TypeError("encoded_items must be a list of id lists (variable lengths), not one tensor")
    seqs = [list(map(int, s)) for s in encoded_items]
    if not seqs:
        raise ValueError("cannot collate an empty batch")
    if not allow_empty:
        for i, s in enumerate(seqs):
            if not s:
                raise ValueError(f"item {i} of the batch is empty (0 symbols); every item needs at least one")
    return seqs


def _pad_ids(seqs: Sequence[Sequence[int]], pad: int, length: int | None = None) -> Tensor:
    """Right-pad id lists into a ``(B, T)`` long tensor, ``T = max length`` unless given."""
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)  # (B,)
    longest = int(lens.max())
    t = longest if length is None else length
    if longest > t:
        raise ValueError(f"an item has {longest} elements, more than the batch's length {t}")
    out = torch.full((len(seqs), t), pad, dtype=torch.long)  # (B, T)
    # one tensor of every id, written through the padding mask (row-major: each row's ids in order)
    out[torch.arange(t) < lens.unsqueeze(1)] = torch.tensor(list(itertools.chain.from_iterable(seqs)), dtype=torch.long)
    return out


def _condition_tensor(conditions: Any, batch_size: int) -> Tensor | None:
    """``None``, category ids ``(B,)`` long, or condition vectors ``(B, C)`` float."""
    if conditions is None:
        return None
    cond = torch.as_tensor(np.asarray(conditions) if not isinstance(conditions, Tensor) else conditions)
    if cond.dim() not in (1, 2) or cond.shape[0] != batch_size:
        raise ValueError(
            f"conditions must be {batch_size} category ids (B,) or vectors (B, C), got shape {tuple(cond.shape)}"
        )
    if cond.dim() == 1:
        if cond.is_floating_point():
            raise TypeError("category conditions must be integer ids; give vectors as a (B, C) array")
        return cond.long()
    cond = cond.float()
    if not torch.isfinite(cond).all():
        raise ValueError("condition vectors contain NaN or inf")
    return cond


def collate_classification(
    encoded_items: Sequence[Sequence[int]],
    labels: Sequence[int] | Tensor | None = None,
    pad: int = PAD,
    conditions: Any = None,
) -> Batch:
    """Pad encoded items into a classification (many→one) batch.

    Args:
        encoded_items: ``B`` id lists (e.g. from :meth:`Vocab.encode`), each non-empty.
        labels: ``B`` class ids, or ``None`` at inference.
        pad: the padding id (``PAD = 0``).
        conditions: optional ``B`` category ids or a ``(B, C)`` array of vectors.

    Returns:
        ``Batch(inputs (B, T) long, lengths (B,) long, targets (B,) long or None, condition)``.
    """
    seqs = _check_ids(encoded_items, allow_empty=False)
    targets = None
    if labels is not None:
        targets = torch.as_tensor(labels, dtype=torch.long).reshape(-1)  # (B,)
        if targets.numel() != len(seqs):
            raise ValueError(f"{len(seqs)} items but {targets.numel()} labels")
    return Batch(
        inputs=_pad_ids(seqs, pad),  # (B, T)
        lengths=torch.tensor([len(s) for s in seqs], dtype=torch.long),  # (B,)
        targets=targets,
        condition=_condition_tensor(conditions, len(seqs)),
    )


def collate_generation(
    encoded_items: Sequence[Sequence[int]],
    conditions: Any = None,
    bos: int = BOS,
    eos: int = EOS,
    pad: int = PAD,
) -> Batch:
    """Build a next-symbol-prediction (one→many) batch: inputs ``[BOS] + ids``, targets ``ids + [EOS]``.

    An item of ``n`` symbols gives ``n + 1`` steps: at step ``t`` the model has read ``BOS, x_1 .. x_t`` and
    predicts ``x_{t+1}`` (``EOS`` after the last symbol), as makemore counts it. Empty items are allowed (the
    model learns to predict ``EOS`` at once).

    Args:
        encoded_items: ``B`` id lists without BOS/EOS (``Vocab.encode(item)``).
        conditions: ``None``, ``B`` category ids, or a ``(B, C)`` array of condition vectors.
        bos, eos, pad: the special ids.

    Returns:
        ``Batch(inputs (B, T) long padded with pad, lengths (B,) = n + 1, targets (B, T) long padded with``
        :data:`IGNORE_INDEX` ``, condition (B,) long | (B, C) float | None)``, ``T = max n + 1``.
    """
    seqs = _check_ids(encoded_items, allow_empty=True)
    inputs = _pad_ids([[bos, *s] for s in seqs], pad)  # (B, T)
    targets = _pad_ids([[*s, eos] for s in seqs], IGNORE_INDEX)  # (B, T)
    return Batch(
        inputs=inputs,
        lengths=torch.tensor([len(s) + 1 for s in seqs], dtype=torch.long),  # (B,)
        targets=targets,
        condition=_condition_tensor(conditions, len(seqs)),
    )


def collate_sequences(
    sequences: Sequence[Any] | np.ndarray | Tensor,
    targets: Any = None,
    conditions: Any = None,
    channels_first: bool = False,
) -> Batch:
    """Pad real-valued sequences into a ``(B, T, F)`` float32 batch.

    Args:
        sequences: ``B`` arrays of shape ``(L_i, F)`` (or ``(C, L_i)`` with ``channels_first``, the
            aeon/sktime layout), or one array ``(B, T, F)`` (``(B, C, T)`` with ``channels_first``) of equal
            lengths. A 1-D array ``(L_i,)`` is one feature.
        targets: ``None``; one value per sequence (``B`` ints → class ids ``(B,)`` long, floats → ``(B,)``
            or ``(B, K)`` float); or one per step (a list of ``B`` arrays of length ``L_i``: ints → ``(B, T)`` long
            padded with :data:`IGNORE_INDEX`, floats ``(L_i,)``/``(L_i, K)`` → ``(B, T)``/``(B, T, K)``
            float padded with 0.0, which a loss must mask with ``lengths``).
        conditions: ``None``, ``B`` category ids, or a ``(B, C)`` array of vectors.
        channels_first: the arrays are ``(C, L_i)``; they are transposed to ``(L_i, C)``.

    Returns:
        ``Batch(inputs (B, T, F) float32 zero-padded, lengths (B,), targets, condition)``.

    Raises:
        ValueError: an empty batch or sequence, mismatched feature sizes; :class:`NonFiniteValues` (a
            ``ValueError``): NaN/inf values, or values beyond float32's range, checked before the cast.
    """
    arrays = []
    for i, s in enumerate(sequences):
        a = s.detach().cpu().numpy() if isinstance(s, Tensor) else np.asarray(s)
        if a.dtype == object or not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"sequence {i} is not numeric (dtype {a.dtype})")
        if a.ndim == 1:
            a = a[:, None]
        elif a.ndim != 2:
            raise ValueError(f"sequence {i} has shape {a.shape}; expected (L, F) or (L,)")
        elif channels_first:
            a = a.T
        if a.shape[0] == 0:
            raise ValueError(f"sequence {i} is empty (0 steps); every sequence needs at least one")
        check_float32(a, f"sequence {i}")  # before the cast below: no overflow to inf in it
        arrays.append(a)
    if not arrays:
        raise ValueError("cannot collate an empty batch")
    feats = {a.shape[1] for a in arrays}
    if len(feats) > 1:
        raise ValueError(f"sequences have different feature sizes {sorted(feats)}; they must share F")
    lengths = [a.shape[0] for a in arrays]
    t, f = max(lengths), arrays[0].shape[1]
    inputs = torch.zeros(len(arrays), t, f, dtype=torch.float32)  # (B, T, F)
    for b, a in enumerate(arrays):
        inputs[b, : a.shape[0]] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return Batch(
        inputs=inputs,
        lengths=torch.tensor(lengths, dtype=torch.long),  # (B,)
        targets=_sequence_targets(targets, lengths, t),
        condition=_condition_tensor(conditions, len(arrays)),
    )


def _sequence_targets(targets: Any, lengths: list[int], t: int) -> Tensor | None:
    if targets is None:
        return None
    n = len(lengths)
    if isinstance(targets, (Tensor, np.ndarray)) or all(np.ndim(y) == 0 for y in targets):
        y = torch.as_tensor(np.asarray(targets.cpu() if isinstance(targets, Tensor) else targets))
        if y.shape[0] != n or y.dim() > 2:
            raise ValueError(f"targets must have shape (B,) or (B, K) with B={n}, got {tuple(y.shape)}")
        if y.is_floating_point():
            if not torch.isfinite(y).all():
                raise NonFiniteValues("targets contain NaN or inf")
            check_float32(y.numpy(), "targets")
            return y.float()
        return y.long()
    ys = [np.asarray(y) for y in targets]
    if len(ys) != n:
        raise ValueError(f"{n} sequences but {len(ys)} target sequences")
    for i, (y, length) in enumerate(zip(ys, lengths, strict=True)):
        if y.shape[0] != length:
            raise ValueError(f"target sequence {i} has {y.shape[0]} steps but its input has {length}")
    if all(np.issubdtype(y.dtype, np.integer) for y in ys):
        if any(y.ndim != 1 for y in ys):
            raise ValueError("per-step class targets must be 1-D (L_i,) id arrays")
        return _pad_ids([y.tolist() for y in ys], IGNORE_INDEX, t)  # (B, T)
    rest = {y.shape[1:] for y in ys}
    if len(rest) > 1:
        raise ValueError(f"per-step targets have different shapes after the time axis: {sorted(rest)}")
    out = torch.zeros(n, t, *ys[0].shape[1:], dtype=torch.float32)  # (B, T) or (B, T, K)
    for b, y in enumerate(ys):
        check_float32(y, f"target sequence {b}")
        out[b, : y.shape[0]] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    return out


# ----------------------------------------------------------------------------------------------------------
# Length-bucketed batches
# ----------------------------------------------------------------------------------------------------------


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of item indices with similar lengths, in a seeded shuffled order.

    Each epoch (with ``shuffle``): permute all indices with a generator seeded by ``(seed, epoch)``, cut the
    permutation into pools of ``pool_batches * batch_size`` indices, sort each pool by length (stable), cut
    the pools' concatenation into batches, and shuffle the batch order. Items in a batch then have similar
    lengths (little padding), batches differ between epochs, and everything is a function of
    ``(seed, epoch)``: call :meth:`set_epoch` before each epoch, as with ``DistributedSampler``. Without
    ``shuffle`` the batches are the indices sorted by length (ties by index), in that order.

    With ``num_replicas > 1`` (DDP), replica ``rank`` gets every ``num_replicas``-th batch; the batch list is
    padded by repeating its first batches so that every replica gets the same number.

    Use it as ``DataLoader(dataset, batch_sampler=BucketBatchSampler(lengths, 32, seed=0))``.

    Args:
        lengths: length of each item (``N`` non-negative ints).
        batch_size: items per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: shuffle per epoch (training) or not (evaluation).
        seed: the seed; the order is deterministic given ``(seed, epoch)``.
        drop_last: drop the one incomplete batch.
        pool_batches: pool size in batches; larger groups lengths more tightly but shuffles less.
        num_replicas, rank: shard batches between DDP processes.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray | Tensor,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        pool_batches: int = 50,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        lens = np.asarray(lengths.cpu() if isinstance(lengths, Tensor) else lengths)
        if lens.ndim != 1 or (lens.size and not np.issubdtype(lens.dtype, np.integer)):
            raise ValueError(f"lengths must be a 1-D sequence of ints, got shape {lens.shape}, dtype {lens.dtype}")
        if lens.size == 0:
            raise ValueError("cannot batch zero items")
        if (lens < 0).any():
            raise ValueError("lengths must be >= 0")
        for name, v in (
            ("batch_size", batch_size),
            ("pool_batches", pool_batches),
            ("num_replicas", num_replicas),
        ):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank!r}")
        if drop_last and lens.size < batch_size:
            raise ValueError(f"drop_last with {lens.size} items < batch_size {batch_size} leaves no batch")
        self.lengths = lens.astype(np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.pool_batches = int(pool_batches)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def _num_batches(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batches(self) -> list[list[int]]:
        """All batches of this epoch (every replica's), in order."""
        n, bs = len(self.lengths), self.batch_size
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(n)
            pool = bs * self.pool_batches
            order = np.concatenate(
                [p[np.argsort(self.lengths[p], kind="stable")] for p in np.split(order, range(pool, n, pool))]
            )
        else:
            order = np.argsort(self.lengths, kind="stable")
        batches = [order[i : i + bs].tolist() for i in range(0, n, bs)]
        if self.drop_last and len(batches[-1]) < bs:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        if self.num_replicas > 1:
            total = len(self) * self.num_replicas
            batches = (batches * (-(-total // len(batches))))[:total]
            batches = batches[self.rank :: self.num_replicas]
        return iter(batches)

    def __len__(self) -> int:
        """Batches per epoch for this replica."""
        return -(-self._num_batches() // self.num_replicas)


class Batches:
    """The batches of one data source: bucketed by length, shuffled per ``(seed, epoch)`` for training, in a fixed
    order for evaluation. The source supplies its items' ``lengths`` and ``collate(index) -> Batch`` that turns
    a list of item indices into one batch (it owns the padding and the targets).

    ``epoch(e)`` and ``ordered()`` give the same batches as :class:`BucketBatchSampler` with ``shuffle=True`` /
    ``False`` and the same seed, so the order is reproducible and a resumed run sees the batches it would have.
    """

    def __init__(
        self, lengths: Sequence[int], collate: Callable[[list[int]], Batch], batch_size: int, seed: int = 0
    ) -> None:
        self.collate = collate
        self.sampler = BucketBatchSampler(lengths, batch_size, shuffle=True, seed=seed)
        self.fixed = BucketBatchSampler(lengths, batch_size, shuffle=False, seed=seed)

    def epoch(self, epoch: int) -> list[Batch]:
        """Epoch ``epoch``'s training batches, in its shuffled order (a function of ``(seed, epoch)``)."""
        self.sampler.set_epoch(epoch)
        return [self.collate(b) for b in self.sampler]

    def ordered(self) -> list[Batch]:
        """Every item once, in a fixed order (items of similar length together): for evaluation."""
        return [self.collate(b) for b in self.fixed]

    def indexed(self) -> list[tuple[list[int], Batch]]:
        """:meth:`ordered` with the item indices each batch holds (to put answers back in the items' order)."""
        return [(b, self.collate(b)) for b in self.fixed]
