"""``rnnkit export``: the subcommand's flags and handler."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rnnkit.export.graphs import _no_step_reason
from rnnkit.export.verify import verify_export, verify_kernels
from rnnkit.export.writer import export_run


def add_cli(subparsers: Any) -> None:
    """Declare ``rnnkit export RUN [--format onnx] [--output PATH] [--check | --no-check]``."""
    import argparse

    from rnnkit.cliutil import Formatter as _Formatter

    p = subparsers.add_parser(
        "export",
        help="export a run's model to ONNX: a whole-sequence graph and a step graph with explicit state",
        description=(
            "Write RUN/model.onnx (the whole-sequence graph, dynamic batch and length), RUN/model.step.onnx (one\n"
            "time step with explicit state inputs and outputs; not for bidirectional models) and RUN/model.onnx.json\n"
            "(input/output names and shapes, vocabulary, classes). With onnxruntime installed the graphs are run on\n"
            "random inputs and compared with PyTorch."
        ),
        formatter_class=_Formatter,
    )
    p.add_argument("run", help="a run folder written by `rnnkit train`")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="the export format")
    p.add_argument("--output", default=None, help="the .onnx file to write (default: RUN/model.onnx)")
    p.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare the graphs with PyTorch in onnxruntime (skipped when it is not installed)",
    )
    p.set_defaults(func=_cmd_export)


def _signature(spec: dict[str, Any]) -> str:
    def one(s: dict[str, Any]) -> str:
        dims = ", ".join(str(d) for d in s["shape"])
        return f"{s['name']} ({dims}{',' if len(s['shape']) == 1 else ''}) {s['dtype']}"

    return ", ".join(one(s) for s in spec["inputs"]) + " -> " + ", ".join(one(s) for s in spec["outputs"])


def _cmd_export(args: Any) -> int:
    from rnnkit.runs import load_run

    run = load_run(args.run)
    info = export_run(run, args.output)
    for name, spec in info["graphs"].items():
        print(f"wrote {Path(info['paths'][0]).parent / spec['file']} ({name}): {_signature(spec)}")
    if "ngram" in info:
        print(f"wrote {info['paths'][-2]} (the count member, mixed with weight {info['ngram']['weight']:g})")
    if "dtw" in info:
        print(f"wrote {info['paths'][-2]} (the DTW member, mixed with the ridge with weight {info['dtw']['weight']:g})")
    print(f"wrote {info['paths'][-1]} (names, shapes, vocabulary, classes)")
    if "step" not in info["graphs"]:
        print(f"no step graph: {_no_step_reason(run.model)}")
    if args.check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print("onnxruntime is not installed (pip install 'rnnkit[onnx]'): skipped the check")
            return 0
        lengths = (1, 5, 12)
        worst = verify_export(run.model, info["paths"][0], lengths=lengths)
        if "kernels" in info["graphs"]:
            from rnnkit.runs.series_kernels import load_kernels

            worst = max(worst, verify_kernels(load_kernels(run), info["paths"][0], lengths=lengths))
        if not math.isfinite(worst) or worst > 1e-4:
            raise ValueError(f"the exported graphs differ from PyTorch by {worst:.2e} (more than 1e-4): please report")
        Ts = ", ".join(map(str, lengths))
        print(f"onnxruntime check: max |ONNX - PyTorch| = {worst:.1e} on random inputs (T = {Ts})")
    return 0
