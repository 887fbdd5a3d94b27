"""Benchmarks: rnnkit's layers against torch.nn and a tutorial-style autograd loop.

For every shape and cell, one forward+backward pass (loss = output.sum() + sum of the final states, the input
requiring grad) is timed for three implementations that hold the same weights:

- ``rnnkit``: ``rnnkit.RNN`` / ``LSTM`` / ``GRU`` (``GRU(..., reset="before")`` for ``gru-before``), after
  ``load_state_dict`` of the torch.nn layer's ``state_dict()``;
- ``torch``: the torch.nn layer (``torch.nn.GRU`` for ``gru-before`` too: the nearest fused peer, reset-after);
- ``loop``: a Python loop over time as tutorials write it, autograd doing the backward: ``torch.nn.RNNCell`` /
  ``LSTMCell`` / ``GRUCell`` per step, and for ``gru-before`` the reset-before GRU (Cho et al. 2014) in plain
  torch ops, ``n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)``.

After a warm-up the three run interleaved, one call each per round, so that drift of the machine hits them
alike; the order within a round cycles through all six permutations (A, B, C, then A, C, B, ...), because a call
runs measurably faster right after a call of the same kind (warm caches): with a fixed order, two identical
layers measured 0.89-1.13x each other, with the cycle within 2%. The report gives medians,
``ratio = rnnkit_ms / torch_ms`` and the GEMM-bound floor: the FLOPs of the forward+backward matrix products
divided by a torch.mm rate measured in the same run on a comparable size.

Symbols: T time steps, B batch, I input features, H hidden units, G gates (1 rnn, 4 lstm, 3 gru).
Absolute times are only comparable within one run; compare ratios.
"""

from __future__ import annotations

import gc
import itertools
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from rnnkit.cells import CELLS as _SPECS
from rnnkit.cells import CellSpec

__all__ = [
    "CELLS",
    "QUICK_SHAPES",
    "SHAPES",
    "busy_cpus",
    "format_table",
    "gemm_flops",
    "measure",
    "mm_gflops",
    "run",
]

_BY_MODEL: dict[str, CellSpec] = {spec.model: spec for spec in _SPECS.values() if spec.model}
"""The benchmarked cells: the ``--model`` names of :data:`rnnkit.cells.CELLS` (``rnn`` is ``rnn_tanh``)."""

CELLS: tuple[str, ...] = tuple(_BY_MODEL)
"""Cells the benchmark knows, in report order."""

SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (50, 16, 32, 64),
    (100, 32, 64, 256),
    (200, 64, 128, 512),
    (100, 1, 64, 128),
)
"""The full grid, as (T, B, I, H)."""

QUICK_SHAPES: tuple[tuple[int, int, int, int], ...] = SHAPES[:1]
"""``--quick``: the first shape only (all cells)."""

GATES = {name: spec.num_gates for name, spec in _BY_MODEL.items()}

KEYS = ("cell", "T", "B", "I", "H", "rnnkit_ms", "torch_ms", "loop_ms", "ratio")
"""Keys every result has (extra keys follow them)."""


def _check_cell(cell: str) -> None:
    if cell not in GATES:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELLS)}")


def _check_shape(T: int, B: int, I: int, H: int) -> None:
    for name, value in (("T", T), ("B", B), ("I", I), ("H", H)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"shape {name} must be a positive integer, got {value!r}")


def gemm_flops(cell: str, T: int, B: int, I: int, H: int) -> int:
    """FLOPs of the matrix products in one forward+backward pass of a one-layer, one-direction layer.

    Forward: ``x W_ihᵀ`` (2·T·B·I·G·H) and ``h W_hhᵀ`` (2·T·B·H·G·H). Backward doubles each: the gradient
    of the input (or of h) and of the weight. Total 6·T·B·G·H·(I + H). Elementwise work is not counted, so the
    floor is a lower bound no implementation reaches.
    """
    _check_cell(cell)
    G = GATES[cell]
    return 6 * T * B * G * H * (I + H)


