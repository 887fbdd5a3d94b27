"""scikit-learn compatible estimators on rnnkit's task models: RNNClassifier, RNNRegressor and RNNForecaster.

:class:`RNNClassifier` and :class:`RNNRegressor` read one sequence per sample (many→one) and pass scikit-learn's
``check_estimator`` (see ``docs/sklearn.md`` for the checks they are expected to fail and why); they work in
``Pipeline``, ``cross_val_score`` and ``GridSearchCV``. :class:`RNNForecaster` is sktime-like: ``fit(y)`` on one
series, ``predict(fh)`` continues it. scikit-learn is an optional extra (``pip install "rnnkit[sklearn]"``); no
other rnnkit module imports it.

Input conventions (``X``), N samples, C channels, T (or ``L_i``) time steps:

- a 2-D array ``(N, T)``: N univariate sequences of T steps (what scikit-learn's checks and tabular tools pass).
  This is the only format with scikit-learn's ``n_features_in_``: it is T, and ``predict`` then needs T columns
  (for other lengths pass ``(N, 1, T)`` or a list).
- a 3-D array ``(N, C, T)``: the aeon/sktime layout, equal lengths.
- a list of arrays ``(C, L_i)`` (or 1-D ``(L_i,)`` for one channel): unequal lengths, padded on the right.
- a list (or 1-D array) of strings (classifier and regressor): character sequences; the vocabulary is built in
  ``fit``, characters not seen in ``fit`` map to UNK at predict time.

Shape symbols: N samples, T time, B batch, C channels (= I, the input features), H hidden, K outputs.
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data
except ImportError as err:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        'rnnkit.sklearn needs scikit-learn >= 1.6; install it with: pip install "rnnkit[sklearn]"'
    ) from err

from rnnkit.data.batching import Batch, BucketBatchSampler
from rnnkit.data.vocab import PAD, Vocab
from rnnkit.tasks.classifier import SequenceClassifier
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.registry import MODELS
from rnnkit.tasks.regressor import SequenceRegressor
from rnnkit.train import TrainConfig, TrainResult, fit

__all__ = ["RNNClassifier", "RNNForecaster", "RNNRegressor"]

_PREDICT_BATCH = 256  # sequences per forward pass at predict and validation time (results do not depend on it)


# ----------------------------------------------------------------------------------------------------------------
# parameter checks (scikit-learn rule: __init__ stores, fit validates)


def _bad(est: Any, name: str, why: str) -> ValueError:
    return ValueError(f"{type(est).__name__}: {name}={getattr(est, name)!r} is invalid: {why}")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_int(est: Any, name: str, low: int, hint: str) -> int:
    v = getattr(est, name)
    if not _is_int(v) or v < low:
        raise _bad(est, name, f"must be an integer >= {low} ({hint})")
    return int(v)


def _check_common_params(est: Any) -> None:
    """Validate the parameters every estimator here shares; raise ValueError naming the bad one."""
    if not isinstance(est.model, str) or est.model not in MODELS:
        raise _bad(est, "model", f"choose one of {', '.join(sorted(MODELS))}")
    _check_int(est, "hidden_size", 1, "e.g. 64")
    _check_int(est, "num_layers", 1, "e.g. 1")
    if not isinstance(est.bidirectional, (bool, np.bool_)):
        raise _bad(est, "bidirectional", "must be True or False")
    if est.model == "window" and est.bidirectional:
        raise _bad(est, "bidirectional", "model='window' reads fixed windows and has no direction; set it False")
    if isinstance(est.dropout, bool) or not isinstance(est.dropout, numbers.Real) or not 0 <= est.dropout < 1:
        raise _bad(est, "dropout", "must be a number in [0, 1), e.g. 0.0 or 0.2")
    _check_int(est, "epochs", 1, "e.g. 30")
    _check_int(est, "batch_size", 1, "e.g. 32")
    lr = est.lr
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (lr > 0 and math.isfinite(lr)):
        raise _bad(est, "lr", "must be a positive finite number, e.g. 3e-3")
    if not isinstance(est.standardize, (bool, np.bool_)):
        raise _bad(est, "standardize", "must be True or False")
    vf = est.validation_fraction
    if isinstance(vf, bool) or not isinstance(vf, numbers.Real) or not 0 <= vf < 1:
        raise _bad(est, "validation_fraction", "must be a fraction in [0, 1); 0 turns early stopping off")
    if est.patience is not None:
        _check_int(est, "patience", 1, "or None to never stop early")
    _check_int(est, "verbose", 0, "0 silent, 1 one line per epoch, 2 also every 50 steps")
    rs = est.random_state
    if rs is not None and not isinstance(rs, np.random.RandomState) and (not _is_int(rs) or rs < 0):
        raise _bad(est, "random_state", "must be None, an integer >= 0 or a numpy RandomState")


def _seed(random_state: Any) -> int:
    """The torch/trainer seed: ``random_state`` itself if an int, else one drawn from it (None: numpy's global)."""
    if _is_int(random_state):
        return int(random_state)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@contextmanager
def _isolated_rng() -> Iterator[None]:
    """Run a block that reseeds python, numpy and torch (the trainer does) without changing the caller's state."""
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def _reset_fitted(est: Any) -> None:
    """Forget everything a previous ``fit`` learned (attributes ending in ``_``)."""
    for k in [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]:
        delattr(est, k)


# ----------------------------------------------------------------------------------------------------------------
# reading X


class _Sequences:
    """What ``X`` holds after reading: ``kind`` "values" with ``arrays`` (each ``(L_i, C)`` float64), or
    "strings" with ``texts``; ``tabular`` when it came as one 2-D array ``(N, T)``."""

    def __init__(self, kind: str, arrays: list[np.ndarray] | None, texts: list[str] | None, tabular: bool):
        self.kind, self.arrays, self.texts, self.tabular = kind, arrays, texts, tabular

    def __len__(self) -> int:
        return len(self.arrays if self.arrays is not None else self.texts)  # type: ignore[arg-type]

    @property
    def channels(self) -> int:
        return 0 if self.arrays is None else int(self.arrays[0].shape[1])


def _finite(a: np.ndarray, where: str) -> None:
    if not np.isfinite(a).all():
        what = "NaN" if np.isnan(a).any() else "infinity"
        raise ValueError(f"Input X contains {what} ({where}); fill or drop those values first (NaN/inf not allowed)")


def _read_item(i: int, item: Any) -> np.ndarray:
    """One sequence of a list: ``(C, L_i)`` or ``(L_i,)`` → ``(L_i, C)`` float64."""
    try:
        a = np.asarray(item, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"sequence {i} of X is not numeric ({err}); give arrays (C, L_i) of numbers") from None
    if a.ndim == 1:
        a = a[:, None]  # (L_i, 1)
    elif a.ndim == 2:
        a = a.T  # (C, L_i) -> (L_i, C)
    else:
        raise ValueError(f"sequence {i} of X has shape {a.shape}; expected (C, L_i) or (L_i,)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"sequence {i} of X has shape {a.T.shape}: it needs at least 1 channel and 1 time step")
    _finite(a, f"sequence {i}")
    return a


def _is_text_collection(X: Any) -> bool:
    if isinstance(X, np.ndarray):
        return X.ndim == 1 and X.dtype.kind in "OUS" and X.size > 0 and all(isinstance(s, str) for s in X)
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(s, str) for s in X)


def _read_X(est: Any, X: Any, *, reset: bool) -> _Sequences:
    """Read ``X`` in any of the module's formats (see the module docstring); ``reset`` at fit time.

    The 2-D case goes through scikit-learn's ``validate_data`` (``n_features_in_``, feature names, its error
    messages); the other formats are checked here with messages of the same kind.
    """
    name = type(est).__name__
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name}: X is one string; pass a list of strings (one sequence each)")
    if X is None:
        raise ValueError(f"{name}: X is None; pass sequences: an array (N, T), (N, C, T) or a list")
    if not isinstance(X, np.ndarray) and getattr(X, "ndim", None) == 1:  # a pandas Series
        X = np.asarray(X)
    if _is_text_collection(X):
        texts = [str(s) for s in X]
        for i, s in enumerate(texts):
            if not s:
                raise ValueError(f"{name}: string {i} of X is empty; every sequence needs at least one character")
        return _Sequences("strings", None, texts, tabular=False)
    if isinstance(X, (list, tuple)) or (isinstance(X, np.ndarray) and X.dtype == object and X.ndim == 1):
        if len(X) == 0:
            raise ValueError(f"{name}: X holds 0 sequences; at least 1 is required")
        if any(isinstance(s, str) for s in X):
            raise TypeError(f"{name}: X mixes strings and other items; give only strings or only arrays")
        shapes = {np.shape(s) for s in X}
        if len(shapes) > 1 or (isinstance(X, np.ndarray) and X.dtype == object):  # ragged: one array per sequence
            arrays = [_read_item(i, s) for i, s in enumerate(X)]
            for i, a in enumerate(arrays):
                if a.shape[1] != arrays[0].shape[1]:
                    raise ValueError(
                        f"{name}: sequence {i} of X has {a.shape[1]} channel(s) but sequence 0 has "
                        f"{arrays[0].shape[1]}; give every sequence as (C, L_i), channels first (the aeon layout)"
                    )
            return _Sequences("values", arrays, None, tabular=False)
    ndim = np.asarray(X).ndim if not hasattr(X, "ndim") else X.ndim
    if ndim == 3:
        a = check_array(X, allow_nd=True, dtype=np.float64, input_name="X", estimator=est)
        if a.shape[1] == 0 or a.shape[2] == 0:
            raise ValueError(f"{name}: X has shape {a.shape}; (N, C, T) needs C >= 1 and T >= 1")
        return _Sequences("values", list(a.transpose(0, 2, 1)), None, tabular=False)  # N x (T, C)
    if ndim > 3:
        raise ValueError(f"{name}: X has {ndim} dimensions; expected (N, T), (N, C, T) or a list of (C, L_i)")
    # 2-D; validate_data also rejects 1-D input with scikit-learn's "Expected 2D array" message
    a = validate_data(est, X, reset=reset, dtype=np.float64)  # (N, T)
    return _Sequences("values", list(a[:, :, None]), None, tabular=True)  # N x (T, 1)


