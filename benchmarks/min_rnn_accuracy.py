"""minGRU/minLSTM beside GRU/LSTM at equal parameter counts on the embedded names tasks (issue 17).

Each row is one ``rnnkit train`` run (the task's defaults, except ``--model``, ``--hidden`` and ``--epochs``, and
``--ngram-order 0``: the count member beside the network is the same for both cells and would shrink the
difference being measured), one at a time. The GRU and LSTM keep the task's default hidden size; minGRU/minLSTM
get the hidden size whose recurrent core plus output layer has the parameter count closest to its peer's (minGRU
next to GRU, minLSTM next to LSTM), so the widths differ and the parameter counts match (printed, counted from the
saved weights).

    python benchmarks/min_rnn_accuracy.py --epochs 3 --out runs/min-accuracy
    python benchmarks/min_rnn_accuracy.py --only gender --epochs 3   # one task
    python benchmarks/min_rnn_accuracy.py --subset 1500 --hidden 64  # 1,500 names per class, 64-unit peers
    python benchmarks/min_rnn_accuracy.py --subset 1500 --hidden 64 --seeds 0 1 2   # mean ± sd over seeds
    python benchmarks/min_rnn_accuracy.py --summarise runs/a/results.json runs/b/results.json  # table only

With several seeds each seed's runs go to ``OUT/seed-S`` (the seed also draws the ``--subset``), and a table of
mean ± sample standard deviation per task and model is printed, with the minimal cell's relative difference to
its peer (negative: worse; for a loss, lower is better and the sign is flipped).

Results are deterministic for a seed (the numbers do not depend on the machine's load); wall times do.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from safetensors import safe_open

from rnnkit.tasks.registry import build_core

TASKS = {  # name: (rnnkit train arguments, metric, bidirectional, embedded data set)
    "gender": (["--task", "classify"], "test_accuracy", True, "gender"),
    "country": (["--task", "classify"], "test_accuracy", True, "country"),
    "generate": (["--task", "generate"], "test_loss", False, "country"),
}
PAIRS = (("gru", "mingru"), ("lstm", "minlstm"))
EMBED = 64


def core_params(model: str, hidden: int, bidirectional: bool, inputs: int = EMBED) -> int:
    """Parameters of the recurrent core ``model`` reading ``inputs`` features at ``hidden``."""
    core = build_core(model, inputs, hidden, bidirectional=bidirectional)
    return sum(p.numel() for p in core.parameters())


def weights(folder: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the saved weights of a run."""
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)


def matched_hidden(model: str, peer_run: Path, peer: str, hidden: int, bidirectional: bool) -> int:
    """The hidden size of ``model`` whose whole task model has the parameter count closest to the peer's run.

    The peer's count splits into its core, the parts that read the core's output (a classifier's head, a
    generator's output layer: ``C`` outputs from ``D·H``, plus ``C`` biases, and a conditional generator's initial
    state: ``L·H`` outputs) and the rest (embeddings), which stays.
    """
    shapes = weights(peer_run)
    total = sum(math.prod(s) for s in shapes.values())
    inputs = shapes["core.weight_ih_l0"][1]  # a conditional generator's core reads [embedding, condition]
    readers = {k: s for k, s in shapes.items() if k.startswith(("head", "init")) and len(s) >= 1}
    per_h = 0  # parameters per hidden unit outside the core
    for s in readers.values():
        per_h += s[1] // hidden if len(s) == 2 and s[1] % hidden == 0 else 0  # (C, D·H): C·D per unit
        per_h += s[0] // hidden if s[0] % hidden == 0 else 0  # (L·H, E) or (L·H,): rows per unit
    fixed = total - core_params(peer, hidden, bidirectional, inputs) - per_h * hidden

    def count(h: int) -> int:
        return core_params(model, h, bidirectional, inputs) + per_h * h + fixed

    return _search(count, total)


def _search(count, total: int) -> int:
    lo, hi = 1, 1 << 14
    while lo < hi:  # the count grows with the hidden size
        mid = (lo + hi) // 2
        if count(mid) < total:
            lo = mid + 1
        else:
            hi = mid
    return min((max(lo - 1, 1), lo), key=lambda h: abs(count(h) - total))


