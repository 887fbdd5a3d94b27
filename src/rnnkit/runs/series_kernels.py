"""The random-kernel ridge member of a series classifier run (``--kernels N``, :mod:`rnnkit.tasks.kernels`) and
the DTW member beside it (``--dtw-steps N``, :mod:`rnnkit.tasks.elastic`).

A run with ``--kernels N > 0`` (the default: :data:`~rnnkit.runs.series_defaults.DEFAULTS` ``"kernels"``)
classifies with the average of class probabilities ``p = (1 − w) · p_networks + w · p_static``, where
``p_static = (1 − v) · p_kernels + v · p_dtw`` with a DTW member (``--dtw-steps N > 0``; not a default: the board17
study in docs/leaderboard.md) and ``p_kernels`` without one. After its networks are trained (:func:`fit_member`):

1. a :class:`~rnnkit.tasks.kernels.KernelRidge` (and a :class:`~rnnkit.tasks.elastic.NearestSeries`) fitted on
   the training part alone score the validation part; ``v`` is the value of :data:`WEIGHTS` whose average of the
   two members' *leave-one-out* probabilities over the training part has the lowest cross-entropy
   (:func:`static_share`: both members have exact leave-one-out scores of every series they were fitted on, more
   evidence than the validation carve), and ``w`` the value whose average of the networks' and ``p_static``'s has
   the lowest validation cross-entropy (without a validation part:
   :data:`~rnnkit.runs.series_defaults.KERNEL_WEIGHT`);
2. the members kept are fitted again on the training *and* validation parts (all the labeled series the run has;
   never the test part), at full resolution (the DTW member: averaged to about ``N`` steps) and in the series'
   own units (the networks read them downsampled and normalised), seeded by the run's seed; the kept members'
   ``v`` is chosen again by their leave-one-out probabilities over all of them.

Run folder: ``kernels.safetensors`` (the fitted module's buffers, ``w`` included; ``"format": "rnnkit-kernels"``)
and the top-level ``config.json`` key ``"kernels"``: ``{"features", "seed", "hydra", "pooling", "file"}``
(``"hydra"``: the groups of competing kernels beside the random ones, :mod:`rnnkit.tasks.hydra`; absent before
``--hydra``: none; ``"pooling"``: ``"ppv"`` or ``"ppv+lspv"``, ``--kernel-pooling``; absent before it: ``"ppv"``);
with a DTW member ``dtw.safetensors`` (its reference series, labels, scaling, ``τ`` and ``v``;
``"format": "rnnkit-dtw"``) and the key ``"dtw"``: ``{"steps", "file"}``. ``metrics.json`` adds
``kernels_weight``, ``kernels_accuracy`` and ``networks_accuracy`` (and ``dtw_weight``, ``dtw_accuracy``). Runs
without the key ``"kernels"`` (every run before the option, and ``--kernels 0``) classify with the networks
alone, runs without ``"dtw"`` (every run before the option, and ``--dtw-steps 0``, the default) with the networks
and the ridge, as before.

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
from rnnkit.tasks.elastic import NearestSeries
from rnnkit.tasks.hydra import CompetingKernels
from rnnkit.tasks.kernels import KernelRidge, RandomKernels

__all__ = [
    "DTW_FILE",
    "DTW_MAX_SERIES",
    "KERNELS_FILE",
    "RIDGE_MAX_SERIES",
    "WEIGHTS",
    "choose_weight",
    "combine",
    "combined",
    "dtw_record",
    "fit_kernels",
    "fit_member",
    "fit_nearest",
    "kernel_probabilities",
    "kernels_record",
    "load_kernels",
    "load_nearest",
    "mean_nll",
    "nearest_probabilities",
    "ridge_sample",
    "save_kernels",
    "save_nearest",
    "static_share",
]

KERNELS_FILE = "kernels.safetensors"
DTW_FILE = "dtw.safetensors"


WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The weights ``w`` of the ridge's probabilities a run chooses from on its validation part."""


RIDGE_MAX_SERIES = 5_000
"""The most series the ridge is fitted on: above it, a seeded sample of about this many, every class in its share
(:func:`ridge_sample`). The fit holds an ``(N, F)`` float64 feature matrix and ``N × N`` eigenvectors and costs
``O(N²·F + N³)``: one fit on 5,000 series of 100 steps took 71 s and 2.5 GB on 2 idle cores, on 10,000 (before
the choice of feature groups) 5 min 26 s and 5.4 GB (``benchmarks/ridge_scale.py``), and a run fits it twice (the
trial on the training part, then the kept one). The networks always train on every series."""


