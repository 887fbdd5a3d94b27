"""The random-kernel ridge member of a series classifier run (``--kernels N``, :mod:`rnnkit.tasks.kernels`).

A run with ``--kernels N > 0`` (the default: :data:`~rnnkit.runs.series_defaults.DEFAULTS` ``"kernels"``)
classifies with the average of class probabilities ``p = (1 − w) · p_networks + w · p_kernels``. After its
networks are trained (:func:`fit_member`):

1. a :class:`~rnnkit.tasks.kernels.KernelRidge` fitted on the training part alone scores the validation part,
   and ``w`` is the value of :data:`WEIGHTS` whose average has the lowest validation cross-entropy (without a
   validation part: :data:`~rnnkit.runs.series_defaults.KERNEL_WEIGHT`);
2. the member kept is fitted again on the training *and* validation parts (all the labeled series the run has;
   never the test part), at full resolution and in the series' own units (the networks read them downsampled and
   normalised), seeded by the run's seed.

Run folder: ``kernels.safetensors`` (the fitted module's buffers, ``w`` included; ``"format": "rnnkit-kernels"``)
and the top-level ``config.json`` key ``"kernels"``: ``{"features", "seed", "hydra", "pooling", "file"}``
(``"hydra"``: the groups of competing kernels beside the random ones, :mod:`rnnkit.tasks.hydra`; absent before
``--hydra``: none; ``"pooling"``: ``"ppv"`` or ``"ppv+lspv"``, ``--kernel-pooling``; absent before it: ``"ppv"``);
``metrics.json`` adds ``kernels_weight``, ``kernels_accuracy`` and ``networks_accuracy``. Runs without the key
(every run before the option, and ``--kernels 0``) classify with the networks alone, as before.

Shape symbols: N series, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.checkpoint import save_safetensors_atomic
from rnnkit.data.arrays import SeriesSet, as_sequences, stratified_split
from rnnkit.metrics import mean_nll, mixture
from rnnkit.runs.folder import Run
from rnnkit.tasks.hydra import CompetingKernels
from rnnkit.tasks.kernels import KernelRidge, RandomKernels

__all__ = [
    "KERNELS_FILE",
    "RIDGE_MAX_SERIES",
    "WEIGHTS",
    "choose_weight",
    "combine",
    "combined",
    "fit_kernels",
    "fit_member",
    "kernel_probabilities",
    "kernels_record",
    "load_kernels",
    "mean_nll",
    "ridge_sample",
    "save_kernels",
]

KERNELS_FILE = "kernels.safetensors"


WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The weights ``w`` of the ridge's probabilities a run chooses from on its validation part."""


RIDGE_MAX_SERIES = 5_000
"""The most series the ridge is fitted on: above it, a seeded sample of about this many, every class in its share
(:func:`ridge_sample`). The fit holds an ``(N, F)`` float64 feature matrix and ``N × N`` eigenvectors and costs
``O(N²·F + N³)``: one fit on 5,000 series of 100 steps took 71 s and 2.5 GB on 2 idle cores, on 10,000 (before
the choice of feature groups) 5 min 26 s and 5.4 GB (``benchmarks/ridge_scale.py``), and a run fits it twice (the
trial on the training part, then the kept one). The networks always train on every series."""


def ridge_sample(labels: Sequence[int], seed: int, limit: int | None = None) -> list[int]:
    """The indices (sorted) of the series the ridge is fitted on: all of them when there are at most ``limit``
    (default :data:`RIDGE_MAX_SERIES`), else about ``limit``, each class keeping its share (at least one series),
    drawn from ``seed``."""
    limit = RIDGE_MAX_SERIES if limit is None else limit
    if len(labels) <= limit:
        return list(range(len(labels)))
    kept, _ = stratified_split([str(i) for i in labels], 1.0 - limit / len(labels), seed)
    return kept


