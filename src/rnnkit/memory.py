"""Long-range memory: do LSTM and GRU really fix the vanilla RNN's short memory? (``rnnkit memory``)

Every model in ``models`` is trained at every length in ``lengths`` on a synthetic task from
:mod:`rnnkit.data.synthetic` (adding, copy, temporal order), through the trainer, with the same number of updates
and hidden sizes chosen so that parameter counts stay within ±10% of the LSTM's. The test metric of each run is
reported next to the task's baseline (the best a model without memory can do).

Readouts (shape symbols: B batch, T time, H hidden, C classes):

* adding (regression) and temporal order (classes): the last state ``(B, H)`` of a recurrent core, or for the
  ``window`` model the lecture's aggregate ``Σ_j ŷ_j`` of every window's prediction;
* copy (per-step classes): every step's output ``(B, T, H)``.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.data.batching import Batch
from rnnkit.data.synthetic import TASKS, MemoryTask, describe_task, make_task
from rnnkit.tasks.registry import MODELS, build_core
from rnnkit.train import TrainConfig, evaluate, fit, seed_everything

__all__ = [
    "DEFAULT_LENGTHS",
    "DEFAULT_MODELS",
    "MemoryModel",
    "MemoryRow",
    "format_table",
    "hidden_for_budget",
    "plot_rows",
    "run_memory",
    "write_csv",
]

DEFAULT_LENGTHS = (10, 20, 50, 100)
DEFAULT_MODELS = ("rnn", "lstm", "gru", "window", "mingru", "minlstm")
EMBED_DIM = 16  # token tasks embed their symbols in this many dimensions


class MemoryModel(nn.Module):
    """A core from the model registry with the readout and loss a memory task needs.

    ``forward(batch) -> (outputs, loss)``: outputs ``(B,)`` (regression), ``(B, C)`` (classes) or ``(B, T, C)``
    (per-step classes); loss MSE or mean cross-entropy.
    """

    def __init__(self, task: MemoryTask, model: str, hidden_size: int, window: int = 10) -> None:
        super().__init__()
        self.task = task
        tokens = task.input_kind == "tokens"
        self.embed = nn.Embedding(task.input_size, EMBED_DIM) if tokens else None
        in_size = EMBED_DIM if tokens else task.input_size
        self.core = build_core(model, in_size, hidden_size, 1, 0.0, False, window=window)
        self.per_window = bool(getattr(self.core, "per_step_readout", False))
        self.head = nn.Linear(hidden_size, 1 if task.output_kind == "regression" else task.num_classes)

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        x = self.embed(batch.inputs) if self.embed is not None else batch.inputs  # (B, T, E|F)
        out, h_n = self.core(x)  # every sequence is full length: (B, T, H)
        if self.task.output_kind == "per-step":
            y = self.head(out)  # (B, T, C)
        elif self.per_window:
            y = self.head(out).sum(dim=1)  # the lecture's aggregate Σ_j ŷ_j: (B, C|1)
        else:
            h = h_n[0] if isinstance(h_n, tuple) else h_n  # (1, B, H)
            y = self.head(h[-1])  # (B, C|1)
        if self.task.output_kind == "regression":
            y = y.squeeze(-1)  # (B,)
        loss = None
        if batch.targets is not None:
            if self.task.output_kind == "regression":
                loss = nn.functional.mse_loss(y, batch.targets)
            else:
                loss = nn.functional.cross_entropy(y.reshape(-1, y.shape[-1]), batch.targets.reshape(-1))
        return y, loss


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def hidden_for_budget(task: MemoryTask, model: str, budget: int, window: int = 10) -> int:
    """The hidden size whose :class:`MemoryModel` parameter count is closest to ``budget``."""

    def count(h: int) -> int:
        return _params(MemoryModel(task, model, h, window))

    # the count grows with h: find the first h at or above the budget, then take the closer of it and h − 1
    # (the later one on a tie). minGRU/minLSTM need thousands of units where an LSTM needs 64 (their only matrix
    # reads the input, so a unit costs few parameters), hence a search instead of a walk from 2.
    lo, hi = 2, 1 << 14
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid) < budget:
            lo = mid + 1
        else:
            hi = mid
    if lo > 2 and abs(count(lo - 1) - budget) < abs(count(lo) - budget):
        return lo - 1
    return lo


@dataclass
class MemoryRow:
    """One trained (model, length) cell of the table."""

    task: str
    model: str
    T: int
    hidden: int
    params: int
    metric: str
    value: float
    baseline: float
    seconds: float


def run_memory(
    task: str,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    models: Sequence[str] = DEFAULT_MODELS,
    *,
    steps: int = 3000,
    batch_size: int = 64,
    hidden: int = 64,
    window: int = 10,
    lr: float = 3e-3,
    test_size: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[MemoryRow]:
    """Train every model at every length with ``steps`` updates each; return the table's rows.

    Hidden sizes: the LSTM gets ``hidden``; every other model the size that brings its parameter count closest to
    the LSTM's (within ±10% for the default sizes; the rows report both numbers).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from: {', '.join(sorted(MODELS))}")
    if not lengths or min(lengths) < 1:
        raise ValueError(f"lengths must be positive integers, got {list(lengths)}")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("hidden", hidden), ("window", window)):
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1, got {value}")
    epochs = 10 if steps >= 10 else 1
    per_epoch = max(1, steps // epochs)
    rows: list[MemoryRow] = []
    for T in lengths:
        info = describe_task(task, T)
        budget = _params(MemoryModel(info, "lstm", hidden, window))
        val = [make_task(task, T, 256, generator=seed + 1_000_003)]
        test = [make_task(task, T, test_size, generator=seed + 2_000_003)]
        for model in models:
            h = hidden if model == "lstm" else hidden_for_budget(info, model, budget, window)
            seed_everything(seed)
            net = MemoryModel(info, model, h, window)

            def train_batches(epoch: int, T: int = T) -> list[Batch]:
                g = torch.Generator().manual_seed(seed * 7919 + epoch)
                return [make_task(task, T, batch_size, generator=g) for _ in range(per_epoch)]

            cfg = TrainConfig(
                epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, patience=None, progress="none", monitor="loss"
            )
            t0 = time.perf_counter()
            fit(net, train_batches, val, cfg, None, log=lambda s: None)
            seconds = time.perf_counter() - t0
            scores = evaluate(net, test)
            value = scores["accuracy"] if info.metric == "accuracy" else scores["loss"]
            row = MemoryRow(task, model, T, h, _params(net), info.metric, value, info.baseline, round(seconds, 1))
            rows.append(row)
            if progress is not None:
                progress(
                    f"{task} T={T} {model} (H={h}, {row.params} params): {info.metric} {value:.4f} ({seconds:.0f} s)"
                )
    return rows


def format_table(rows: Sequence[MemoryRow]) -> str:
    """Models × lengths of the test metric, with the baseline row."""
    if not rows:
        return "(no results)"
    lengths = sorted({r.T for r in rows})
    models = list(dict.fromkeys(r.model for r in rows))
    by = {(r.model, r.T): r for r in rows}
    metric = rows[0].metric
    better = "higher" if metric == "accuracy" else "lower"
    lines = [f"{rows[0].task}: test {metric} ({better} is better)", ""]
    head = f"{'model':<10}{'params':>8}" + "".join(f"{'T=' + str(T):>10}" for T in lengths)
    lines += [head, "-" * len(head)]
    for m in models:
        params = by[(m, lengths[0])].params if (m, lengths[0]) in by else 0
        cells = "".join(f"{by[(m, T)].value:>10.4f}" if (m, T) in by else f"{'':>10}" for T in lengths)
        lines.append(f"{m:<10}{params:>8}" + cells)
    base = {r.T: r.baseline for r in rows}
    lines.append(f"{'baseline':<10}{'':>8}" + "".join(f"{base[T]:>10.4f}" for T in lengths))
    return "\n".join(lines)


def write_csv(rows: Sequence[MemoryRow], path: str | Path) -> Path:
    """The rows as CSV (one line per model and length)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])), lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    return path


def plot_rows(rows: Sequence[MemoryRow], path: str | Path) -> Path | None:
    """Test metric against T per model, with the baseline dashed; None without matplotlib."""
    from rnnkit.plots import _figure, _save

    fig = _figure(6, 4)
    if fig is None:
        return None
    ax = fig.add_subplot(1, 1, 1)
    for m in dict.fromkeys(r.model for r in rows):
        pts = sorted((r.T, r.value) for r in rows if r.model == m)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=m)
    base = sorted({(r.T, r.baseline) for r in rows})
    ax.plot([b[0] for b in base], [b[1] for b in base], "k--", label="baseline (no memory)")
    ax.set_xscale("log")
    if rows[0].metric != "accuracy":
        ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(f"test {rows[0].metric}")
    ax.set_title(f"{rows[0].task}: equal updates, parameters within ±10%")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)
