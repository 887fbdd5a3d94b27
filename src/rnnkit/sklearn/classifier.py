""":class:`RNNClassifier`: a recurrent sequence classifier (many→one) for scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d

from rnnkit.sklearn.estimator import _predict_raw, _SequenceEstimator, _split
from rnnkit.sklearn.params import _seed
from rnnkit.tasks.classifier import SequenceClassifier


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
        seqs = self._begin_fit(X, y)
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
