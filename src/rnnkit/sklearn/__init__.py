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

The package: :mod:`~rnnkit.sklearn.params` (parameter checks, seeding), :mod:`~rnnkit.sklearn.inputs` (reading
and encoding ``X``), :mod:`~rnnkit.sklearn.estimator` (what the classifier and regressor share), one module per
estimator (:mod:`~rnnkit.sklearn.classifier`, :mod:`~rnnkit.sklearn.regressor`, :mod:`~rnnkit.sklearn.forecaster`).
"""

from __future__ import annotations

try:  # checked once here, before the estimators' modules import scikit-learn
    from sklearn.utils.validation import validate_data  # noqa: F401  (new in scikit-learn 1.6)
except ImportError as err:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        'rnnkit.sklearn needs scikit-learn >= 1.6; install it with: pip install "rnnkit[sklearn]"'
    ) from err

from rnnkit.sklearn.classifier import RNNClassifier
from rnnkit.sklearn.forecaster import RNNForecaster
from rnnkit.sklearn.regressor import RNNRegressor

__all__ = ["RNNClassifier", "RNNForecaster", "RNNRegressor"]
