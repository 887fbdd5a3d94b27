"""The ``rnnkit`` command line: one subcommand per job.

Adding a subcommand: write ``add_cli(subparsers)`` (or ``_add_NAME`` here) that declares the subcommand, every
flag with help and a default (use :class:`rnnkit.cliutil.Formatter` and the types in :mod:`rnnkit.cliutil`), and
sets ``func`` to its handler ``(args) -> exit code`` with ``p.set_defaults(func=...)``; then list it in
:data:`_SUBCOMMANDS` — ``_add_NAME`` for one declared here, ``_elsewhere("rnnkit.MODULE")`` for one declared in
its own module. That table is the only place. Modules that declare subcommands import :mod:`rnnkit.cliutil`, never
this module.

``rnnkit train``'s ``--task`` choices and each kind's flags come from the run-kind registry
(:mod:`rnnkit.runs.kind`): a kind declares its flags, they appear here in a group named after it.

Errors: bad user input (``ValueError``, ``TypeError``, ``FileNotFoundError``, ``OSError``) and argparse's own
usage errors print one line, ``rnnkit: error: <message>``, on stderr and exit with code 2, no traceback. Set
``RNNKIT_DEBUG=1`` to get the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import rnnkit
from rnnkit.cliutil import PROG, Formatter, Parser, counted, ranged

# --------------------------------------------------------------------------------------------------------------
# rnnkit train / evaluate / predict / sample / demo


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    from rnnkit.tasks import MODELS

    d = "(default: the task's, see `rnnkit train --help`)"
    p.add_argument("--model", choices=sorted(MODELS), default=None, help=f"recurrent core {d}")
    p.add_argument(
        "--window",
        type=ranged("window"),
        default=None,
        help="inputs per window W of --model window (the last W, left zero-padded) (default: 5)",
    )
    p.add_argument("--layers", type=ranged("layers"), default=None, help=f"stacked recurrent layers {d}")
    p.add_argument("--hidden", type=ranged("hidden"), default=None, help=f"hidden size H {d}")
    p.add_argument("--embed", type=ranged("embed"), default=None, help=f"symbol embedding size {d}")
    p.add_argument(
        "--bidirectional",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"read both directions (classify, tag, seq2seq encoder) {d}",
    )
    p.add_argument("--dropout", type=ranged("dropout"), default=None, help=f"dropout probability in [0, 1) {d}")
    p.add_argument("--epochs", type=ranged("epochs"), default=None, help=f"passes over the training data {d}")
    p.add_argument("--batch-size", type=ranged("batch_size"), default=None, help=f"items per batch {d}")
    p.add_argument("--lr", type=ranged("lr"), default=None, help=f"peak AdamW learning rate {d}")
    p.add_argument(
        "--weight-decay",
        type=ranged("weight_decay"),
        default=None,
        metavar="WD",
        help=f"AdamW's decoupled weight decay on weight matrices and embeddings (biases are not decayed) {d}",
    )
    p.add_argument(
        "--ema",
        type=ranged("ema"),
        default=None,
        metavar="DECAY",
        help="keep an exponential moving average of the weights with this decay per step (e.g. 0.999); "
        f"validation, the best epoch and the saved model use it; 0: off {d}",
    )
    p.add_argument(
        "--seed",
        type=ranged("seed"),
        default=None,
        help="seed of the split, the weights and the data order (default: 0; with --resume: the run's)",
    )
    p.add_argument(
        "--max-minutes",
        type=ranged("max_minutes"),
        default=None,
        help="stop after this much training time, saving a checkpoint (continue with --resume) (default: no limit)",
    )


def _options(args: argparse.Namespace, task: str, data: str | None):
    from rnnkit.runs import RunOptions

    if args.dropout is not None and not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must lie in [0, 1), got {args.dropout}")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be positive, got {args.max_minutes}")
    return RunOptions(
        task=task,
        data=data,
        val_data=getattr(args, "val_data", None),
        test_data=getattr(args, "test_data", None),
        text_column=getattr(args, "text_column", None),
        label_column=getattr(args, "label_column", None),
        unit=getattr(args, "unit", "char"),
        fold_ascii=getattr(args, "fold_ascii", False),
        model=args.model,
        window=args.window,
        embed_dim=args.embed,
        hidden_size=args.hidden,
        num_layers=args.layers,
        bidirectional=args.bidirectional,
        dropout=args.dropout,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=0 if args.seed is None else args.seed,
        max_minutes=args.max_minutes,
        ema=getattr(args, "ema", None),
        weight_decay=getattr(args, "weight_decay", None),
        conditional=not getattr(args, "unconditional", False),
        options=_kind_options(args, task),
    )


def _defaults_epilog() -> str:
    from rnnkit.runs import DEFAULTS, load_kinds

    load_kinds()
    lines = ["defaults per task (chosen by benchmarks/sweep_defaults.py on the embedded names):"]
    for task, d in DEFAULTS.items():
        lines.append(f"  {task}: " + ", ".join(f"{k}={v}" for k, v in d.items()))
    return "\n".join(lines)


def _kind_flags() -> dict[str, tuple[object, list[str]]]:
    """Every run kind's flag by dest: ``(the Flag, the kinds that declare it)`` (a flag two kinds share is one)."""
    from rnnkit.runs.registry import load_kinds

    flags: dict[str, tuple[object, list[str]]] = {}
    for kind in load_kinds().values():
        for flag in kind.flags:
            flags.setdefault(flag.dest, (flag, []))[1].append(kind.name)
    return flags


