"""What :class:`~rnnkit.sklearn.RNNClassifier` and :class:`~rnnkit.sklearn.RNNRegressor` share: the split, the
training and prediction of a task module, and :class:`_SequenceEstimator` (parameters, reading and encoding X,
building the model).

Shape symbols: N samples, T time, B batch, K outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from rnnkit.data.batching import Batch, BucketBatchSampler
from rnnkit.data.vocab import PAD, Vocab
from rnnkit.sklearn.inputs import (
    _Encoded,
    _mean_scale,
    _pad_values,
    _read_X,
    _Sequences,
)
from rnnkit.sklearn.params import _bad, _check_common_params, _check_int, _isolated_rng, _reset_fitted, _seed
from rnnkit.tasks.config import ModelConfig
from rnnkit.train import TrainConfig, TrainResult, fit

_PREDICT_BATCH = 256  # sequences per forward pass at predict and validation time (results do not depend on it)


def _split(est: Any, n: int, stratify: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices: a seeded hold-out of ``est.validation_fraction`` of ``n`` samples
    (about the same fraction of every class when ``stratify`` holds the labels); no validation when it is 0."""
    n_val = math.ceil(est.validation_fraction * n) if est.validation_fraction > 0 else 0
    if n_val == 0:
        return np.arange(n), np.arange(0)
    if n - n_val < 1:
        raise _bad(est, "validation_fraction", f"leaves none of the {n} samples for training; lower it")
    order = np.random.default_rng([seed, 1]).permutation(n)
    val = order[:n_val]
    if stratify is not None:
        # the same fraction of every class, leaving at least one sample of each class for training
        parts = []
        for c in np.unique(stratify):
            members = order[stratify[order] == c]
            parts.append(members[: min(len(members) - 1, round(est.validation_fraction * len(members)))])
        strat = np.concatenate(parts)
        if len(strat):
            val = strat
    val = np.sort(val)
    return np.setdiff1d(np.arange(n), val), val


def _train_module(
    est: Any, module: nn.Module, data: _Encoded, targets: Tensor, train_idx: np.ndarray, val_idx: np.ndarray, seed: int
) -> TrainResult:
    """Train ``module`` with :func:`rnnkit.train.fit` on the ``train_idx`` sequences of ``data`` (float32), in a
    seeded shuffled order per epoch; with ``val_idx`` non-empty, early stopping on their loss. Leaves the best
    weights (the last ones without validation) in ``module``."""
    sampler = BucketBatchSampler(data.lengths[train_idx].numpy(), int(est.batch_size), shuffle=True, seed=seed)

    def train_batches(epoch: int) -> list[Batch]:
        sampler.set_epoch(epoch)
        return [data.batch(train_idx[b], targets) for b in sampler]

    val_batches = [data.batch(val_idx[i : i + _PREDICT_BATCH], targets) for i in range(0, len(val_idx), _PREDICT_BATCH)]
    config = TrainConfig(
        epochs=int(est.epochs),
        batch_size=int(est.batch_size),
        lr=float(est.lr),
        patience=None if est.patience is None else int(est.patience),
        seed=seed,
        progress="log" if est.verbose else "none",
        log_every=50 if est.verbose >= 2 else 0,
    )
    log: Callable[[str], None] = print if est.verbose else (lambda line: None)
    return fit(module, train_batches, val_batches or None, config, None, log=log)


@torch.no_grad()
def _predict_raw(module: nn.Module, data: _Encoded) -> np.ndarray:
    """The module's outputs ``(N, K)`` in float64, eval mode, in chunks of :data:`_PREDICT_BATCH`.

    The module holds float64 weights (see ``fit``), so a sequence's result does not depend on which other
    sequences share its batch (float32 GEMMs may round differently for different batch sizes).
    """
    module.eval()
    outs = [
        module(data.batch(torch.arange(i, min(i + _PREDICT_BATCH, len(data.lengths)))))[0]  # (B, K)
        for i in range(0, len(data.lengths), _PREDICT_BATCH)
    ]
    return torch.cat(outs).numpy()  # (N, K)


