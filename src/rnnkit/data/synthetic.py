"""Synthetic long-range memory tasks, generated on the fly: the adding problem, the copy task, temporal order.

Each task is a function of a length ``T``, a batch size ``B`` and a ``torch.Generator`` (or an int seed), and
returns one :class:`~rnnkit.data.batching.Batch` of equal-length sequences (``lengths`` all equal the sequence
length, no padding). :func:`make_task` dispatches by name and :func:`describe_task` returns a :class:`MemoryTask`
saying what a model needs (input kind and size, output kind, classes) and what it must beat (the baseline).

Shape symbols as in :mod:`rnnkit.data.batching`: ``B`` batch, ``T`` the task's length parameter, ``F`` features.

Conventions (0-based positions ``t``; ``T`` as in the papers):

* **adding** (Hochreiter & Schmidhuber 1997; the form of Le et al. 2015 and Arjovsky et al. 2016). Sequence length
  ``T`` (``T >= 2``). ``inputs (B, T, 2)`` float32: channel 0 holds values drawn from U[0, 1], channel 1 is a marker
  that is 1.0 at exactly two positions and 0.0 elsewhere: the first uniform in ``[0, T // 2)``, the second uniform
  in ``[T // 2, T)`` (for odd ``T`` the second half is one step longer). ``targets (B,)`` float32, the sum of the
  two marked values. Metric: mean squared error; baseline :data:`ADDING_BASELINE_MSE` ``= 1/6``, the MSE of always
  predicting 1.0 (the mean of the sum), which equals the variance of the sum of two U[0, 1] values.
* **copy** (Arjovsky, Shah & Bengio 2016, "Unitary evolution RNNs", the copying memory problem). Alphabet
  ``a_0 .. a_9``: ``a_0`` blank, ``a_1 .. a_8`` the 8 data symbols, ``a_9`` the delimiter. Sequence length
  ``T + 20`` (``T >= 1``): 10 data symbols drawn uniformly, then ``T - 1`` blanks, the delimiter (at
  ``t = T + 9``, the eleventh position from the end), then 10 blanks. The target at every step is blank, except
  the last 10 steps, which reproduce the 10 data symbols in order. ``inputs (B, T + 20)`` long ids ``4 + i`` for
  ``a_i`` (ids 0..3 stay reserved for PAD/BOS/EOS/UNK, as in every rnnkit vocabulary: input vocabulary size 14);
  ``targets (B, T + 20)`` long classes ``i`` for ``a_i`` in ``0..8`` (9 classes; the delimiter is never a
  target). Metric: cross-entropy per step in nats, averaged over all ``T + 20`` steps; baseline
  :func:`copy_baseline` ``= 10·log 8 / (T + 20)``, the memoryless strategy: blank with certainty until the last
  10 steps, then uniform over the 8 data symbols.
* **temporal-order** (Hochreiter & Schmidhuber 1997, experiment 6a). Symbols ``a b c d B E X Y`` with input ids
  ``4..11`` (input vocabulary size 12). Sequence length ``T`` (``T >= 10``): ``B`` at ``t = 0``, ``E`` at
  ``t = T - 1``, distractors drawn uniformly from ``a b c d`` elsewhere, except two relevant positions holding ``X``
  or ``Y`` (each uniformly): ``t1`` uniform in ``[T // 10, 2T // 10]`` and ``t2`` uniform in ``[T // 2, 6T // 10]``
  (both ends included; at ``T = 100`` these are the paper's windows ``[10, 20]`` and ``[50, 60]``; the paper draws
  the length from 100..110, rnnkit fixes it to ``T``). ``targets (B,)`` long: the order class
  ``2·[symbol at t1 is Y] + [symbol at t2 is Y]``, i.e. XX → 0, XY → 1, YX → 2, YY → 3 (the paper's Q, R, S, U).
  Metric: accuracy; baseline :data:`TEMPORAL_ORDER_CHANCE` ``= 1/4``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rnnkit.data.batching import Batch
from rnnkit.data.vocab import SPECIALS

FIRST_ID = len(SPECIALS)
"""First input id of a task symbol: ids 0..3 are PAD/BOS/EOS/UNK, which the tasks never use."""

ADDING_BASELINE_MSE = 1.0 / 6.0
"""MSE of always predicting 1.0 on the adding problem: Var(U1 + U2) = 2 · 1/12 = 1/6 ≈ 0.167."""

COPY_LENGTH = 10
"""Number of data symbols the copy task asks to reproduce."""
COPY_NUM_SYMBOLS = 8
"""Size of the copy task's data alphabet ``a_1 .. a_8``."""
COPY_BLANK_ID = FIRST_ID + 0
"""Input id of the blank ``a_0``; its target class is 0."""
COPY_SYMBOL_IDS = tuple(range(FIRST_ID + 1, FIRST_ID + 1 + COPY_NUM_SYMBOLS))
"""Input ids of the data symbols ``a_1 .. a_8``; symbol ``a_i`` has input id ``FIRST_ID + i`` and target class ``i``."""
COPY_DELIMITER_ID = FIRST_ID + COPY_NUM_SYMBOLS + 1
"""Input id of the delimiter ``a_9``, which tells the model to start reproducing."""
COPY_VOCAB_SIZE = COPY_DELIMITER_ID + 1
"""Input vocabulary size of the copy task (reserved ids 0..3 included): 14."""
COPY_NUM_CLASSES = COPY_NUM_SYMBOLS + 1
"""Target classes of the copy task: 0 blank, ``i`` the data symbol ``a_i``: 9."""

