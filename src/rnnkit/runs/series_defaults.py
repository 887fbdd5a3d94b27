"""The defaults of series classification (:mod:`rnnkit.runs.classify_series`): the settings a run gets when the
user names nothing, the size rules of the default schedule and ensemble, the task's command-line flags, and how a
call's options (or a saved run's config) resolve against them.

Chosen by the leaderboard sweeps on the tuning sets (docs/leaderboard.md; never GunPoint, ItalyPowerDemand or
JapaneseVowels). Split out of :mod:`rnnkit.runs.classify_series` (which re-exports every name) so that the task app
holds the data, training and scoring paths and this module the numbers and rules they start from.

Defaults (:data:`DEFAULTS`, chosen by the leaderboard sweep, docs/leaderboard.md): LSTM-FCN
(:mod:`rnnkit.tasks.fcn`: a bidirectional LSTM with H = 64 beside three convolution blocks) reading every series
z-normalised on its own beside its raw values (``--series-norm both``), dropout 0.1, batches of 8, peak lr 5e-3,
200 epochs at most, early stopping after :data:`PATIENCE` without a better validation score (fewer epochs on
long sets: :data:`STEP_BUDGET`, :data:`MIN_EPOCHS`, :data:`MAX_STEPS`), series of 129–1,000 steps read downsampled
to about 64 steps (``--downsample 0``: :func:`~rnnkit.data.series_inputs.auto_downsample`), no augmentation
(``--augment 0``: :func:`~rnnkit.data.series_inputs.augment_batch`), and an ensemble of as many members as
:data:`ENSEMBLE_STEPS` series-steps of training hold, at most five (:func:`default_members`: five on every board
set but ACSF1, which stays one model; ``--ensemble 1`` trains one model, as earlier releases did by default). Beside
them the kernel ridge (``--kernels 20000 --hydra 64 --kernel-pooling ppv+lspv``); a DTW member beside the ridge is
one flag away (``--dtw-steps 128``; not a default: the board17 study in docs/leaderboard.md). The
lecture's cores stay one flag away (``--model gru --series-norm none --downsample 1 --ensemble 1`` is the default
of earlier releases).

Shape symbols: N series, L̄ their mean length, f the downsampling factor.
"""

from __future__ import annotations

import math
from typing import Any

from rnnkit.cliutil import ranged
from rnnkit.data.arrays import SeriesSet, as_sequences
from rnnkit.data.series_inputs import SERIES_NORMS
from rnnkit.runs.kind import Flag
from rnnkit.runs.options import RunOptions, restore_options

__all__ = [
    "DEFAULTS",
    "ENSEMBLE_STEPS",
    "FEWEST_EPOCHS",
    "FLAGS",
    "KERNEL_POOLINGS",
    "KERNEL_WEIGHT",
    "MAX_MEMBERS",
    "MAX_STEPS",
    "MIN_EPOCHS",
    "PATIENCE",
    "STEP_BUDGET",
    "TEST_FRACTION",
    "VAL_FRACTION",
    "augment_of",
    "default_epochs",
    "default_members",
    "downsample_of",
    "dtw_steps_of",
    "hydra_of",
    "kernel_pooling_of",
    "kernels_of",
    "options_from_config",
    "series_norm_of",
    "series_steps",
    "val_fraction_of",
]

