"""Dynamic time warping and a nearest-series classifier on it: the member a series classifier adds beside its
kernel ridge (``--dtw-steps N``).

**DTW** (Sakoe and Chiba 1978; the 1-NN DTW baseline of the UCR/UEA archives) aligns two series ``a`` ``(La, C)``
and ``b`` ``(Lb, C)`` by the cheapest monotone path through their cost matrix
``c[i, j] = Σ_ch (a[i, ch] − b[j, ch])²`` (multichannel: the channels' squared differences summed per cell, the
"dependent" DTW), with no window::

    D[0, 0] = c[0, 0];   D[i, j] = c[i, j] + min(D[i−1, j−1], D[i−1, j], D[i, j−1]);   dtw(a, b) = D[La−1, Lb−1]

(the squared-cost sum, as aeon's ``dtw_distance`` returns it). Two paths compute it (:data:`DTW_METHODS`):
``"compiled"``, that programme cell by cell in C++ (``engine/csrc/dtw.cpp``, built on first use by
:mod:`rnnkit.engine.build`; eight pairs side by side in vector lanes, pairs split between torch's threads), and
``"scan"`` in PyTorch, the fallback where no compiler is found. The scan: one row is a min-plus scan: with
``r[j] = c[i, j] + min(D[i−1, j−1], D[i−1, j])`` and ``S`` the prefix sums of ``c[i, :]``,
``D[i, j] = S[j] + min_{k ≤ j} (r[k] − S[k])``, so a row is a ``cumsum`` and a ``cummin`` over every pair of a
batch at once (:func:`dtw_distances`, float64; a Python loop over the rows of the first argument's series only).
The subtraction of prefix sums costs precision where one cell dwarfs the rest of its row: the absolute error is
about 1e-16 × the row's total cost (fine for standardized series; a shared spike of 10⁷ standard deviations
would hide differences below about 10⁻²).

**The member** (:class:`NearestSeries`): every series is standardized per channel (the reference series'
statistics) and, when the reference series are longer than ``steps`` on average (``L̄``), read with every
``f = ⌈L̄ / steps⌉`` steps averaged into one (piecewise aggregate approximation: the *mean* length read is then
at most about ``steps``, so a distance costs about ``steps²`` cells on average; longer series stay longer).
A series' score for class ``k`` is minus its DTW distance to the nearest reference series of that class, over
the median nearest-neighbour distance of the references; the probabilities are
``softmax(τ · scores)`` with ``τ`` fitted to the references' leave-one-out scores (each scored against the
others) by cross-entropy, as the kernel ridge fits its own. Its argmax is 1-NN DTW's prediction.

Shape symbols: N reference series, n series scored, L steps, C channels, K classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.data.series_inputs import downsample_series
from rnnkit.engine.build import extension_status, load_threaded_extension
from rnnkit.tasks.kernels import fit_temperature

__all__ = ["CHUNK_CELLS", "DTW_METHODS", "NearestSeries", "class_minima", "dtw_distances", "pad_series"]

DTW_METHODS = ("auto", "compiled", "scan")
"""The paths of :func:`dtw_distances`: ``"auto"`` is ``"compiled"`` where the C++ kernel builds and loads, else
``"scan"``."""

_EXTENSION = "dtw"

CHUNK_CELLS = 2_000_000
"""Pairs × steps of one batch of :func:`dtw_distances` (about 16 MB per float64 buffer)."""


def pad_series(series: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Series ``n × (L_i, C)`` → zero-padded float64 ``(n, max L_i, C)`` and their lengths ``(n,)``."""
    if not series:
        raise ValueError("no series to align")
    C = np.asarray(series[0]).reshape(len(series[0]), -1).shape[1]
    X = torch.zeros(len(series), max(len(s) for s in series), C, dtype=torch.float64)
    for i, s in enumerate(series):
        X[i, : len(s)] = torch.as_tensor(np.asarray(s, dtype=np.float64).reshape(len(s), C))
    return X, torch.tensor([len(s) for s in series])