TEMPORAL_ORDER_SYMBOLS = ("a", "b", "c", "d", "B", "E", "X", "Y")
"""The temporal-order alphabet; symbol ``TEMPORAL_ORDER_SYMBOLS[k]`` has input id ``FIRST_ID + k``."""
TEMPORAL_ORDER_VOCAB_SIZE = FIRST_ID + len(TEMPORAL_ORDER_SYMBOLS)
"""Input vocabulary size of the temporal-order task (reserved ids 0..3 included): 12."""
TEMPORAL_ORDER_CLASSES = ("XX", "XY", "YX", "YY")
"""Class names by class id."""
TEMPORAL_ORDER_CHANCE = 0.25
"""Chance accuracy on the temporal-order task (4 balanced classes)."""

_TO_ID = {s: FIRST_ID + k for k, s in enumerate(TEMPORAL_ORDER_SYMBOLS)}

TASKS = ("adding", "copy", "temporal-order")
"""Task names accepted by :func:`make_task` and :func:`describe_task`."""


@dataclass(frozen=True)
class MemoryTask:
    """What a model needs to know about one synthetic task at one length, and the baseline to beat."""

    name: str  # one of TASKS
    T: int  # the task's length parameter, as passed in
    seq_len: int  # steps per sequence: T (adding, temporal-order) or T + 20 (copy)
    input_kind: str  # "values" (inputs (B, seq_len, F) float) or "tokens" (inputs (B, seq_len) long ids)
    input_size: int  # F for values, the vocabulary size (reserved ids 0..3 included) for tokens
    output_kind: str  # "regression" (targets (B,) float), "per-step" (targets (B, seq_len) long), "class" ((B,) long)
    num_classes: int  # target classes; 1 (one real value) for regression
    metric: str  # "mse", "cross_entropy" (nats per step, over all steps) or "accuracy"
    baseline: float  # the memoryless baseline's value of the metric at this T
    higher_is_better: bool  # True for accuracy


# ----------------------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """A CPU generator: the one given, a fresh one seeded with an int, or None (torch's global generator)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")
    return torch.Generator().manual_seed(generator)


# ----------------------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------------------


def copy_baseline(T: int) -> float:
    """Cross-entropy per step (nats) of the memoryless copy strategy: ``10·log 8 / (T + 20)``.

    The strategy predicts blank with probability 1 for the first ``T + 10`` steps (loss 0: those targets are all
    blank) and the uniform distribution over the 8 data symbols for the last 10 (loss ``log 8`` each).
    """
    T = _check_int("T", T, 1)
    return COPY_LENGTH * math.log(COPY_NUM_SYMBOLS) / (T + 2 * COPY_LENGTH)


# ----------------------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------------------


def make_adding(T: int, batch_size: int, generator: torch.Generator | int | None = None) -> Batch:
    """The adding problem at length ``T`` (see the module docstring for the convention).

    Returns:
        ``Batch(inputs (B, T, 2) float32, lengths (B,) = T, targets (B,) float32)``.
    """
    T = _check_int("T", T, 2)
    B = _check_int("batch_size", batch_size, 1)
    g = _generator(generator)
    half = T // 2
    values = torch.rand(B, T, generator=g)  # (B, T)
    first = torch.randint(0, half, (B,), generator=g)  # (B,)
    second = torch.randint(half, T, (B,), generator=g)  # (B,)
    marker = torch.zeros(B, T)  # (B, T)
    rows = torch.arange(B)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]  # (B,)
    return Batch(
        inputs=torch.stack([values, marker], dim=-1),  # (B, T, 2)
        lengths=torch.full((B,), T, dtype=torch.long),  # (B,)
        targets=targets,
    )


