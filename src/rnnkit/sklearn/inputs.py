"""Reading ``X`` (the input conventions of :mod:`rnnkit.sklearn`) and encoding it as one padded tensor.

Shape symbols: N samples, T time, C channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_array, validate_data
from torch import Tensor

from rnnkit.data.batching import Batch


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