def _kind_options(args: argparse.Namespace, task: str) -> dict[str, object]:
    """The values of the kinds' flags that were given, as ``RunOptions.options`` (converted by their Flag)."""
    options: dict[str, object] = {}
    for dest, (flag, kinds) in _kind_flags().items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if flag.only is not None and task not in kinds:
            raise ValueError(f"{flag.only}, not --task {task}")
        options[dest] = flag.convert(value) if flag.convert is not None else value
    return options


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a task model (classify, generate, tag, seq2seq, forecast, lm) into a run folder",
        description=(
            "Train a task model and write a run folder: config.json, model.safetensors, metrics.json, curve.csv,\n"
            "plots and a resumable checkpoint. --data by task:\n"
            "  classify/generate: a folder of <Category>.txt files (one item per line), one text file with one\n"
            "    item per line (generate), a CSV with a text and a label column, or embedded:country (the\n"
            "    default) / embedded:gender; classify also takes real-valued series: .ts, .npz (arrays X, y) or\n"
            "    embedded:basicmotions\n"
            "  tag: a CoNLL-style file (token and tag per line, a blank line between sequences)\n"
            "  seq2seq: embedded:cmudict (the default; word -> phonemes), or a file of source<TAB>target lines\n"
            "  forecast: a CSV with a date column and value columns, or embedded:sunspots (the default),\n"
            "    embedded:msft, embedded:ppg\n"
            "  lm: one long text file (with --tbptt K1,K2)"
        ),
        epilog=_defaults_epilog(),
        formatter_class=Formatter,
    )
    from rnnkit.runs.registry import load_kinds, selectable_kinds

    kinds = selectable_kinds()
    p.add_argument(
        "--task",
        choices=[k.name for k in kinds],
        default=None,  # classify; None tells a --resume that names no task from one that names classify
        help=", ".join(k.help or k.name for k in kinds) + " (default: classify; with --resume: the run's)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="training data: a file or folder, or an embedded:NAME (see above; default: the task's embedded data)",
    )
    p.add_argument("--val-data", default=None, help="validation data (default: 10%% carved from --data)")
    p.add_argument("--test-data", default=None, help="test data (default: 10%% of --data)")
    p.add_argument("--text-column", default=None, help="CSV: the text column (default: detected)")
    p.add_argument("--label-column", default=None, help="CSV: the label column (default: detected)")
    p.add_argument("--unit", choices=["char", "word"], default="char", help="what one sequence element is")
    p.add_argument("--fold-ascii", action="store_true", help="fold accents to ASCII (the PyTorch tutorial's way)")
    p.add_argument("--unconditional", action="store_true", help="generate: ignore the labels (one model for all items)")
    _add_model_flags(p)
    declared: set[str] = set()
    for kind in load_kinds().values():  # each kind's own flags, in a group named after it
        fresh = [f for f in kind.flags if f.dest not in declared]
        if fresh:
            g = p.add_argument_group(f"--task {kind.name}")
            for flag in fresh:
                g.add_argument(flag.name, **flag.kwargs)
                declared.add(flag.dest)
    p.add_argument("--out", required=True, help="the run folder to write")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    p.add_argument(
        "--tensorboard",
        metavar="DIR",
        default=None,
        help="also write TensorBoard events to DIR: curve.csv's numbers per epoch, and per step the loss, lr and "
        "gradient norm before clipping (needs the tensorboard extra) (default: no TensorBoard events)",
    )
    p.set_defaults(func=_cmd_train)


def _check_resume_identity(out: Path, task: str | None, seed: int | None) -> None:
    """``--resume`` naming a ``--task`` or ``--seed`` other than the run's is refused (the flags' defaults cannot
    be told from a given value in RunOptions, so the command line checks what was given)."""
    from rnnkit.runs.folder import read_config
    from rnnkit.runs.registry import kind_of_config

    if (task is None and seed is None) or not (out / "config.json").is_file():
        return  # nothing to compare, or claim_out says what is wrong
    try:
        saved = read_config(out)
    except ValueError:
        return  # not a run: claim_out says so, in the order it checks
    record = saved.get("options") if isinstance(saved.get("options"), dict) else {}
    what = (
        "--resume continues the run in {out} as it was started; it cannot change {key} (the run's is {was}; "
        "start a new run with another --out instead)"
    )
    was_seed = record.get("seed", saved["data"].get("seed"))
    if seed is not None and was_seed is not None and seed != was_seed:
        raise ValueError(what.format(out=out, key="seed", was=was_seed))
    if task is not None:
        kind = kind_of_config(saved, out).name
        if task not in (kind, record.get("task", kind)):
            raise ValueError(what.format(out=out, key="task", was=record.get("task", kind)))


def _cmd_train(args: argparse.Namespace) -> int:
    from rnnkit import distributed
    from rnnkit.runs import summary_line, train_run

    task = args.task or "classify"
    if args.resume and not args.overwrite:
        _check_resume_identity(Path(args.out), args.task, args.seed)
    opts = _options(args, task, args.data)
    metrics = train_run(opts, args.out, resume=args.resume, overwrite=args.overwrite, tensorboard=args.tensorboard)
    if not distributed.is_main():  # under torchrun, rank 0 reports for all
        return 0
    print(f"{task} · {metrics['model']}: {summary_line(metrics)}")
    epochs = counted(metrics["epochs"], "epoch")
    print(f"trained {epochs} in {metrics['train_seconds']:.0f} s ({metrics['stopped_reason']})")
    print(f"run folder: {args.out}")
    return 0


def _add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="metrics of a trained run on its test split or on other data",
        formatter_class=Formatter,
    )
    p.add_argument("run", help="a run folder written by `rnnkit train`")
    p.add_argument("--data", default=None, help="data to evaluate on (default: the run's own test split)")
    p.add_argument("--text-column", default=None, help="CSV: the text column (default: detected)")
    p.add_argument("--label-column", default=None, help="CSV: the label column (default: detected)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from rnnkit.runs import evaluate_path, load_run

    run = load_run(args.run)
    metrics = evaluate_path(run, args.data, args.text_column, args.label_column)
    if args.json:
        print(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            print(f"{k}: {v}")
    return 0


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="answer items with a run: classes, tags, phonemes, forecasts, continuations",
        formatter_class=Formatter,
    )
    p.add_argument("run", help="a run folder (classify, tag, seq2seq, forecast, lm)")
    p.add_argument(
        "items", nargs="*", metavar="ITEM", help="items to answer: names to classify, words to transcribe, ..."
    )
    p.add_argument(
        "--top-k", type=ranged("top_k"), default=None, help="classify, lm: classes (or symbols) per item (default: 3)"
    )
    p.add_argument("--beam", type=ranged("beam"), default=None, help="seq2seq: beam width (default: the run's)")
    p.add_argument(
        "--data",
        default=None,
        help="a file of inputs instead of ITEMs (forecast: the series to continue; default: none)",
    )
    p.add_argument("--horizon", type=ranged("horizon"), default=None, help="forecast: steps ahead (default: the run's)")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from rnnkit.runs import load_run, predict_lines

    run = load_run(args.run)
    options = {}  # the flags given: one that the run's kind does not read is refused, not ignored
    for key in ("top_k", "beam", "data", "horizon"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    for line in predict_lines(run, args.items, **options):
        print(line)
    return 0


def _add_sample(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sample", help="draw items from a generate run", formatter_class=Formatter)
    p.add_argument("run", help="a generate run folder")
    p.add_argument(
        "--category", default=None, help="category to generate (required for a conditional run; default: none)"
    )
    p.add_argument("--num", type=ranged("num"), default=10, help="how many items")
    p.add_argument(
        "--temperature", type=ranged("temperature"), default=0.8, help="softmax temperature; 0 = always the argmax"
    )
    p.add_argument(
        "--top-k",
        type=ranged("top_k"),
        default=None,
        help="sample among the k likeliest symbols only (default: all symbols)",
    )
    p.add_argument("--prefix", default="", help="every item starts with this")
    p.add_argument("--max-len", type=ranged("sample_max_len"), default=30, help="the most symbols per item")
    p.add_argument("--seed", type=ranged("seed"), default=None, help="seed for reproducible samples (default: random)")
    p.set_defaults(func=_cmd_sample)


def _cmd_sample(args: argparse.Namespace) -> int:
    from rnnkit.runs import load_run, sample_run

    if args.temperature < 0:
        raise ValueError(f"--temperature must be ≥ 0, got {args.temperature}")
    run = load_run(args.run)
    items = sample_run(
        run,
        category=args.category,
        num=args.num,
        temperature=args.temperature,
        prefix=args.prefix,
        max_len=args.max_len,
        seed=args.seed,
        top_k=args.top_k,
    )
    for item in items:
        print(item)
    return 0


def _add_demo(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="the lecture's two char-RNN demos on real names: classify by country, generate per country",
        description=(
            "Train a name -> country-or-region classifier and a country-conditioned name generator on the\n"
            "first-name dictionary shipped in the gender-guesser package (18 categories, ~27k names), print test\n"
            "metrics next to simple baselines, predictions and samples per category, and write both run folders."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("--out", default="runs/demo", help="parent folder of the two runs (a fresh one if it exists)")
    p.add_argument("--epochs", type=ranged("epochs"), default=None, help="epochs per model (default: each task's)")
    p.add_argument("--seed", type=ranged("seed"), default=0, help="seed of the split, weights, data order and samples")
    p.add_argument(
        "--serve",
        action="store_true",
        help="when done, serve the demo's runs on the page of `rnnkit serve` (loopback; Ctrl-C stops; extra serve)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="with --serve: the TCP port on 127.0.0.1; 0 picks a free one (default: 8000)",
    )
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from rnnkit.demo import run_demo

    if not args.serve:
        if args.port is not None:
            raise ValueError("--port is the port of --serve: give --serve too, or leave --port out")
        return run_demo(args.out, epochs=args.epochs, seed=args.seed)
    from rnnkit import serve

    port = 8000 if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be an integer in [0, 65535], got {port}")
    try:
        serve.require_serve_extra()  # refused before minutes of training, not after
    except ValueError as error:
        raise ValueError(f"--serve: {error}") from None
    serve.check_port_free("127.0.0.1", port)
    return run_demo(
        args.out,
        epochs=args.epochs,
        seed=args.seed,
        then=lambda folders: serve.serve_until_stopped(folders, "127.0.0.1", port),
    )


# --------------------------------------------------------------------------------------------------------------
# The parser and the entry point


def _elsewhere(module: str) -> Callable[[argparse._SubParsersAction], None]:
    """The ``add_cli(subparsers)`` of a subcommand declared in its own module, imported only when the parser is
    built (the module imports :mod:`rnnkit.cliutil`, never this module)."""

    def add(subparsers: argparse._SubParsersAction) -> None:
        importlib.import_module(module).add_cli(subparsers)

    return add


_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_train,
    _add_evaluate,
    _add_predict,
    _add_sample,
    _elsewhere("rnnkit.bench_command"),
    _elsewhere("rnnkit.diagnostics_command"),  # gradients, memory
    _elsewhere("rnnkit.export"),
    _elsewhere("rnnkit.serve"),
]
"""Every subcommand, in the order ``rnnkit --help`` lists them: the one table to add a subcommand to."""


def build_parser() -> argparse.ArgumentParser:
    """The ``rnnkit`` parser with every subcommand."""
    import torch

    parser = Parser(
        prog=PROG,
        description="rnnkit: recurrent neural networks from the lecture's equations, drop-in for torch.nn.",
        formatter_class=Formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"{PROG} {rnnkit.__version__} (torch {torch.__version__})"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for add in _SUBCOMMANDS:
        add(subparsers)
    for sub in subparsers.choices.values():
        if not any("--threads" in action.option_strings for action in sub._actions):
            sub.add_argument(
                "--threads",
                type=ranged("threads"),
                default=None,
                help="torch's CPU threads (default: the CPUs no other process is using, 1 for a tiny model, see "
                "docs/engine.md; bench: 1; OMP_NUM_THREADS, when set, is left alone)",
            )
    return parser


TINY = 1024
"""``hidden × batch`` below which a model runs on one thread: its steps are too small to split."""


def busy_cpus(cpus: int, interval: float = 0.05) -> float:
    """How many of ``cpus`` other processes keep busy now: the busy share of ``/proc/stat``'s CPU time over
    ``interval`` seconds (this process sleeps meanwhile) times ``cpus``; where there is no ``/proc/stat``, the
    1-minute load average (which lags a job that just ended by a minute or more)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    total = total1 - total0
    return 0.0 if total <= 0 else cpus * (total - (idle1 - idle0)) / total


_BUSY: dict[int, float] = {}


def _busy_now(cpus: int) -> float:
    """:func:`busy_cpus`, measured once per process (``main`` may run many times in one process, as in tests)."""
    if cpus not in _BUSY:
        _BUSY[cpus] = busy_cpus(cpus)
    return _BUSY[cpus]


def pick_threads(hidden: int | None, batch: int | None, cpus: int | None = None, busy: float | None = None) -> int:
    """torch's thread count: the CPUs no other process is using, or 1 for a tiny model.

    ``busy`` is the number of CPUs other processes keep busy (default: :func:`busy_cpus`, rounded); a
    model with ``hidden · batch < TINY`` gets 1 thread, any other (or one of unknown size) every free CPU, at
    least 1. Measured on a 2-core machine: idle, 2 threads ran ``rnnkit demo`` in 214 s where 1 took 326 s; with
    another process on one core, 2 threads made an epoch of the names classifier 8× slower than 1 — so a busy
    machine gets 1. E.g. 2 idle CPUs: H=64, B=32 → 2; H=8, B=4 → 1; 2 CPUs with load 1.2 → 1.
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if busy is None:
        busy = _busy_now(cpus)
    if hidden and batch and hidden * batch < TINY:
        return 1
    return max(1, min(cpus, cpus - round(busy)))


def _set_threads(args: argparse.Namespace) -> int | None:
    """Apply ``--threads`` or the rule; returns the previous count to restore (None when left alone)."""
    threads = getattr(args, "threads", None)
    if threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return None
        threads = 1 if args.command == "bench" else pick_threads(getattr(args, "hidden", None), _batch(args))
    before = _torch_threads()
    if threads != before:
        import torch

        torch.set_num_threads(threads)
    return before


def _batch(args: argparse.Namespace) -> int | None:
    batch = getattr(args, "batch_size", None)
    return batch if isinstance(batch, int) else None


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    """Run ``rnnkit`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    if args.command is None:
        parser.print_help()
        return 0
    from rnnkit import distributed

    try:
        # launched by torchrun (WORLD_SIZE > 1): join the process group; a plain run does nothing here
        world = distributed.init_from_env() if args.command == "train" else None
        threads_before = _set_threads(args)
        finished = False
        try:
            code = args.func(args)
            finished = True
            return code
        finally:
            if threads_before is not None:  # main() may run inside another program (tests): leave it as found
                import torch

                torch.set_num_threads(threads_before)
            if world is not None:
                distributed.shutdown(finished)  # a barrier first only when this process ended normally
    except BrokenPipeError:  # e.g. `rnnkit bench | head`: the reader left; say nothing more
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- keeps Python's exit-time flush quiet
        return 1
    except (ValueError, TypeError, OSError, MemoryError) as error:  # FileNotFoundError is an OSError
        if os.environ.get("RNNKIT_DEBUG"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