def make_copy(T: int, batch_size: int, generator: torch.Generator | int | None = None) -> Batch:
    """The copy (memory) task with ``T`` steps of delay (sequence length ``T + 20``; see the module docstring).

    Returns:
        ``Batch(inputs (B, T + 20) long ids, lengths (B,) = T + 20, targets (B, T + 20) long classes 0..8)``.
    """
    T = _check_int("T", T, 1)
    B = _check_int("batch_size", batch_size, 1)
    g = _generator(generator)
    n = COPY_LENGTH
    symbols = torch.randint(1, COPY_NUM_SYMBOLS + 1, (B, n), generator=g)  # (B, 10) classes a_1..a_8
    inputs = torch.full((B, T + 2 * n), COPY_BLANK_ID, dtype=torch.long)  # (B, T + 20)
    inputs[:, :n] = FIRST_ID + symbols
    inputs[:, T + n - 1] = COPY_DELIMITER_ID  # the eleventh position from the end
    targets = torch.zeros(B, T + 2 * n, dtype=torch.long)  # (B, T + 20) class 0 = blank
    targets[:, -n:] = symbols
    return Batch(inputs=inputs, lengths=torch.full((B,), T + 2 * n, dtype=torch.long), targets=targets)


def temporal_order_windows(T: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The inclusive windows ``(t1_lo, t1_hi), (t2_lo, t2_hi)`` of the two relevant positions at length ``T``."""
    T = _check_int("T", T, 10)
    return (T // 10, 2 * T // 10), (T // 2, 6 * T // 10)


def make_temporal_order(T: int, batch_size: int, generator: torch.Generator | int | None = None) -> Batch:
    """The temporal-order task (experiment 6a) at length ``T`` (see the module docstring).

    Returns:
        ``Batch(inputs (B, T) long ids, lengths (B,) = T, targets (B,) long classes 0..3)``.
    """
    (lo1, hi1), (lo2, hi2) = temporal_order_windows(T)
    B = _check_int("batch_size", batch_size, 1)
    g = _generator(generator)
    inputs = FIRST_ID + torch.randint(0, 4, (B, T), generator=g)  # (B, T) distractors a b c d
    inputs[:, 0] = _TO_ID["B"]
    inputs[:, -1] = _TO_ID["E"]
    t1 = torch.randint(lo1, hi1 + 1, (B,), generator=g)  # (B,)
    t2 = torch.randint(lo2, hi2 + 1, (B,), generator=g)  # (B,)
    is_y = torch.randint(0, 2, (B, 2), generator=g)  # (B, 2) 0 = X, 1 = Y
    rows = torch.arange(B)
    inputs[rows, t1] = _TO_ID["X"] + is_y[:, 0]
    inputs[rows, t2] = _TO_ID["X"] + is_y[:, 1]
    return Batch(
        inputs=inputs,
        lengths=torch.full((B,), T, dtype=torch.long),  # (B,)
        targets=2 * is_y[:, 0] + is_y[:, 1],  # (B,)
    )


_MAKERS: dict[str, Callable[[int, int, torch.Generator | int | None], Batch]] = {
    "adding": make_adding,
    "copy": make_copy,
    "temporal-order": make_temporal_order,
}


def _check_name(name: object) -> str:
    if name not in _MAKERS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return str(name)


def make_task(name: str, T: int, batch_size: int, generator: torch.Generator | int | None = None) -> Batch:
    """One batch of the task ``name`` (``"adding"``, ``"copy"`` or ``"temporal-order"``) at length ``T``.

    ``generator`` is a ``torch.Generator`` (advanced by the call, so consecutive calls give fresh batches), an
    int seed (a fresh generator: the same batch every time), or None (torch's global generator).
    """
    return _MAKERS[_check_name(name)](T, batch_size, generator)


def describe_task(name: str, T: int) -> MemoryTask:
    """The :class:`MemoryTask` of ``name`` at length ``T``: model sizes, metric and baseline."""
    name = _check_name(name)
    if name == "adding":
        T = _check_int("T", T, 2)
        return MemoryTask(
            name=name,
            T=T,
            seq_len=T,
            input_kind="values",
            input_size=2,
            output_kind="regression",
            num_classes=1,
            metric="mse",
            baseline=ADDING_BASELINE_MSE,
            higher_is_better=False,
        )
    if name == "copy":
        T = _check_int("T", T, 1)
        return MemoryTask(
            name=name,
            T=T,
            seq_len=T + 2 * COPY_LENGTH,
            input_kind="tokens",
            input_size=COPY_VOCAB_SIZE,
            output_kind="per-step",
            num_classes=COPY_NUM_CLASSES,
            metric="cross_entropy",
            baseline=copy_baseline(T),
            higher_is_better=False,
        )
    temporal_order_windows(T)  # checks T
    return MemoryTask(
        name=name,
        T=T,
        seq_len=T,
        input_kind="tokens",
        input_size=TEMPORAL_ORDER_VOCAB_SIZE,
        output_kind="class",
        num_classes=len(TEMPORAL_ORDER_CLASSES),
        metric="accuracy",
        baseline=TEMPORAL_ORDER_CHANCE,
        higher_is_better=True,
    )
