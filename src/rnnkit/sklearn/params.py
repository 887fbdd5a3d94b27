"""Parameter checks of the estimators (scikit-learn's rule: ``__init__`` stores, ``fit`` validates) and the
seeding that keeps a fit from touching the caller's random state.
"""

from __future__ import annotations

import math
import numbers
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from sklearn.utils import check_random_state

from rnnkit.tasks.registry import MODELS


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
