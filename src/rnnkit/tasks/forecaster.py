"""Forecasting with a sequence regressor: windowed real-valued series → the next value or the next ``K`` values.

A forecast model is a :class:`~rnnkit.tasks.regressor.SequenceRegressor` (task ``"forecast"``) that reads a
context of ``C`` standardized steps ``(B, C, F)`` and predicts ``K`` values of the target column. Two strategies:

- ``"direct"``: one model output per horizon step (``num_outputs = K``), all ``K`` predicted at once;
- ``"recursive"``: a one-step model (``num_outputs = 1``) rolled out: each prediction is appended to the
  context and the model is run again, ``K`` times. The prediction becomes the next *input*, so the target must be
  the only input channel (``F = 1``); with other channels use ``"direct"``.

With ``relative=True`` the model sees each window relative to its last step (every channel minus its value at
``t``) and predicts the change of the target from ``y_t``; :func:`forecast` adds ``y_t`` back. That makes the model
blind to the level, which helps on series whose test part lies outside the training range (stock prices).

:func:`naive_forecast` (last value) and :func:`seasonal_naive_forecast` (value one season back) are the
baselines; :class:`Forecaster` bundles a model with its :class:`~rnnkit.data.series.Scaler` and settings and
works in original units. Shape symbols: ``B`` batch, ``T`` steps of history, ``C`` context, ``F`` channels,
``K`` horizon, ``M`` windows, ``N`` series length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.data.batching import FLOAT32_MAX, Batch, NonFiniteValues
from rnnkit.data.series import Scaler, Windows
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.modes import eval_mode

__all__ = [
    "BLEND_MARGIN",
    "BLEND_WEIGHTS",
    "STRATEGIES",
    "Forecaster",
    "choose_blend",
    "forecast",
    "forecast_config",
    "naive_forecast",
    "seasonal_naive_forecast",
    "window_batches",
]

STRATEGIES = ("direct", "recursive")
"""How ``K`` steps are predicted: all at once, or one step rolled out."""


def forecast_config(
    model: str,
    input_features: int,
    horizon: int,
    strategy: str = "direct",
    hidden_size: int = 64,
    num_layers: int = 1,
    dropout: float = 0.0,
    bidirectional: bool = False,
    context: int = 32,
) -> ModelConfig:
    """The :class:`ModelConfig` of a forecast model: ``num_outputs = horizon`` (direct) or ``1`` (recursive).

    ``context`` becomes the ``window`` of a ``"window"`` core, so that model reads the whole context at once.
    """
    _check_strategy(strategy)
    if strategy == "recursive" and input_features != 1:
        raise ValueError(_RECURSIVE_CHANNELS.format(f=input_features))
    return ModelConfig(
        task="forecast",
        model=model,
        input_features=input_features,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=dropout,
        window=context,
        num_outputs=horizon if strategy == "direct" else 1,
    )


_RECURSIVE_CHANNELS = (
    "recursive forecasting feeds each prediction back as the next input, so the target must be the only input "
    "channel, but there are {f}; use strategy 'direct' (--strategy direct) for several channels"
)


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")


# ---------------------------------------------------------------------------------------------------------- rollout
def _last_steps(inputs: Tensor, lengths: Tensor, context: int | None) -> tuple[Tensor, Tensor]:
    """The last ``min(lengths[b], context)`` valid steps of every row, right-padded: ``(B, T', F)``, ``(B,)``."""
    if context is None or inputs.shape[1] <= context:
        return inputs, lengths
    new_len = lengths.clamp(max=context)  # (B,)
    t = int(new_len.max())
    j = torch.arange(t, device=inputs.device)  # (T',)
    idx = (lengths - new_len).unsqueeze(1) + j  # (B, T')
    idx = torch.minimum(idx, (lengths - 1).unsqueeze(1))  # padded slots repeat the last step; ignored by lengths
    return inputs.gather(1, idx.unsqueeze(2).expand(-1, -1, inputs.shape[2])), new_len  # (B, T', F)


def _relative(inputs: Tensor, lengths: Tensor, target: int) -> tuple[Tensor, Tensor]:
    """Inputs minus each row's last valid step (per channel), and that step's target value ``(B,)``."""
    last = inputs.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, inputs.shape[2]))  # (B, 1, F)
    return inputs - last, last[:, 0, target]  # (B, T, F), (B,)


