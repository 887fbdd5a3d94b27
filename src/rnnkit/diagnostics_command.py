"""``rnnkit gradients`` and ``rnnkit memory``: the subcommands over :mod:`rnnkit.diagnostics` and
:mod:`rnnkit.memory` (the lecture's vanishing gradients, a trained run's gradient flow, and how far back each
model remembers).

The measurements live in those modules; this one declares the flags and prints or plots the results. It imports
:mod:`rnnkit.cliutil`, never :mod:`rnnkit.cli` (DEVELOPERS.md, "A subcommand").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnkit.cliutil import PROG, Formatter, ranged


def _wh_value(text: str) -> int | float:
    """A ``--wh`` value, kept an int when written as one (the header prints it as given: ``1``, ``0.1``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _add_gradients(subparsers: argparse._SubParsersAction) -> None:
    from rnnkit.diagnostics import LECTURE_LENGTHS, LECTURE_WH

    p = subparsers.add_parser(
        "gradients",
        help="vanishing/exploding gradients: the lecture's TinyRNN tables, or ‖∂L/∂h_t‖ through time",
        description=(
            "Three modes:\n"
            "  --tiny            the lecture's TinyRNN experiment (h = relu(wh·h), y = wy·h, MSE on the last step),\n"
            "                    parameter gradients per wh_init and sequence length, computed by running it;\n"
            "  RUN               ‖∂L/∂h_t‖ per step, layer and direction of a trained run, on test items;\n"
            "  --compare M ...   the same for fresh models on one synthetic batch (loss: the last step's output).\n"
            "RUN and --compare write a PNG (log-scale norm against t) and a CSV beside it, and print a table."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("run", nargs="?", default=None, help="a run folder written by `rnnkit train` (default: none)")
    p.add_argument("--tiny", action="store_true", help="print the lecture's TinyRNN gradient tables")
    p.add_argument(
        "--wh", nargs="+", type=_wh_value, default=list(LECTURE_WH), metavar="W", help="--tiny: the wh_init values"
    )
    p.add_argument(
        "--lengths",
        nargs="+",
        type=ranged("lengths"),
        default=list(LECTURE_LENGTHS),
        metavar="L",
        help="--tiny: the sequence lengths",
    )
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="--tiny: the TinyRNN's dtype")
    p.add_argument(
        "--compare",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="fresh registry models to compare, e.g. --compare rnn lstm gru (default: none)",
    )
    p.add_argument("--length", type=ranged("lengths"), default=50, help="--compare: sequence length T")
    p.add_argument("--hidden", type=ranged("hidden"), default=32, help="--compare: hidden size H of every model")
    p.add_argument("--batch-size", type=ranged("batch_size"), default=16, help="sequences in the batch")
    p.add_argument("--seed", type=ranged("seed"), default=0, help="--compare: seed of the weights and the batch")
    p.add_argument(
        "--plot",
        default=None,
        help="the PNG to write; the CSV goes beside it (default: RUN/gradient_flow.png, or gradient_flow.png "
        "with --compare)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing PNG or CSV (without it they are refused, except RUN's own gradient_flow files)",
    )
    p.set_defaults(func=_cmd_gradients)


def _cmd_gradients(args: argparse.Namespace) -> int:
    import torch

    from rnnkit import diagnostics as dg
    from rnnkit.plots import MATPLOTLIB_NOTE

    modes = [m for m, on in (("RUN", args.run), ("--tiny", args.tiny), ("--compare", args.compare)) if on]
    if len(modes) != 1:
        what = "none" if not modes else " and ".join(modes)
        raise ValueError(f"gradients needs exactly one of RUN, --tiny or --compare (got {what})")
    if args.tiny:
        dtype = getattr(torch, args.dtype)
        for i, wh in enumerate(args.wh):
            if i:
                print()
            print("\n".join(dg.show_grads(wh, args.lengths, dtype)))
        cancelled = dg.tiny_cancellations(args.wh, args.lengths, dtype)
        print()
        if any(0 < abs(wh) < 1 for wh in args.wh):
            print("Note: for wh_init < 1 a 0.000000 is a true gradient below 5e-7 (vanishing: 2·0.1^10 = 2e-10).")
        if cancelled:
            cells = ", ".join(f"wh_init={wh} Length={L}" for wh, L in cancelled)
            print(
                f"Note: the zeros at {cells} are not vanishing gradients. "
                + dg.CANCELLATION_NOTE.format(dtype=args.dtype)
            )
        else:
            print(
                f"Note: in {args.dtype} no target y_pred - 1 rounds back to y_pred here, so every gradient is the "
                "exact value up to rounding (0.000000 means smaller than 5e-7). In float32 the lecture's "
                "wh_init=10, Length=10 prints zeros because 1e10 - 1 == 1e10; --dtype float64 shows the true values."
            )
        return 0
    if args.plot is not None and Path(args.plot).suffix.lower() != ".png":
        raise ValueError(f"--plot must name a .png file (the CSV goes beside it), got {args.plot!r}")
    if args.compare:
        norms = dg.compare_flow(args.compare, args.length, args.hidden, batch_size=args.batch_size, seed=args.seed)
        title = f"gradient flow, fresh models, T={args.length}, H={args.hidden}"
        plot = args.plot or "gradient_flow.png"
    else:
        from rnnkit.runs import kind_of, load_run

        run = load_run(args.run)
        batch = kind_of(run).gradient_batch(run, args.batch_size)  # the first test items, each kind its own
        flow = dg.gradient_flow(run.model, batch)
        norms = {f"{run.config['model']['model']} {k}": v for k, v in flow.norms.items()}
        title = f"gradient flow of {Path(args.run).name} ({len(batch)} test items, loss {flow.loss:.3f})"
        plot = args.plot or str(Path(args.run) / "gradient_flow.png")
    own = args.plot is None and args.run  # RUN/gradient_flow.*: rnnkit's own files in the run folder
    if not args.overwrite and not own:
        for path in (Path(plot).with_suffix(".csv"), Path(plot)):
            if path.exists() or path.is_symlink():
                raise ValueError(f"{path} exists; pass --overwrite to replace it, or choose another --plot")
    print(dg.flow_table(norms))
    csv_path = dg.write_flow_csv(norms, Path(plot).with_suffix(".csv"))
    png = dg.plot_flow(norms, plot, title)
    print(f"wrote {csv_path}" + (f" and {png}" if png is not None else ""))
    if png is None:
        print(MATPLOTLIB_NOTE)
    return 0


_NOT_MEMORY_MODELS = ("lstm-fcn", "mlstm-fcn")
"""Registry models that `rnnkit memory` does not offer (summary cores: see its --models help)."""


def _add_memory(subparsers: argparse._SubParsersAction) -> None:
    from rnnkit.data.synthetic import TASKS
    from rnnkit.memory import DEFAULT_LENGTHS, DEFAULT_MODELS
    from rnnkit.tasks import MODELS

    p = subparsers.add_parser(
        "memory",
        help="long-range memory: train rnn/lstm/gru/window at growing lengths on a synthetic task",
        description=(
            "Train every model at every length on a synthetic memory task (adding problem, copy, temporal order)\n"
            "with the same number of updates and parameter counts within ±10% of the LSTM's, and print the test\n"
            "metric per model and length next to the task's memoryless baseline; writes a CSV and a PNG."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--task", choices=TASKS, default="adding", help="the synthetic task")
    p.add_argument("--lengths", type=ranged("lengths"), nargs="+", default=list(DEFAULT_LENGTHS), help="lengths T")
    # LSTM-FCN / MLSTM-FCN are left out: their convolution branch alone (~260k parameters) is ~15 times the LSTM's
    # budget at --hidden 64, so no hidden size matches it, and the copy task reads an output per step
    p.add_argument(
        "--models",
        nargs="+",
        choices=[m for m in sorted(MODELS) if m not in _NOT_MEMORY_MODELS],
        default=list(DEFAULT_MODELS),
        help="recurrent models compared at equal parameter counts (not lstm-fcn/mlstm-fcn: their convolution "
        "branch alone exceeds the budget, and copy needs an output per step)",
    )
    p.add_argument("--steps", type=ranged("steps"), default=3000, help="updates per model and length")
    p.add_argument("--batch-size", type=ranged("batch_size"), default=64, help="sequences per update")
    p.add_argument("--hidden", type=ranged("hidden"), default=64, help="the LSTM's hidden size (sets the budget)")
    p.add_argument("--window", type=ranged("window"), default=10, help="W of the window model")
    p.add_argument("--seed", type=ranged("seed"), default=0, help="seed of data and weights")
    p.add_argument("--quick", action="store_true", help="a tiny run (lengths 5 10, 30 steps, hidden 8) for tests")
    p.add_argument("--out", default="runs/memory", help="folder for memory-TASK.csv and memory-TASK.png")
    p.set_defaults(func=_cmd_memory)


def _cmd_memory(args: argparse.Namespace) -> int:
    from rnnkit.memory import format_table, plot_rows, run_memory, write_csv
    from rnnkit.plots import MATPLOTLIB_NOTE

    lengths, steps, hidden, batch = args.lengths, args.steps, args.hidden, args.batch_size
    if args.quick:
        lengths, steps, hidden, batch = [5, 10], 30, 8, 16
    if args.task == "temporal-order" and min(lengths) < 10:
        lengths = sorted({max(10, T) for T in lengths})  # the task needs T ≥ 10

    def progress(message: str) -> None:
        print(f"{PROG} memory: {message}", file=sys.stderr, flush=True)

    rows = run_memory(
        args.task,
        lengths,
        args.models,
        steps=steps,
        batch_size=batch,
        hidden=hidden,
        window=args.window,
        seed=args.seed,
        progress=progress,
    )
    print(format_table(rows))
    out = Path(args.out)
    csv_path = write_csv(rows, out / f"memory-{args.task}.csv")
    png = plot_rows(rows, out / f"memory-{args.task}.png")
    print(f"\nwrote {csv_path}" + (f" and {png}" if png is not None else ""))
    if png is None:
        print(MATPLOTLIB_NOTE)
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Declare ``rnnkit gradients`` and ``rnnkit memory`` (listed in :data:`rnnkit.cli._SUBCOMMANDS`)."""
    _add_gradients(subparsers)
    _add_memory(subparsers)