def _min_time(fn: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def mm_gflops(M: int, K: int, N: int, *, min_seconds: float = 0.2) -> float:
    """Measured float32 ``torch.mm`` rate in GFLOP/s for an (M, K) @ (K, N) product.

    The best of the repeats, not their median: the floor built on it is a lower bound, and on a shared machine the
    other repeats measure the neighbours as much as the product.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(M, K, generator=gen)
    b = torch.randn(K, N, generator=gen)
    out = torch.empty(M, N)
    torch.mm(a, b, out=out)  # warm-up
    t0 = time.perf_counter()
    torch.mm(a, b, out=out)
    once = max(time.perf_counter() - t0, 1e-7)
    repeats = max(5, min(200, math.ceil(min_seconds / once)))
    seconds = _min_time(lambda: torch.mm(a, b, out=out), repeats)
    return 2 * M * K * N / seconds / 1e9


# --------------------------------------------------------------------------------------------------------------
# The three implementations. Each builder returns a runner: one forward+backward, returning the detached output.


def _loss(output: torch.Tensor, state: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    states = state if isinstance(state, tuple) else (state,)
    return output.sum() + sum(s.sum() for s in states)


def _torch_peer(cell: str) -> CellSpec:
    """The entry whose torch.nn layer is the peer: the cell's own, else its family's (gru-before: torch.nn.GRU)."""
    spec = _BY_MODEL[cell]
    if spec.torch_layer is not None:
        return spec
    return next(s for s in _SPECS.values() if s.family == spec.family and s.torch_layer is not None)


def _torch_layer(cell: str, I: int, H: int) -> nn.Module:
    peer = _torch_peer(cell)
    return peer.torch_layer(I, H, **dict(peer.torch_options))


def _rnnkit_layer(cell: str, I: int, H: int) -> nn.Module:
    from rnnkit.layers import layer_for

    return layer_for(_BY_MODEL[cell].kind, I, H)


def _layer_runner(layer: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    params = list(layer.parameters())

    def step() -> torch.Tensor:
        output, state = layer(x)  # output (T, B, H)
        _loss(output, state).backward()
        return output.detach()

    return _with_fresh_grads(step, [*params, x])


def _with_fresh_grads(fn: Callable[[], torch.Tensor], tensors: list[torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Drop the grads of ``tensors`` before each call, so every call computes (not accumulates) them."""

    def call() -> torch.Tensor:
        for t in tensors:
            t.grad = None
        return fn()

    call.tensors = tensors  # type: ignore[attr-defined]
    return call


def _loop_runner(cell: str, ref: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A tutorial-style loop over time with the weights of ``ref`` (a one-layer torch.nn layer)."""
    I, H = ref.input_size, ref.hidden_size
    B = x.shape[1]
    weights = {name: p.detach().clone().requires_grad_() for name, p in ref.named_parameters()}
    w_ih, w_hh = weights["weight_ih_l0"], weights["weight_hh_l0"]  # (G·H, I), (G·H, H)
    b_ih, b_hh = weights["bias_ih_l0"], weights["bias_hh_l0"]  # (G·H,)

    if cell == "gru-before":

        def step() -> torch.Tensor:
            h = x.new_zeros(B, H)  # (B, H)
            outputs = []
            for x_t in x:  # x_t (B, I)
                gi = x_t @ w_ih.t() + b_ih  # (B, 3H): r, z, n parts of W_i x + b_i
                i_r, i_z, i_n = gi.chunk(3, 1)  # each (B, H)
                r = torch.sigmoid(i_r + h @ w_hh[:H].t() + b_hh[:H])  # (B, H)
                z = torch.sigmoid(i_z + h @ w_hh[H : 2 * H].t() + b_hh[H : 2 * H])  # (B, H)
                n = torch.tanh(i_n + (r * h) @ w_hh[2 * H :].t() + b_hh[2 * H :])  # reset before W_hn
                h = (1 - z) * n + z * h  # (B, H)
                outputs.append(h)
            output = torch.stack(outputs)  # (T, B, H)
            _loss(output, h.unsqueeze(0)).backward()
            return output.detach()

        return _with_fresh_grads(step, [*weights.values(), x])

    spec = _BY_MODEL[cell]
    if spec.torch_cell is not None:
        rnn_cell = spec.torch_cell(I, H, **dict(spec.torch_options))
    else:  # a kind torch.nn lacks: the loop over rnnkit's cell (its step function from the table)
        rnn_cell = spec.cell(I, H, **dict(spec.options))
    with torch.no_grad():
        rnn_cell.weight_ih.copy_(w_ih)
        rnn_cell.weight_hh.copy_(w_hh)
        rnn_cell.bias_ih.copy_(b_ih)
        rnn_cell.bias_hh.copy_(b_hh)

    def step() -> torch.Tensor:
        h = x.new_zeros(B, H)  # (B, H)
        c = x.new_zeros(B, H)  # (B, H), LSTM only
        outputs = []
        for x_t in x:  # x_t (B, I)
            if spec.state_arity == 2:
                h, c = rnn_cell(x_t, (h, c))
            else:
                h = rnn_cell(x_t, h)
            outputs.append(h)
        output = torch.stack(outputs)  # (T, B, H)
        state = (h.unsqueeze(0), c.unsqueeze(0)) if spec.state_arity == 2 else h.unsqueeze(0)  # (1, B, H)
        _loss(output, state).backward()
        return output.detach()

    return _with_fresh_grads(step, [*rnn_cell.parameters(), x])


def _build(cell: str, T: int, B: int, I: int, H: int, seed: int) -> dict[str, Callable[[], torch.Tensor]]:
    torch.manual_seed(seed)
    ref = _torch_layer(cell, I, H)
    mine = _rnnkit_layer(cell, I, H)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)  # (T, B, I)
    return {
        "rnnkit": _layer_runner(mine, x.clone().requires_grad_()),
        "torch": _layer_runner(ref, x.clone().requires_grad_()),
        "loop": _loop_runner(cell, ref, x.clone().requires_grad_()),
    }


def measure(
    cell: str,
    T: int,
    B: int,
    I: int,
    H: int,
    *,
    repeats: int | None = None,
    budget_s: float = 8.0,
    seed: int = 0,
    mm_rate_gflops: float | None = None,
) -> dict[str, object]:
    """Time one forward+backward pass of rnnkit, torch.nn and a tutorial loop on one cell and shape.

    Args:
        cell: one of ``CELLS``.
        T, B, I, H: sequence length, batch size, input features, hidden units.
        repeats: interleaved timed repeats of each implementation; ``None`` picks them from ``budget_s`` and
            the warm-up time (at least 5, at most 60, a multiple of 6 from 6 on; fewer, down to 3, where the
            timed rounds run past twice ``budget_s`` because the machine slowed down).
        budget_s: seconds the timed repeats of all three implementations may take together when ``repeats``
            is None.
        seed: seed for the weights and the input.
        mm_rate_gflops: torch.mm rate for the floor; ``None`` measures it on an (T·B, max(I, H)) @
            (max(I, H), G·H) product, the shape of the hoisted input projection.

    Returns:
        A dict with ``cell, T, B, I, H, rnnkit_ms, torch_ms, loop_ms`` (medians), ``ratio`` (rnnkit_ms /
        torch_ms); then ``ratio_paired`` (median of the per-round ratios), ``ratio_min`` (fastest over fastest;
        the least disturbed by other processes on a shared machine), ``loop_ratio`` (loop_ms / rnnkit_ms),
        ``gflop``, ``mm_gflops``, ``floor_ms``, ``repeats``, ``max_abs_diff`` (the largest difference of
        rnnkit's output from the reference: torch.nn, or the loop for ``gru-before``) and
        ``rnnkit_min_ms, torch_min_ms, loop_min_ms``.
    """
    _check_cell(cell)
    _check_shape(T, B, I, H)
    if repeats is not None and (isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1):
        raise ValueError(f"repeats must be a positive integer or None, got {repeats!r}")
    if not budget_s > 0:
        raise ValueError(f"budget_s must be positive, got {budget_s!r}")
    G = GATES[cell]
    if mm_rate_gflops is None:
        mm_rate_gflops = mm_gflops(T * B, max(I, H), G * H)

    runners = _build(cell, T, B, I, H, seed)
    names = list(runners)
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection inside one timed call would land on one implementation only
    try:
        # Warm-up, in rounds of one call each, until every implementation's latest call is within 15% of its
        # fastest earlier one (at least 2 rounds and 0.2 s, at most 8 rounds or ``budget_s``). Large shapes need
        # it: their first calls touch fresh memory and ran 3-14x slower than later ones on these machines.
        warm: dict[str, list[float]] = {name: [] for name in names}
        outputs = {}
        for rounds in range(1, 9):
            for name in names:
                t0 = time.perf_counter()
                outputs[name] = runners[name]()
                warm[name].append(time.perf_counter() - t0)
            settled = rounds >= 2 and all(ts[-1] <= 1.15 * min(ts[:-1]) for ts in warm.values())
            spent = sum(map(sum, warm.values()))
            if (settled and spent >= 0.2) or (rounds >= 2 and spent > budget_s):
                break
        reference = outputs["torch" if _BY_MODEL[cell].torch_layer is not None else "loop"]
        max_abs_diff = (outputs["rnnkit"] - reference).abs().max().item()
        auto = repeats is None
        if repeats is None:
            per_round = max(sum(ts[-1] for ts in warm.values()), 1e-6)
            repeats = int(max(5, min(60, budget_s // per_round)))
            if repeats >= 6:
                repeats -= repeats % 6  # every order equally often

        orders = list(itertools.permutations(names))
        times: dict[str, list[float]] = {name: [] for name in names}
        start = time.perf_counter()
        for k in range(repeats):
            if auto and k >= 3 and time.perf_counter() - start > 2 * budget_s:
                break  # the machine slowed down (other processes): keep the whole grid within its time
            for name in orders[k % len(orders)]:  # interleaved; the order cycles through all permutations
                fn = runners[name]
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()

    ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    best_ms = {f"{name}_min_ms": min(ts) * 1e3 for name, ts in times.items()}
    flops = gemm_flops(cell, T, B, I, H)
    floor_ms = flops / (mm_rate_gflops * 1e9) * 1e3
    return {
        "cell": cell,
        "T": T,
        "B": B,
        "I": I,
        "H": H,
        "rnnkit_ms": ms["rnnkit"],
        "torch_ms": ms["torch"],
        "loop_ms": ms["loop"],
        "ratio": ms["rnnkit"] / ms["torch"],
        "ratio_paired": statistics.median(a / b for a, b in zip(times["rnnkit"], times["torch"], strict=True)),
        "ratio_min": min(times["rnnkit"]) / min(times["torch"]),
        "loop_ratio": ms["loop"] / ms["rnnkit"],
        "gflop": flops / 1e9,
        "mm_gflops": mm_rate_gflops,
        "floor_ms": floor_ms,
        "repeats": len(times["rnnkit"]),
        "max_abs_diff": max_abs_diff,
        **best_ms,
    }


def run(
    shapes: Iterable[Sequence[int]] = SHAPES,
    cells: Iterable[str] = CELLS,
    *,
    repeats: int | None = None,
    budget_s: float = 8.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, object]]:
    """``measure`` over a grid of shapes (T, B, I, H) and cells; one torch.mm rate per shape and gate count."""
    shapes = [tuple(s) for s in shapes]
    cells = list(cells)
    for cell in cells:
        _check_cell(cell)
    for shape in shapes:
        if len(shape) != 4:
            raise ValueError(f"a shape is (T, B, I, H), got {shape!r}")
        _check_shape(*shape)
    results = []
    rates: dict[tuple[int, int, int], float] = {}
    n = len(shapes) * len(cells)
    for shape in shapes:
        T, B, I, H = shape
        for cell in cells:
            mm_shape = (T * B, max(I, H), GATES[cell] * H)
            if mm_shape not in rates:
                rates[mm_shape] = mm_gflops(*mm_shape)
            t0 = time.perf_counter()
            result = measure(
                cell, T, B, I, H, repeats=repeats, budget_s=budget_s, seed=seed, mm_rate_gflops=rates[mm_shape]
            )
            results.append(result)
            if progress is not None:
                progress(
                    f"[{len(results)}/{n}] {cell} T={T} B={B} I={I} H={H}: "
                    f"rnnkit {result['rnnkit_ms']:.2f} ms, torch {result['torch_ms']:.2f} ms, "
                    f"loop {result['loop_ms']:.2f} ms ({result['repeats']} repeats, "
                    f"{time.perf_counter() - t0:.1f} s)"
                )
    return results


def busy_cpus(seconds: float = 0.5) -> float | None:
    """How many CPUs other processes keep busy, measured over ``seconds`` while this one sleeps (Linux only).

    Timings taken while this is well above 0 are slow and noisy: torch's threads wait for each other whenever
    one of them loses its core. Returns None where ``/proc/stat`` cannot be read.
    """

    def read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # user nice system idle iowait irq softirq steal

    first = read()
    time.sleep(seconds)
    second = read()
    if first is None or second is None or second[0] == first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return (total - idle) / total * (os.cpu_count() or 1)


def environment() -> str:
    """One line naming what the numbers were measured on."""
    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.machine()}, Python {platform.python_version()}, float32"
    )


def format_table(results: Sequence[dict[str, object]]) -> str:
    """A readable table of ``run``'s results, with a header that says what the columns mean."""
    header = (
        f"{'cell':<11}{'T':>5}{'B':>4}{'I':>5}{'H':>5}"
        f"{'rnnkit ms':>11}{'torch ms':>10}{'loop ms':>10}{'floor ms':>10}"
        f"{'rnnkit/torch':>14}{'loop/rnnkit':>13}{'reps':>6}{'max|diff|':>11}"
    )
    lines = [
        f"rnnkit bench: forward+backward, median of interleaved repeats ({environment()})",
        "rnnkit/torch: rnnkit's layer over torch.nn's with the same weights (gru-before: over torch.nn.GRU)",
        "loop: tutorial-style autograd loop over torch.nn.*Cell (gru-before: its equations in torch ops)",
        "floor: FLOPs of the matrix products / best torch.mm rate measured in this run on the shape's largest product",
        "max|diff|: largest output difference of rnnkit from torch.nn (gru-before: from the loop)",
        "",
        header,
        "-" * len(header),
    ]
    for r in results:
        lines.append(
            f"{r['cell']:<11}{r['T']:>5}{r['B']:>4}{r['I']:>5}{r['H']:>5}"
            f"{r['rnnkit_ms']:>11.2f}{r['torch_ms']:>10.2f}{r['loop_ms']:>10.2f}{r['floor_ms']:>10.2f}"
            f"{r['ratio']:>14.2f}{r['loop_ratio']:>13.2f}{r['repeats']:>6}{r['max_abs_diff']:>11.1e}"
        )
    return "\n".join(lines)
