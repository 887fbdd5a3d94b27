""":class:`RNNRegressor`: a recurrent sequence regressor (many→one) for scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_array

from rnnkit.sklearn.estimator import _predict_raw, _SequenceEstimator, _split
from rnnkit.sklearn.inputs import (
    _mean_scale,
)
from rnnkit.sklearn.params import _seed
from rnnkit.tasks.regressor import SequenceRegressor


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
        seqs = self._begin_fit(X, y)
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