DTW_MAX_SERIES = 500
"""The reference series the DTW member keeps at most (a seeded sample of about this many above it, every class in
its share and at least one series each, :func:`ridge_sample`: with hundreds of classes a few more): its fit aligns
every pair of them (``N²`` distances of about ``steps²`` cells each: 500 series of 128 steps are 4·10⁹ cells, about
3 s of one core with the compiled kernel at 1.4·10⁹ cells/s, about a minute with the PyTorch scan's 8·10⁷,
``benchmarks/dtw_speed.py``) and every series it scores is aligned with all."""


def ridge_sample(labels: Sequence[int], seed: int, limit: int | None = None) -> list[int]:
    """The indices (sorted) of the series the ridge is fitted on: all of them when there are at most ``limit``
    (default :data:`RIDGE_MAX_SERIES`), else about ``limit``, each class keeping its share (at least one series),
    drawn from ``seed``."""
    limit = RIDGE_MAX_SERIES if limit is None else limit
    if len(labels) <= limit:
        return list(range(len(labels)))
    kept, _ = stratified_split([str(i) for i in labels], 1.0 - limit / len(labels), seed)
    return kept


def _labeled(parts: list[SeriesSet]) -> tuple[list[np.ndarray], list[int]]:
    """The series ``N × (L_i, C)`` of ``parts``, one after the other, and their class ids ``(N,)``."""
    return [x for part in parts for x in as_sequences(part.X)], [i for part in parts for i in part.label_ids()]


def fit_kernels(
    parts: list[SeriesSet], classes: list[str], features: int, seed: int, hydra: int = 0, pooling: str = "ppv"
) -> KernelRidge:
    """A :class:`KernelRidge` of about ``features`` random-kernel features pooled as ``pooling`` names
    (``"ppv"``, ``"ppv+lspv"``), and ``hydra`` groups of competing kernels beside them (0: none), fitted on the
    labeled series of ``parts`` (at most about :data:`RIDGE_MAX_SERIES` of them, :func:`ridge_sample`), seeded."""
    series, labels = _labeled(parts)
    keep = ridge_sample(labels, seed)
    if len(keep) < len(labels):
        series, labels = [series[i] for i in keep], [labels[i] for i in keep]
    C = parts[0].num_channels
    competing = CompetingKernels(C, hydra) if hydra else None
    kernels = RandomKernels(C, features, stretch=pooling == "ppv+lspv")
    return KernelRidge(kernels, len(classes), competing).fit(series, labels, seed)


def fit_nearest(parts: list[SeriesSet], classes: list[str], steps: int, seed: int) -> NearestSeries:
    """A :class:`NearestSeries` on the labeled series of ``parts`` (at most about :data:`DTW_MAX_SERIES` of them,
    :func:`ridge_sample`, seeded), averaged to about ``steps`` steps."""
    series, labels = _labeled(parts)
    keep = ridge_sample(labels, seed, DTW_MAX_SERIES)
    return NearestSeries(parts[0].num_channels, len(classes)).fit(
        [series[i] for i in keep], [labels[i] for i in keep], steps
    )


