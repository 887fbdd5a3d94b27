"""Count models of symbols — interpolated Witten–Bell n-grams over a category and the last ``N`` symbols — and
their mixture with a network's probabilities: the member a text run adds beside its network (``--ngram-order N``;
:mod:`rnnkit.runs.text_counts`). :class:`NgramCounts` gives the next symbol's probabilities (a generator's member);
:class:`CountClassifier` applies Bayes' rule over one such model per class (a classifier's member, the character
n-gram language-model classifier of language identification).

The model (Witten and Bell 1991; the interpolated form of Chen and Goodman's survey, 1998): a context is the
category (for a conditional generator) followed by the last ``n`` symbols read, ``n = 0 … N`` (``BOS`` counts as a
symbol: a name's first letters have the contexts ``(c, BOS)``, ``(c, BOS, x_1)``, …). From the root — the empty
context, the counts of every target — to the longest context seen in training,

``p_k(x) = (count_k(x) + T_k · p_{k−1}(x)) / (total_k + T_k)``,

``count_k(x)`` how often ``x`` followed context ``k`` in the training sequences, ``total_k`` their sum and ``T_k``
how many different symbols followed it; ``p_{−1}`` is uniform over the vocabulary. A context never seen ends the
recursion (so does one that would reach before ``BOS``). There is nothing to tune: Witten–Bell's weights come from
the counts.

A generate run mixes the two: ``p(x) = (1 − w) · softmax(logits)(x) + w · p_counts(x)``, ``w`` chosen on the
validation part from :data:`WEIGHTS` (the networks are never refitted); a classify run mixes its network's class
probabilities with :class:`CountClassifier`'s. On the embedded names (seed 0) the 4-symbol member took the
generator's validation NLL from 1.669 to 1.638 and the classifier's validation accuracy from 0.804 to 0.838
(docs/defaults-names.md, eighth session).

Storage: the contexts form a trie. Level 0 is the root (one row); each further level extends its parent by one
column — the category, then ``x_{t−1}``, ``x_{t−2}``, … — and its rows are the sorted keys
``parent_row · width + column`` (``width = max(V, categories)``), exact in int64. Each level's counts are a CSR
table: ``indptr`` ``(K + 1,)``, ``symbols`` and ``counts`` ``(nnz,)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from rnnkit.data.vocab import BOS, EOS
from rnnkit.metrics import mean_nll, mixture

__all__ = [
    "TEMPERATURES",
    "WEIGHTS",
    "CountClassifier",
    "NgramCounts",
    "choose_class_mixture",
    "choose_weight",
    "fit_class_member",
    "mixed_class_nll",
    "mixed_nll",
    "tempered_softmax",
]

WEIGHTS: tuple[float, ...] = tuple(i / 40 for i in range(41))
"""The count model's share ``w`` a run chooses from (0: the network alone, 1: the counts alone)."""

MAX_ORDER = 8
"""The longest context of symbols a count model may read (``--ngram-order``)."""


