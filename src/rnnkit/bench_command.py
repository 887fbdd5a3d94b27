"""``rnnkit bench``: the subcommand over :mod:`rnnkit.bench` (the grid, the extra rows) and :mod:`rnnkit.bench_long`.

The measurements live in those modules; this one declares the flags, reports progress on stderr and prints the
table (or ``--json``). It imports :mod:`rnnkit.cliutil`, never :mod:`rnnkit.cli` (DEVELOPERS.md, "A subcommand").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from rnnkit import ranges
from rnnkit.cliutil import PROG, Formatter, ranged


def _shape(text: str) -> tuple[int, int, int, int]:
    """Parse ``T,B,I,H`` (four positive integers) for ``--shapes``."""
    parts = text.split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"a shape is four positive integers T,B,I,H such as 50,16,32,64, got {text!r}")
    return values  # type: ignore[return-value]


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Declare ``rnnkit bench`` (listed in :data:`rnnkit.cli._SUBCOMMANDS`)."""
    from rnnkit import bench

    shapes = " ".join(",".join(map(str, s)) for s in bench.SHAPES)
    p = subparsers.add_parser(
        "bench",
        help="time forward+backward of rnnkit's layers against torch.nn and a tutorial-style loop",
        description=(
            "Time one forward+backward pass (float32) of rnnkit's layer, torch.nn's layer with the same weights,\n"
            "and a tutorial-style autograd loop over torch.nn.*Cell, interleaved after a warm-up; report medians,\n"
            "rnnkit/torch ratios and the GEMM-bound floor (matrix-product FLOPs over a torch.mm rate measured in\n"
            "the same run). Only ratios from one run are comparable: absolute times vary between runs.\n"
            "Peers in the same rounds: torch.nn.LSTM at each shape and, with jax installed, a jit'd lax.scan.\n"
            "Without --shapes it also measures forward-only rows at B=1, sampling a generator step by step and\n"
            "(not with --quick) the small shapes on 2 threads. Runs on 1 thread unless --threads says otherwise.\n"
            "Forward+backward rows interleave one call of each implementation per round; the B=1 forward-only\n"
            "and sampling rows time blocks of back-to-back calls of one layer, the blocks alternating over rounds\n"
            "(torch.utils.benchmark.Timer's method, as serving and sampling call a model; docs/engine.md).\n"
            f"Default shapes (T,B,I,H): {shapes}."
        ),
        formatter_class=Formatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"only the first shape ({shapes.split()[0]}), with a shorter time budget; well under a minute",
    )
    p.add_argument(
        "--cells",
        nargs="+",
        choices=bench.CELLS,
        default=list(bench.CELLS),
        metavar="CELL",
        help=f"cells to measure, from: {', '.join(bench.CELLS)}",
    )
    p.add_argument(
        "--shapes",
        nargs="+",
        type=_shape,
        default=None,
        metavar="T,B,I,H",
        help="shapes to measure (default: the grid above, or its first shape with --quick), "
        "e.g. --shapes 50,16,32,64 100,1,64,128",
    )
    p.add_argument(
        "--repeats",
        type=ranged("repeats"),
        default=None,
        help="timed repeats per implementation (default: picked per shape and cell from --budget, 5 to 60)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds of timed repeats per shape and cell, without --repeats (default: 8, or 1.5 with --quick)",
    )
    p.add_argument("--seed", type=ranged("seed"), default=0, help="seed for weights and inputs")
    p.add_argument(
        "--long",
        action="store_true",
        help="instead: minGRU/minLSTM against torch.nn.GRU/LSTM at T = 256, 1024, 4096 (B=16, I=64, H=256), "
        "forward+backward, forward only and one streaming step, with the input projection's time and memory "
        "(rnnkit.bench_long); --repeats applies, --quick only T = 256",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print only a JSON array of results on stdout (progress goes to stderr)",
    )
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from rnnkit import bench

    if args.budget is not None and not args.budget > 0:
        raise ValueError(f"--budget must be a positive number of seconds, got {args.budget}")
    ranges.check(budget=args.budget)
    shapes = args.shapes or (bench.QUICK_SHAPES if args.quick else bench.SHAPES)
    budget = args.budget if args.budget is not None else (1.5 if args.quick else 8.0)
    cells = list(dict.fromkeys(args.cells))  # drop repeats, keep order

    def progress(message: str) -> None:
        print(f"{PROG} bench: {message}", file=sys.stderr, flush=True)

    busy = bench.busy_cpus()
    if busy is not None and busy > 0.3:
        progress(
            f"warning: other processes keep {busy:.1f} of {os.cpu_count()} CPUs busy; timings will be slow and "
            "noisy (torch's threads wait for each other), compare with a run on an idle machine"
        )
    start = time.perf_counter()
    if args.long:
        from rnnkit import bench_long

        lengths = bench_long.LONG_LENGTHS[:1] if args.quick else bench_long.LONG_LENGTHS
        rows = bench_long.long_rows(lengths=lengths, repeats=args.repeats or 5, seed=args.seed, progress=progress)
        rows = list(rows)
        print(json.dumps(rows, indent=1) if args.json else bench_long.format_long(rows))
        return 0
    results = bench.run(shapes, cells, repeats=args.repeats, budget_s=budget, seed=args.seed, progress=progress)
    if args.shapes is None:  # the default run also measures inference, sampling and (not --quick) two threads
        modes = ("infer", "sample") if args.quick else None
        results += bench.run_extras(cells, budget_s=budget, seed=args.seed, progress=progress, modes=modes)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(bench.format_table(results))
        busy_end = bench.busy_cpus()
        print(
            f"\n{len(results)} measurements in {time.perf_counter() - start:.0f} s; CPUs busy with other processes: "
            f"{_cpus(busy)} before, {_cpus(busy_end)} after"
        )
    return 0


def _cpus(busy: float | None) -> str:
    return "unknown" if busy is None else f"{busy:.1f}"