def _kernel():
    return load_threaded_extension(_EXTENSION, ["dtw.cpp"])


@torch.no_grad()
def dtw_distances(
    a: Tensor,
    a_lengths: Tensor,
    b: Tensor,
    b_lengths: Tensor,
    chunk_cells: int = CHUNK_CELLS,
    method: str = "auto",
) -> Tensor:
    """DTW distances ``(n, N)`` float64 between the padded series ``a`` ``(n, La, C)`` (lengths ``(n,)``) and
    ``b`` ``(N, Lb, C)`` (lengths ``(N,)``), on the CPU. Padding is never read: a pair's distance is read at its
    own last cell. Every length must be at least 1 and at most its tensor's ``L``; the series are read on the CPU
    (the result is there too). ``method``: one of :data:`DTW_METHODS` (an explicit ``"compiled"`` that cannot
    build raises ValueError, except for an empty ``a`` or ``b``, which needs no kernel); ``chunk_cells``: pairs ×
    steps of one batch of the scan."""
    if method not in DTW_METHODS:
        raise ValueError(f"method must be one of {DTW_METHODS}, got {method!r}")
    if a.dim() != 3 or b.dim() != 3 or a.shape[2] != b.shape[2]:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must be (n, L, C) with the same channels C")
    for lengths, x, name in ((a_lengths, a, "a_lengths"), (b_lengths, b, "b_lengths")):
        if lengths.shape != (x.shape[0],) or lengths.is_floating_point() or lengths.is_complex():
            raise ValueError(f"{name} must hold one integer per series ({x.shape[0]}), got {tuple(lengths.shape)}")
    if a.shape[0] == 0 or b.shape[0] == 0:
        return torch.zeros(a.shape[0], b.shape[0], dtype=torch.float64)
    if int(a_lengths.min()) < 1 or int(b_lengths.min()) < 1:
        raise ValueError("every series needs at least one step")
    if int(a_lengths.max()) > a.shape[1] or int(b_lengths.max()) > b.shape[1]:
        raise ValueError("a length exceeds its series' padded length")
    a, b = a.double().cpu(), b.double().cpu()
    a_lengths, b_lengths = a_lengths.long().cpu(), b_lengths.long().cpu()
    kernel = None if method == "scan" else _kernel()
    if method == "compiled" and kernel is None:
        raise ValueError(f"method='compiled' is unavailable ({extension_status(_EXTENSION)}); use 'auto'")
    if kernel is not None:
        return kernel.dtw_distances(a.contiguous(), a_lengths.contiguous(), b.contiguous(), b_lengths.contiguous())
    n_all, N, Lb, C = a.shape[0], b.shape[0], b.shape[1], b.shape[2]
    bt = b.permute(2, 0, 1).unsqueeze(0)  # (1, C, N, Lb)
    last = (b_lengths - 1).view(1, N, 1)
    out = torch.empty(n_all, N, dtype=torch.float64)
    rows = max(1, chunk_cells // (N * Lb))  # series of a per batch
    for start in range(0, n_all, rows):
        x, lengths = a[start : start + rows], a_lengths[start : start + rows]  # (n, La, C), (n,)
        n = x.shape[0]
        D = torch.empty(n, N, Lb, dtype=torch.float64)  # the previous row of every pair's D
        r = torch.empty_like(D)
        res = torch.empty(n, N, dtype=torch.float64)
        for i in range(int(lengths.max())):
            cost = torch.zeros(n, N, Lb, dtype=torch.float64)  # c[i, :] of every pair
            for ch in range(C):
                cost.add_((x[:, i, ch].view(n, 1, 1) - bt[:, ch]).square_())
            S = cost.cumsum(-1)
            if i == 0:
                D = S
            else:
                r[..., 0] = D[..., 0]  # j = 0: only D[i−1, 0] precedes
                torch.minimum(D[..., 1:], D[..., :-1], out=r[..., 1:])
                r.add_(cost).sub_(S)
                D = torch.cummin(r, dim=-1).values.add_(S)
            ends = lengths - 1 == i  # (n,): the series of a whose last row this is
            if bool(ends.any()):
                res[ends] = D.gather(-1, last.expand(n, N, 1)).squeeze(-1)[ends]
        out[start : start + n] = res
    return out


def class_minima(distances: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """The distance ``(n, K)`` of every scored series to the nearest reference series of each class (``inf`` for
    a class without one), from ``distances`` ``(n, N)`` and the references' class ids ``labels`` ``(N,)``."""
    out = torch.full((distances.shape[0], num_classes), math.inf, dtype=torch.float64)
    for k in range(num_classes):
        members = labels == k
        if bool(members.any()):
            out[:, k] = distances[:, members].min(dim=1).values
    return out


class NearestSeries(nn.Module):
    """The nearest reference series by DTW, as class probabilities (the module docstring).

        :meth:`fit` keeps the (standardized, averaged) reference series and fits the scale and ``τ``;
        :meth:`probabilities` scores new series in their own units. Saved and loaded as a ``state_dict``
        (:meth:`from_state`); the series, statistics, scale, ``τ`` and share are float64, the lengths, labels,
    class counts and factor integers.
    """

    def __init__(self, channels: int, num_classes: int, num_series: int = 0, length: int = 1) -> None:
        super().__init__()
        self.register_buffer("reference", torch.zeros(num_series, length, channels, dtype=torch.float64))
        self.register_buffer("lengths", torch.ones(num_series, dtype=torch.long))
        self.register_buffer("labels", torch.zeros(num_series, dtype=torch.long))
        self.register_buffer("class_count", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("channel_mean", torch.zeros(channels, dtype=torch.float64))
        self.register_buffer("channel_std", torch.ones(channels, dtype=torch.float64))
        self.register_buffer("factor", torch.ones((), dtype=torch.long))
        self.register_buffer("scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("temperature", torch.ones((), dtype=torch.float64))
        self.register_buffer("weight", torch.zeros((), dtype=torch.float64))
        """``v``: the share of this member's probabilities where a run averages them with its kernel ridge's."""
        self.loo_probabilities: np.ndarray | None = None
        """After :meth:`fit`: the references' leave-one-out probabilities ``(N, K)`` (not saved)."""

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> NearestSeries:
        """A module shaped for a saved ``state_dict``."""
        N, L, C = state["reference"].shape
        return cls(int(C), int(state["class_count"].shape[0]), int(N), int(L))

    def check(self) -> NearestSeries:
        """Refuse loaded buffers that :meth:`fit` cannot have written (ValueError saying which); returns ``self``."""
        N, L, C = self.reference.shape
        if N < 2 or self.lengths.shape != (N,) or self.labels.shape != (N,):
            raise ValueError(
                f"{N} reference series with {tuple(self.lengths.shape)} lengths and {tuple(self.labels.shape)} labels"
            )
        if int(self.lengths.min()) < 1 or int(self.lengths.max()) > L:
            raise ValueError(f"lengths outside [1, {L}]")
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes:
            raise ValueError(f"labels outside [0, {self.num_classes})")
        if not torch.equal(self.class_count, torch.bincount(self.labels, minlength=self.num_classes)):
            raise ValueError("class_count does not count the labels")
        if self.channel_mean.shape != (C,) or self.channel_std.shape != (C,) or bool((self.channel_std <= 0).any()):
            raise ValueError(f"channel_mean and channel_std must hold {C} values, the stds > 0")
        if int(self.factor) < 1:
            raise ValueError("factor must be at least 1")
        numbers = torch.stack([self.scale, self.temperature, self.weight])
        finite = all(bool(torch.isfinite(t).all()) for t in (self.reference, self.channel_mean, self.channel_std))
        if not (
            finite and bool(torch.isfinite(numbers).all()) and float(self.scale) > 0 and float(self.temperature) > 0
        ):
            raise ValueError("reference, scale and temperature must be finite, scale and temperature > 0")
        if not 0.0 <= float(self.weight) <= 1.0:
            raise ValueError(f"weight {float(self.weight):g} outside [0, 1]")
        return self

    @property
    def num_classes(self) -> int:
        return int(self.class_count.shape[0])

    def prepare(self, series: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
        """Series ``n × (L_i, C)`` in their own units → standardized, averaged by the fitted factor, padded
        ``(n, L', C)`` and their lengths ``(n,)``."""
        mean, std = self.channel_mean.numpy(), self.channel_std.numpy()
        C = mean.shape[0]
        scaled = [(np.asarray(s, dtype=np.float64).reshape(len(s), C) - mean) / std for s in series]
        return pad_series(downsample_series(scaled, int(self.factor)))

    @torch.no_grad()
    def fit(self, series: Sequence[np.ndarray], labels: Sequence[int], steps: int) -> NearestSeries:
        """Keep ``series`` ``N × (L_i, C)`` (class ids ``labels`` ``(N,)``) as the references, averaged to about
        ``steps`` steps when longer on average, and fit the scale and ``τ`` on their leave-one-out scores; returns
        ``self``."""
        y = torch.as_tensor(list(labels), dtype=torch.long)
        if len(series) != len(y) or len(y) < 2:
            raise ValueError(f"the nearest-series member needs at least 2 labeled series, got {len(y)}")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        C = self.channel_mean.shape[0]
        flat = np.concatenate([np.asarray(s, dtype=np.float64).reshape(len(s), C) for s in series])  # (ΣL, C)
        std = flat.std(0)
        self.channel_mean = torch.from_numpy(flat.mean(0))
        self.channel_std = torch.from_numpy(np.where(std > 0, std, 1.0))
        mean_length = len(flat) / len(series)
        self.factor = torch.tensor(math.ceil(mean_length / steps) if mean_length > steps else 1)
        self.reference, self.lengths = self.prepare(series)
        self.labels = y
        self.class_count = torch.bincount(y, minlength=self.num_classes)
        D = dtw_distances(self.reference, self.lengths, self.reference, self.lengths)  # (N, N)
        D.fill_diagonal_(math.inf)  # leave one out: a series is not its own neighbour
        nearest = D.min(dim=1).values
        finite = nearest[torch.isfinite(nearest)]
        median = float(torch.quantile(finite, 0.5)) if len(finite) else 1.0  # the midpoint of an even count
        self.scale = torch.tensor(median if median > 0 else 1.0, dtype=torch.float64)
        scores = self._scores(D)  # (N, K)
        seen = torch.isfinite(scores.gather(1, y.view(-1, 1))).squeeze(1)  # (N,): its class has another series
        tau = fit_temperature(scores[seen].clamp(min=-1e6), y[seen]) if bool(seen.any()) else 1.0
        self.temperature = torch.tensor(tau, dtype=torch.float64)
        self.loo_probabilities = self._softmax(scores)
        return self

    def _scores(self, distances: Tensor) -> Tensor:
        """Minus the nearest distance per class over the scale ``(n, K)`` (``−inf`` for a class without a
        reference: probability 0)."""
        return -class_minima(distances, self.labels, self.num_classes) / self.scale

    def _softmax(self, scores: Tensor) -> np.ndarray:
        return torch.softmax(self.temperature * scores, dim=-1).numpy()

    @torch.no_grad()
    def distances(self, series: Sequence[np.ndarray]) -> Tensor:
        """DTW distances ``(n, N)`` of ``series`` ``n × (L_i, C)`` (their own units) to the references."""
        x, lengths = self.prepare(series)
        D = dtw_distances(x, lengths, self.reference, self.lengths)
        if not bool(torch.isfinite(D).all()):  # a cost beyond float64: inf (the C++ kernel) or inf − inf (the scan)
            raise ValueError("a series is too large for the DTW member once standardized (its costs overflow)")
        return D

    @torch.no_grad()
    def probabilities(self, series: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities ``(n, K)`` float64 of ``series`` ``n × (L_i, C)`` in their own units."""
        return self._softmax(self._scores(self.distances(series)))
