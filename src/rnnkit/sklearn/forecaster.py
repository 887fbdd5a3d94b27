""":class:`RNNForecaster`: forecast one (multivariate) series, sktime-style (``fit(y)``, ``predict(fh)``).

Shape symbols: N points, F channels, W windows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_array, check_is_fitted

from rnnkit.data.batching import Batch
from rnnkit.sklearn.estimator import _train_module
from rnnkit.sklearn.inputs import (
    _Encoded,
    _mean_scale,
)
from rnnkit.sklearn.params import _bad, _check_common_params, _check_int, _is_int, _isolated_rng, _reset_fitted, _seed
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.regressor import SequenceRegressor


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
