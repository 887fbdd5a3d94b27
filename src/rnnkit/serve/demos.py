"""The lecture's gradient demos that ``rnnkit serve`` answers at ``POST /demo/tiny`` and ``POST /demo/flow`` (the page
``/demo``): :mod:`rnnkit.diagnostics`' numbers, with non-finite values as JSON null."""

import math
from typing import Any

__all__ = ["flow_curves", "tiny_table"]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def tiny_table(wh: float, lengths: list[int], dtype: str) -> dict[str, Any]:
    """:func:`rnnkit.diagnostics.show_grads`: its lines, and its gradients per length at full precision."""
    import torch

    from rnnkit.diagnostics import _tiny_run, show_grads

    wh = int(wh) if float(wh).is_integer() else wh  # printed as given: 1 stays 1
    torch_dtype = getattr(torch, dtype)
    lines = show_grads(wh, lengths, torch_dtype)
    rows = []
    for length in lengths:
        rnn, _ = _tiny_run(wh, length, torch_dtype)  # the run show_grads prints one line of
        grads = {name: _finite(float(p.grad)) for name, p in rnn.named_parameters()}
        rows.append({"length": length, "grads": grads})
    return {"lines": lines, "rows": rows}


def flow_curves(models: list[str], length: int, hidden: int, seed: int) -> dict[str, Any]:
    """:func:`rnnkit.diagnostics.compare_flow` with non-finite norms as null."""
    from rnnkit.diagnostics import compare_flow

    norms = compare_flow(models, length, hidden, seed=seed)
    return {"norms": {k: [_finite(v) for v in vs] for k, vs in norms.items()}}