def _history(
    history: Tensor | np.ndarray | Batch, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor, bool]:
    """``(inputs (B, T, F), lengths (B,), batched)`` on ``device`` from a ``(T, F)``/``(B, T, F)`` array or a
    Batch."""
    if isinstance(history, Batch):
        x, lengths = history.inputs, history.lengths.to(device).long()
        if not x.is_floating_point() or x.dim() != 3:
            raise ValueError(f"forecast needs real-valued inputs of shape (B, T, F), got {tuple(x.shape)}")
        return x.to(device, dtype), lengths, True
    x = torch.as_tensor(np.asarray(history) if not isinstance(history, Tensor) else history)
    batched = x.dim() == 3
    if x.dim() == 2:
        x = x.unsqueeze(0)  # (T, F) -> (1, T, F)
    if x.dim() != 3 or x.shape[1] == 0:
        raise ValueError(f"history must have shape (T, F) or (B, T, F) with T ≥ 1, got {tuple(x.shape)}")
    lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=device)
    return x.to(device, dtype), lengths, batched


def forecast(
    model: nn.Module,
    history: Tensor | np.ndarray | Batch,
    horizon: int,
    strategy: str = "direct",
    *,
    context: int | None = None,
    relative: bool = False,
    target: int = 0,
) -> Tensor:
    """The next ``horizon`` values of the target column after ``history`` (in the model's standardized units).

    Args:
        model: a forecast :class:`~rnnkit.tasks.regressor.SequenceRegressor` (``num_outputs ≥ horizon`` for
            ``"direct"``); run in eval mode without gradients, its mode restored afterwards.
        history: ``(T, F)`` one series, ``(B, T, F)`` a batch of equally long ones, or a :class:`Batch` (right
            padded, any lengths).
        horizon: ``K ≥ 1``.
        strategy: ``"direct"`` or ``"recursive"`` (see the module docstring).
        context: read only the last ``context`` steps at every step (as in training); None: all of them.
        relative: the model was trained on windows relative to their last step.
        target: the target column (for ``relative``; the recursive strategy needs ``F = 1`` and ``target = 0``).

    Returns:
        ``(K,)`` for a ``(T, F)`` history, else ``(B, K)``; on the model's device, in its dtype.
    """
    _check_strategy(strategy)
    if horizon < 1:
        raise ValueError(f"horizon must be ≥ 1, got {horizon}")
    if context is not None and context < 1:
        raise ValueError(f"context must be ≥ 1 or None, got {context}")
    param = next(model.parameters(), None)
    dtype = torch.float32 if param is None else param.dtype
    device = torch.device("cpu") if param is None else param.device
    x, lengths, batched = _history(history, dtype, device)
    f = x.shape[2]
    if not 0 <= target < f:
        raise ValueError(f"target column {target} is out of range for {f} input channels")
    if strategy == "recursive" and f != 1:
        raise ValueError(_RECURSIVE_CHANNELS.format(f=f))
    k_model = getattr(getattr(model, "config", None), "num_outputs", None)
    if strategy == "direct" and k_model is not None and horizon > k_model:
        raise ValueError(
            f"this direct model predicts {k_model} steps, not {horizon}: ask for a horizon ≤ {k_model}, "
            "or train with the recursive strategy to roll out any horizon"
        )

    def one_pass(inputs: Tensor, lens: Tensor) -> Tensor:
        inputs, lens = _last_steps(inputs, lens, context)
        anchor = torch.zeros(inputs.shape[0], dtype=dtype, device=inputs.device)  # (B,)
        if relative:
            inputs, anchor = _relative(inputs, lens, target)
        pred, _ = model(Batch(inputs, lens))  # (B, K_model)
        return pred + anchor.unsqueeze(1)  # (B, K_model)

    with eval_mode(model), torch.no_grad():
        if strategy == "direct":
            out = one_pass(x, lengths)[:, :horizon]  # (B, K)
        else:
            steps = []
            for _ in range(horizon):
                y = one_pass(x, lengths)[:, :1]  # (B, 1)
                steps.append(y)
                x = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)  # (B, T+1, 1)
                x = x.scatter(1, lengths.view(-1, 1, 1), y.unsqueeze(2))  # the prediction at each row's end
                lengths = lengths + 1
            out = torch.cat(steps, dim=1)  # (B, K)
    return out if batched else out[0]