# ----------------------------------------------------------------------------------------------------------------
# shared machinery


class _Encoded:
    """Sequences as one padded tensor: ``inputs`` ``(N, T)`` long ids or ``(N, T, C)`` float, ``lengths (N,)``."""

    def __init__(self, inputs: Tensor, lengths: Tensor):
        self.inputs, self.lengths = inputs, lengths

    def batch(self, idx: Sequence[int] | Tensor, targets: Tensor | None = None) -> Batch:
        idx = torch.as_tensor(idx, dtype=torch.long)
        lengths = self.lengths[idx]  # (B,)
        t = int(lengths.max())
        return Batch(
            inputs=self.inputs[idx, :t],  # (B, T) or (B, T, C): padded to this batch's longest
            lengths=lengths,
            targets=None if targets is None else targets[idx],
        )


def _pad_values(arrays: list[np.ndarray], dtype: torch.dtype) -> _Encoded:
    lengths = [a.shape[0] for a in arrays]
    out = np.zeros((len(arrays), max(lengths), arrays[0].shape[1]))  # (N, T, C)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return _Encoded(torch.from_numpy(out).to(dtype), torch.tensor(lengths, dtype=torch.long))


def _mean_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of ``values`` ``(N, C)``; a constant column gets scale 1 (only
    centred: its computed std is rounding noise, e.g. 1.4e-17 for 0.1 repeated)."""
    std = values.std(axis=0)  # (C,)
    return values.mean(axis=0), np.where(np.ptp(values, axis=0) > 0, std, 1.0)


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


# ----------------------------------------------------------------------------------------------------------------
# the estimators


class RNNClassifier(ClassifierMixin, _SequenceEstimator):
    """A recurrent sequence classifier (many→one) for scikit-learn: :class:`~rnnkit.tasks.SequenceClassifier`
    (embedding for strings → recurrent core → last state of each direction → linear head over C classes),
    trained with :func:`rnnkit.train.fit` (AdamW, clipping, cosine schedule, cross-entropy).

    Parameters:
        model: recurrent core from :data:`rnnkit.tasks.registry.MODELS` ("gru", "lstm", "rnn", "gru-before",
            "window", "mingru", "minlstm").
        hidden_size: H, the recurrent state size.
        num_layers: L, stacked recurrent layers.
        bidirectional: read each sequence in both directions (D = 2).
        dropout: on inputs, between layers and before the head.
        embed_dim: E, the character embedding size (string input only).
        epochs, batch_size, lr: training length, sequences per step and peak learning rate.
        random_state: None (a seed drawn from numpy's global generator), an int or a RandomState: fixes the
            initial weights, the batch order and dropout; fit is deterministic given it (on CPU). The caller's
            global random states are left as they were.
        standardize: scale every input channel to mean 0, std 1 with training statistics (all valid steps of
            all sequences).
        validation_fraction: hold out this fraction of the training data (stratified) for early stopping on
            the validation loss; the best epoch's weights are kept. 0: no early stopping, the last weights.
        patience: epochs without improvement before stopping (with validation_fraction > 0).
        verbose: 0 silent; 1 one line per epoch; 2 also every 50 steps (printed to stdout).

    Attributes:
        classes_: the sorted class labels ``(C,)``.
        n_features_in_: T, the number of time steps, set only when ``fit`` got a 2-D array ``(N, T)``;
            ``predict`` on a 2-D array then needs T columns (scikit-learn's rule).
        feature_names_in_: column names of a DataFrame given to ``fit`` (scikit-learn's rule).
        n_channels_: C, channels per step (0 for strings). input_kind_: "values" or "strings".
        channel_mean_, channel_scale_: the standardization ``(C,)`` (values only). vocab_: the
            :class:`~rnnkit.data.vocab.Vocab` (strings only).
        model_: the trained ``SequenceClassifier``, held in float64. config_: its ModelConfig.
        n_iter_: epochs run; best_epoch_: the epoch whose weights are kept; history_: one dict per epoch.
    """

    _task = "classify"

    def fit(self, X: Any, y: Any) -> RNNClassifier:
        """Train on sequences ``X`` (any format of the module docstring) and labels ``y`` ``(N,)``."""
        _reset_fitted(self)
        _check_common_params(self)
        _check_int(self, "embed_dim", 1, "e.g. 32")
        self._y_required(y)
        seqs = self._read_fit_X(X)
        y = check_array(y, ensure_2d=False, dtype=None, input_name="y", estimator=self)
        y = column_or_1d(y, warn=True)  # (N,)
        self._check_y_len(seqs, y)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes, got 1 class ({self.classes_[0]!r})"
            )
        split = _split(self, len(seqs), y_idx, _seed(self.random_state))
        self._fit_inputs(seqs, split[0])
        config = self._config(seqs, num_classes=len(self.classes_))
        data = self._encode(seqs, torch.float32)
        self._fit_module(SequenceClassifier, config, data, torch.as_tensor(y_idx, dtype=torch.long), split)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(N, C)``, columns in the order of ``classes_``; rows sum to 1."""
        data = self._encode(self._predict_inputs(X), torch.float64)
        logits = _predict_raw(self.model_, data)  # (N, C)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)  # (N, C)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log class probabilities ``(N, C)``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of every sequence ``(N,)``."""
        proba = self.predict_proba(X)  # (N, C)
        return self.classes_[np.argmax(proba, axis=1)]


class RNNRegressor(RegressorMixin, _SequenceEstimator):
    """A recurrent sequence regressor (many→K values) for scikit-learn: :class:`~rnnkit.tasks.SequenceRegressor`
    trained with :func:`rnnkit.train.fit` on the mean squared error. ``score`` is R² (RegressorMixin).

    Parameters are :class:`RNNClassifier`'s; ``standardize`` also scales every target to mean 0, std 1 with
    training statistics for training (predictions are mapped back), and the validation split is random.

    ``y`` is ``(N,)`` (predict returns ``(N,)``) or ``(N, K)`` for K outputs at once (predict returns
    ``(N, K)``).

    Attributes: as :class:`RNNClassifier` (no ``classes_``), plus ``n_outputs_`` (K) and ``target_mean_``,
    ``target_scale_`` ``(K,)``.
    """

    _task = "regress"

    def fit(self, X: Any, y: Any) -> RNNRegressor:
        """Train on sequences ``X`` (any format of the module docstring) and real targets ``y``."""
        _reset_fitted(self)
        _check_common_params(self)
        _check_int(self, "embed_dim", 1, "e.g. 32")
        self._y_required(y)
        seqs = self._read_fit_X(X)
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y", estimator=self)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must have shape (N,) or (N, K), got {y.shape}")
        self._check_y_len(seqs, y)
        self._y_ndim = y.ndim
        y2 = y.reshape(len(y), -1)  # (N, K)
        if y2.shape[1] == 0:
            raise ValueError(f"y has shape {y.shape}: 0 targets per sequence; K must be >= 1")
        self.n_outputs_ = y2.shape[1]
        split = _split(self, len(seqs), None, _seed(self.random_state))
        self._fit_inputs(seqs, split[0])
        if self.standardize:  # targets too: statistics of the training rows only
            self.target_mean_, self.target_scale_ = _mean_scale(y2[split[0]])  # (K,), (K,)
        else:
            self.target_mean_ = np.zeros(self.n_outputs_)
            self.target_scale_ = np.ones(self.n_outputs_)
        targets = torch.as_tensor((y2 - self.target_mean_) / self.target_scale_, dtype=torch.float32)  # (N, K)
        config = self._config(seqs, num_outputs=self.n_outputs_)
        self._fit_module(SequenceRegressor, config, self._encode(seqs, torch.float32), targets, split)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``(N,)`` (``y`` was 1-D in ``fit``) or ``(N, K)``."""
        data = self._encode(self._predict_inputs(X), torch.float64)
        out = _predict_raw(self.model_, data)  # (N, K)
        out = out * self.target_scale_ + self.target_mean_
        return out[:, 0] if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y (N, K)
        return tags


# ----------------------------------------------------------------------------------------------------------------
# forecasting


def _windows(series: np.ndarray, context: int, ahead: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (input, target) pair of a series ``(N, F)``: inputs ``(W, context, F)``, targets ``(W, ahead·F)``.

    Window ``i`` reads ``series[i : i + context]`` and its target is ``series[i + context : i + context + ahead]``
    flattened step-major (step 1's F values, then step 2's, ...); ``W = N - context - ahead + 1``.
    """
    n = series.shape[0] - context - ahead + 1
    idx = np.arange(n)[:, None] + np.arange(context + ahead)[None, :]  # (W, context + ahead)
    win = series[idx]  # (W, context + ahead, F)
    return win[:, :context], win[:, context:].reshape(n, -1)  # (W, context, F), (W, ahead·F)


class RNNForecaster(BaseEstimator):
    """Forecast one (multivariate) series with a recurrent model, sktime-style: ``fit(y)``, ``predict(fh)``.

    The series is cut into windows of ``context`` points; a :class:`~rnnkit.tasks.SequenceRegressor` reads a
    window and predicts what follows:

    - ``strategy="direct"``: the next ``horizon`` points at once (K = horizon·F outputs); ``predict`` can reach
      at most ``horizon`` steps ahead.
    - ``strategy="recursive"``: the next point only; ``predict`` feeds each forecast back as the newest input,
      so it reaches any number of steps ahead (``horizon`` is then only the default ``fh``).

    This is not a tabular estimator and is not meant to pass ``check_estimator`` (``fit`` takes the series, not
    ``X, y``); it follows the parameter rules, so ``clone``, ``get_params`` and ``set_params`` work.

    Parameters:
        context: points the model reads per forecast.
        horizon: points predicted at once (direct), and the default ``fh`` of ``predict``.
        strategy: "direct" or "recursive".
        model, hidden_size, num_layers, bidirectional, dropout, epochs, batch_size, lr, random_state,
        validation_fraction, patience, verbose: as :class:`RNNClassifier` (``bidirectional`` defaults to False;
        the validation windows are the last ones in time).
        standardize: scale every channel of the series to mean 0, std 1 with training statistics.

    Attributes:
        n_channels_: F, values per time point. cutoff_: the number of training points; ``predict`` step ``h``
        is point ``cutoff_ + h - 1`` (0-based) of the continued series.
        channel_mean_, channel_scale_: the standardization ``(F,)``. model_: the trained SequenceRegressor
        (float64). n_iter_, best_epoch_, history_: as for the classifier.
    """

    def __init__(
        self,
        context: int = 24,
        horizon: int = 12,
        strategy: str = "direct",
        model: str = "gru",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        epochs: int = 30,
        batch_size: int = 32,
        lr: float = 3e-3,
        random_state: int | np.random.RandomState | None = None,
        standardize: bool = True,
        validation_fraction: float = 0.0,
        patience: int | None = 5,
        verbose: int = 0,
    ) -> None:
        self.context = context
        self.horizon = horizon
        self.strategy = strategy
        self.model = model
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state
        self.standardize = standardize
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.verbose = verbose

    def _ahead(self) -> int:
        """Points the model predicts per window."""
        return int(self.horizon) if self.strategy == "direct" else 1

    def fit(self, y: Any, X: Any = None) -> RNNForecaster:
        """Train on one series ``y``: ``(N,)`` or ``(N, F)`` (a pandas Series/DataFrame works). ``X`` must be
        None: exogenous inputs are not supported (pass extra series as columns of ``y``; they are forecast too).
        """
        _reset_fitted(self)
        _check_common_params(self)
        context = _check_int(self, "context", 1, "points read per forecast, e.g. 24")
        _check_int(self, "horizon", 1, "points predicted, e.g. 12")
        if self.strategy not in ("direct", "recursive"):
            raise _bad(self, "strategy", "choose 'direct' or 'recursive'")
        if X is not None:
            raise ValueError("RNNForecaster does not take exogenous X; pass the extra series as columns of y (N, F)")
        if y is None:
            raise ValueError("RNNForecaster requires y to be passed, but the target y is None")
        series = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y", estimator=self)
        if series.ndim not in (1, 2):
            raise ValueError(f"y must be one series (N,) or (N, F), got shape {series.shape}")
        self._y_ndim = series.ndim
        series = series.reshape(len(series), -1)  # (N, F)
        ahead = self._ahead()
        if len(series) < context + ahead:
            raise ValueError(
                f"y has {len(series)} points, too short for context={context} and {ahead} point(s) ahead: it needs "
                f"at least {context + ahead}; lower context/horizon or pass a longer series"
            )
        self.n_channels_ = series.shape[1]
        self.cutoff_ = len(series)
        # window i reads points [i, i+context) and predicts [i+context, i+context+ahead); the validation windows
        # are the last n_val ones (a forecaster is judged on the future), and the training windows stop
        # ahead-1 windows earlier so that no training target is a validation target
        n = len(series) - context - ahead + 1
        n_val = math.ceil(self.validation_fraction * n) if self.validation_fraction > 0 else 0
        v0 = n - n_val  # the first validation window
        n_train = v0 - (ahead - 1) if n_val else n
        if n_train < 1:
            raise _bad(self, "validation_fraction", f"leaves none of the {n} windows for training; lower it")
        train_idx, val_idx = np.arange(n_train), np.arange(v0, n)
        if self.standardize:  # statistics of the points before the first validation target only
            self.channel_mean_, self.channel_scale_ = _mean_scale(series[: v0 + context] if n_val else series)
        else:
            self.channel_mean_ = np.zeros(self.n_channels_)
            self.channel_scale_ = np.ones(self.n_channels_)
        z = (series - self.channel_mean_) / self.channel_scale_  # (N, F)
        inputs, targets = _windows(z, context, ahead)  # (W, context, F), (W, ahead·F)
        self.last_window_ = z[-context:]  # (context, F): what predict continues from
        config = ModelConfig(
            task="forecast",
            model=self.model,
            input_features=self.n_channels_,
            hidden_size=int(self.hidden_size),
            num_layers=int(self.num_layers),
            bidirectional=bool(self.bidirectional),
            dropout=float(self.dropout),
            num_outputs=ahead * self.n_channels_,
            window=context,  # the window model reads the whole context, as every other core does
        )
        data = _Encoded(torch.from_numpy(inputs).float(), torch.full((len(inputs),), context, dtype=torch.long))
        seed = _seed(self.random_state)
        with _isolated_rng(), torch.enable_grad():  # fit works inside a caller's no_grad too
            torch.manual_seed(seed)  # the initial weights
            module = SequenceRegressor(config)
            result = _train_module(self, module, data, torch.from_numpy(targets).float(), train_idx, val_idx, seed)
        self.model_ = module.double().eval()
        self.config_ = config
        self.n_iter_ = result.epochs_run
        self.best_epoch_ = result.best_epoch
        self.history_ = result.history
        return self

    def _steps(self, fh: Any) -> np.ndarray:
        if fh is None:
            fh = int(self.horizon)
        if _is_int(fh):
            if fh < 1:
                raise ValueError(f"fh={fh} is invalid: give a horizon >= 1 or a list of steps ahead (1 = next point)")
            return np.arange(1, int(fh) + 1)
        steps = np.asarray(fh).reshape(-1)
        if steps.size == 0 or not np.issubdtype(steps.dtype, np.integer) or (steps < 1).any():
            raise ValueError(f"fh={fh!r} is invalid: give an int horizon or a list of integer steps ahead >= 1")
        return steps.astype(np.int64)

    @torch.no_grad()
    def _forecast(self, n: int) -> np.ndarray:
        """The next ``n`` points after the training series, standardized ``(n, F)``."""
        f = self.n_channels_
        window = torch.from_numpy(self.last_window_).double().unsqueeze(0)  # (1, context, F)
        lengths = torch.tensor([window.shape[1]])
        if self.strategy == "direct":
            out = self.model_(Batch(window, lengths))[0]  # (1, horizon·F)
            return out.view(-1, f)[:n].numpy()  # (n, F)
        steps = []
        for _ in range(n):
            nxt = self.model_(Batch(window, lengths))[0].view(1, 1, f)  # (1, 1, F)
            steps.append(nxt[0, 0])
            window = torch.cat([window[:, 1:], nxt], dim=1)  # (1, context, F): slide by one point
        return torch.stack(steps).numpy()  # (n, F)

    def predict(self, fh: Any = None) -> np.ndarray:
        """Forecast the points ``fh`` steps after the end of the training series.

        Args:
            fh: an int ``h`` (steps 1..h), a list of steps ahead (e.g. ``[1, 6, 12]``, any order), or None
                (``horizon``). With ``strategy="direct"`` no step may exceed ``horizon``.

        Returns:
            ``(len(fh),)`` for a 1-D training series, else ``(len(fh), F)``, in the order of ``fh``.
        """
        check_is_fitted(self)
        steps = self._steps(fh)
        last = int(steps.max())
        if self.strategy == "direct" and last > self.horizon:
            raise ValueError(
                f"fh reaches {last} steps ahead but the direct model predicts horizon={self.horizon}; "
                f"refit with horizon>={last} or strategy='recursive'"
            )
        z = self._forecast(last)  # (last, F)
        out = z[steps - 1] * self.channel_scale_ + self.channel_mean_  # (len(fh), F)
        return out[:, 0] if self._y_ndim == 1 else out

    def score(self, y: Any, X: Any = None) -> float:
        """Negative mean absolute error of the forecast of the ``len(y)`` points right after the training
        series (higher is better, like scikit-learn's ``neg_mean_absolute_error``)."""
        check_is_fitted(self)
        if X is not None:
            raise ValueError("RNNForecaster does not take exogenous X; call score(y_future)")
        truth = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y", estimator=self)
        pred = self.predict(len(truth))
        if pred.shape != truth.shape:
            raise ValueError(f"y_future must have shape {pred.shape} (the points after the training series)")
        return -float(np.mean(np.abs(pred - truth)))
