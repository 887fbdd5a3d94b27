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
layers measured 0.89-1.13x each other, with the cycle within 2%. The forward-only and sampling rows at B = 1 are
timed instead in blocks of back-to-back calls of one implementation, the blocks alternating over rounds
(:func:`rnnkit.bench_timing.time_blocks`, ``torch.utils.benchmark.Timer`` semantics): that is how serving and
sampling call a model, and interleaving there measured a cold-cache call (the other layer's call in between
evicts the weights from the core's L2) that such a loop never runs. The report gives medians,
``ratio = rnnkit_ms / torch_ms`` and the GEMM-bound floor: the FLOPs of the forward+backward matrix products
divided by a torch.mm rate measured in the same run on a comparable size.

Peers in the same rounds (extra keys; today's keys stay): ``lstm_ms``, torch.nn.LSTM at the same shape (the goal
of the compiled engine: a GRU or RNN step is no dearer than an LSTM step, ``ratio_lstm = rnnkit_ms / lstm_ms``),
and ``jax_ms`` when ``jax`` is installed (the optional ``bench`` extra): ``jax.jit(jax.value_and_grad(loss))`` of a
``lax.scan`` of the same cell, input projection hoisted, same shapes, on as many threads as torch (``None`` and one
line on stderr without jax). ``gemm_pct``/``torch_gemm_pct``: the floor over the time, i.e. the share of the
machine's ``torch.mm`` rate (``mm_gflops``) a layer reaches.

Beyond the forward+backward grid (``mode: "train"``), :func:`run_extras` measures the rows that sampling and
serving need: forward only without grad at B = 1 (``"infer"``), step-by-step sampling of a generator
(embedding → layer → linear → multinomial, ``"sample"``; the weights do not change the speed, so a fresh one
stands in for a trained one) and the grid's small shapes again on two threads (``"threads"``). Each producer is one
entry of :data:`EXTRA_ROWS`; a new kind of row is one more entry there.

Symbols: T time steps, B batch, I input features, H hidden units, G gates (1 rnn, 4 lstm, 3 gru).
Absolute times are only comparable within one run; compare ratios. This module is over 600 lines on purpose: every
benchmark row producer sits in this one file, so that contributors add rows in one place.
"""

from __future__ import annotations

import importlib.util
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from rnnkit.bench_timing import time_blocks
from rnnkit.bench_timing import time_interleaved as _time_interleaved
from rnnkit.cells import CELLS as _SPECS
from rnnkit.cells import CellSpec
from rnnkit.cliutil import counted

__all__ = [
    "CELLS",
    "EXTRA_ROWS",
    "QUICK_SHAPES",
    "SHAPES",
    "busy_cpus",
    "format_table",
    "gemm_flops",
    "measure",
    "mm_gflops",
    "run",
    "run_extras",
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


def _build(
    cell: str, T: int, B: int, I: int, H: int, seed: int, peers: Sequence[str] = ("loop", "lstm", "jax")
) -> dict[str, Callable[[], torch.Tensor]]:
    torch.manual_seed(seed)
    ref = _torch_layer(cell, I, H)
    mine = _rnnkit_layer(cell, I, H)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)  # (T, B, I)
    runners = {
        "rnnkit": _layer_runner(mine, x.clone().requires_grad_()),
        "torch": _layer_runner(ref, x.clone().requires_grad_()),
    }
    if "loop" in peers:
        runners["loop"] = _loop_runner(cell, ref, x.clone().requires_grad_())
    if "lstm" in peers and cell != "lstm":
        runners["lstm"] = _layer_runner(nn.LSTM(I, H), x.clone().requires_grad_())
    if "jax" in peers:
        jax_run = _jax_runner(cell, ref, x)
        if jax_run is not None:
            runners["jax"] = jax_run
    return runners


# --------------------------------------------------------------------------------------------------------------
# JAX: the same cell as a lax.scan, jit of value_and_grad (optional: the `bench` extra)

_JAX_NOTE: list[str] = []


def jax_available() -> bool:
    """Whether ``jax`` can be imported (the optional ``bench`` extra); says so once on stderr when not."""
    if importlib.util.find_spec("jax") is not None:
        return True
    if not _JAX_NOTE:
        _JAX_NOTE.append("no jax")
        print("rnnkit bench: jax is not installed, so no JAX column (pip install 'rnnkit[bench]')", file=sys.stderr)
    return False


def _import_jax():
    """Import jax for the CPU. On one torch thread, XLA's CPU client (and the thread pool its products run on) is
    started while this process may use one CPU only: its threads keep that affinity, so the JAX column runs on one
    core as torch does. (``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` no longer limits it: jax 0.10's products
    ran on both cores of a 2-core machine with it, 150 GFLOP/s against 83 on one, until session 9 of issue 15.)
    The process's own affinity is restored at once."""
    if "jax" not in sys.modules:
        pin = torch.get_num_threads() == 1 and hasattr(os, "sched_getaffinity")
        saved = os.sched_getaffinity(0) if pin else set()
        try:
            if pin and len(saved) > 1:
                os.sched_setaffinity(0, {min(saved)})
            import jax

            jax.config.update("jax_platforms", "cpu")
            jax.devices()  # the CPU client and its thread pool start here, inheriting the affinity
        finally:
            if pin and len(saved) > 1:
                os.sched_setaffinity(0, saved)
    import jax

    return jax


def _jax_runner(cell: str, ref: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor] | None:
    """``jit(value_and_grad(loss))`` over a ``lax.scan`` of the cell with ``ref``'s weights; None without jax."""
    if not jax_available():
        return None
    jax = _import_jax()
    jnp = jax.numpy
    H = ref.hidden_size
    params = {name.removesuffix("_l0"): jnp.asarray(p.detach().numpy()) for name, p in ref.named_parameters()}
    xs = jnp.asarray(x.numpy())  # (T, B, I)
    kind = _BY_MODEL[cell].kind

    def step(p, carry, xp_t):  # xp_t (B, G·H): the hoisted input projection, biases folded as in rnnkit
        if kind == "lstm":
            h, c = carry
            i, f, g, o = jnp.split(xp_t + h @ p["weight_hh"].T, 4, axis=1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h
        h = carry
        if kind in ("rnn_tanh", "rnn_relu"):
            a = xp_t + h @ p["weight_hh"].T
            h = jax.nn.relu(a) if kind == "rnn_relu" else jnp.tanh(a)
            return h, h
        w_hh, b_hn = p["weight_hh"], p["bias_hh"][2 * H :]
        if kind == "gru":  # reset after the product (torch.nn)
            gh = h @ w_hh.T
            r = jax.nn.sigmoid(xp_t[:, :H] + gh[:, :H])
            z = jax.nn.sigmoid(xp_t[:, H : 2 * H] + gh[:, H : 2 * H])
            n = jnp.tanh(xp_t[:, 2 * H :] + r * (gh[:, 2 * H :] + b_hn))
        else:  # gru-before: the lecture's, reset before the product
            rz = jax.nn.sigmoid(xp_t[:, : 2 * H] + h @ w_hh[: 2 * H].T)
            r, z = rz[:, :H], rz[:, H:]
            n = jnp.tanh(xp_t[:, 2 * H :] + b_hn + (r * h) @ w_hh[2 * H :].T)
        h = n + z * (h - n)
        return h, h

    def loss(p, xs):
        b_hh = p["bias_hh"]
        if kind in ("gru", "gru_before"):
            b_hh = b_hh.at[2 * H :].set(0.0)  # b_hn stays inside the step
        xp = xs @ p["weight_ih"].T + p["bias_ih"] + b_hh  # (T, B, G·H), one product over all steps
        B = xs.shape[1]
        h0 = jnp.zeros((B, H), xs.dtype)
        carry0 = (h0, h0) if kind == "lstm" else h0
        final, hs = jax.lax.scan(lambda c, a: step(p, c, a), carry0, xp)  # hs (T, B, H)
        finals = final if isinstance(final, tuple) else (final,)
        return hs.sum() + sum(f.sum() for f in finals)

    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    def call() -> torch.Tensor:
        _value, grads = fn(params, xs)
        jax.block_until_ready(grads)
        return torch.zeros(())

    return call


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
    peers: Sequence[str] = ("loop", "lstm", "jax"),
) -> dict[str, object]:
    """Time one forward+backward pass of rnnkit, torch.nn and its peers on one cell and shape.

    Args:
        cell: one of ``CELLS``.
        T, B, I, H: sequence length, batch size, input features, hidden units.
        repeats: interleaved timed repeats of each implementation; ``None`` picks them from ``budget_s`` and
            the warm-up time (at least 5, at most 60, a multiple of 6 from 6 on; fewer, down to 3, where the
            timed rounds run past twice ``budget_s`` because the machine slowed down).
        budget_s: seconds the timed repeats of all implementations may take together when ``repeats`` is None.
        seed: seed for the weights and the input.
        mm_rate_gflops: torch.mm rate for the floor; ``None`` measures it on an (T·B, max(I, H)) @
            (max(I, H), G·H) product, the shape of the hoisted input projection.
        peers: which peers run beside rnnkit and torch.nn: ``"loop"`` (the tutorial loop), ``"lstm"``
            (torch.nn.LSTM at the same shape), ``"jax"`` (when installed).

    Returns:
        A dict with ``cell, T, B, I, H, rnnkit_ms, torch_ms, loop_ms`` (medians; ``loop_ms`` None without the
        loop peer), ``ratio`` (rnnkit_ms / torch_ms); then ``ratio_paired`` (median of the per-round ratios),
        ``ratio_min`` (fastest over fastest; the least disturbed by other processes on a shared machine),
        ``loop_ratio`` (loop_ms / rnnkit_ms), ``lstm_ms`` and ``ratio_lstm`` (rnnkit_ms / lstm_ms),
        ``jax_ms`` and ``jax_ratio`` (rnnkit_ms / jax_ms; None without jax), ``gflop``, ``mm_gflops``,
        ``floor_ms``, ``gemm_pct`` and ``torch_gemm_pct`` (100 · floor / time), ``repeats``, ``threads``,
        ``mode`` (``"train"``), ``max_abs_diff`` (the largest difference of rnnkit's output from the reference:
        torch.nn, or the loop for ``gru-before``) and ``rnnkit_min_ms, torch_min_ms, …``.
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

    runners = _build(cell, T, B, I, H, seed, peers)
    times, outputs = _time_interleaved(runners, repeats, budget_s)
    use_torch = _BY_MODEL[cell].torch_layer is not None or "loop" not in outputs
    reference = outputs["torch" if use_torch else "loop"]
    max_abs_diff = (outputs["rnnkit"] - reference).abs().max().item()

    ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    best_ms = {f"{name}_min_ms": min(ts) * 1e3 for name, ts in times.items()}
    lstm_ms = ms["torch"] if cell == "lstm" else ms.get("lstm")
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
        "loop_ms": ms.get("loop"),
        "ratio": ms["rnnkit"] / ms["torch"],
        "ratio_paired": statistics.median(a / b for a, b in zip(times["rnnkit"], times["torch"], strict=True)),
        "ratio_min": min(times["rnnkit"]) / min(times["torch"]),
        "loop_ratio": ms["loop"] / ms["rnnkit"] if "loop" in ms else None,
        "lstm_ms": lstm_ms,
        "ratio_lstm": None if lstm_ms is None else ms["rnnkit"] / lstm_ms,
        "jax_ms": ms.get("jax"),
        "jax_ratio": ms["rnnkit"] / ms["jax"] if "jax" in ms else None,
        "gflop": flops / 1e9,
        "mm_gflops": mm_rate_gflops,
        "floor_ms": floor_ms,
        "gemm_pct": 100 * floor_ms / ms["rnnkit"],
        "torch_gemm_pct": 100 * floor_ms / ms["torch"],
        "repeats": len(times["rnnkit"]),
        "threads": torch.get_num_threads(),
        "mode": "train",
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
    peers: Sequence[str] = ("loop", "lstm", "jax"),
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
                cell,
                T,
                B,
                I,
                H,
                repeats=repeats,
                budget_s=budget_s,
                seed=seed,
                mm_rate_gflops=rates[mm_shape],
                peers=peers,
            )
            results.append(result)
            if progress is not None:
                progress(f"[{len(results)}/{n}] {_summary(result)} ({time.perf_counter() - t0:.1f} s)")
    return results


def _summary(r: dict[str, object]) -> str:
    peers = "".join(
        f", {name} {r[key]:.2f} ms" for name, key in (("loop", "loop_ms"), ("jax", "jax_ms")) if r.get(key) is not None
    )
    return (
        f"{r['mode']} {r['cell']} T={r['T']} B={r['B']} I={r['I']} H={r['H']} threads={r['threads']}: "
        f"rnnkit {r['rnnkit_ms']:.2f} ms, torch {r['torch_ms']:.2f} ms{peers} ({r['repeats']} repeats)"
    )


# --------------------------------------------------------------------------------------------------------------
# Rows beyond the training grid: inference at B = 1, sampling a generator, two threads

INFER_SHAPE = (100, 1, 64, 128)
"""Forward-only rows: (T, B, I, H), no grad, B = 1 (what serving runs)."""

SAMPLE_SHAPE = (100, 1, 32, 128)
"""Sampling rows: (steps, B, embedding, H) of a generator with a 64-symbol vocabulary."""


def _row(mode: str, cell: str, shape: Sequence[int], times: dict[str, list[float]], **extra) -> dict[str, object]:
    T, B, I, H = shape
    ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    lstm_ms = ms["torch"] if cell == "lstm" else ms.get("lstm")
    return {
        "cell": cell,
        "T": T,
        "B": B,
        "I": I,
        "H": H,
        "rnnkit_ms": ms["rnnkit"],
        "torch_ms": ms["torch"],
        "loop_ms": None,
        "ratio": ms["rnnkit"] / ms["torch"],
        "ratio_min": min(times["rnnkit"]) / min(times["torch"]),
        "lstm_ms": lstm_ms,
        "ratio_lstm": None if lstm_ms is None else ms["rnnkit"] / lstm_ms,
        "jax_ms": None,
        "jax_ratio": None,
        "repeats": len(times["rnnkit"]),
        "threads": torch.get_num_threads(),
        "mode": mode,
        **extra,
    }


def measure_infer(cell: str, shape: Sequence[int] = INFER_SHAPE, *, budget_s: float = 2.0, seed: int = 0) -> dict:
    """Forward only, no grad: rnnkit's layer against torch.nn's (and torch.nn.LSTM) at ``shape``.

    Timed as serving runs it, in blocks of back-to-back calls of one layer (:func:`rnnkit.bench_timing.time_blocks`,
    ``torch.utils.benchmark.Timer`` semantics; the blocks of the layers alternate over rounds, medians), the same
    method for every layer; the row says ``timing: "blocks"``.
    """
    T, B, I, H = shape
    torch.manual_seed(seed)
    ref = _torch_layer(cell, I, H)
    mine = _rnnkit_layer(cell, I, H)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)
    layers = {"rnnkit": mine, "torch": ref}
    if cell != "lstm":
        layers["lstm"] = nn.LSTM(I, H)

    def runner(layer: nn.Module) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            with torch.no_grad():
                return layer(x)[0]

        return call

    times, _ = time_blocks({k: runner(v) for k, v in layers.items()}, budget_s)
    return _row("infer", cell, shape, times, timing="blocks")


def measure_sample(cell: str, shape: Sequence[int] = SAMPLE_SHAPE, *, budget_s: float = 2.0, seed: int = 0) -> dict:
    """Step-by-step sampling of a generator (embedding → layer → linear → multinomial), ``T`` steps at B = 1.

    rnnkit's layer steps with :meth:`rnnkit.layers.Recurrent.step`; torch.nn's is called on one time step at a
    time, as a torch.nn sampler does. ``rnnkit_ms``/``torch_ms`` are per ``T`` steps; ``steps_per_s`` is rnnkit's.
    Timed in blocks of back-to-back samplings, as :func:`measure_infer` (``timing: "blocks"``).
    """
    T, B, E, H = shape
    V = 64
    torch.manual_seed(seed)
    ref = _torch_layer(cell, E, H)
    mine = _rnnkit_layer(cell, E, H)
    mine.load_state_dict(ref.state_dict())
    embed, head = nn.Embedding(V, E), nn.Linear(H, V)

    def rnnkit_sampler() -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        sym = torch.zeros(B, dtype=torch.long)
        state = None
        with torch.no_grad():
            for _ in range(T):
                y, state = mine.step(embed(sym), state)  # (B, H)
                sym = torch.multinomial(torch.softmax(head(y), -1), 1, generator=gen).squeeze(1)
        return sym

    def torch_sampler() -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        sym = torch.zeros(B, dtype=torch.long)
        state = None
        with torch.no_grad():
            for _ in range(T):
                y, state = ref(embed(sym).unsqueeze(0), state)  # (1, B, H)
                sym = torch.multinomial(torch.softmax(head(y[0]), -1), 1, generator=gen).squeeze(1)
        return sym

    times, _ = time_blocks({"rnnkit": rnnkit_sampler, "torch": torch_sampler}, budget_s)
    row = _row("sample", cell, shape, times, timing="blocks")
    row["steps_per_s"] = T / (row["rnnkit_ms"] / 1e3)
    row["torch_steps_per_s"] = T / (row["torch_ms"] / 1e3)
    return row


def _infer_rows(cells: Sequence[str], budget_s: float, seed: int) -> list[dict]:
    return [measure_infer(cell, budget_s=budget_s / 3, seed=seed) for cell in cells]


def _sample_rows(cells: Sequence[str], budget_s: float, seed: int) -> list[dict]:
    return [measure_sample(cell, budget_s=budget_s / 3, seed=seed) for cell in cells]


def _thread_rows(cells: Sequence[str], budget_s: float, seed: int) -> list[dict]:
    """The grid's first and last shapes on two threads (torch's and the compiled engine's), peers off."""
    if (os.cpu_count() or 1) < 2:
        return []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rows = []
        for T, B, I, H in (SHAPES[0], SHAPES[-1]):
            for cell in cells:
                row = measure(cell, T, B, I, H, budget_s=budget_s / 2, seed=seed, peers=("lstm",))
                row["mode"] = "threads"
                rows.append(row)
        return rows
    finally:
        torch.set_num_threads(before)


EXTRA_ROWS: list[tuple[str, Callable[[Sequence[str], float, int], list[dict]]]] = [
    ("infer", _infer_rows),
    ("sample", _sample_rows),
    ("threads", _thread_rows),
]
"""Row producers beyond the training grid, in report order: ``(mode, producer(cells, budget_s, seed) -> rows)``.
Every row has :data:`KEYS` (``loop_ms`` may be None) and ``mode``; add a producer here for a new kind of row."""


def run_extras(
    cells: Iterable[str] = CELLS,
    *,
    budget_s: float = 8.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    modes: Iterable[str] | None = None,
) -> list[dict[str, object]]:
    """The rows of :data:`EXTRA_ROWS` (all, or those of ``modes``) for ``cells``."""
    cells = list(cells)
    for cell in cells:
        _check_cell(cell)
    wanted = None if modes is None else set(modes)
    results: list[dict[str, object]] = []
    for mode, producer in EXTRA_ROWS:
        if wanted is not None and mode not in wanted:
            continue
        for row in producer(cells, budget_s, seed):
            results.append(row)
            if progress is not None:
                progress(_summary(row))
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
        f"torch {torch.__version__}, {counted(torch.get_num_threads(), 'thread')}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}, Python {platform.python_version()}, float32"
    )


def _num(value: object, width: int, fmt: str = ".2f") -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"


def format_table(results: Sequence[dict[str, object]]) -> str:
    """A readable table of ``run``'s (and ``run_extras``') results, one section per mode, with a header that says
    what the columns mean."""
    header = (
        f"{'cell':<11}{'T':>5}{'B':>4}{'I':>5}{'H':>5}"
        f"{'rnnkit ms':>11}{'torch ms':>10}{'loop ms':>10}{'jax ms':>9}{'LSTM ms':>9}{'floor ms':>10}"
        f"{'rnnkit/torch':>14}{'/LSTM':>7}{'/jax':>7}{'loop/rnnkit':>13}{'%mm':>6}{'torch%mm':>9}"
        f"{'reps':>6}{'max|diff|':>11}"
    )
    train = [r for r in results if r.get("mode", "train") == "train"]
    lines = [
        f"rnnkit bench: forward+backward, median of interleaved repeats ({environment()})",
        "rnnkit/torch: rnnkit's layer over torch.nn's with the same weights (gru-before: over torch.nn.GRU)",
        "/LSTM: rnnkit's time over torch.nn.LSTM's at the same shape; /jax: over a jit'd lax.scan of the same cell",
        "loop: tutorial-style autograd loop over torch.nn.*Cell (gru-before: its equations in torch ops)",
        "floor: FLOPs of the matrix products / best torch.mm rate measured in this run on the shape's largest product;",
        "%mm: floor / time, the share of that GEMM rate reached (mm GFLOP/s per shape below)",
        "max|diff|: largest output difference of rnnkit from torch.nn (gru-before: from the loop)",
        "",
        header,
        "-" * len(header),
    ]
    for r in train:
        lines.append(
            f"{r['cell']:<11}{r['T']:>5}{r['B']:>4}{r['I']:>5}{r['H']:>5}"
            f"{r['rnnkit_ms']:>11.2f}{r['torch_ms']:>10.2f}{_num(r.get('loop_ms'), 10)}{_num(r.get('jax_ms'), 9)}"
            f"{_num(r.get('lstm_ms'), 9)}{r['floor_ms']:>10.2f}{r['ratio']:>14.2f}{_num(r.get('ratio_lstm'), 7)}"
            f"{_num(r.get('jax_ratio'), 7)}{_num(r.get('loop_ratio'), 13)}{_num(r.get('gemm_pct'), 6, '.0f')}"
            f"{_num(r.get('torch_gemm_pct'), 9, '.0f')}{r['repeats']:>6}{r['max_abs_diff']:>11.1e}"
        )
    rates = sorted({(r["T"], r["B"], r["I"], r["H"], round(r["mm_gflops"])) for r in train})
    if rates:
        lines.append("mm GFLOP/s: " + ", ".join(f"{t}/{b}/{i}/{h} {g}" for t, b, i, h, g in rates))
    titles = {
        "infer": "forward only, no grad (inference), B = 1; medians of blocks of back-to-back calls",
        "sample": "sampling a generator step by step (embedding → layer → linear → multinomial), ms per T steps; "
        "medians of blocks of back-to-back samplings",
        "threads": "forward+backward on 2 threads (the rows above ran on the environment's thread count)",
    }
    for mode in dict.fromkeys(r.get("mode", "train") for r in results):
        if mode == "train":
            continue
        rows = [r for r in results if r.get("mode") == mode]
        sub = (
            f"{'cell':<11}{'T':>5}{'B':>4}{'I':>5}{'H':>5}{'rnnkit ms':>11}{'torch ms':>10}{'LSTM ms':>9}"
            f"{'rnnkit/torch':>14}{'/LSTM':>7}{'threads':>8}{'reps':>6}"
        )
        extra = mode == "sample"
        if extra:
            sub += f"{'steps/s':>10}{'torch steps/s':>15}"
        lines += ["", f"{mode}: {titles.get(mode, mode)}", sub, "-" * len(sub)]
        for r in rows:
            line = (
                f"{r['cell']:<11}{r['T']:>5}{r['B']:>4}{r['I']:>5}{r['H']:>5}{r['rnnkit_ms']:>11.2f}"
                f"{r['torch_ms']:>10.2f}{_num(r.get('lstm_ms'), 9)}{r['ratio']:>14.2f}{_num(r.get('ratio_lstm'), 7)}"
                f"{r['threads']:>8}{r['repeats']:>6}"
            )
            if extra:
                line += f"{r['steps_per_s']:>10.0f}{r['torch_steps_per_s']:>15.0f}"
            lines.append(line)
    return "\n".join(lines)
