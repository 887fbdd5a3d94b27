"""Random convolution kernels and a closed-form ridge classifier on them: the member a series classifier adds
beside its recurrent networks (``--kernels N``).

The transform is MiniRocket's (Dempster, Schmidt and Webb, "MINIROCKET", KDD 2021), written here from the
paper's description:

- **84 kernels** of length 9 whose weights are −1 except three that are 2 (every choice of 3 of the 9 positions),
  so each kernel sums to zero and a feature does not move when a series is shifted by a constant;
- **dilations** ``⌊2^e⌋`` for ``e`` evenly spaced in ``[0, log2((L̄ − 1) / 8)]`` (at most 32 values, repeats
  merged and counted), ``L̄`` the mean training length; the ``F / 84`` features of a kernel are shared among its
  dilations in proportion to those counts;
- **padding**: half of the (dilation, kernel) pairs, alternating, see the series padded with zeros so that the
  output has one value per step ("same"); the others only the positions where the kernel fits inside the series;
- **channels** (multichannel series): each (dilation, kernel) pair reads the sum of a random subset of
  ``⌊2^u⌋`` channels, ``u ~ U(0, log2(min(C, 9) + 1))``;
- **biases** ``b``: quantiles of the convolution output of one random training series (its channel subset), at the
  low-discrepancy levels ``(j · φ) mod 1`` (φ the golden ratio, ``j = 1, 2, …`` over all features);
- **features**: the proportion of positive values ``PPV = mean_t [conv_t − b > 0]`` over the output positions
  that lie in the series (unequal lengths: a padded series gives the features it gives alone); with
  ``stretch=True`` also MultiRocket's longest stretch of positive values (Tan, Dempster, Bergmeir and Webb,
  "MultiRocket", DMKD 2022): ``LSPV = max`` length of a run of consecutive positions with ``conv_t − b > 0``, over
  the same positions and divided by their number as PPV is. The features are then split evenly between the two
  (``F/2`` biases, each giving a PPV and an LSPV), so ``--kernels N`` keeps meaning N features.

The classifier is a ridge regression onto ``±1`` one-hot targets on the standardized features, the penalty ``α``
chosen from ``10^-3 … 10^3`` (10 values, as MiniRocket's ``RidgeClassifierCV``) by the exact leave-one-out
squared error (tested against N refits with one series left out), the intercept unpenalised. Its scores become
probabilities ``softmax(τ · s)`` with ``τ`` fitted to the leave-one-out scores by cross-entropy, so that they can be
averaged with the networks' probabilities.

**Feature groups chosen by leave-one-out** (board15 sweep, docs/leaderboard.md): the features come in groups —
MiniRocket's proportions (PPV), MultiRocket's longest stretches (LSPV, with ``stretch=True``) and Hydra's counts
(with competing kernels) — that help some data and cost on other data (the ridge alone on board14's folders: the
stretches on ArrowHead and ACSF1 +2.5 points, on Covid3Month_disc −4; Hydra's on OSULeaf +3, on Covid3Month_disc
−1). :meth:`KernelRidge.fit` solves
the ridge on PPV alone and with every combination of the other groups, and keeps the combination (and its ``α``)
with the lowest exact leave-one-out squared error, the criterion that already chooses ``α``; the features of the
groups left out get zero weights (the transform, the saved buffers and the exported graph are as before). The
``N × N`` Gram matrix of each group is formed once and summed per combination, so the extra cost is one
eigendecomposition per combination (``N³``).

Shape symbols: B batch, T steps, C channels, N series, F features, K classes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.tasks.hydra import CompetingKernels
from rnnkit.tasks.kernel_inputs import KERNEL_LENGTH, padded_chunks, random_channels

__all__ = [
    "ALPHAS",
    "KERNEL_LENGTH",
    "SELECT_MAX_SERIES",
    "KernelRidge",
    "RandomKernels",
    "feature_groups",
    "fit_temperature",
    "gram_loo",
    "kernel_weights",
    "padded_chunks",
    "ridge_loo",
    "stretch_scan",
    "stretch_scatter",
]

NUM_KERNELS = 84  # C(9, 3)
MAX_DILATIONS = 32
SELECT_MAX_SERIES = 2_000
"""Above this many series the ridge chooses its feature groups on a seeded sample of this many (one
eigendecomposition per combination costs ``N³``: at 5,000 series the choice on all of them doubled the fit's
time), then solves the chosen combination on every series."""
ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 10))
"""The ridge penalties tried (scikit-learn's ``RidgeClassifierCV`` as MiniRocket uses it)."""
_PHI = (math.sqrt(5.0) + 1.0) / 2.0


def kernel_weights(dtype: torch.dtype = torch.float32) -> Tensor:
    """The 84 kernels ``(84, 1, 9)``: −1 everywhere, 2 at the three positions of each ``itertools.combinations``."""
    w = torch.full((NUM_KERNELS, 1, KERNEL_LENGTH), -1.0, dtype=dtype)
    for k, pos in enumerate(itertools.combinations(range(KERNEL_LENGTH), 3)):
        w[k, 0, list(pos)] = 2.0
    return w


def _dilations(length: float, per_kernel: int) -> tuple[list[int], list[int]]:
    """Dilations and the features of each (per kernel): ``per_kernel`` shared in proportion to the counts."""
    top = math.log2(max(1.0, (length - 1) / (KERNEL_LENGTH - 1)))
    n = min(MAX_DILATIONS, per_kernel)
    values = np.floor(2.0 ** np.linspace(0.0, top, n)).astype(np.int64)
    dil, counts = np.unique(values, return_counts=True)
    feats = counts * (per_kernel // n)
    for i in range(per_kernel - int(feats.sum())):  # the remainder, one each from the smallest dilation up
        feats[i % len(feats)] += 1
    return [int(d) for d in dil], [int(f) for f in feats]


class RandomKernels(nn.Module):
    """MiniRocket's transform (module docstring): ``forward(x (B, T, C), lengths (B,) | None) -> (B, F)``.

    Built empty for ``channels`` and about ``features`` features (rounded down to a multiple of 84, or of 168 with
    ``stretch``: ``features / 2`` kernel-bias pairs, each giving its PPV and its LSPV); :meth:`fit` draws the
    dilations, channel subsets and biases from training series, seeded. All of it lives in buffers (``stretch`` as
    the buffer ``stretch``, absent without it), so ``state_dict`` saves and restores a fitted transform
    (:meth:`from_state` rebuilds the module's shapes).
    """

    def __init__(self, channels: int, features: int = 10_000, stretch: bool = False) -> None:
        super().__init__()
        self.pools = 2 if stretch else 1  # PPV, and LSPV with stretch
        if features < NUM_KERNELS * self.pools:
            raise ValueError(f"random kernels need at least {NUM_KERNELS * self.pools} features, got {features}")
        self.channels = int(channels)
        self.per_kernel = int(features) // self.pools // NUM_KERNELS
        if stretch:  # the state says so (a state without the key, as every one before it: PPV alone)
            self.register_buffer("stretch", torch.ones((), dtype=torch.bool))
        self.register_buffer("weight", kernel_weights())
        self.register_buffer("dilations", torch.zeros(0, dtype=torch.long))  # (D,)
        self.register_buffer("counts", torch.zeros(0, dtype=torch.long))  # (D,): features per kernel at each
        self.register_buffer("channel_mask", torch.zeros(0, NUM_KERNELS, self.channels))  # (D, 84, C)
        self.register_buffer("biases", torch.zeros(0))  # (Σ_d 84·n_d,), dilation by dilation, kernel-major

    @property
    def num_features(self) -> int:
        """F = 84 · Σ_d n_d, times 2 with ``stretch`` (0 before :meth:`fit`)."""
        return int(self.biases.numel()) * self.pools

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> RandomKernels:
        """A module shaped for a saved ``state_dict`` (then ``load_state_dict`` fills it)."""
        pools = 2 if "stretch" in state else 1
        features = NUM_KERNELS * int(state["counts"].sum().item()) * pools
        mod = cls(int(state["channel_mask"].shape[2]), features, stretch=pools == 2)
        D = int(state["dilations"].numel())
        mod.dilations = torch.zeros(D, dtype=torch.long)
        mod.counts = torch.zeros(D, dtype=torch.long)
        mod.channel_mask = torch.zeros(D, NUM_KERNELS, mod.channels)
        mod.biases = torch.zeros(int(state["biases"].numel()))
        return mod

    def plan(self) -> list[tuple[int, int]]:
        """``[(dilation, n_d), ...]``: each dilation and the features per kernel it has (Python ints)."""
        return list(zip(self.dilations.tolist(), self.counts.tolist(), strict=True))

    def _conv(self, x: Tensor, d_index: int, d: int) -> Tensor:
        """The 84 kernels at one dilation over each pair's channel sum: ``x`` ``(B, C, T)`` → ``(B, 84, T)``, the
        output at step t centred on t ("same" zero padding). An unpadded pair's outputs are the same values at the
        positions where the kernel fits; :meth:`_valid` tells which positions each pair keeps."""
        B, C, T = x.shape
        pad = (KERNEL_LENGTH - 1) // 2 * d
        per_channel = nn.functional.conv1d(x.reshape(B * C, 1, T), self.weight.to(x.dtype), padding=pad, dilation=d)
        per_channel = per_channel.view(B, C, NUM_KERNELS, T)
        mask = self.channel_mask[d_index].to(x.dtype)  # (84, C)
        return torch.einsum("bckt,kc->bkt", per_channel, mask)

    def _valid(self, lengths: Tensor, T: int, d_index: int, d: int) -> Tensor:
        """``(B, 84, T)`` bool: the positions each (kernel) keeps at this dilation — padded pairs every step of the
        series, unpadded pairs the steps where the kernel lies inside it."""
        half = (KERNEL_LENGTH - 1) // 2 * d
        t = torch.arange(T, device=lengths.device).view(1, T)
        inside = t < lengths.view(-1, 1)  # (B, T)
        fits = (t >= half) & (t < lengths.view(-1, 1) - half)  # (B, T)
        padded = ((d_index + torch.arange(NUM_KERNELS, device=lengths.device)) % 2 == 0).view(1, -1, 1)  # (1, 84, 1)
        return (padded & inside.unsqueeze(1)) | (~padded & fits.unsqueeze(1))  # (B, 84, T) (no bool Where: ONNX)

    @torch.no_grad()
    def fit(self, series: Sequence[np.ndarray], seed: int = 0) -> RandomKernels:
        """Draw the transform from training ``series`` (each ``(L_i, C)``), seeded; returns ``self``."""
        if not series:
            raise ValueError("random kernels need at least one training series")
        g = np.random.default_rng(seed)
        mean_len = float(np.mean([len(s) for s in series]))
        dil, feats = _dilations(mean_len, self.per_kernel)
        C = self.channels
        masks = torch.zeros(len(dil), NUM_KERNELS, C)
        for i in range(len(dil)):
            for k in range(NUM_KERNELS):
                masks[i, k, random_channels(g, C)] = 1.0
        self.dilations = torch.tensor(dil, dtype=torch.long)
        self.counts = torch.tensor(feats, dtype=torch.long)
        self.channel_mask = masks
        biases, level = [], 1
        for i, n in enumerate(feats):
            pick = g.integers(len(series), size=NUM_KERNELS)  # one training series per kernel
            rows = []
            for k in range(NUM_KERNELS):
                s = torch.as_tensor(np.asarray(series[pick[k]], dtype=np.float32))  # (L, C)
                out = self._conv(s.T.unsqueeze(0), i, dil[i])  # (1, 84, L)
                valid = self._valid(torch.tensor([s.shape[0]]), s.shape[0], i, dil[i])[0, k]  # (L,)
                values = out[0, k][valid] if bool(valid.any()) else out[0, k]
                q = torch.tensor([((level + j) * _PHI) % 1.0 for j in range(n)], dtype=values.dtype)
                rows.append(torch.quantile(values, q))
                level += n
            biases.append(torch.stack(rows).reshape(-1))  # (84·n,) kernel-major
        self.biases = torch.cat(biases)
        return self

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Features ``(B, F)`` of ``x`` ``(B, T, C)`` (steps past ``lengths`` ignored): per dilation the PPV of each
        (kernel, bias), kernel-major, then (with ``stretch``) their LSPV in the same order."""
        if self.num_features == 0:
            raise RuntimeError("RandomKernels.fit has not run: the transform has no biases")
        return self.features(x, lengths, self.plan())

    def features(self, x: Tensor, lengths: Tensor | None, plan: list[tuple[int, int]]) -> Tensor:
        """:meth:`forward` with the dilations given as Python ints (:meth:`plan`), so that ``torch.export`` sees
        a fixed loop (the ONNX export of a run's ridge)."""
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=x.device)
        inside = (torch.arange(T, device=x.device).view(1, T) < lengths.view(-1, 1)).unsqueeze(1)  # (B, 1, T)
        xs = x.transpose(1, 2) * inside.to(x.dtype)  # (B, C, T): steps past a series' end read as zeros
        out, start = [], 0
        for i, (d, n) in enumerate(plan):
            valid = self._valid(lengths, T, i, d)  # (B, 84, T)
            conv = self._conv(xs, i, d).masked_fill(~valid, -math.inf)  # (B, 84, T): a step outside never counts
            b = self.biases[start : start + NUM_KERNELS * n].view(1, NUM_KERNELS, n, 1).to(x.dtype)
            start += NUM_KERNELS * n
            count = valid.sum(2).clamp(min=1).unsqueeze(-1).to(x.dtype)  # (B, 84, 1)
            if self.pools == 2 and not torch.compiler.is_exporting():  # one pass over the biases gives both
                positive, longest = _positive_and_longest(conv, b)
            else:
                # the steps above each bias: conv − b > 0 exactly where conv > b (IEEE subtraction of two different
                # floats is never 0), as floats, so the sum needs no cast of a (B, 84, n, T) tensor (2× faster)
                positive = (conv.unsqueeze(2) - b).gt_(0).sum(3)  # (B, 84, n)
                longest = stretch_scatter(conv, b) if self.pools == 2 else None
            out.append((positive / count).reshape(B, -1))  # (B, 84·n)
            if longest is not None:
                out.append((longest / count).reshape(B, -1))  # (B, 84·n)
        return torch.cat(out, dim=1)  # (B, F)

    @torch.no_grad()
    def transform(self, series: Sequence[np.ndarray]) -> Tensor:
        """Features ``(N, F)`` float64 of ``series`` (each ``(L_i, C)``), in chunks of 32 padded series."""
        return torch.cat([self(x, lengths).double() for x, lengths in padded_chunks(series, self.channels)])


def stretch_scan(conv: Tensor, b: Tensor) -> Tensor:
    """The longest run of consecutive steps with ``conv − b > 0`` ``(B, 84, n)``, as ``conv``'s dtype, of ``conv``
    ``(B, 84, T)`` (−inf at the steps a kernel does not keep: they end a run) and biases ``b`` ``(1, 84, n, 1)``.

    Bias by bias: at each step the distance to the last step at or before it that is not positive (−1 before the
    first), whose maximum is the longest run; one ``(B, 84, T)`` tensor at a time (idle AMD EPYC, one thread, 32
    series of 1,460 steps: 0.32 s against 1.21 s for all 15 biases at once, whose tensors do not fit its caches).
    ``torch.cummax`` has no ONNX export: :func:`stretch_scatter` is the exported graph's form (a test asserts they
    agree)."""
    return _positive_and_longest(conv, b)[1]


def _positive_and_longest(conv: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`stretch_scan`'s loop, which also counts the positive steps of each bias on the way (the PPV's
    numerator, the same integers as the vectorized count): ``((B, 84, n), (B, 84, n))``."""
    T = conv.shape[-1]
    t = torch.arange(T, device=conv.device, dtype=conv.dtype)  # (T,)
    counts, runs = [], []
    for j in range(b.shape[2]):
        above = (conv - b[:, :, j]).gt_(0)  # (B, 84, T) 0/1 as in the PPV
        counts.append(above.sum(2))
        last_low = torch.where(above > 0, -1.0, t).cummax(2).values  # (B, 84, T)
        runs.append((t - last_low).amax(2))  # 0 where a step is not positive
    return torch.stack(counts, dim=2), torch.stack(runs, dim=2)  # (B, 84, n) each


def stretch_scatter(conv: Tensor, b: Tensor) -> Tensor:
    """:func:`stretch_scan` as operators ONNX has: each step that is not positive opens a segment
    (``cumsum``), the positive steps are counted per segment (``scatter_add``) and the largest count is the
    longest run. ``(B, 84, T)``, ``(1, 84, n, 1)`` → ``(B, 84, n)``."""
    above = (conv.unsqueeze(2) - b).gt_(0)  # (B, 84, n, T)
    segment = (1.0 - above).cumsum(3).long()  # (B, 84, n, T): the segment of each step
    counts = torch.zeros_like(above[..., :1]).expand(*above.shape[:3], above.shape[3] + 1).contiguous()
    return counts.scatter_add(3, segment, above).amax(3)  # (B, 84, n)


def ridge_loo(Z: Tensor, Y: Tensor, alphas: Sequence[float] = ALPHAS) -> tuple[float, Tensor, Tensor]:
    """Ridge with an unpenalised intercept on centered features ``Z`` ``(N, F)`` and targets ``Y`` ``(N, K)``,
    ``α`` by the exact leave-one-out squared error.

    With ``Z Zᵀ = Q diag(λ) Qᵀ`` the hat matrix is ``H_α = 11ᵀ/N + Q diag(λ/(λ+α)) Qᵀ`` and the leave-one-out
    residual of series ``i`` is ``(y_i − (H_α y)_i) / (1 − (H_α)_ii)``. Returns ``(α, c, loo)``: the chosen
    penalty, the dual coefficients ``c = Q diag(1/(λ+α)) Qᵀ (Y − Ȳ)`` ``(N, K)`` (weights ``Zᵀ c``) and the
    leave-one-out predictions ``(N, K)`` at that ``α``. float64 throughout."""
    alpha, _, coef, loo = gram_loo(Z @ Z.T, Y, alphas)
    return alpha, coef, loo


def gram_loo(G: Tensor, Y: Tensor, alphas: Sequence[float] = ALPHAS) -> tuple[float, float, Tensor, Tensor]:
    """:func:`ridge_loo` from the Gram matrix ``G = Z Zᵀ`` ``(N, N)`` of the centered features; returns
    ``(α, loo_error, c, loo)``: also the mean squared leave-one-out error at the chosen ``α``."""
    N = G.shape[0]
    lam, Q = torch.linalg.eigh(G)  # (N,), (N, N)
    lam = lam.clamp(min=0.0)
    ybar = Y.mean(0, keepdim=True)  # (1, K)
    Qy = Q.T @ (Y - ybar)  # (N, K)
    best: tuple[float, float, Tensor, Tensor] | None = None
    for a in alphas:
        shrink = lam / (lam + a)  # (N,)
        fitted = ybar + Q @ (shrink.view(-1, 1) * Qy)  # (N, K)
        h = 1.0 / N + (Q * Q) @ shrink  # (N,): diag(H_α)
        loo = Y - (Y - fitted) / (1.0 - h).clamp(min=1e-12).view(-1, 1)  # (N, K)
        err = float(((Y - loo) ** 2).mean())
        if best is None or err < best[1]:
            coef = Q @ (Qy / (lam + a).view(-1, 1))  # (N, K)
            best = (float(a), err, coef, loo)
    assert best is not None
    return best[0], best[1], best[2], best[3]


def feature_groups(kernels: RandomKernels, competing: CompetingKernels | None = None) -> dict[str, list[slice]]:
    """The columns of each group of the ridge's features ``[kernels' | competing kernels']``: ``"ppv"`` and, with
    ``stretch``, ``"lspv"`` (a block of each per dilation, as :meth:`RandomKernels.features` writes them), and
    ``"hydra"`` (the competing kernels' features, last). Groups without features are left out."""
    groups: dict[str, list[slice]] = {"ppv": [], "lspv": [], "hydra": []}
    start = 0
    for _, n in kernels.plan():
        width = NUM_KERNELS * n
        groups["ppv"].append(slice(start, start + width))
        start += width
        if kernels.pools == 2:
            groups["lspv"].append(slice(start, start + width))
            start += width
    if competing is not None and competing.num_features:
        groups["hydra"].append(slice(start, start + competing.num_features))
    return {name: cols for name, cols in groups.items() if cols}


def fit_temperature(scores: Tensor, labels: Tensor) -> float:
    """``τ`` minimising the cross-entropy of ``softmax(τ · scores)`` against ``labels`` (a grid over log τ)."""
    grid = torch.exp(torch.linspace(math.log(0.1), math.log(100.0), 121, dtype=scores.dtype))
    losses = [float(nn.functional.cross_entropy(t * scores, labels)) for t in grid]
    return float(grid[int(np.argmin(losses))])


class KernelRidge(nn.Module):
    """Random kernels → standardized features → ridge scores ``(B, K)`` → logits ``τ · scores``.

    ``forward(x (B, T, C), lengths (B,) | None) -> (B, K)`` logits (their ``softmax``: the class probabilities) of
    series already standardized per channel (``(x − channel_mean) / channel_std``, as :meth:`probabilities` does).
    :meth:`fit` fits everything from training series and integer labels; the fitted module is saved and loaded as
    a ``state_dict`` (:meth:`from_state`). The ridge is solved in float64; the weights are kept in float64.
    """

    def __init__(self, kernels: RandomKernels, num_classes: int, competing: CompetingKernels | None = None) -> None:
        super().__init__()
        self.kernels = kernels
        self.competing = competing
        F = kernels.num_features + (0 if competing is None else competing.num_features)
        C = kernels.channels
        self.register_buffer("channel_mean", torch.zeros(C, dtype=torch.float64))
        self.register_buffer("channel_std", torch.ones(C, dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(F, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(F, dtype=torch.float64))
        self.register_buffer("coef", torch.zeros(F, num_classes, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("temperature", torch.ones((), dtype=torch.float64))
        self.register_buffer("alpha", torch.ones((), dtype=torch.float64))
        self.register_buffer("weight", torch.ones((), dtype=torch.float64))
        """``w``: the share of this member's probabilities where a run averages them with its networks'."""
        self.loo_probabilities: np.ndarray | None = None
        """After :meth:`fit`: the fitting series' leave-one-out probabilities ``(N, K)`` (not saved)."""

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> KernelRidge:
        """A module shaped for a saved ``state_dict`` (keys ``kernels.*`` and the ridge's)."""
        sub = {k[len("kernels.") :]: v for k, v in state.items() if k.startswith("kernels.")}
        rival = {k[len("competing.") :]: v for k, v in state.items() if k.startswith("competing.")}
        competing = CompetingKernels.from_state(rival) if rival else None  # runs before --hydra: none
        return cls(RandomKernels.from_state(sub), int(state["coef"].shape[1]), competing)

    @torch.no_grad()
    def fit(self, series: Sequence[np.ndarray], labels: Sequence[int], seed: int = 0) -> KernelRidge:
        """Fit the channels' standardization, the transform (seeded), the features' scaling, ``α``, the ridge and
        ``τ`` on ``series`` ``N × (L_i, C)`` with class ids ``labels`` ``(N,)``; returns ``self``.

        Each channel is standardized by its mean and standard deviation over every training step before the
        kernels read it (the kernels sum to zero and their biases come from the same scaled series, so a
        univariate series' features are the same either way; it keeps large values inside float32)."""
        K = self.coef.shape[1]
        y = torch.as_tensor(list(labels), dtype=torch.long)
        if len(series) != len(y) or len(y) < 2:
            raise ValueError(f"the kernel ridge needs at least 2 labeled series, got {len(y)}")
        steps = np.concatenate([np.asarray(s, dtype=np.float64).reshape(len(s), -1) for s in series])  # (ΣL, C)
        std = steps.std(0)
        self.channel_mean = torch.from_numpy(steps.mean(0))
        self.channel_std = torch.from_numpy(np.where(std > 0, std, 1.0))
        scaled = [x[:l] for x, lengths in self._chunks(series) for x, l in zip(x, lengths.tolist(), strict=True)]
        self.kernels.fit([x.numpy() for x in scaled], seed)
        if self.competing is not None:
            self.competing.draw([x.numpy() for x in scaled], seed)  # its scaling from the features below
        # one (N, F) float64 matrix, written chunk by chunk and standardized in place: the features are the fit's
        # largest object (N × ≈ 24,000 × 8 bytes), so no second copy of them is made
        F = self.kernels.num_features + (0 if self.competing is None else self.competing.num_features)
        X = torch.empty(len(series), F, dtype=torch.float64)  # (N, F)
        row = 0
        for x, lengths in self._chunks(series):
            X[row : row + len(x)] = self.transform_features(x, lengths)
            row += len(x)
        if self.competing is not None:  # one pass over the series: the competing part's scaling fitted on it
            split = self.kernels.num_features
            X[:, split:] = self.competing.fit_scaling(X[:, split:])
        mean, std = X.mean(0), X.std(0, unbiased=False)
        scale = torch.where(std > 0, std, torch.ones_like(std))
        Z = X.sub_(mean).div_(scale)  # (N, F), in place
        Y = -torch.ones(len(y), K, dtype=torch.float64)
        Y[torch.arange(len(y)), y] = 1.0
        alpha, _, weights, loo = self._select(Z, Y)
        self.mean, self.scale = mean, scale
        self.coef = weights  # (F, K): zero on the groups left out
        self.intercept = Y.mean(0)
        self.alpha = torch.tensor(alpha, dtype=torch.float64)
        self.temperature = torch.tensor(fit_temperature(loo, y), dtype=torch.float64)
        self.loo_probabilities = torch.softmax(self.temperature * loo, dim=-1).numpy()
        return self

    def _select(self, Z: Tensor, Y: Tensor) -> tuple[float, tuple[str, ...], Tensor, Tensor]:
        """The ridge on the combination of feature groups (PPV and any of the others) with the lowest leave-one-out
        error (the module docstring): ``(α, groups, weights (F, K), loo (N, K))``; equals go to the larger
        combination (all groups first). Above :data:`SELECT_MAX_SERIES` series the combination is chosen on a
        seeded sample of that many (re-centered), then solved on every series."""
        groups = feature_groups(self.kernels, self.competing)
        others = [name for name in groups if name != "ppv"]
        combos = [("ppv", *c) for r in range(len(others), -1, -1) for c in itertools.combinations(others, r)]
        N = Z.shape[0]
        sampled = N > SELECT_MAX_SERIES and len(combos) > 1  # one combination: nothing to choose
        if sampled:
            rows = torch.from_numpy(np.sort(np.random.default_rng(0).choice(N, SELECT_MAX_SERIES, replace=False)))
            Zc, Yc = Z[rows], Y[rows]
            Zc -= Zc.mean(0)
        else:
            Zc, Yc = Z, Y
        grams = {name: sum(Zc[:, c] @ Zc[:, c].T for c in cols) for name, cols in groups.items()}  # (n, n) each
        best = None
        for combo in combos:
            alpha, err, dual, loo = gram_loo(sum(grams[name] for name in combo), Yc)
            if best is None or err < best[1]:
                best = (alpha, err, combo, dual, loo)
        assert best is not None
        alpha, _, combo, dual, loo = best
        if sampled:  # the chosen combination on every series
            del grams
            alpha, _, dual, loo = gram_loo(sum(Z[:, c] @ Z[:, c].T for name in combo for c in groups[name]), Y)
        weights = torch.zeros(Z.shape[1], Y.shape[1], dtype=torch.float64)
        for name in combo:
            for c in groups[name]:
                weights[c] = Z[:, c].T @ dual
        return alpha, combo, weights, loo

    def chosen_groups(self) -> tuple[str, ...]:
        """The feature groups the fitted ridge reads (those with a nonzero weight), in :func:`feature_groups`'
        order; a ridge fitted before the selection reads them all."""
        return tuple(
            name
            for name, cols in feature_groups(self.kernels, self.competing).items()
            if any(bool(self.coef[c].any()) for c in cols)
        )

    def _chunks(self, series: Sequence[np.ndarray]) -> list[tuple[Tensor, Tensor]]:
        shift, scale = self.channel_mean.numpy(), self.channel_std.numpy()
        return padded_chunks(series, self.kernels.channels, shift, scale)

    def plans(self) -> tuple[list, list | None]:
        """Both transforms' dilations as Python ints (a fixed loop for ``torch.export``); None without Hydra's."""
        return self.kernels.plan(), None if self.competing is None else self.competing.plan()

    def transform_features(self, x: Tensor, lengths: Tensor | None = None, plans: tuple | None = None) -> Tensor:
        """The features ``(B, F)`` the ridge reads, in ``x``'s dtype: the random kernels', then the competing
        kernels' (when the member has them) of standardized ``x`` ``(B, T, C)``; ``plans`` as :meth:`plans`
        gives them (read from the buffers when None)."""
        plan_r, plan_c = self.plans() if plans is None else plans
        out = self.kernels.features(x, lengths, plan_r)
        if self.competing is None:
            return out
        return torch.cat([out, self.competing.features(x, lengths, plan_c)], dim=1)

    def scores(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The ridge's decision values ``(B, K)`` float64."""
        z = (self.transform_features(x, lengths).double() - self.mean) / self.scale  # (B, F)
        return z @ self.coef + self.intercept

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.temperature * self.scores(x, lengths)  # (B, K) logits

    @torch.no_grad()
    def probabilities(self, series: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities ``(N, K)`` float64 of ``series`` ``N × (L_i, C)`` in their own units (standardized
        here as in :meth:`fit`; chunks of 32)."""
        return np.concatenate([torch.softmax(self(x, n), dim=-1).numpy() for x, n in self._chunks(series)])
