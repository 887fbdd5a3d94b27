"""Long-sequence benchmark of the input-gated recurrences (``rnnkit bench --long``): minGRU/minLSTM vs torch.nn.

For each cell (``mingru`` against ``torch.nn.GRU``, ``minlstm`` against ``torch.nn.LSTM``, same I and H), each
``T`` and each mode, these run interleaved after a warm-up (the order cycling through all permutations, as
:mod:`rnnkit.bench` does), and the medians are reported:

- ``rnnkit``: the rnnkit layer on its ``auto`` path (the compiled C++ loop on the CPU, the log-space scan on
  accelerators; :mod:`rnnkit.engine.scan`);
- ``scan``: the same layer forced onto the log-space parallel scan (``method="scan"``);
- ``torch``: the torch.nn peer;
- ``proj``: the input projection alone (``x W^T + b`` with the layer's weight): the floor, since the recurrence
  itself has no matrix product.

Modes: ``train`` (forward + backward of ``output.sum()``, the input requiring grad) and ``forward`` (under
``torch.no_grad()``); and ``step``: one streaming step ``layer.step(x_t, h)`` against ``torch.nn.GRUCell`` /
``LSTMCell`` (``T`` = 1). Memory: ``saved_mb`` / ``torch_saved_mb`` / ``proj_saved_mb`` are the megabytes of
tensors kept for the backward pass (counted once per storage through autograd's saved-tensor hooks) — on the CPU
the part of peak memory that grows with ``T``; on CUDA ``peak_mb`` / ``torch_peak_mb`` add the allocator's peak.

Symbols: T time, B batch, I input, H hidden. ``ratio = rnnkit_ms / torch_ms`` (below 1: rnnkit is faster), as
in :mod:`rnnkit.bench`'s rows. Absolute times are only comparable within one run.

The ceiling. The recurrence of minGRU/minLSTM has no matrix product, so a layer costs at least its input
projection; ``ceiling = torch_ms / proj_ms`` is the speed-up over the torch.nn peer that a layer costing exactly its
projection would reach, measured in the same run. ``flop_ratio`` is the arithmetic behind it (multiply-adds × 2
per token; the backward costs twice the forward for both): GRU ``2(I+H)·3H`` against minGRU's ``2I·2H``, LSTM
``2(I+H)·4H`` against minLSTM's ``2I·3H``; at I = 64, H = 256 that is 7.5× and 6.7×. A peer's recurrent matrix
products run as ``T`` small ones (B rows each), less efficient than one big one, so the measured ceiling is above
the FLOP ratio; it bounds what any minGRU/minLSTM implementation can gain.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rnnkit.layers.minimal import MinGRU, MinLSTM

__all__ = ["LONG_LENGTHS", "LONG_SHAPE", "flop_ratio", "format_long", "long_rows", "measure_long"]

LONG_LENGTHS = (256, 1024, 4096)
"""Sequence lengths T of the long benchmark."""

LONG_SHAPE = {"B": 16, "I": 64, "H": 256}
"""Batch, input and hidden size of every long row."""

_PEERS = {"mingru": (MinGRU, nn.GRU, nn.GRUCell), "minlstm": (MinLSTM, nn.LSTM, nn.LSTMCell)}
MODES = ("train", "forward", "step")


def flop_ratio(cell: str, I: int, H: int) -> float:
    """FLOPs per token of the torch.nn peer over the minimal cell's (the same ratio forward and fwd+bwd)."""
    if cell == "mingru":
        return (2 * (I + H) * 3 * H) / (2 * I * 2 * H)
    return (2 * (I + H) * 4 * H) / (2 * I * 3 * H)


