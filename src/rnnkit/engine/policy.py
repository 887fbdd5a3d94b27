"""``engine="auto"``: which path runs a built-in cell, per (kind, device, dtype, shape).

The policy, measured with ``rnnkit bench`` (its ``compiled``/``fused``/``own`` columns; see docs/engine.md for the
figures). Every path is exact: each agrees with torch.nn (or the lecture's equations) in float64, forward and
backward, so the choice is only about speed.

=============================================  ===============  ==================================================
situation                                      auto runs        why
=============================================  ===============  ==================================================
under ``torch.compile`` / ``torch.export``     fused, else      dynamo traces torch's kernel and the autograd loop;
                                               the loop (rnn:   neither the C++ extension nor the own kernels'
                                               own)             ``out=`` views
LSTM with ``proj_size``                        fused            only torch's kernel has the projection
CPU, float32/float64, compiled kernels load    compiled         rnn, lstm, gru, gru-before, every shape and batch:
                                                                per-step overhead in C++ instead of Python/ATen;
                                                                lstm 0.75–1.0× torch.nn.LSTM (oneDNN), gru,
                                                                gru-before and rnn 0.1–0.3× torch.nn's and
                                                                0.3–0.9× torch.nn.LSTM's time; forward without
                                                                grad at B = 1 0.2–0.8× torch.nn (docs/engine.md)
CPU without compiled kernels                   fused where      oneDNN's LSTM is the fastest Python-driven path;
(``RNNKIT_COMPILED=0``, no compiler, other     exact, else own  own BPTT for gru-before (no torch kernel)
dtypes)
CUDA (any dtype)                               fused where      cuDNN; CUDA tensors never reach the CPU kernels
                                               exact, else own
=============================================  ===============  ==================================================

Higher-order gradients (``create_graph=True``) work on every path ``auto`` picks: the compiled kernel's backward
notices grad mode and differentiates its autograd reference instead (:mod:`rnnkit.engine.compiled`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.engine.compiled import runs_compiled
from rnnkit.engine.fused import FUSED_KINDS

__all__ = ["ENGINES", "auto_engine"]

ENGINES = ("auto", "fused", "compiled", "own", "loop")
"""The engines a layer takes: ``auto`` picks one of the others by :func:`auto_engine`."""


def auto_engine(kind: str | None, x: Tensor, *, proj_size: int = 0) -> str:
    """The path ``engine="auto"`` runs for cell ``kind`` on input ``x`` (``(T, B, I)`` or packed data).

    Returns ``"fused"``, ``"compiled"``, ``"own"`` or ``"loop"`` (the table in this module's docstring). ``kind``
    None (a cell only the autograd loop can run) gives ``"loop"``.
    """
    if kind is None:
        return "loop"
    exact = kind in FUSED_KINDS
    if torch.compiler.is_compiling():
        if exact:
            return "fused"
        return "own" if kind in ("rnn_tanh", "rnn_relu") else "loop"
    if proj_size:
        return "fused"
    if runs_compiled(kind, x):
        return "compiled"
    return "fused" if exact else "own"