def _history_columns(
    sequences: Sequence[Sequence[int]], conditions: Sequence[int] | None, order: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every (context, target) of ``[BOS, *s, EOS]`` for each sequence ``s``: the context columns ``(E, D)``
    (category if any, then ``x_{t−1}``, …, ``x_{t−N}``; −1 where the history is shorter) and the targets ``(E,)``."""
    cols, targets = [], []
    for i, s in enumerate(sequences):
        full = np.array([BOS, *s, EOS], dtype=np.int64)
        n = len(full) - 1  # targets full[1:]
        back = np.full((n, order), -1, dtype=np.int64)
        for k in range(min(order, n)):  # column k: the symbol k + 1 steps back
            back[k:, k] = full[: n - k]
        if conditions is not None:
            back = np.concatenate([np.full((n, 1), int(conditions[i]), dtype=np.int64), back], axis=1)
        cols.append(back)
        targets.append(full[1:])
    width = order + (conditions is not None)
    if not cols:
        return np.zeros((0, width), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(cols), np.concatenate(targets)


class NgramCounts:
    """Interpolated Witten–Bell counts over the category and the last ``order`` symbols (module docstring).

    ``vocab_size`` V symbols (ids of the run's vocabulary), ``num_conditions`` categories (0: unconditional).
    Build with :meth:`fit`; :meth:`distribution` gives ``p_counts`` for any contexts, :meth:`target_probabilities`
    the probability of each next symbol of whole sequences.
    """

    def __init__(self, order: int, vocab_size: int, num_conditions: int = 0) -> None:
        if not 1 <= order <= MAX_ORDER:
            raise ValueError(f"ngram_order must lie in [1, {MAX_ORDER}], got {order}")
        if vocab_size < 1 or num_conditions < 0:
            raise ValueError(f"need vocab_size ≥ 1 and num_conditions ≥ 0, got {vocab_size}, {num_conditions}")
        self.order, self.vocab_size, self.num_conditions = order, vocab_size, num_conditions
        self.width = max(vocab_size, num_conditions, 1)
        self.levels = order + 1 + (num_conditions > 0)  # the root, the category, then the symbols
        self.weight = 0.0  # the share w of the counts in a run's mixture (chosen on its validation part)
        self.keys: list[Tensor] = []  # per level ≥ 1: sorted keys parent_row · width + column (K,)
        self.indptr: list[Tensor] = []  # per level: (K + 1,)
        self.symbols: list[Tensor] = []  # per level: (nnz,)
        self.counts: list[Tensor] = []  # per level: (nnz,) float64
        self.totals: list[Tensor] = []  # per level: (K,) the counts' sum of each context
        self.types: list[Tensor] = []  # per level: (K,) how many symbols followed each context
        self.pairs: list[Tensor] = []  # per level: (nnz,) the sorted keys row · V + symbol of the counts

    # ------------------------------------------------------------------ fitting
    def fit(self, sequences: Sequence[Sequence[int]], conditions: Sequence[int] | None = None) -> NgramCounts:
        """Count the sequences ``N × (L_i,)`` (ids, no BOS/EOS: they are added) and their categories ``(N,)``
        (None for an unconditional model); returns ``self``."""
        if (conditions is None) != (self.num_conditions == 0):
            raise ValueError("pass categories exactly when the model is conditional (num_conditions > 0)")
        cols, targets = _history_columns(sequences, conditions, self.order)
        if len(targets) == 0:
            raise ValueError("no sequence to count")
        symbols = cols[:, 1:] if self.num_conditions else cols
        if targets.min() < 0 or targets.max() >= self.vocab_size or (symbols >= self.vocab_size).any():
            raise ValueError(f"symbol ids must lie in [0, {self.vocab_size}) (the model's vocab_size)")
        if self.num_conditions and (cols[:, 0].min() < 0 or cols[:, 0].max() >= self.num_conditions):
            raise ValueError(f"category ids must lie in [0, {self.num_conditions}) (the model's num_conditions)")
        V, W = self.vocab_size, self.width
        self.keys, self.indptr, self.symbols, self.counts = [], [], [], []
        rows = np.zeros(len(targets), dtype=np.int64)
        alive = np.ones(len(targets), dtype=bool)
        for level in range(self.levels):
            if level:
                col = cols[:, level - 1]
                alive &= col >= 0
                key = rows * W + np.maximum(col, 0)
                keys = np.unique(key[alive])
                rows = np.searchsorted(keys, key)
                self.keys.append(torch.from_numpy(keys))
                K = len(keys)
            else:
                K = 1
            pairs, counts = np.unique(rows[alive] * V + targets[alive], return_counts=True)
            ctx = pairs // V
            self.indptr.append(torch.from_numpy(np.concatenate([[0], np.cumsum(np.bincount(ctx, minlength=K))])))
            self.symbols.append(torch.from_numpy(pairs % V))
            self.counts.append(torch.from_numpy(counts.astype(np.float64)))
        self._derive()
        return self

    def _derive(self) -> None:
        """Each level's totals, types and sorted pair keys ``row · V + symbol`` (the order :meth:`fit` stores)."""
        self.totals, self.types, self.pairs = [], [], []
        for indptr, symbols, counts in zip(self.indptr, self.symbols, self.counts, strict=True):
            K = len(indptr) - 1
            row = torch.repeat_interleave(torch.arange(K), indptr.diff())
            self.totals.append(torch.zeros(K, dtype=torch.float64).index_add_(0, row, counts))
            self.types.append(indptr.diff().to(torch.float64))
            pairs = row * self.vocab_size + symbols
            if len(pairs) > 1 and not bool((pairs[1:] > pairs[:-1]).all()):
                raise ValueError("the counts are not sorted by context and symbol")
            self.pairs.append(pairs)

    # ------------------------------------------------------------------ probabilities
    def _levels(self, columns: Tensor):
        """For each level, while any context is seen: ``(level, live (P',), rows (P',))`` — which of the ``P``
        contexts ``columns`` ``(P, D)`` reach that level and their rows there."""
        columns = torch.as_tensor(columns, dtype=torch.long)
        if columns.dim() != 2 or columns.shape[1] != self.levels - 1:
            raise ValueError(f"columns must have shape (P, {self.levels - 1}), got {tuple(columns.shape)}")
        P = columns.shape[0]
        rows = torch.zeros(P, dtype=torch.long)
        alive = torch.ones(P, dtype=torch.bool)
        for level in range(self.levels):
            if level:
                keys = self.keys[level - 1]
                if len(keys) == 0:
                    return
                col = columns[:, level - 1]
                inside = (col >= 0) & (col < self.width)  # −1 (no history) and ids beyond the model: unseen
                key = rows * self.width + torch.where(inside, col, 0)
                rows = torch.searchsorted(keys, key).clamp(max=len(keys) - 1)
                alive = alive & inside & (keys[rows] == key)
            live = alive.nonzero().squeeze(1)
            if len(live) == 0:
                return
            yield level, live, rows[live]

    def distribution(self, columns: Tensor) -> Tensor:
        """``p_counts(· | context)`` ``(P, V)`` float64 for the context columns ``(P, D)`` int64: the category
        (conditional models), then the symbols 1, 2, … steps back, −1 where the history is shorter."""
        P, V = len(columns), self.vocab_size
        p = torch.full((P, V), 1.0 / V, dtype=torch.float64)
        for level, live, r in self._levels(columns):
            start, stop = self.indptr[level][r], self.indptr[level][r + 1]
            lens = stop - start
            seg = torch.repeat_interleave(torch.arange(len(live)), lens)
            pos = start[seg] + torch.arange(int(lens.sum())) - torch.repeat_interleave(lens.cumsum(0) - lens, lens)
            dense = torch.zeros(len(live), V, dtype=torch.float64)
            dense[seg, self.symbols[level][pos]] = self.counts[level][pos]
            T = self.types[level][r].unsqueeze(1)
            p[live] = (dense + T * p[live]) / (self.totals[level][r].unsqueeze(1) + T)
        return p

    def probabilities(self, columns: Tensor, targets: Tensor) -> Tensor:
        """``p_counts(target | context)`` ``(P,)`` float64: :meth:`distribution` at ``targets`` ``(P,)``, computed
        from the seen (context, symbol) pairs only."""
        targets = torch.as_tensor(targets, dtype=torch.long)
        if targets.shape != (len(columns),) or (
            len(targets) and (targets.min() < 0 or targets.max() >= self.vocab_size)
        ):
            raise ValueError(f"targets must be {len(columns)} symbol ids in [0, {self.vocab_size})")
        p = torch.full((len(columns),), 1.0 / self.vocab_size, dtype=torch.float64)
        for level, live, r in self._levels(columns):
            pairs = self.pairs[level]
            want = r * self.vocab_size + targets[live]
            at = torch.searchsorted(pairs, want).clamp(max=len(pairs) - 1)
            count = torch.where(pairs[at] == want, self.counts[level][at], 0.0)
            T = self.types[level][r]
            p[live] = (count + T * p[live]) / (self.totals[level][r] + T)
        return p

    def target_probabilities(
        self, sequences: Sequence[Sequence[int]], conditions: Sequence[int] | None = None, chunk: int = 65536
    ) -> np.ndarray:
        """``p_counts`` of every target of ``[BOS, *s, EOS]`` (the symbols and EOS), sequence after sequence
        ``(Σ (L_i + 1),)`` float64."""
        if (conditions is None) != (self.num_conditions == 0):
            raise ValueError("pass categories exactly when the model is conditional (num_conditions > 0)")
        cols, targets = _history_columns(sequences, conditions, self.order)
        out = np.empty(len(targets), dtype=np.float64)
        for a in range(0, len(targets), chunk):
            b = a + chunk
            out[a:b] = self.probabilities(torch.from_numpy(cols[a:b]), torch.from_numpy(targets[a:b])).numpy()
        return out

    def step_columns(self, histories: Sequence[Sequence[int]], conditions: Sequence[int] | None) -> Tensor:
        """The context columns ``(P, D)`` after each history (``[BOS, x_1, …]`` as read so far), for
        :meth:`distribution`."""
        P = len(histories)
        back = torch.full((P, self.order), -1, dtype=torch.long)
        for i, h in enumerate(histories):
            tail = list(h)[-self.order :][::-1]
            back[i, : len(tail)] = torch.tensor(tail, dtype=torch.long)
        if self.num_conditions:
            if conditions is None:
                raise ValueError("this count model is conditional: pass the categories")
            back = torch.cat([torch.as_tensor(conditions, dtype=torch.long).view(P, 1), back], dim=1)
        return back

    # ------------------------------------------------------------------ storage
    def state_dict(self) -> dict[str, Tensor]:
        """Tensors for safetensors: the sizes, the mixture's weight, and per level its keys (level ≥ 1), indptr,
        symbols and counts."""
        state = {
            "sizes": torch.tensor([self.order, self.vocab_size, self.num_conditions], dtype=torch.long),
            "weight": torch.tensor(float(self.weight), dtype=torch.float64),
        }
        for level in range(self.levels):
            if level:
                state[f"level{level}.keys"] = self.keys[level - 1]
            state[f"level{level}.indptr"] = self.indptr[level]
            state[f"level{level}.symbols"] = self.symbols[level]
            state[f"level{level}.counts"] = self.counts[level]
        return state

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> NgramCounts:
        """The model :meth:`state_dict` wrote (KeyError / ValueError when it is not one)."""
        order, vocab_size, num_conditions = (int(v) for v in state["sizes"].tolist())
        model = cls(order, vocab_size, num_conditions)
        model.weight = float(state["weight"])
        if not 0.0 <= model.weight <= 1.0:
            raise ValueError(f"weight {model.weight} outside [0, 1]")
        for level in range(model.levels):
            if level:
                model.keys.append(state[f"level{level}.keys"].long())
            model.indptr.append(state[f"level{level}.indptr"].long())
            model.symbols.append(state[f"level{level}.symbols"].long())
            model.counts.append(state[f"level{level}.counts"].to(torch.float64))
        model._check()
        model._derive()
        return model

    def _check(self) -> None:
        """Refuse stored tables that :meth:`fit` cannot have written (ValueError naming the level)."""
        if not (1 <= self.order <= MAX_ORDER and self.vocab_size >= 1 and self.num_conditions >= 0):
            raise ValueError("sizes out of range")
        parents = 1
        for level in range(self.levels):
            indptr, symbols, counts = self.indptr[level], self.symbols[level], self.counts[level]
            K = 1
            if level:
                keys = self.keys[level - 1]
                K = len(keys)
                if K and (keys[0] < 0 or keys[-1] >= parents * self.width or not bool((keys[1:] > keys[:-1]).all())):
                    raise ValueError(f"level {level}: keys not increasing inside [0, parents · width)")
            if len(indptr) != K + 1 or int(indptr[0]) != 0 or bool((indptr.diff() < 0).any()):
                raise ValueError(f"level {level}: indptr does not match its keys")
            if int(indptr[-1]) != len(symbols) or len(symbols) != len(counts):
                raise ValueError(f"level {level}: indptr, symbols and counts disagree in length")
            if len(symbols) and (int(symbols.min()) < 0 or int(symbols.max()) >= self.vocab_size):
                raise ValueError(f"level {level}: symbols outside [0, {self.vocab_size})")
            if not bool(torch.isfinite(counts).all()) or bool((counts <= 0).any()):
                raise ValueError(f"level {level}: counts must be finite and > 0")
            parents = K


def mixed_nll(network: np.ndarray, counts: np.ndarray, weight: float) -> float:
    """Mean NLL of the mixture ``(1 − w) · network + w · counts`` of per-target probabilities ``(E,)``."""
    return float(-np.log(np.maximum(mixture(network, counts, weight), 1e-300)).mean())


def choose_weight(network: np.ndarray, counts: np.ndarray) -> float:
    """The ``w`` of :data:`WEIGHTS` with the lowest :func:`mixed_nll` (the first of equals)."""
    losses = [mixed_nll(network, counts, w) for w in WEIGHTS]
    return WEIGHTS[int(np.argmin(losses))]


TEMPERATURES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
"""The temperatures ``τ`` a classify run chooses from for :class:`CountClassifier`'s posterior."""


class CountClassifier:
    """Bayes' rule over class-conditional count models (the character n-gram language-model classifier of
    language identification): ``p(c | s) = softmax_c(τ · (log p(c) + Σ_t log p_counts(x_t | c, x_<t)))``, the
    targets of ``[BOS, *s, EOS]``, ``p_counts`` an :class:`NgramCounts` conditioned on the class, ``p(c)`` the
    classes' shares of the counted names (+1 each; a class with no counted name scores −∞: the counts know nothing
    of it, and the run's network alone speaks for it). ``τ`` (:data:`TEMPERATURES`) tempers a product of many
    per-symbol probabilities, which is far too confident as it stands; a run chooses it, and the share ``weight``
    of these probabilities beside its network's, on its validation part. Scoring reads every symbol once per
    class: ``C`` lookups of ``order + 2`` levels per symbol (0.12 s for 18 classes and 2,706 names on an idle
    2-core Intel Xeon).
    """

    def __init__(self, counts: NgramCounts, class_counts: Tensor, temperature: float = 1.0) -> None:
        if counts.num_conditions < 1 or tuple(class_counts.shape) != (counts.num_conditions,):
            raise ValueError("a count classifier needs a model conditioned on its classes and one count per class")
        class_counts = class_counts.to(torch.float64)
        if not bool(torch.isfinite(class_counts).all()) or bool((class_counts < 0).any()) or class_counts.sum() <= 0:
            raise ValueError("class_counts must be finite, ≥ 0 and not all 0")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be finite and > 0, got {temperature}")
        self.counts, self.class_counts, self.temperature = counts, class_counts, float(temperature)

    @classmethod
    def fit(
        cls, order: int, vocab_size: int, num_classes: int, sequences: Sequence[Sequence[int]], labels: Sequence[int]
    ) -> CountClassifier:
        """Count ``sequences`` ``N × (L_i,)`` with their class ids ``labels`` ``(N,)``."""
        counts = NgramCounts(order, vocab_size, num_classes).fit(sequences, labels)
        class_counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=num_classes)
        return cls(counts, class_counts.to(torch.float64))

    @property
    def weight(self) -> float:
        """The share of these probabilities in the run's mixture."""
        return self.counts.weight

    @weight.setter
    def weight(self, value: float) -> None:
        self.counts.weight = float(value)

    def scores(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """``log p(c) + log p_counts(s | c)`` of every sequence and class ``(N, C)`` float64."""
        C = self.counts.num_conditions
        if len(sequences) == 0:
            return np.zeros((0, C), dtype=np.float64)
        cols, targets = _history_columns(sequences, [0] * len(sequences), self.counts.order)
        starts = np.concatenate([[0], np.cumsum([len(s) + 1 for s in sequences])[:-1]]).astype(np.int64)
        out = np.empty((len(sequences), C), dtype=np.float64)
        # the classes' shares (+1 each); a class with no counted name has no count model of its own: −inf
        prior = torch.log((self.class_counts + 1) / (self.class_counts.sum() + C)).numpy()
        prior[self.class_counts.numpy() == 0] = -np.inf
        for c in range(C):
            cols[:, 0] = c
            logp = np.log(self.counts.probabilities(torch.from_numpy(cols), torch.from_numpy(targets)).numpy())
            out[:, c] = np.add.reduceat(logp, starts) + prior[c]
        return out

    def probabilities(self, sequences: Sequence[Sequence[int]], temperature: float | None = None) -> np.ndarray:
        """``p(c | s)`` ``(N, C)`` at ``temperature`` (default: the chosen one)."""
        return tempered_softmax(self.scores(sequences), self.temperature if temperature is None else temperature)

    def state_dict(self) -> dict[str, Tensor]:
        """:meth:`NgramCounts.state_dict` with ``class_counts`` ``(C,)`` and ``temperature``."""
        return {
            **self.counts.state_dict(),
            "class_counts": self.class_counts,
            "temperature": torch.tensor(self.temperature, dtype=torch.float64),
        }

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> CountClassifier:
        """The classifier :meth:`state_dict` wrote (KeyError / ValueError when it is not one)."""
        return cls(NgramCounts.from_state(state), state["class_counts"], float(state["temperature"]))


def tempered_softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(τ · scores)`` over the last axis of ``scores`` ``(N, C)``."""
    z = temperature * (scores - scores.max(axis=1, keepdims=True))
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def mixed_class_nll(network: np.ndarray, counts: np.ndarray, weight: float, gold: np.ndarray) -> float:
    """Mean NLL of ``gold`` ``(N,)`` under ``(1 − w) · network + w · counts`` (class probabilities ``(N, C)``)."""
    return mean_nll(mixture(network, counts, weight), gold)


def choose_class_mixture(network: np.ndarray, scores: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """``(τ, w)`` of :data:`TEMPERATURES` × :data:`WEIGHTS` with the lowest :func:`mixed_class_nll` of the
    network's probabilities and ``softmax(τ · scores)`` (the first of equals)."""
    best: tuple[float, float, float] | None = None
    for tau in TEMPERATURES:
        counts = tempered_softmax(scores, tau)
        for w in WEIGHTS:
            loss = mixed_class_nll(network, counts, w, gold)
            if best is None or loss < best[0]:
                best = (loss, tau, w)
    assert best is not None
    return best[1], best[2]


def fit_class_member(
    network_val: np.ndarray,
    order: int,
    vocab_size: int,
    num_classes: int,
    train: tuple[list[list[int]], list[int]],
    val: tuple[list[list[int]], list[int]],
) -> tuple[CountClassifier, dict[str, float]]:
    """A classifier's count member and what choosing it measured on the validation part (``network_val_accuracy``,
    ``counts_val_accuracy``, ``mixed_val_accuracy``, ``mixed_val_nll``, ``weight``, ``temperature``):
    ``τ`` and ``w`` by :func:`choose_class_mixture` with counts of the training part alone, then the member kept
    counts the training *and* validation parts. ``train``/``val``: token ids ``N × (L_i,)`` (no BOS/EOS) and class
    ids ``(N,)``; ``network_val`` ``(N_val, C)``: the network's probabilities of the validation part. A text
    classify run (:mod:`rnnkit.runs.text_counts`) and :class:`rnnkit.sklearn.RNNClassifier` both fit it here."""
    gold = np.asarray(val[1])
    scores = CountClassifier.fit(order, vocab_size, num_classes, *train).scores(val[0])
    temperature, weight = choose_class_mixture(network_val, scores, gold)
    member = CountClassifier.fit(
        order, vocab_size, num_classes, list(train[0]) + list(val[0]), list(train[1]) + list(val[1])
    )
    member.temperature, member.weight = temperature, weight
    alone = tempered_softmax(scores, temperature)
    mixed = mixture(network_val, alone, weight)
    chosen = {
        "network_val_accuracy": float((network_val.argmax(1) == gold).mean()),
        "counts_val_accuracy": float((alone.argmax(1) == gold).mean()),
        "mixed_val_accuracy": float((mixed.argmax(1) == gold).mean()),
        "mixed_val_nll": mean_nll(mixed, gold),
        "weight": weight,
        "temperature": temperature,
    }
    return member, chosen
