"""Splits of text items (:func:`split_items`): deterministic, stratified and by distinct item — the same string
never lands in two splits, even when it carries two labels.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importlib.resources.abc is Python >= 3.11
    pass
from rnnkit.data.items import LabeledItems


@dataclass
class Split:
    """A train/validation/test split and a JSON-able record of it.

    Attributes:
        train, val, test: the three parts (``test`` is empty for :func:`carve_validation`).
        record: ``{"seed", "val_fraction", "test_fraction", "sizes", "train", "val", "test"}`` where the
            last three are the sorted distinct items of each part; :func:`apply_split` rebuilds the split from
            it.
    """

    train: LabeledItems
    val: LabeledItems
    test: LabeledItems
    record: dict[str, Any]


def _rank_key(seed: int, item: str) -> bytes:
    # A hash, not a shuffled RNG stream: an item's position does not depend on the other items or on the
    # Python or NumPy version, so the split is reproducible everywhere.
    return hashlib.blake2b(f"{seed}\x00{item}".encode(), digest_size=8).digest()


def _dedupe(data: LabeledItems) -> tuple[list[str], list[str | None]]:
    seen: set[tuple[str, str | None]] = set()
    items: list[str] = []
    labels: list[str | None] = []
    src_labels: Sequence[str | None] = data.labels if data.labels is not None else [None] * len(data)
    for it, lab in zip(data.items, src_labels, strict=True):
        if (it, lab) not in seen:
            seen.add((it, lab))
            items.append(it)
            labels.append(lab)
    return items, labels


def _allocate(sizes: Mapping[str, int], fraction: float, cap: Mapping[str, int]) -> dict[str, int]:
    """Split ``round(N * fraction)`` (at least 1 when fraction > 0) over strata by largest remainder."""
    total_n = sum(sizes.values())
    target = 0 if fraction <= 0 else max(1, round(total_n * fraction))
    share = {k: n * target / total_n if total_n else 0.0 for k, n in sizes.items()}
    out = {k: min(math.floor(share[k]), cap[k]) for k in sizes}
    # Hand out the rest by largest remainder (ties: the bigger stratum, then the name), within each cap.
    for k in sorted(sizes, key=lambda k: (-(share[k] - math.floor(share[k])), -sizes[k], k)):
        if sum(out.values()) >= target:
            break
        if out[k] < cap[k]:
            out[k] += 1
    # Caps (keep a stratum's last item in train) can leave a shortfall; fill it from the biggest strata.
    for k in sorted(sizes, key=lambda k: (-sizes[k], k)):
        while sum(out.values()) < target and out[k] < cap[k]:
            out[k] += 1
    return out


def split_items(data: LabeledItems, val: float = 0.1, test: float = 0.1, seed: int = 0) -> Split:
    """Split into train/validation/test by distinct item, stratified by label, deterministic in ``seed``.

    Steps: exact duplicate ``(item, label)`` pairs are removed; items are grouped by string (a string with two
    labels is one group, stratified by its most frequent label, the first seen on a tie); within each class
    the groups are ordered by a seeded hash and the first ones go to test, the next to validation. Each class
    gets its share of ``round(G * test)`` and ``round(G * val)`` groups (``G`` groups in all; at least one
    when the fraction is positive) by largest remainder, and keeps at least one group in train.

    Args:
        data: labeled or unlabeled items.
        val: fraction of distinct items for validation, in ``[0, 1)``.
        test: fraction for test, in ``[0, 1)``; ``val + test < 1``.
        seed: the split's seed.

    Returns:
        A :class:`Split`; its parts keep ``data``'s order and classes.

    Raises:
        ValueError: bad fractions, or too few distinct items to give every part at least one.
    """
    for name, f in (("val", val), ("test", test)):
        if not isinstance(f, (int, float)) or not 0 <= f < 1:
            raise ValueError(f"{name} fraction must be in [0, 1), got {f!r}")
    if val + test >= 1:
        raise ValueError(f"val + test must be < 1 so that training data remains, got {val} + {test}")
    items, labels = _dedupe(data)
    groups: dict[str, list[str | None]] = {}
    for it, lab in zip(items, labels, strict=True):
        groups.setdefault(it, []).append(lab)
    n_groups = len(groups)
    needed = 1 + (val > 0) + (test > 0)
    if n_groups < needed:
        raise ValueError(
            f"{data.source or 'the data'} has {n_groups} distinct item{'s' * (n_groups != 1)}; "
            f"a train/val/test split needs at least {needed}"
        )
    strata: dict[str, list[str]] = defaultdict(list)
    for it, labs in groups.items():
        c = Counter(labs)
        top = max(c.values())
        strata[next(lab for lab in labs if c[lab] == top) or ""].append(it)
    for members in strata.values():
        members.sort(key=lambda it: _rank_key(seed, it))
    sizes = {k: len(v) for k, v in strata.items()}
    n_test = _allocate(sizes, test, {k: n - 1 for k, n in sizes.items()})
    n_val = _allocate(sizes, val, {k: n - 1 - n_test[k] for k, n in sizes.items()})
    if (test > 0 and sum(n_test.values()) == 0) or (val > 0 and sum(n_val.values()) == 0):
        raise ValueError(
            f"{data.source or 'the data'}: too few items per class ({sizes}) to carve validation/test parts; "
            "give more data or explicit validation/test files"
        )
    part_of: dict[str, str] = {}
    for k, members in strata.items():
        for j, it in enumerate(members):
            part_of[it] = "test" if j < n_test[k] else "val" if j < n_test[k] + n_val[k] else "train"
    return _build_split(data, items, labels, part_of, seed, val, test)


def _build_split(
    data: LabeledItems,
    items: list[str],
    labels: list[str | None],
    part_of: Mapping[str, str],
    seed: int | None,
    val: float | None,
    test: float | None,
) -> Split:
    idx: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, it in enumerate(items):
        idx[part_of[it]].append(i)
    parts = {}
    for name, ii in idx.items():
        parts[name] = LabeledItems(
            items=[items[i] for i in ii],
            labels=None if data.labels is None else [str(labels[i]) for i in ii],
            classes=list(data.classes),
            source=f"{data.source} [{name}]" if data.source else name,
        )
    record: dict[str, Any] = {
        "seed": seed,
        "val_fraction": val,
        "test_fraction": test,
        "sizes": {k: len(v) for k, v in parts.items()},
    }
    for name in ("train", "val", "test"):
        record[name] = sorted({it for it, part in part_of.items() if part == name})
    return Split(parts["train"], parts["val"], parts["test"], record)


def carve_validation(train: LabeledItems, val: float = 0.1, seed: int = 0) -> Split:
    """Carve a validation part out of ``train`` (when the user gives explicit validation/test files).

    The same rules as :func:`split_items` with ``test=0``; the returned :class:`Split` has an empty ``test``.
    To keep items of an explicit test file out of training, first drop them with :func:`exclude_items`.
    """
    if not 0 < val < 1:
        raise ValueError(f"val fraction must be in (0, 1), got {val!r}")
    return split_items(train, val=val, test=0.0, seed=seed)


def apply_split(data: LabeledItems, record: Mapping[str, Any]) -> Split:
    """Rebuild a split from a saved :attr:`Split.record` (e.g. a run folder's) on the same data.

    Raises:
        ValueError: ``data`` holds items that the record does not place, i.e. the data changed.
    """
    try:
        part_of = {it: name for name in ("train", "val", "test") for it in record[name]}
    except (KeyError, TypeError):
        raise ValueError("not a split record: expected 'train', 'val' and 'test' item lists") from None
    items, labels = _dedupe(data)
    missing = sorted({it for it in items if it not in part_of})
    if missing:
        raise ValueError(
            f"{data.source or 'the data'} has {len(missing)} items the saved split does not place "
            f"(e.g. {missing[0]!r}); the data changed since the split was made"
        )
    seed, val, test = record.get("seed"), record.get("val_fraction"), record.get("test_fraction")
    return _build_split(data, items, labels, part_of, seed, val, test)


def exclude_items(data: LabeledItems, *others: LabeledItems) -> LabeledItems:
    """``data`` without the items whose string occurs in ``others`` (keep explicit val/test out of train)."""
    drop = {it for o in others for it in o.items}
    return data.subset(i for i, it in enumerate(data.items) if it not in drop)