def static_share(ridge: KernelRidge, nearest: NearestSeries, labels: Sequence[int], seed: int) -> float:
    """``v``: the share of :data:`WEIGHTS` whose average ``(1 − v)·ridge + v·nearest`` has the lowest mean
    cross-entropy of the two members' leave-one-out probabilities, over the labeled series (class ids ``labels``)
    both were fitted on (their samples, :func:`ridge_sample`, seeded by ``seed``)."""
    rows_r = ridge_sample(labels, seed)
    rows_d = ridge_sample(labels, seed, DTW_MAX_SERIES)
    at_r, at_d = {i: k for k, i in enumerate(rows_r)}, {i: k for k, i in enumerate(rows_d)}
    common = [i for i in rows_d if i in at_r]
    assert ridge.loo_probabilities is not None and nearest.loo_probabilities is not None, "fit both first"
    return choose_weight(
        ridge.loo_probabilities[[at_r[i] for i in common]],
        nearest.loo_probabilities[[at_d[i] for i in common]],
        [labels[i] for i in common],
    )


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
    dtw_steps: int = 0,
) -> tuple[KernelRidge, NearestSeries | None]:
    """The run's ridge, and with ``dtw_steps > 0`` its DTW member (module docstring): ``split_parts`` = (training
    part, validation part), ``val_networks`` ``(N_val, K)`` the networks' probabilities of the validation part
    (None when it is empty). The ridge carries ``w`` (its and the DTW member's share beside the networks), the
    DTW member ``v`` (its share beside the ridge)."""
    train, val = split_parts
    weight = default_weight
    if len(val) and val_networks is not None:
        trial = fit_kernels([train], classes, features, seed, hydra, pooling)
        val_series = as_sequences(val.X)
        static = trial.probabilities(val_series)  # (N_val, K)
        if dtw_steps:
            near = fit_nearest([train], classes, dtw_steps, seed)
            share = static_share(trial, near, train.label_ids(), seed)
            static = mixture(static, near.probabilities(val_series), share)
        weight = choose_weight(val_networks, static, val.label_ids())
    parts = [train, val] if len(val) else [train]
    ridge = fit_kernels(parts, classes, features, seed, hydra, pooling)
    ridge.weight.fill_(weight)
    nearest = None
    if dtw_steps:
        nearest = fit_nearest(parts, classes, dtw_steps, seed)
        nearest.weight.fill_(static_share(ridge, nearest, [i for part in parts for i in part.label_ids()], seed))
    return ridge, nearest


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


def dtw_record(steps: int) -> dict[str, Any]:
    """The ``config.json`` ``"dtw"`` entry of a run with a DTW member reading about ``steps`` steps
    (``--dtw-steps``); a resumed run reads the option back here."""
    return {"steps": int(steps), "file": DTW_FILE}


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


def save_nearest(folder: Path, nearest: NearestSeries) -> None:
    """Write ``folder/dtw.safetensors`` atomically."""
    save_safetensors_atomic(folder / DTW_FILE, nearest.state_dict(), metadata={"format": "rnnkit-dtw"})


def load_nearest(run: Run) -> NearestSeries | None:
    """The run's DTW member (loaded once, kept in ``run.parts``), or None for a run without one."""

    want = (len(run.classes), int(run.config.get("num_channels", 0)))

    def build(state: dict[str, Any]) -> NearestSeries:
        nearest = NearestSeries.from_state(state)
        nearest.load_state_dict(state)
        nearest.check()
        got = (nearest.num_classes, int(nearest.channel_mean.shape[0]))
        if got != want:
            raise ValueError(
                f"a DTW member of {got[0]} classes and {got[1]} channels, but the run has {want[0]} classes and "
                f"{want[1]} channels: it belongs to another run; retrain this one"
            )
        return nearest

    return run.part("dtw", DTW_FILE, "a DTW member", "--dtw-steps", build)


def nearest_probabilities(run: Run, part: SeriesSet) -> np.ndarray | None:
    """The DTW member's class probabilities ``(N, K)`` of ``part``'s series, or None for a run without one (or
    without the ridge it sits beside: nothing would read it)."""
    nearest = load_nearest(run) if load_kernels(run) is not None else None
    return None if nearest is None else nearest.probabilities(as_sequences(part.X))


def kernel_probabilities(run: Run, part: SeriesSet) -> np.ndarray | None:
    """The ridge's class probabilities ``(N, K)`` of ``part``'s series, or None for a run without one."""
    ridge = load_kernels(run)
    return None if ridge is None else ridge.probabilities(as_sequences(part.X))


def combined(networks: np.ndarray, kernels: np.ndarray, weight: float) -> np.ndarray:
    """``(1 − w) · networks + w · kernels`` ``(N, K)`` (:func:`rnnkit.metrics.mixture`)."""
    return mixture(networks, kernels, weight)


def combine(
    run: Run, networks: np.ndarray, kernels: np.ndarray | None, nearest: np.ndarray | None = None
) -> np.ndarray:
    """``(1 − w)·networks + w·static`` with the run's ridge's ``w``, ``static`` the ridge's probabilities
    ``kernels``, averaged with the DTW member's ``nearest`` by its ``v`` when the run has one; ``networks`` as
    they are for a run without a ridge."""
    ridge = load_kernels(run)
    if kernels is None or ridge is None:
        return networks
    member = load_nearest(run)
    static = kernels if nearest is None or member is None else mixture(kernels, nearest, float(member.weight))
    return combined(networks, static, float(ridge.weight))
