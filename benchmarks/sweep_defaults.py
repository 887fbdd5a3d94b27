"""Sweep model/trainer settings on the embedded default data to choose ``rnnkit train``'s defaults.

A coordinate sweep: start from a base configuration (the current defaults, or ``--base``) and change one setting
at a time, training each configuration with the same seed(s) and split. Configurations are compared on the
VALIDATION split only (classify: the best epoch's validation accuracy; generate: its validation NLL per
character); the test metric is printed beside it for the record, never used to choose. Prints a Markdown table
per task and appends every result to ``OUT/results.json`` (so a sweep can be continued or split over calls).

    python benchmarks/sweep_defaults.py --task classify --out runs/sweep            # the whole grid, seed 0
    python benchmarks/sweep_defaults.py --task classify --only 0,5,9 --seeds 0,1,2  # three of them, 3 seeds
    python benchmarks/sweep_defaults.py --task classify --base '{"options": {"pool": "last+max"}}' --only 0,1
    python benchmarks/sweep_defaults.py --task generate --quick --threads 1         # a smaller grid

Every run is an ordinary run folder (``OUT/<task>-<index>-s<seed>``). Pass ``--threads 1`` (and ``nice``) on a
shared machine: the metrics are deterministic per seed, the times are not. docs/defaults-names.md has the table
that chose the current defaults of the name tasks.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rnnkit.runs import RunOptions, train_run

# one change per entry: RunOptions fields (ema: --ema, the weights' moving average), with "options" for the kind's
# own flags (--pool, --label-smoothing, --token-dropout) and "extra" for further TrainConfig fields (weight_decay,
# schedule, clip_norm, patience, ...)
VARIATIONS: dict[str, list[dict[str, Any]]] = {
    "classify": [
        {},
        {"model": "lstm"},
        {"model": "rnn"},
        {"model": "gru-before"},
        {"bidirectional": False},
        {"hidden_size": 128},
        {"hidden_size": 512},
        {"num_layers": 2},
        {"dropout": 0.2},  # 8
        {"dropout": 0.5},
        {"lr": 1e-3},
        {"lr": 1e-2},
        {"epochs": 6},
        {"epochs": 20},
        {"embed_dim": 32},
        {"embed_dim": 128},
        {"options": {"pool": "last+max"}},  # 16
        {"options": {"pool": "max"}},
        {"options": {"pool": "last+mean+max"}},
        {"options": {"label_smoothing": 0.1}},  # 19
        {"options": {"label_smoothing": 0.2}},
        {"options": {"token_dropout": 0.1}},  # 21
        {"options": {"token_dropout": 0.2}},
        {"extra": {"weight_decay": 0.1}},  # 23
        {"extra": {"schedule": "linear"}},
        {"extra": {"clip_norm": None}},
        {"num_layers": 2, "dropout": 0.5},
        {"batch_size": 32},
        {"batch_size": 128, "lr": 6e-3},
        {"options": {"ensemble": 3}},  # 29: three seeds on one split, mean probabilities (3x the time)
        {"ema": 0.999},  # 30: issue 16, third session: weight averaging (--ema)
        {"ema": 0.998},
        {"ema": 0.999, "epochs": 16},
        {"ema": 0.999, "num_layers": 2},
        {"ema": 0.999, "embed_dim": 128},
        {"options": {"ngram_filters": 64}},  # 35: fourth session: character n-gram convolutions beside the GRU
        {"options": {"ngram_filters": 128}},
        {"options": {"ngram_filters": 64, "pool": "last+max"}},
        {"options": {"ngram_filters": 64}, "epochs": 16, "ema": 0.999},
        {"options": {"ngram_filters": 64, "label_smoothing": 0.1}},
    ],
    "generate": [
        {},
        {"model": "gru"},
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
        {"embed_dim": 32},
        {"embed_dim": 128},
        {"options": {"token_dropout": 0.1}},  # 15
        {"num_layers": 2, "dropout": 0.2},
        {"hidden_size": 512, "dropout": 0.3},
        {"extra": {"weight_decay": 0.1}},
        {"batch_size": 32},
        {"dropout": 0.3, "epochs": 16},  # 20: issue 16, second session (base: 2 layers, dropout 0.2)
        {"options": {"token_dropout": 0.1}, "epochs": 16},
        {"hidden_size": 384, "dropout": 0.3, "epochs": 16},
        {"hidden_size": 384, "dropout": 0.3, "epochs": 14},  # 23
        {"ema": 0.999},  # 24: issue 16, third session: weight averaging (--ema), base = the 2 x 384 default
        {"ema": 0.999, "epochs": 16},
        {"ema": 0.998, "epochs": 16},
        {"ema": 0.9995, "epochs": 16},
        {"ema": 0.999, "epochs": 18},
        {"hidden_size": 512, "dropout": 0.4},  # 29
        {"hidden_size": 448, "dropout": 0.35, "epochs": 16},
        {"hidden_size": 512, "dropout": 0.4, "ema": 0.999},
        {"dropout": 0.4, "epochs": 16},
        {"epochs": 16},  # 33: the 2 x 384 default with 16 epochs (the second session's VARIATIONS 22 on its base)
        {"dropout": 0.35},  # 34: issue 16, fourth session (base: 2 x 384, dropout 0.3, 16 epochs)
        {"dropout": 0.35, "embed_dim": 128},
    ],
}
QUICK = {"classify": [0, 1, 5, 7, 9, 13, 16, 19, 21], "generate": [0, 1, 5, 6, 8, 12, 15]}
KEYS = {"classify": ("val_accuracy", "test_accuracy", max), "generate": ("val_loss", "test_nll_per_char", min)}
"""Per task: the validation column of curve.csv that chooses (read at the run's best epoch), the test metric."""


def best_epoch_value(folder: Path, column: str, epoch: int | None) -> float | None:
    """``column`` of ``folder/curve.csv`` at ``epoch`` (the epoch whose weights the run kept), or None."""
    curve = folder / "curve.csv"
    if epoch is None or not curve.exists():
        return None
    with curve.open() as f:
        for row in csv.DictReader(f):
            if int(row["epoch"]) == epoch:
                return round(float(row[column]), 4)
    return None


def merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``change`` on top (the ``options`` and ``extra`` dicts merged key by key)."""
    out = {**base, **change}
    for key in ("options", "extra"):
        if key in base or key in change:
            out[key] = {**base.get(key, {}), **change.get(key, {})}
    return out


def describe(change: dict[str, Any]) -> str:
    """``{"hidden_size": 512, "options": {"pool": "max"}}`` → ``hidden_size=512 pool=max``."""
    flat = {k: v for k, v in change.items() if k not in ("options", "extra")}
    flat.update(change.get("options", {}))
    flat.update(change.get("extra", {}))
    return " ".join(f"{k}={v}" for k, v in flat.items()) or "base"


def combine(folders: list[Path]) -> dict[str, float]:
    """Accuracy on the validation and test parts of the mean probabilities of classify runs of one split (same
    data and seed, any settings): what an ensemble of those runs would score, without training one."""
    from rnnkit.data import apply_split, collate_classification
    from rnnkit.runs import load_run
    from rnnkit.runs.folder import read_split
    from rnnkit.runs.text import _read

    runs = [load_run(f) for f in folders]
    first = runs[0]
    d = first.config["data"]
    split = apply_split(_read(d["data"], RunOptions()), read_split(first.path))
    out = {}
    for part in ("val", "test"):
        data = getattr(split, part)
        keep = [i for i, item in enumerate(data.items) if first.vocab.encode(item)]
        gold = [first.classes.index(data.labels[i]) for i in keep]
        probs = 0
        for run in runs:
            assert run.classes == first.classes and read_split(run.path) == read_split(first.path), run.path
            ids = [run.vocab.encode(data.items[i]) for i in keep]
            probs = probs + torch.cat(
                [run.model.predict_proba(collate_classification(ids[j : j + 512])) for j in range(0, len(ids), 512)]
            )
        pred = probs.argmax(1).tolist()
        out[f"{part}_accuracy"] = round(sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=["classify", "generate"], required=True, help="which task's defaults")
    ap.add_argument("--data", default=None, help="--data of every run (default: the task's embedded data)")
    ap.add_argument("--quick", action="store_true", help="a smaller grid")
    ap.add_argument("--only", default=None, help="comma-separated indices of VARIATIONS to run (default: all)")
    ap.add_argument("--base", default="{}", help="JSON change applied to every configuration (a new base)")
    ap.add_argument("--out", default=None, help="folder for the run folders and results.json (default: a temp dir)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds of every configuration (default: 0)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--keep", action="store_true", help="keep the run folders' weights (default: delete them)")
    ap.add_argument(
        "--combine",
        nargs="+",
        default=None,
        metavar="RUN",
        help="instead of training: the val/test accuracy of the mean probabilities of these classify runs (one split)",
    )
    args = ap.parse_args(argv)
    if args.combine:
        print(json.dumps(combine([Path(f) for f in args.combine])))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or tempfile.mkdtemp(prefix="rnnkit-sweep-"))
    out.mkdir(parents=True, exist_ok=True)
    grid = list(enumerate(VARIATIONS[args.task]))
    if args.quick:
        grid = [grid[i] for i in QUICK[args.task]]
    if args.only:
        wanted = [int(i) for i in args.only.split(",")]
        grid = [grid_item for i in wanted for grid_item in [(i, VARIATIONS[args.task][i])]]
    base = json.loads(args.base)
    seeds = [int(s) for s in args.seeds.split(",")]
    val_key, test_key, better = KEYS[args.task]
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else []
    rows = []
    for index, change in grid:
        settings = merged(base, change)
        per_seed = []
        for seed in seeds:
            fields = {k: v for k, v in settings.items() if k not in ("options", "extra")}
            opts = RunOptions(
                task=args.task,
                data=args.data,
                seed=seed,
                progress="none",
                options=dict(settings.get("options", {})),
                extra=dict(settings.get("extra", {})),
                **fields,
            )
            folder = out / f"{args.task}-{index:02d}-s{seed}"
            t0 = time.perf_counter()
            metrics = train_run(opts, folder, overwrite=True, log=lambda s: None)
            wall = time.perf_counter() - t0
            val_value = best_epoch_value(folder, val_key, metrics.get("best_epoch"))
            if metrics.get("ensemble") and args.task == "classify":  # no curve of its own: score its mean
                val_value = combine([folder])[val_key]
            if not args.keep:
                for heavy in folder.rglob("*.safetensors"):
                    heavy.unlink()
            row = {
                "index": index,
                "change": describe(change),
                "base": describe(base),
                "seed": seed,
                "data": args.data or "embedded",
                val_key: val_value,
                test_key: metrics[test_key],
                "best_epoch": metrics.get("best_epoch"),
                "epochs": metrics.get("epochs"),
                "train_seconds": metrics.get("train_seconds"),
                "wall_s": round(wall, 1),
                **({"macro_f1": metrics["macro_f1"]} if "macro_f1" in metrics else {}),
            }
            results.append(row)
            per_seed.append(row)
            results_file.write_text(json.dumps(results, indent=1))
            print(
                f"[{index}] {row['change']} seed {seed}: {val_key}={row[val_key]} {test_key}={row[test_key]} "
                f"best epoch {row['best_epoch']}/{row['epochs']} ({wall:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        rows.append((index, describe(change), per_seed))

    def mean(rs: list[dict], key: str) -> float:
        return statistics.fmean(r[key] for r in rs)

    def sd(rs: list[dict], key: str) -> float:
        return statistics.stdev(r[key] for r in rs) if len(rs) > 1 else 0.0

    best = better(rows, key=lambda r: mean(r[2], val_key)) if rows else None
    print(f"base: {describe(base)}; seeds {','.join(map(str, seeds))}; chosen by {val_key}\n")
    print(f"| # | change | {val_key} | {test_key} | best epoch | s/run |")
    print("|---|---|---|---|---|---|")
    for index, name, rs in rows:
        mark = " **best (val)**" if best is not None and rs is best[2] else ""
        print(
            f"| {index} | {name}{mark} | {mean(rs, val_key):.4f} ± {sd(rs, val_key):.4f} | "
            f"{mean(rs, test_key):.4f} ± {sd(rs, test_key):.4f} | {', '.join(str(r['best_epoch']) for r in rs)} | "
            f"{mean(rs, 'wall_s'):.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
