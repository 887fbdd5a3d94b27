"""The ``forecast`` task app: ``rnnkit train --task forecast``, ``evaluate`` and ``predict`` for real-valued series.

``rnnkit train --task forecast --data embedded:sunspots|embedded:msft|embedded:ppg|FILE.csv [--date-column D]
[--value-columns a,b] [--target-column C] [--context N] [--horizon K] [--strategy direct|recursive] [--season m]``
reads the series (:mod:`rnnkit.data.series`), splits it in time order (70 % train, 15 % validation, 15 % test),
standardizes every channel with the training part's statistics, cuts windows of ``N`` past steps → the next ``K``
values of the target column and trains a forecast model (:mod:`rnnkit.tasks.forecaster`). The run folder holds::

    config.json        model and train configs, columns, target, context, horizon, strategy, season, the scaler,
                       the split boundaries and the MASE scale
    split.json         the chronological boundaries (indices and time stamps)
    model.safetensors  the best weights (by validation loss)
    metrics.json       on the test part, in original units, over all K steps of every test window:
                       test_{mae,rmse,smape,mase} of the model, naive_*, seasonal_naive_* (season m, recorded) and
                       window_* (the lecture's fixed-window MLP, trained on the same windows in the same command)
    curve.csv, curves.png, forecast.png (the test part: truth, the model's K-step forecasts, the naive forecast)

``rnnkit evaluate RUN [--data F]`` scores the run on its own test part (or on every window of ``F``);
``rnnkit predict RUN [VALUES...] [--data F] [--horizon K]`` forecasts the ``K`` values after the end of the series
(the run's own data unless values or ``--data`` are given) and prints ``step k: value`` lin

The package, one module per part: :mod:`~rnnkit.runs.forecast.setup` (defaults, series, split, scaler, windows),
:mod:`~rnnkit.runs.forecast.training` (batches; the blend and the window baseline after the fit),
:mod:`~rnnkit.runs.forecast.scores` (the model against the naive baselines), :mod:`~rnnkit.runs.forecast.use`
(``evaluate``, ``predict``, :func:`forecaster_of`), :mod:`~rnnkit.runs.forecast.plot` and
:mod:`~rnnkit.runs.forecast.kind` (:class:`ForecastKind`, registered when the package is imported).
"""

from rnnkit.runs.forecast.kind import ForecastKind
from rnnkit.runs.forecast.plot import plot_forecast
from rnnkit.runs.forecast.scores import summary
from rnnkit.runs.forecast.setup import APP, DEFAULT_DATA, DEFAULTS
from rnnkit.runs.forecast.setup import TEST_FRACTION as TEST_FRACTION
from rnnkit.runs.forecast.setup import VAL_FRACTION as VAL_FRACTION
from rnnkit.runs.forecast.setup import WINDOW_HIDDEN as WINDOW_HIDDEN
from rnnkit.runs.forecast.use import evaluate, predict
from rnnkit.runs.forecast.use import forecaster_of as forecaster_of

__all__ = ["APP", "DEFAULTS", "DEFAULT_DATA", "ForecastKind", "evaluate", "plot_forecast", "predict", "summary"]