def _saved_mb(fn: Callable[[], object]) -> float:
    """Megabytes of distinct storages autograd saves for the backward pass while ``fn`` runs."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()) / 2**20


def _no_grad(fn: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        with torch.no_grad():
            return fn()

    return call


def _runners(cell: str, T: int, B: int, I: int, H: int, mode: str, seed: int, device: torch.device):
    """Implementations to time for one row: name → a call with no arguments."""
    layer_cls, torch_cls, cell_cls = _PEERS[cell]
    torch.manual_seed(seed)
    ours = layer_cls(I, H, device=device)
    scan = layer_cls(I, H, device=device, method="scan")
    scan.load_state_dict(ours.state_dict())
    peer = torch_cls(I, H, device=device)
    w, b = ours.cells[0].weight_ih, ours.cells[0].bias_ih
    if mode == "step":
        x_t = torch.randn(B, I, device=device)
        h = torch.zeros(B, H, device=device)
        torch_cell = cell_cls(I, H, device=device)
        state = h if cell == "mingru" else (h, h.clone())
        hx = h.unsqueeze(0)  # (L=1, B, H)
        return {
            "rnnkit": _no_grad(lambda: ours.step(x_t, hx)),
            "torch": _no_grad(lambda: torch_cell(x_t, state)),
            "proj": _no_grad(lambda: F.linear(x_t, w, b)),
        }
    x = torch.randn(T, B, I, device=device)
    if mode == "forward":
        return {
            "rnnkit": _no_grad(lambda: ours(x)[0]),
            "scan": _no_grad(lambda: scan(x)[0]),
            "torch": _no_grad(lambda: peer(x)[0]),
            "proj": _no_grad(lambda: F.linear(x, w, b)),
        }
    xg = x.clone().requires_grad_()
    params = [xg, *ours.parameters(), *scan.parameters(), *peer.parameters()]

    def train(fn: Callable[[], torch.Tensor]) -> Callable[[], object]:
        def call() -> object:
            for p in params:
                p.grad = None
            out = fn()
            out.sum().backward()
            return out

        return call

    return {
        "rnnkit": train(lambda: ours(xg)[0]),
        "scan": train(lambda: scan(xg)[0]),
        "torch": train(lambda: peer(xg)[0]),
        "proj": train(lambda: F.linear(xg, w, b)),
    }


def measure_long(
    cell: str,
    T: int,
    mode: str = "train",
    *,
    B: int = LONG_SHAPE["B"],
    I: int = LONG_SHAPE["I"],
    H: int = LONG_SHAPE["H"],
    repeats: int = 5,
    seed: int = 0,
    device: torch.device | str = "cpu",
    skip: Sequence[str] = (),
) -> dict[str, object]:
    """One row: medians (ms) of every implementation, ``ratio`` (rnnkit/torch) and saved-for-backward memory.

    ``skip`` names implementations not to time (e.g. ``("scan",)``: the log-space scan is slow on a CPU).
    """
    if cell not in _PEERS or mode not in MODES:
        raise ValueError(f"cell must be one of {tuple(_PEERS)} and mode one of {MODES}, got {cell!r}, {mode!r}")
    device = torch.device(device)
    runners = {k: v for k, v in _runners(cell, T, B, I, H, mode, seed, device).items() if k not in skip}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    names = list(runners)
    times: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    for n in names:  # warm-up: the compiled kernels load, fresh memory is touched
        runners[n]()
    orders = list(itertools.permutations(names))
    for k in range(repeats):
        for n in orders[k % len(orders)]:
            sync()
            t0 = time.perf_counter()
            runners[n]()
            sync()
            times[n].append(time.perf_counter() - t0)
    ms = {n: statistics.median(ts) * 1e3 for n, ts in times.items()}
    row: dict[str, object] = {"cell": cell, "mode": mode, "T": 1 if mode == "step" else T, "B": B, "I": I, "H": H}
    row.update({f"{n}_ms": v for n, v in ms.items()})
    row["ratio"] = ms["rnnkit"] / ms["torch"]
    row["speedup"] = ms["torch"] / ms["rnnkit"]
    row["over_proj"] = ms["rnnkit"] / ms["proj"]
    row["ceiling"] = ms["torch"] / ms["proj"]
    row["flop_ratio"] = flop_ratio(cell, I, H)
    row["threads"] = torch.get_num_threads()
    row["repeats"] = repeats
    if mode == "train":
        for n in ("rnnkit", "torch", "proj"):
            row[("saved_mb" if n == "rnnkit" else f"{n}_saved_mb")] = _saved_mb(runners[n])
    if device.type == "cuda":
        for n in ("rnnkit", "torch"):
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            runners[n]()
            row["peak_mb" if n == "rnnkit" else "torch_peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    return row


def long_rows(
    cells: Sequence[str] = ("mingru", "minlstm"),
    lengths: Sequence[int] = LONG_LENGTHS,
    modes: Sequence[str] = MODES,
    *,
    repeats: int = 5,
    seed: int = 0,
    device: torch.device | str = "cpu",
    scan_up_to: int = 1024,
    progress: Callable[[str], None] | None = None,
) -> Iterator[dict[str, object]]:
    """Yield :func:`measure_long` rows over cells × modes × lengths (``step`` once per cell).

    On the CPU the log-space scan is timed only up to ``T = scan_up_to`` (it is the slow path there).
    """
    for cell in cells:
        for mode in modes:
            for T in lengths if mode != "step" else lengths[:1]:
                skip = ("scan",) if torch.device(device).type == "cpu" and scan_up_to < T else ()
                t0 = time.perf_counter()
                shape = dict(LONG_SHAPE)  # read at call time (tests shrink it)
                row = measure_long(cell, T, mode, **shape, repeats=repeats, seed=seed, device=device, skip=skip)
                if progress is not None:
                    progress(
                        f"{cell} {mode} T={row['T']}: rnnkit {row['rnnkit_ms']:.2f} ms, torch {row['torch_ms']:.2f}"
                        f" ms, proj {row['proj_ms']:.2f} ms ({time.perf_counter() - t0:.0f} s)"
                    )
                yield row


def format_long(rows: Sequence[dict[str, object]]) -> str:
    """A text table of :func:`long_rows`' rows."""
    head = (
        f"{'cell':<8}{'mode':<8}{'T':>6}{'rnnkit ms':>11}{'scan ms':>10}{'torch ms':>11}{'proj ms':>10}"
        f"{'torch/rnnkit':>13}{'ceiling':>9}{'rnnkit/proj':>12}{'saved MB':>10}{'torch MB':>10}"
    )
    lines = [
        "rnnkit bench --long: minGRU vs torch.nn.GRU, minLSTM vs torch.nn.LSTM (same I, H); median ms",
        "train: forward+backward; forward: no_grad; step: one streaming step vs torch.nn.GRUCell/LSTMCell",
        "proj: the input projection alone (the floor); ceiling: torch/proj, the most a layer costing its projection"
        " can gain; saved MB: tensors kept for the backward pass",
        "",
        head,
        "-" * len(head),
    ]
    for r in rows:

        def num(key: str, fmt: str = ".2f", r: dict = r) -> str:
            return format(r[key], fmt) if key in r else "-"

        lines.append(
            f"{r['cell']:<8}{r['mode']:<8}{r['T']:>6}{num('rnnkit_ms'):>11}{num('scan_ms'):>10}{num('torch_ms'):>11}"
            f"{num('proj_ms'):>10}{num('speedup'):>13}{num('ceiling'):>9}{num('over_proj'):>12}"
            f"{num('saved_mb', '.1f'):>10}"
            f"{num('torch_saved_mb', '.1f'):>10}"
        )
    return "\n".join(lines)
