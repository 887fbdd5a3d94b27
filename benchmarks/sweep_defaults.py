"""Sweep model/trainer settings on the embedded default data to choose ``rnnkit train``'s defaults.

A coordinate sweep: start from a base configuration and change one setting at a time (cell, hidden size, layers,
dropout, learning rate, epochs, and direction for the classifier), training each configuration once with the same
seed and split. Prints a Markdown table per task (test metric, time) and writes every result to a JSON file.

    python benchmarks/sweep_defaults.py --task classify --out /tmp/sweep   # ~15 min on 2 cores, alone
    python benchmarks/sweep_defaults.py --task generate --quick            # a smaller grid

The defaults in ``rnnkit.runs.DEFAULTS`` must land within 1 accuracy point (classify) / 0.02 nats per character
(generate) of the best configuration found here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from rnnkit.runs import DEFAULTS, RunOptions, train_run

VARIATIONS: dict[str, list[dict]] = {
    "classify": [
        {},
        {"model": "lstm"},
        {"model": "rnn"},
        {"model": "gru-before"},
        {"bidirectional": False},
        {"hidden_size": 128},
        {"hidden_size": 512},
        {"num_layers": 2},
        {"dropout": 0.0},
        {"dropout": 0.4},
        {"lr": 1e-3},
        {"lr": 1e-2},
        {"epochs": 6},
        {"epochs": 20},
    ],
    "generate": [
        {},
        {"model": "lstm"},
        {"model": "rnn"},
        {"model": "gru-before"},
        {"hidden_size": 128},
        {"hidden_size": 512},
        {"num_layers": 2},
        {"dropout": 0.0},
        {"dropout": 0.3},
        {"lr": 1e-3},
        {"lr": 1e-2},
        {"epochs": 6},
        {"epochs": 20},
    ],
}
QUICK = {"classify": [0, 1, 3, 5, 7, 9, 10, 11], "generate": [0, 1, 3, 4, 6, 8, 10]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=["classify", "generate"], required=True, help="which task's defaults")
    ap.add_argument("--quick", action="store_true", help="a smaller grid")
    ap.add_argument("--out", default=None, help="folder for the run folders and results.json (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every run (same split for all)")
    args = ap.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="rnnkit-sweep-"))
    out.mkdir(parents=True, exist_ok=True)
    grid = VARIATIONS[args.task]
    if args.quick:
        grid = [grid[i] for i in QUICK[args.task]]
    key, better = ("test_accuracy", max) if args.task == "classify" else ("test_nll_per_char", min)
    results = []
    for i, change in enumerate(grid):
        opts = RunOptions(task=args.task, seed=args.seed, progress="none", **change)
        t0 = time.perf_counter()
        metrics = train_run(opts, out / f"{args.task}-{i:02d}", overwrite=True, log=lambda s: None)
        wall = time.perf_counter() - t0
        row = {"change": change or "defaults", **{k: opts.resolved(k) for k in DEFAULTS[args.task]}}
        row.update({key: metrics[key], "val_best_epoch": metrics.get("best_epoch"), "wall_s": round(wall, 1)})
        if args.task == "classify":
            row["macro_f1"] = metrics["macro_f1"]
        results.append(row)
        print(f"[{i + 1}/{len(grid)}] {row['change']}: {key}={metrics[key]} ({wall:.0f} s)", file=sys.stderr)
        (out / "results.json").write_text(json.dumps(results, indent=1))
    best = better(results, key=lambda r: r[key])
    cols = ["change", key, *(["macro_f1"] if args.task == "classify" else []), "wall_s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        mark = " **best**" if r is best else ""
        print("| " + " | ".join(str(r[c]) for c in cols) + mark + " |")
    base = results[0] if grid[0] == {} else None
    if base is not None:
        gap = abs(base[key] - best[key])
        limit = 0.01 if args.task == "classify" else 0.02
        verdict = "within" if gap <= limit else "OUTSIDE"
        print(f"\ndefaults {key}={base[key]} vs best {best[key]} ({best['change']}): gap {gap:.4f}, {verdict} {limit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
