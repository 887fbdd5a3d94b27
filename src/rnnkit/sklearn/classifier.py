""":class:`RNNClassifier`: a recurrent sequence classifier (many→one) for scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d

from rnnkit.metrics import mixture
from rnnkit.sklearn.estimator import _predict_raw, _SequenceEstimator, _split
from rnnkit.sklearn.inputs import _Sequences
from rnnkit.sklearn.params import _bad, _is_int, _seed
from rnnkit.tasks.classifier import SequenceClassifier
from rnnkit.tasks.counts import MAX_ORDER, fit_class_member


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
        ngram_order: strings only: beside the network, a count member reading the class and the last
            ``ngram_order`` characters (interpolated Witten–Bell n-grams, one model per class, Bayes' rule:
            :class:`~rnnkit.tasks.counts.CountClassifier`, as ``rnnkit train --ngram-order``); the class
            probabilities are ``(1 − w) · network + w · counts``, ``w`` and the counts' temperature chosen on the
            validation hold-out (needs ``validation_fraction > 0``), then the counts kept count every training
            string. 0 (the default): the network alone.

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
        counts_: the fitted count member (``ngram_order > 0``), else None; its ``weight`` is ``w``.
    """

    _task = "classify"

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
        ngram_order: int = 0,
    ) -> None:
        super().__init__(
            model=model,
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            embed_dim=embed_dim,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            random_state=random_state,
            standardize=standardize,
            validation_fraction=validation_fraction,
            patience=patience,
            verbose=verbose,
        )
        self.ngram_order = ngram_order

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle; an estimator pickled before ``ngram_order`` existed gets its default (0), so that
        ``get_params``, ``clone`` and ``repr`` keep working on it."""
        state.setdefault("ngram_order", 0)
        super().__setstate__(state)

    def fit(self, X: Any, y: Any) -> RNNClassifier:
        """Train on sequences ``X`` (any format of the module docstring) and labels ``y`` ``(N,)``."""
        seqs = self._begin_fit(X, y)
        self._check_ngram_order(seqs.kind)
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
        self.counts_ = self._fit_counts(seqs, y_idx, split) if self.ngram_order else None
        return self

    def _check_own_params(self) -> None:
        order = self.ngram_order
        if not _is_int(order) or not 0 <= order <= MAX_ORDER:
            raise _bad(self, "ngram_order", f"must be an integer in [0, {MAX_ORDER}] (0: the network alone; e.g. 4)")

    def _check_ngram_order(self, kind: str) -> None:
        """``ngram_order`` against the input read (strings only) and the hold-out it needs."""
        order = self.ngram_order
        if order and kind != "strings":
            raise _bad(self, "ngram_order", "counts characters: it applies to string input only; set it to 0")
        if order and not self.validation_fraction > 0:
            raise _bad(self, "ngram_order", "needs validation_fraction > 0 (the counts' share is chosen there)")

    def _fit_counts(self, seqs: _Sequences, y_idx: np.ndarray, split: tuple[np.ndarray, np.ndarray]) -> Any:
        """The count member beside the trained network (``ngram_order``), its share chosen on the hold-out."""
        train_idx, val_idx = split
        texts = seqs.texts or []
        ids = [self.vocab_.encode(s) for s in texts]  # N × (L_i,)
        held_out = _Sequences("strings", None, [texts[i] for i in val_idx], tabular=False)
        network = _softmax(_predict_raw(self.model_, self._encode(held_out, torch.float64)))  # (N_val, C)
        member, _ = fit_class_member(
            network,
            int(self.ngram_order),
            len(self.vocab_),
            len(self.classes_),
            ([ids[i] for i in train_idx], [int(y_idx[i]) for i in train_idx]),
            ([ids[i] for i in val_idx], [int(y_idx[i]) for i in val_idx]),
        )
        return member

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(N, C)``, columns in the order of ``classes_``; rows sum to 1."""
        seqs = self._predict_inputs(X)
        p = _softmax(_predict_raw(self.model_, self._encode(seqs, torch.float64)))  # (N, C)
        counts = getattr(self, "counts_", None)
        if counts is None:
            return p
        return mixture(p, counts.probabilities([self.vocab_.encode(s) for s in seqs.texts]), counts.weight)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log class probabilities ``(N, C)``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class label of every sequence ``(N,)``."""
        proba = self.predict_proba(X)  # (N, C)
        return self.classes_[np.argmax(proba, axis=1)]


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` logits."""
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)  # (N, C)
    return p / p.sum(axis=1, keepdims=True)
