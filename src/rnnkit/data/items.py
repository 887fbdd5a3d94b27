"""Text items with optional labels (:class:`LabeledItems`): what every reader of :mod:`rnnkit.data.datasets`
returns and every split holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc is Python >= 3.11
    pass


def _class_order(names: Iterable[str]) -> list[str]:
    """Classes sorted case-insensitively (``"the Netherlands"`` between ``"Spain"`` and ``"Turkey"``)."""
    return sorted(set(names), key=lambda s: (s.casefold(), s))


@dataclass
class LabeledItems:
    """Items (strings) with optional labels: what every reader returns and every split holds.

    Attributes:
        items: the items, e.g. names; ``N`` of them.
        labels: ``N`` class names, or ``None`` for unlabeled data (generation).
        classes: every class name, in class-id order; defaults to the sorted distinct labels. Splits of one
            dataset share the same ``classes``, so class ids agree between them.
        source: where the data came from (a path or a description), used in messages.
    """

    items: list[str]
    labels: list[str] | None = None
    classes: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        self.items = list(self.items)
        for i, s in enumerate(self.items):
            if not isinstance(s, str):
                raise TypeError(f"item {i} of {self._where()} is {type(s).__name__}, expected str: {s!r}")
        if self.labels is not None:
            self.labels = [str(lab) for lab in self.labels]
            if len(self.labels) != len(self.items):
                raise ValueError(
                    f"{self._where()}: {len(self.items)} items but {len(self.labels)} labels; they must pair up"
                )
            if not self.classes:
                self.classes = _class_order(self.labels)
        self.classes = list(self.classes)
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"{self._where()}: duplicate class names in {self.classes!r}")
        if self.labels is not None:
            unknown = set(self.labels) - set(self.classes)
            if unknown:
                raise ValueError(f"{self._where()}: labels {sorted(unknown)!r} are not in classes {self.classes!r}")

    def _where(self) -> str:
        return self.source or "the data"

    def __len__(self) -> int:
        return len(self.items)

    @property
    def is_labeled(self) -> bool:
        """Whether the items carry labels."""
        return self.labels is not None

    def label_ids(self) -> list[int]:
        """Class ids ``(N,)``: the index of each label in :attr:`classes`."""
        if self.labels is None:
            raise ValueError(f"{self._where()} has no labels")
        index = {c: i for i, c in enumerate(self.classes)}
        return [index[lab] for lab in self.labels]

    def counts(self) -> dict[str, int]:
        """Items per class, in class order (``{}`` for unlabeled data)."""
        if self.labels is None:
            return {}
        c = Counter(self.labels)
        return {k: c[k] for k in self.classes}

    def subset(self, indices: Iterable[int]) -> LabeledItems:
        """The items at ``indices`` (same classes and source)."""
        idx = list(indices)
        return LabeledItems(
            items=[self.items[i] for i in idx],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            classes=list(self.classes),
            source=self.source,
        )

    def require_classes(self, min_classes: int = 2) -> None:
        """Raise ``ValueError`` unless the data is labeled with at least ``min_classes`` classes that occur.

        A classifier needs at least two classes; readers accept a folder with one ``<Category>.txt`` (it is
        valid input for generation), so the caller that trains a classifier checks it here.
        """
        if self.labels is None:
            raise ValueError(
                f"{self._where()} has no labels; a classifier needs labeled data: a folder of <Category>.txt "
                "files or a CSV with a label column"
            )
        present = _class_order(self.labels)
        if len(present) < min_classes:
            shown = ", ".join(repr(c) for c in present) or "none"
            raise ValueError(
                f"{self._where()} has {len(present)} class{'es' if len(present) != 1 else ''} ({shown}); "
                f"a classifier needs at least {min_classes}: add more categories"
            )