def _subset(data: str, per_class: int, seed: int, out: Path) -> str:
    """A folder of ``<class>.txt`` files with at most ``per_class`` names per class of the embedded ``data``."""
    import random

    from rnnkit.data.datasets import default_names

    names = default_names(data)
    folder = out / f"data-{data}-{per_class}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for cls in names.classes:
        items = sorted(n for n, lab in zip(names.items, names.labels, strict=True) if lab == cls)
        rng.shuffle(items)
        (folder / f"{cls.replace('/', '-')}.txt").write_text("\n".join(items[:per_class]) + "\n", encoding="utf-8")
    return str(folder)


def run_params(folder: Path) -> int:
    return sum(math.prod(s) for s in weights(folder).values())


def summarise(rows: list[dict]) -> str:
    """A table of mean ± sd over seeds per task and model, and each minimal cell's relative gap to its peer."""
    import statistics

    lines = [f"{'task':<10}{'model':<9}{'params':>8}{'seeds':>6}  {'metric':<14}{'mean ± sd':>18}{'vs peer':>10}"]
    means: dict[tuple[str, str], float] = {}
    for task, (_, metric, _, _) in TASKS.items():
        for peer, mine in PAIRS:
            for model in (peer, mine):
                vals = [r[metric] for r in rows if r["task"] == task and r["model"] == model]
                if not vals:
                    continue
                mean = statistics.fmean(vals)
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                means[(task, model)] = mean
                params = round(statistics.fmean(r["params"] for r in rows if r["task"] == task and r["model"] == model))
                gap = ""
                if model == mine and (task, peer) in means:
                    rel = (mean - means[(task, peer)]) / means[(task, peer)]
                    gap = f"{(-rel if metric.endswith('loss') else rel) * 100:+.1f}%"
                lines.append(
                    f"{task:<10}{model:<9}{params:>8,}{len(vals):>6}  {metric:<14}{mean:>10.4f} ± {sd:.4f}{gap:>10}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    p.add_argument("--seeds", type=int, nargs="+", help="several seeds: runs in OUT/seed-S, a mean ± sd table")
    p.add_argument("--summarise", type=Path, nargs="+", help="only print the table of these results.json files")
    p.add_argument("--only", nargs="+", choices=list(TASKS), default=list(TASKS), help="tasks (default: all)")
    p.add_argument("--out", type=Path, default=Path("runs/min-accuracy"), help="run folders and results.json")
    p.add_argument("--hidden", type=int, default=256, help="hidden size of GRU and LSTM (default: 256)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every run (default: 1)")
    p.add_argument("--subset", type=int, default=0, help="names per class drawn (seeded) from the data; 0: all")
    args = p.parse_args(argv)
    if args.summarise:
        print(summarise([r for f in args.summarise for r in json.loads(f.read_text())]))
        return 0
    if args.seeds:
        rows = []
        for seed in args.seeds:
            rows += _one_seed(args, seed, args.out / f"seed-{seed}")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(summarise(rows))
        return 0
    _one_seed(args, args.seed, args.out)
    return 0


def _one_seed(args: argparse.Namespace, seed: int, out_dir: Path) -> list[dict]:
    """Every task and pair with one seed; run folders and results.json under ``out_dir``."""
    rows = []
    hidden = args.hidden
    for task in args.only:
        train, metric, bidir, data = TASKS[task]
        train = [
            *train,
            "--data",
            _subset(data, args.subset, seed, out_dir) if args.subset else f"embedded:{data}",
        ]
        for peer, mine in PAIRS:
            for model in (peer, mine):
                peer_run = out_dir / f"{task}-{peer}"
                h = hidden if model == peer else matched_hidden(mine, peer_run, peer, hidden, bidir)
                out = out_dir / f"{task}-{model}"
                cmd = [sys.executable, "-m", "rnnkit", "train", *train, "--model", model, "--hidden", str(h),
                       "--embed", str(EMBED), "--epochs", str(args.epochs), "--seed", str(seed),
                       "--threads", str(args.threads), "--ngram-order", "0",
                       "--out", str(out), "--overwrite"]  # fmt: skip
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                metrics = json.loads((out / "metrics.json").read_text())
                row = {"task": task, "model": model, "hidden": h, "params": run_params(out), metric: metrics[metric],
                       "train_seconds": metrics.get("train_seconds")}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