VAL_FRACTION = 0.2
"""Share of every class carved off the training file for validation (without ``--val-data``)."""
DEFAULTS: dict[str, Any] = {
    # chosen by the leaderboard sweep (docs/leaderboard.md, tuning sets only): at 60 epochs, LSTM-FCN reading every
    # series z-normalised beside its raw values matched or beat the bidirectional GRU (the default before) on the
    # sets tried (BasicMotions 1.000 vs 0.917, PickupGestureWiimoteZ 0.76 vs 0.74, Covid3Month_disc equal); up to
    # 200 epochs rescued ArrowHead (0.41 → 0.65, the GRU 0.28) but cost on Covid3Month_disc and Pickup (seed 0:
    # 0.656, 0.660); LSTM-FCN on the raw values alone failed where series differ in scale (Covid3Month_disc 0.52)
    "model": "lstm-fcn",
    "embed_dim": 0,  # unused: real-valued inputs skip the embedding
    "hidden_size": 64,
    "num_layers": 1,
    "bidirectional": True,
    "dropout": 0.1,
    "epochs": 200,  # at most (early stopping ends most runs sooner); long sets get fewer (default_epochs)
    "batch_size": 8,
    "lr": 5e-3,
    "series_norm": "both",
    "val_fraction": VAL_FRACTION,
    "downsample": 0,  # 0: by the rule from the training length (auto_downsample)
    "augment": 0.0,  # no augmentation of the training batches (augment_batch)
    "kernels": 20_000,  # the random-kernel ridge member beside the networks (rnnkit.runs.series_kernels); half
    # of them PPV, half LSPV (board13 sweep: 10,000 biases as before, each also giving its longest stretch)
    "hydra": 64,  # and Hydra's competing kernels in that ridge (rnnkit.tasks.hydra; board12 sweep)
    "kernel_pooling": "ppv+lspv",  # and MultiRocket's longest stretch beside MiniRocket's PPV (board13 sweep)
    "dtw_steps": 0,  # no DTW member beside the ridge: --dtw-steps 128 lifted the board (PickupGestureWiimoteZ
    # 0.873 -> 0.900) but the held-out sets fell (0.9842 -> 0.9826), against the rule fixed before (board17 study)
}
"""Defaults of series classification when the user names nothing (``--model gru`` etc. still work)."""

KERNEL_WEIGHT = 0.5
"""The weight ``w`` of the kernel ridge's probabilities beside the networks' in a run *without* a validation part
(``--val-fraction 0``); with one, ``w`` is chosen on it (:func:`rnnkit.runs.series_kernels.fit_member`)."""
TEST_FRACTION = 0.2
"""Share of every class held out as the test part (without ``--test-data``)."""
STEP_BUDGET = 600_000
"""Series-steps (training series × their mean length × epochs) a default schedule spends on a small set: without
``--epochs``, a run trains ``min(DEFAULTS["epochs"], ⌈STEP_BUDGET / (N·L̄)⌉)`` epochs, but at least
:data:`MIN_EPOCHS` as far as :data:`MAX_STEPS` allows (:func:`default_epochs`). Small sets get up to 200 epochs
(BasicMotions: 32 × 100 steps per epoch; ArrowHead 28 × 251 → 86). The sweep: 60 epochs left LSTM-FCN
undertrained on ArrowHead (0.41; 200 allowed: 0.65, best epoch 98)."""
MIN_EPOCHS = 40
"""The floor for long sets (OSULeaf 160 × 427, ACSF1 80 × 1,460: :data:`STEP_BUDGET` alone gave them 9 and 6
epochs, far too few; board6 sweep in docs/leaderboard.md), as far as :data:`MAX_STEPS` allows."""
MAX_STEPS = 5_000_000
"""Series-steps no default schedule exceeds (about 3 minutes of one idle core on ACSF1), and at least
:data:`FEWEST_EPOCHS` epochs: a set too large for :data:`MIN_EPOCHS` gets fewer, so a default run stays in
minutes whatever the set."""
FEWEST_EPOCHS = 5
PATIENCE = 20
"""Epochs without a better validation score before training stops."""


ENSEMBLE_STEPS = 3_200_000
"""Series-steps (members × epochs × training series × mean length read) a default run spends on an ensemble: without
``--ensemble``, a run trains ``K = min(MAX_MEMBERS, max(1, ⌊ENSEMBLE_STEPS / (E·N·L̄')⌋))`` members
(:func:`default_members`): five on every set whose one model costs at most 640,000 series-steps (OSULeaf read at
61 steps: 62 epochs × 160 × 61 ≈ 605,000, about a minute of one idle core for all five), one on ACSF1 (40 × 80 ×
1,460 ≈ 4,670,000: one model already takes about 3 idle minutes). The board8 sweep (docs/leaderboard.md)."""
MAX_MEMBERS = 5