# ---------------------------------------------------------------------------------------------------------- baselines
def _origins(series: np.ndarray, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(series, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"series must have shape (N,), got {y.shape}")
    o = np.asarray(origins, dtype=np.int64)
    if o.size and (o.min() < 0 or o.max() >= len(y)):
        raise ValueError(f"origins must index the series (0 … {len(y) - 1})")
    return y, o


def naive_forecast(series: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The last value: ``ŷ_{t+k} = y_t`` for ``k = 1 … K`` at every origin ``t``; ``(M, K)``."""
    y, o = _origins(series, origins)
    return np.repeat(y[o][:, None], horizon, axis=1)  # (M, K)


def seasonal_naive_forecast(series: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The value one season back: ``ŷ_{t+k} = y_{t+k−m·⌈k/m⌉}`` (the last observed season repeated); ``(M, K)``.

    ``season = 1`` is the naive forecast. Every origin needs ``t ≥ m − 1``.
    """
    if season < 1:
        raise ValueError(f"season must be ≥ 1, got {season}")
    y, o = _origins(series, origins)
    k = np.arange(1, horizon + 1)  # (K,)
    idx = o[:, None] + k - season * np.ceil(k / season).astype(np.int64)  # (M, K)
    if idx.size and idx.min() < 0:
        raise ValueError(f"seasonal-naive with season={season} needs {season} past values before every origin")
    return y[idx]


BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The model weights :func:`choose_blend` tries (0: the baseline alone, 1: the model alone)."""


BLEND_MARGIN = 0.05
"""How much lower than the best baseline's a blend's validation MAE must be for the model to get any weight."""


def choose_blend(
    truth: np.ndarray, model: np.ndarray, baselines: dict[int, np.ndarray], margin: float = BLEND_MARGIN
) -> tuple[float, int, float]:
    """The blend ``w·model + (1 − w)·baseline`` with the lowest MAE on validation windows, or the best baseline
    alone when no blend beats it clearly.

    Args:
        truth: ``(M, K)`` the validation targets; model: ``(M, K)`` the model's forecasts of them.
        baselines: season ``m`` → ``(M, K)`` that baseline's forecasts (``1``: naive).
        margin: a blend with ``w > 0`` is taken only when its MAE is below ``(1 − margin)`` times the best
            baseline's (:data:`BLEND_MARGIN`): a gain of a few percent on a short validation part is noise, and
            a series whose best forecast is the last value (a random walk) stays forecast by the last value.

    Returns:
        ``(w, m, mae)``: the weight from :data:`BLEND_WEIGHTS`, the baseline's season and the validation MAE of
        what was chosen. Ties go to the larger weight, then the smaller season.
    """
    if not baselines:
        raise ValueError("choose_blend needs at least one baseline")
    best: tuple[float, int, float] | None = None
    for w in sorted(BLEND_WEIGHTS, reverse=True):
        for m in sorted(baselines):
            mae = float(np.mean(np.abs(truth - (w * model + (1.0 - w) * baselines[m]))))
            if best is None or mae < best[2] - 1e-12 * max(1.0, abs(best[2])):
                best = (w, m, mae)
    assert best is not None
    base = min((float(np.mean(np.abs(truth - baselines[m]))), m) for m in sorted(baselines))  # (mae, m)
    clear = best[2] < (1.0 - margin) * base[0] or (margin == 0.0 and best[2] <= base[0])
    if best[0] > 0.0 and not clear:
        return 0.0, base[1], base[0]
    return best


# ---------------------------------------------------------------------------------------------------------- batches
def window_batches(
    windows: Windows,
    batch_size: int,
    *,
    relative: bool = False,
    target: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> list[Batch]:
    """Training/validation batches of ``windows``: inputs ``(B, C, F)``, targets ``(B, K)``, full lengths.

    With ``relative`` every window is taken relative to its last step and its targets minus ``y_t``. The order is
    a function of ``seed`` when ``shuffle``.
    """
    m = len(windows)
    if m == 0:
        return []
    x = torch.as_tensor(windows.inputs, dtype=dtype)  # (M, C, F)
    y = torch.as_tensor(windows.targets, dtype=dtype)  # (M, K)
    if relative:
        last = x[:, -1:, :]  # (M, 1, F)
        x = x - last
        y = y - last[:, :, target]  # (M, K)
    order = torch.randperm(m, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(m)
    lengths = torch.full((m,), x.shape[1], dtype=torch.long)
    return [Batch(x[idx], lengths[idx], y[idx]) for idx in order.split(batch_size)]  # each (B, C, F) → (B, K)


# ---------------------------------------------------------------------------------------------------------- bundle
@dataclass
class Forecaster:
    """A trained forecast model with what it needs to work in original units.

    Attributes:
        model: the :class:`~rnnkit.tasks.regressor.SequenceRegressor`.
        scaler: the per-channel standardization fitted on the training part.
        target: index of the predicted column.
        context: ``C``, the steps the model reads.
        horizon: ``K``, the steps it was trained to predict (evaluated over).
        strategy: ``"direct"`` or ``"recursive"``.
        relative: windows are taken relative to their last step.
        blend: weight ``w`` of the model in ``w·model + (1 − w)·baseline`` (1: the model alone, as runs saved
            before the blend existed); chosen on the validation windows by :func:`choose_blend`.
        blend_season: the baseline's season ``m`` (1: the naive forecast, else the seasonal-naive one).
    """

    model: nn.Module
    scaler: Scaler
    target: int
    context: int
    horizon: int
    strategy: str = "direct"
    relative: bool = False
    blend: float = 1.0
    blend_season: int = 1

    def predict_standardized(self, inputs: np.ndarray, horizon: int | None = None, batch_size: int = 512) -> np.ndarray:
        """Forecasts ``(M, K)`` (standardized) for standardized windows ``(M, C, F)``."""
        k = self.horizon if horizon is None else horizon
        out = [
            forecast(
                self.model,
                torch.as_tensor(inputs[i : i + batch_size]),
                k,
                self.strategy,
                context=self.context,
                relative=self.relative,
                target=self.target,
            )
            .double()
            .cpu()
            for i in range(0, len(inputs), batch_size)
        ]
        return torch.cat(out).numpy() if out else np.zeros((0, k))  # (M, K)

    def predict_at(self, values: np.ndarray, origins: np.ndarray, horizon: int | None = None) -> np.ndarray:
        """Forecasts ``(M, K)`` in original units from the ``C`` raw steps ending at each origin of ``values``."""
        z = self.scaler.transform(values)  # (N, F)
        if z.size and not float(np.abs(z).max()) <= FLOAT32_MAX:  # NaN too: the model computes in float32
            raw = float(np.abs(np.asarray(values, dtype=np.float64)).max())
            raise NonFiniteValues(
                f"the series: values up to {raw:.3g} are {float(np.abs(z).max()):.3g} after the run's scaling, "
                f"beyond the float32 range (|x| <= {FLOAT32_MAX:.3g}) the model computes in; rescale the values"
            )
        o = np.asarray(origins, dtype=np.int64)
        if o.size and o.min() < self.context - 1:
            raise ValueError(f"every origin needs {self.context} steps of context; the first is at {o.min()}")
        if o.size and o.max() >= len(z):
            raise ValueError(f"origins must be steps of the {len(z)} given values, got {o.max()}")
        inputs = np.stack([z[t - self.context + 1 : t + 1] for t in o]) if o.size else z[:0, None]  # (M, C, F)
        pred = self.scaler.inverse(self.predict_standardized(inputs, horizon), self.target)  # (M, K)
        if self.blend >= 1.0:
            return pred
        k = pred.shape[1]
        base = seasonal_naive_forecast(np.asarray(values, dtype=np.float64)[:, self.target], o, k, self.blend_season)
        return self.blend * pred + (1.0 - self.blend) * base  # (M, K)

    def next_values(self, values: np.ndarray, horizon: int | None = None) -> np.ndarray:
        """The ``K`` values after the end of ``values`` ``(N ≥ C, F)``, in original units: ``(K,)``."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] < self.context:
            raise ValueError(f"give at least {self.context} steps (the model's context) to forecast from")
        return self.predict_at(values, np.array([len(values) - 1]), horizon)[0]