class _SequenceEstimator(BaseEstimator):
    """What RNNClassifier and RNNRegressor share: parameters, reading/encoding X, building and training."""

    _task = ""  # "classify" | "regress"

    def __init__(
        self,
        model: str = "gru",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        embed_dim: int = 32,
        epochs: int = 30,
        batch_size: int = 32,
        lr: float = 3e-3,
        random_state: int | np.random.RandomState | None = None,
        standardize: bool = True,
        validation_fraction: float = 0.0,
        patience: int | None = 5,
        verbose: int = 0,
    ) -> None:
        self.model = model
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.embed_dim = embed_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state
        self.standardize = standardize
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.verbose = verbose

    # -- reading ---------------------------------------------------------------------------------------------

    def _begin_fit(self, X: Any, y: Any) -> _Sequences:
        """What ``fit`` of the classifier and the regressor does first, in this order: forget the last fit, check
        the parameters, require ``y``, read ``X``."""
        _reset_fitted(self)
        _check_common_params(self)
        _check_int(self, "embed_dim", 1, "e.g. 32")
        self._check_own_params()
        self._y_required(y)
        return self._read_fit_X(X)

    def _check_own_params(self) -> None:
        """The parameters only a subclass has, checked before X is read (none here)."""

    def _read_fit_X(self, X: Any) -> _Sequences:
        """Read training X (its kind and channel count); statistics come later from the training rows only."""
        seqs = _read_X(self, X, reset=True)
        self.input_kind_ = seqs.kind
        self.n_channels_ = 0 if seqs.kind == "strings" else seqs.channels
        return seqs

    def _fit_inputs(self, seqs: _Sequences, rows: np.ndarray) -> None:
        """Learn the input statistics (channel mean/scale) or the vocabulary from the training ``rows`` only: the
        validation hold-out must not leak into them."""
        if seqs.kind == "strings":
            self.vocab_ = Vocab.build([seqs.texts[i] for i in rows])  # type: ignore[index]
            return
        values = np.concatenate([seqs.arrays[i] for i in rows])  # (ΣL_i, C): every valid training step  # type: ignore[index]
        if self.standardize:
            self.channel_mean_, self.channel_scale_ = _mean_scale(values)  # (C,), (C,)
        else:
            self.channel_mean_ = np.zeros(self.n_channels_)
            self.channel_scale_ = np.ones(self.n_channels_)

    def _predict_inputs(self, X: Any) -> _Sequences:
        check_is_fitted(self)
        seqs = _read_X(self, X, reset=False)
        name = type(self).__name__
        if seqs.kind != self.input_kind_:
            raise ValueError(
                f"{name} was fitted on {self.input_kind_} but X holds {seqs.kind}; predict on the same kind of input"
            )
        if seqs.kind == "values" and seqs.channels != self.n_channels_:
            raise ValueError(
                f"X has {seqs.channels} channel(s), but {name} was fitted on {self.n_channels_}; pass "
                f"(N, {self.n_channels_}, T) or a list of ({self.n_channels_}, L_i) arrays"
            )
        return seqs

    def _encode(self, seqs: _Sequences, dtype: torch.dtype) -> _Encoded:
        """Standardized values ``(N, T, C)`` in ``dtype``, or token ids ``(N, T)``; lengths ``(N,)``."""
        if seqs.kind == "strings":
            ids = [self.vocab_.encode(s) for s in seqs.texts]  # type: ignore[union-attr]
            lengths = torch.tensor([len(s) for s in ids], dtype=torch.long)  # (N,)
            inputs = torch.full((len(ids), int(lengths.max())), PAD, dtype=torch.long)  # (N, T)
            for i, s in enumerate(ids):
                inputs[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            return _Encoded(inputs, lengths)
        arrays = [(a - self.channel_mean_) / self.channel_scale_ for a in seqs.arrays]  # type: ignore[union-attr]
        return _pad_values(arrays, dtype)

    def _config(self, seqs: _Sequences, **task: int) -> ModelConfig:
        strings = seqs.kind == "strings"
        return ModelConfig(
            task=self._task,
            model=self.model,
            vocab_size=len(self.vocab_) if strings else 0,
            input_features=0 if strings else seqs.channels,
            embed_dim=int(self.embed_dim),
            hidden_size=int(self.hidden_size),
            num_layers=int(self.num_layers),
            bidirectional=bool(self.bidirectional),
            dropout=float(self.dropout),
            **task,
        )

    def _fit_module(
        self,
        cls: type[nn.Module],
        config: ModelConfig,
        data: _Encoded,
        targets: Tensor,
        split: tuple[np.ndarray, np.ndarray],
    ) -> None:
        seed = _seed(self.random_state)
        with _isolated_rng(), torch.enable_grad():  # fit works inside a caller's no_grad too
            torch.manual_seed(seed)  # the initial weights
            module = cls(config)
            result = _train_module(self, module, data, targets, *split, seed)
        # float64 weights (exact copies of the trained float32 ones): predictions independent of batch makeup
        self.model_ = module.double().eval()
        self.config_ = config
        self.n_iter_ = result.epochs_run
        self.best_epoch_ = result.best_epoch
        self.history_ = result.history

    def _check_y_len(self, seqs: _Sequences, y: np.ndarray) -> None:
        if len(y) != len(seqs):
            raise ValueError(
                f"{type(self).__name__}: X has {len(seqs)} sequences but y has {len(y)} targets; "
                "give one target per sequence"
            )

    def _y_required(self, y: Any) -> None:
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # (N, C, T); lists of sequences and strings are accepted too
        tags.non_deterministic = False  # the same random_state gives the same model on CPU
        return tags