def series_steps(train: SeriesSet, downsample: int = 1) -> int:
    """``N·L̄'``: the series-steps of one epoch over ``train`` read at every ``downsample`` steps (at least 1)."""
    return max(1, sum(-(-len(x) // downsample) for x in as_sequences(train.X)))


def default_members(train: SeriesSet, downsample: int, epochs: int) -> int:
    """The ensemble size of a default run (:data:`ENSEMBLE_STEPS`): ``epochs`` of one member over ``train`` read
    at every ``downsample`` steps, as many members as the budget holds, 1 to :data:`MAX_MEMBERS`."""
    one = series_steps(train, downsample) * max(1, int(epochs))  # one member's series-steps
    return int(min(MAX_MEMBERS, max(1, ENSEMBLE_STEPS // one)))


def default_epochs(train: SeriesSet, downsample: int = 1) -> int:
    """The epochs of a default schedule on the training part ``train``: ``min(200, max(floor, ⌈STEP_BUDGET / s⌉))``
    with ``s = N·L̄'`` the series-steps per epoch the model reads (``L̄'``: lengths after ``downsample``) and
    ``floor = max(FEWEST_EPOCHS, min(MIN_EPOCHS, ⌊MAX_STEPS / s⌋))``."""
    steps = series_steps(train, downsample)  # N·L̄' series-steps per epoch
    floor = max(FEWEST_EPOCHS, min(MIN_EPOCHS, MAX_STEPS // steps))  # long sets: MIN_EPOCHS if MAX_STEPS allows
    return int(min(DEFAULTS["epochs"], max(floor, math.ceil(STEP_BUDGET / steps))))


def options_from_config(saved: dict[str, Any], opts: RunOptions) -> RunOptions:
    """The options a run was started with, so ``--resume`` continues exactly that run."""
    m = saved["model"]
    return restore_options(
        saved,
        opts,
        "classify",
        window=m["window"],
        embed_dim=m["embed_dim"],
        options={
            **opts.options,
            "series_norm": saved.get("series_norm", "none"),  # runs before it: "none"
            "val_fraction": saved["data"].get("val_fraction", VAL_FRACTION),
            "downsample": saved.get("downsample", 1),  # runs before it: the series as they are
            "augment": saved.get("augment", 0.0),  # runs before it: none
            "kernels": int((saved.get("kernels") or {}).get("features", 0)),  # runs before it: none
            "hydra": int((saved.get("kernels") or {}).get("hydra", 0)),  # runs before it: none
            "kernel_pooling": str((saved.get("kernels") or {}).get("pooling", "ppv")),  # runs before it: PPV alone
            "dtw_steps": int((saved.get("dtw") or {}).get("steps", 0)),  # runs before it: none
            # an ensemble's K (a default run's, by the rule, since board8); a single model sets none
            **({"ensemble": int(saved["model"]["ensemble"])} if saved["model"].get("ensemble", 1) > 1 else {}),
        },
    )


def val_fraction_of(opts: RunOptions) -> float:
    """The ``--val-fraction`` of this call (the default when unset)."""
    return float(opts.resolved("val_fraction", DEFAULTS))


def augment_of(opts: RunOptions) -> float:
    """The ``--augment`` strength of this call (the default when unset)."""
    return float(opts.resolved("augment", DEFAULTS))


def kernels_of(opts: RunOptions) -> int:
    """The ``--kernels`` of this call (the default when unset; 0: no kernel ridge)."""
    return int(opts.resolved("kernels", DEFAULTS))


def dtw_steps_of(opts: RunOptions) -> int:
    """The ``--dtw-steps`` of this call (the default when unset; 0: no DTW member)."""
    return int(opts.resolved("dtw_steps", DEFAULTS))


def hydra_of(opts: RunOptions) -> int:
    """The ``--hydra`` of this call (the default when unset; 0: no competing kernels), checked to be even."""
    groups = int(opts.resolved("hydra", DEFAULTS))
    if groups % 2:
        raise ValueError(f"--hydra {groups}: half the groups read the series, half its difference; give an even number")
    return groups


KERNEL_POOLINGS = ("ppv", "ppv+lspv")
"""What the random kernels' outputs are pooled into (``--kernel-pooling``): MiniRocket's proportion of positive
values alone, or beside it MultiRocket's longest stretch of positive values (:class:`~rnnkit.tasks.kernels.
RandomKernels` ``stretch``; the features are shared between the two)."""


def kernel_pooling_of(opts: RunOptions) -> str:
    """The ``--kernel-pooling`` of this call (the default when unset), checked."""
    pooling = str(opts.resolved("kernel_pooling", DEFAULTS))
    if pooling not in KERNEL_POOLINGS:
        raise ValueError(f"--kernel-pooling {pooling!r} is unknown; choose one of: {', '.join(KERNEL_POOLINGS)}")
    return pooling


def downsample_of(opts: RunOptions) -> int:
    """The ``--downsample`` of this call (the default when unset; 0: chosen from the data)."""
    return int(opts.resolved("downsample", DEFAULTS))


def series_norm_of(opts: RunOptions) -> str:
    """The ``--series-norm`` of this call (the default when unset), checked."""
    norm = str(opts.resolved("series_norm", DEFAULTS))
    if norm not in SERIES_NORMS:
        raise ValueError(f"--series-norm {norm!r} is unknown; choose one of: {', '.join(SERIES_NORMS)}")
    return norm


FLAGS = (
    Flag(
        "--series-norm",
        {
            "choices": list(SERIES_NORMS),
            "default": None,
            "help": "classify on series: each series z-normalised on its own (zscore), beside its raw values "
            "(both: twice the channels), or as it is (none); then every channel standardized with the "
            "training part's statistics (default: the task's)",
        },
    ),
    Flag(
        "--val-fraction",
        {
            "type": ranged("val_fraction"),
            "default": None,
            "metavar": "F",
            "help": "classify on series without --val-data: the share of every class of --data carved for "
            "validation (the best epoch, early stopping); 0 carves nothing: all of it trains for the whole "
            "schedule and the last epoch's weights are kept (default: the task's)",
        },
    ),
    Flag(
        "--downsample",
        {
            "type": ranged("downsample"),
            "default": None,
            "metavar": "F",
            "help": "classify on series: the model reads every F steps averaged into one (piecewise aggregate "
            "approximation, the same at evaluate and predict); 1 reads the series as they are, 0 picks F from "
            "the training part's mean length L: ceil(L / 64) for 128 < L <= 1000, else 1 (default: the task's, 0)",
        },
    ),
    Flag(
        "--augment",
        {
            "type": ranged("augment"),
            "default": None,
            "metavar": "S",
            "help": "classify on series: augment the training batches, every series scaled by N(1, S^2) per "
            "channel and jittered by N(0, (S/2)^2) per value, fresh draws every epoch (0: none; evaluate and "
            "predict read the series unchanged) (default: the task's)",
        },
    ),
    Flag(
        "--kernels",
        {
            "type": ranged("kernels"),
            "default": None,
            "metavar": "N",
            "help": "classify on series: beside the networks, a ridge classifier on about N random convolution "
            "features (MiniRocket's kernels; with --kernel-pooling ppv+lspv half of them the proportion of "
            "positive values, half the longest stretch of them) of the training and validation series at full "
            "resolution; the run averages its class probabilities with the networks' (weight in config.json); 0: "
            "the networks alone (default: the task's, 20000)",
        },
    ),
    Flag(
        "--hydra",
        {
            "type": ranged("hydra"),
            "default": None,
            "metavar": "G",
            "help": "classify on series: beside the random kernels of --kernels, G groups of 8 competing kernels "
            "(Hydra's transform: per step the kernel of a group that responds most, and least, is counted), half "
            "on the series, half on its first difference; an even number, 0: none (default: the task's, 64)",
        },
    ),
    Flag(
        "--kernel-pooling",
        {
            "choices": list(KERNEL_POOLINGS),
            "default": None,
            "help": "classify on series: what the ridge reads of each random kernel's output and bias: the "
            "proportion of positive values (ppv, MiniRocket's), or beside it the longest stretch of positive "
            "values (ppv+lspv, MultiRocket's; the --kernels features shared between the two) (default: the "
            "task's, ppv+lspv)",
        },
    ),
    Flag(
        "--dtw-steps",
        {
            "type": ranged("dtw_steps"),
            "default": None,
            "metavar": "N",
            "help": "classify on series: beside the kernel ridge, a nearest-neighbour member by dynamic time "
            "warping (1-NN DTW's distances as class probabilities) on the training and validation series, read "
            "with every ceil(L/N) steps averaged into one when their mean length L exceeds N; its share beside "
            "the ridge is chosen by leave-one-out; 0: none (default: the task's, 0; 128 in the board17 study)",
        },
    ),
    Flag(
        "--ensemble",
        {
            "type": ranged("ensemble"),
            "default": None,
            "metavar": "K",
            "help": "classify (series and text), forecast: train K members (seeds seed, seed+1, ...) into the one "
            "run and average their probabilities or predictions (default: 1, one model; classify on series: as "
            "many members as 3,200,000 series-steps of training hold, at most 5)",
        },
    ),
)
"""The flags of ``rnnkit train --task classify`` on series (``SeriesClassifyKind.flags``)."""