def fit_kernels(
    parts: list[SeriesSet], classes: list[str], features: int, seed: int, hydra: int = 0, pooling: str = "ppv"
) -> KernelRidge:
    """A :class:`KernelRidge` of about ``features`` random-kernel features pooled as ``pooling`` names
    (``"ppv"``, ``"ppv+lspv"``), and ``hydra`` groups of competing kernels beside them (0: none), fitted on the
    labeled series of ``parts`` (at most about :data:`RIDGE_MAX_SERIES` of them, :func:`ridge_sample`), seeded."""
    series = [x for part in parts for x in as_sequences(part.X)]  # N × (L_i, C)
    labels = [i for part in parts for i in part.label_ids()]
    keep = ridge_sample(labels, seed)
    if len(keep) < len(labels):
        series, labels = [series[i] for i in keep], [labels[i] for i in keep]
    C = parts[0].num_channels
    competing = CompetingKernels(C, hydra) if hydra else None
    kernels = RandomKernels(C, features, stretch=pooling == "ppv+lspv")
    return KernelRidge(kernels, len(classes), competing).fit(series, labels, seed)


def choose_weight(networks: np.ndarray, kernels: np.ndarray, gold: Sequence[int]) -> float:
    """The ``w`` of :data:`WEIGHTS` whose average ``(1 − w)·networks + w·kernels`` ``(N, K)`` has the lowest mean
    cross-entropy against ``gold`` ``(N,)`` (the first of equals)."""
    losses = [mean_nll(combined(networks, kernels, w), gold) for w in WEIGHTS]
    return WEIGHTS[int(np.argmin(losses))]


def fit_member(
    split_parts: tuple[SeriesSet, SeriesSet],
    classes: list[str],
    features: int,
    seed: int,
    val_networks: np.ndarray | None,
    default_weight: float,
    hydra: int = 0,
    pooling: str = "ppv",
) -> KernelRidge:
    """The run's ridge (module docstring): ``split_parts`` = (training part, validation part), ``val_networks``
    ``(N_val, K)`` the networks' probabilities of the validation part (None when it is empty)."""
    train, val = split_parts
    weight = default_weight
    if len(val) and val_networks is not None:
        trial = fit_kernels([train], classes, features, seed, hydra, pooling)
        weight = choose_weight(val_networks, trial.probabilities(as_sequences(val.X)), val.label_ids())
    ridge = fit_kernels([train, val] if len(val) else [train], classes, features, seed, hydra, pooling)
    ridge.weight.fill_(weight)
    return ridge


def kernels_record(features: int, seed: int, hydra: int = 0, pooling: str = "ppv") -> dict[str, Any]:
    """The ``config.json`` ``"kernels"`` entry of a run with a ridge of about ``features`` features (``--kernels``
    as given: the transform keeps ``84 · ⌊features / 84⌋``, half of it per pooling with ``"ppv+lspv"``), ``hydra``
    groups of competing kernels (``--hydra``; a record without the key, written before the option, has none) and
    the kernels' ``pooling`` (``--kernel-pooling``; without the key: ``"ppv"``); a resumed run reads the options
    back here."""
    return {
        "features": int(features),
        "seed": int(seed),
        "hydra": int(hydra),
        "pooling": str(pooling),
        "file": KERNELS_FILE,
    }


def save_kernels(folder: Path, ridge: KernelRidge) -> None:
    """Write ``folder/kernels.safetensors`` atomically."""
    save_safetensors_atomic(folder / KERNELS_FILE, ridge.state_dict(), metadata={"format": "rnnkit-kernels"})


def load_kernels(run: Run) -> KernelRidge | None:
    """The run's fitted ridge (loaded once, kept in ``run.parts``), or None for a run without one."""

    def build(state: dict[str, Any]) -> KernelRidge:
        ridge = KernelRidge.from_state(state)
        ridge.load_state_dict(state)
        return ridge

    return run.part("kernels", KERNELS_FILE, "a kernel ridge", "--kernels", build)


def kernel_probabilities(run: Run, part: SeriesSet) -> np.ndarray | None:
    """The ridge's class probabilities ``(N, K)`` of ``part``'s series, or None for a run without one."""
    ridge = load_kernels(run)
    return None if ridge is None else ridge.probabilities(as_sequences(part.X))


def combined(networks: np.ndarray, kernels: np.ndarray, weight: float) -> np.ndarray:
    """``(1 − w) · networks + w · kernels`` ``(N, K)`` (:func:`rnnkit.metrics.mixture`)."""
    return mixture(networks, kernels, weight)


def combine(run: Run, networks: np.ndarray, kernels: np.ndarray | None) -> np.ndarray:
    """:func:`combined` with the run's ridge's ``w``; ``networks`` as they are for a run without a ridge."""
    ridge = load_kernels(run)
    if kernels is None or ridge is None:
        return networks
    return combined(networks, kernels, float(ridge.weight))
