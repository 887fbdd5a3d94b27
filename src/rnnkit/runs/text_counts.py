"""A text run's count member (``--ngram-order N``, :mod:`rnnkit.tasks.counts`): fitted after the network, mixed
with it wherever the run gives probabilities (test metrics, ``evaluate``, ``predict``, ``sample``, ``serve``).

- generate: :class:`~rnnkit.tasks.counts.NgramCounts` over the category and the last ``N`` symbols, a probability
  of every next symbol;
- classify: :class:`~rnnkit.tasks.counts.CountClassifier`, the same counts conditioned on the class and Bayes'
  rule, a probability of every class, tempered by ``τ``.

1. Counted on the training part's names, the member gives probabilities on the validation part; the share ``w`` of
   the mixture ``(1 − w) · network + w · counts`` (with ``τ``) is the one with the lowest validation NLL (0 when
   the counts do not help);
2. the member kept counts the training *and* validation parts (all the names the run has), as a series run's
   kernel ridge is refitted on both (:mod:`rnnkit.runs.series_kernels`).

Stored in ``ngram.safetensors`` (the counts and ``w``), named by ``config.json``'s ``"ngram"`` record; a run
without the record (``--ngram-order 0``, or written before this member existed) is its network alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rnnkit.checkpoint import save_safetensors_atomic
from rnnkit.data.batching import IGNORE_INDEX, Batches, collate_generation
from rnnkit.runs.folder import Run

# fit_class_member: re-exported (it lived here before the scikit-learn wrapper shared it)
from rnnkit.tasks.counts import (
    CountClassifier,
    NgramCounts,
    choose_weight,
    fit_class_member,
    mixed_nll,
)
from rnnkit.tasks.modes import eval_mode

__all__ = [
    "NGRAM_FILE",
    "class_probabilities",
    "fit_class_member",
    "fit_member",
    "load_counts",
    "network_target_probabilities",
    "ngram_record",
    "save_counts",
    "target_nll",
]

NGRAM_FILE = "ngram.safetensors"


def ngram_record(order: int) -> dict[str, Any]:
    """The ``config.json`` ``"ngram"`` entry of a run whose count member reads the last ``order`` symbols."""
    return {"order": int(order), "file": NGRAM_FILE}


def network_target_probabilities(
    model: nn.Module, ids: Sequence[Sequence[int]], conditions: Sequence[int] | None, batch_size: int = 256
) -> np.ndarray:
    """The generator's probability of every target of ``[BOS, *s, EOS]`` (symbols, then EOS), sequence after
    sequence in the order of ``ids`` ``(Σ (L_i + 1),)`` float64 — the order of
    :meth:`NgramCounts.target_probabilities`."""

    def collate(index: list[int]):
        conds = None if conditions is None else [conditions[i] for i in index]
        return collate_generation([ids[i] for i in index], conds)

    per_item: list[np.ndarray] = [np.empty(0)] * len(ids)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with eval_mode(model), torch.no_grad():
        for index, batch in Batches([len(s) for s in ids], collate, batch_size, 0).indexed():
            logits, _ = model(batch.to(device))
            logp = torch.log_softmax(logits.double(), dim=-1).cpu()  # (B, T, V)
            targets = batch.targets
            valid = targets != IGNORE_INDEX
            got = logp.gather(2, targets.clamp(min=0).unsqueeze(2)).squeeze(2).exp()  # (B, T)
            for row, i in enumerate(index):
                per_item[i] = got[row][valid[row]].numpy()
    return np.concatenate(per_item) if per_item else np.zeros(0)


def fit_member(
    model: nn.Module,
    order: int,
    vocab_size: int,
    num_conditions: int,
    train: tuple[list[list[int]], list[int] | None],
    val: tuple[list[list[int]], list[int] | None],
) -> tuple[NgramCounts, dict[str, float]]:
    """The run's count member (module docstring) and what choosing it measured on the validation part:
    ``network_val_nll``, ``counts_val_nll``, ``mixed_val_nll`` (nats per symbol) and ``weight``.
    ``train``/``val``: the parts' token ids and category ids (None for an unconditional run)."""
    trial = NgramCounts(order, vocab_size, num_conditions).fit(*train)
    network = network_target_probabilities(model, *val)
    counts = trial.target_probabilities(*val)
    weight = choose_weight(network, counts)
    seqs = list(train[0]) + list(val[0])
    conds = None if train[1] is None else list(train[1]) + list(val[1] or [])
    member = NgramCounts(order, vocab_size, num_conditions).fit(seqs, conds)
    member.weight = weight
    chosen = {
        "network_val_nll": mixed_nll(network, counts, 0.0),
        "counts_val_nll": mixed_nll(network, counts, 1.0),
        "mixed_val_nll": mixed_nll(network, counts, weight),
        "weight": weight,
    }
    return member, chosen


def class_probabilities(run: Run, ids: Sequence[Sequence[int]]) -> np.ndarray | None:
    """The count member's class probabilities ``(N, C)`` of ``ids``, or None for a run without one."""
    member = load_counts(run)
    return None if member is None else member.probabilities(ids)


def target_nll(
    run: Run, ids: Sequence[Sequence[int]], conditions: Sequence[int] | None
) -> tuple[float, dict[str, float]] | None:
    """The run's mean NLL per target symbol on ``ids`` with its count member, and the parts alone
    (``network_nll_per_char``, ``ngram_nll_per_char``); None for a run without a member."""
    counts = load_counts(run)
    if counts is None:
        return None
    network = network_target_probabilities(run.model, ids, conditions)
    mine = counts.target_probabilities(ids, conditions)
    parts = {"network_nll_per_char": mixed_nll(network, mine, 0.0), "ngram_nll_per_char": mixed_nll(network, mine, 1.0)}
    return mixed_nll(network, mine, counts.weight), parts


def save_counts(folder: Path, counts: NgramCounts | CountClassifier) -> None:
    """Write ``folder/ngram.safetensors`` atomically."""
    save_safetensors_atomic(folder / NGRAM_FILE, counts.state_dict(), metadata={"format": "rnnkit-ngram"})


def load_counts(run: Run) -> Any:
    """The run's count member (loaded once, kept in ``run.parts``): an :class:`NgramCounts` (generate), a
    :class:`CountClassifier` (classify), or None for a run without one."""
    record = run.config.get("ngram") or {}
    classes = len(run.classes) if run.task == "classify" or run.config["data"].get("conditional") else 0
    want = (int(record.get("order", 0)), len(run.vocab) if run.vocab is not None else 0, classes)

    def build(state: dict[str, torch.Tensor]) -> NgramCounts | CountClassifier:
        counts = (CountClassifier if run.task == "classify" else NgramCounts).from_state(state)
        model = counts.counts if isinstance(counts, CountClassifier) else counts
        if (model.order, model.vocab_size, model.num_conditions) != want:
            raise ValueError(
                f"a count member of order {model.order} over {model.vocab_size} symbols and "
                f"{model.num_conditions} categories, but the run has order {want[0]}, {want[1]} symbols and "
                f"{want[2]} categories: it belongs to another run; retrain this one"
            )
        return counts

    return run.part("ngram", NGRAM_FILE, "a count member", "--ngram-order", build)
