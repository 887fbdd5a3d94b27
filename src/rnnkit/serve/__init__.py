"""Serve trained runs over HTTP with FastAPI on uvicorn (extra ``serve``): JSON answers and a page at ``/``.

``rnnkit serve RUN [RUN ...]`` (or :func:`serve`) answers, for each run folder NAME it is given:

``GET /health``
    ``{"status": "ok", "endpoints": [...], "limits": {...}, "runs": {NAME: {"task": ..., "model": ..., ...}}}``
    (with one run, its ``task``, ``app``, ``model``, ``run`` and ``classes`` at the top too).
``POST /runs/NAME/predict`` (runs of every kind but generate)
    ``{"items": ["Anna", ...], "top_k": 3}`` → ``{"predictions": [{"item": "Anna", "top": [{"label": "Alpha",
    "prob": 0.91}, ...]}, ...]}``; for a run of another kind (``beam``, ``horizon`` and ``top_k`` are passed on) →
    ``{"lines": [...]}``, the lines ``rnnkit predict`` prints; a seq2seq run adds ``"outputs": [{"item": ...,
    "candidates": [{"output": ..., "score": ...}, ...]}, ...]``, the beam's candidates best first.
    A series run (series classification, forecast) takes its series as numbers (:mod:`rnnkit.serve.series`):
    ``{"series": [[x_1, ..., x_C], ...]}`` (one; a one-channel run also takes a list of values) or ``{"items": [S,
    ...]}`` (several), with ``top_k`` or ``horizon`` → ``{"predictions": [{"item": 0, "top": [...]}, ...], "lines":
    [...]}`` (a classifier) or ``{"forecasts": [{"item": 0, "values": [...]}, ...], "lines": [...]}`` (a forecast).
``POST /runs/NAME/sample`` (generate runs)
    ``{"category": "Alpha", "num": 10, "temperature": 0.8, "seed": 0, "prefix": "", "max_len": 30, "top_k": null}``
    (all optional but ``category`` for a conditional run) → ``{"samples": ["Anna", ...]}``.
``GET /runs``, ``GET /runs/NAME``
    the runs' reports: metrics, training curve (curve.csv), confusion matrix.
``GET /``
    the page: every run's report, and a box for each run's predict or sample.
``GET /docs``, ``GET /openapi.json``
    the request and response schemas (pydantic models carrying the limits).

Every error is JSON ``{"error": "<one line>"}`` with a 4xx status: 400 malformed JSON, a body that is not an object,
unknown fields, wrong types or values out of range, unknown symbols or categories; 404 a path not served; 405 the
wrong method (with ``Allow``); 408 a body that does not arrive in time; 411 no ``Content-Length``; 413 a body over
``max_bytes``; 415 a body that is not ``application/json`` (UTF-8); 503 more than ``max_connections`` at once
(uvicorn's ``limit_concurrency``). A bug gives 500 with a generic message: the traceback goes to the server's log,
never to the client. The server binds the loopback interface unless told otherwise and has no authentication: keep
it there, or put a proxy in front. SIGINT and SIGTERM stop it cleanly (requests in flight finish).
"""

from __future__ import annotations

import importlib
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LOOPBACK",
    "HTTPError",
    "Limits",
    "add_cli",
    "check_port_free",
    "create_app",
    "require_serve_extra",
    "serve",
    "serve_until_stopped",
]

LOOPBACK = ("127.0.0.1", "::1", "localhost")
_MISSING = "rnnkit serve needs the serve extra: pip install 'rnnkit[serve]' (FastAPI and uvicorn)"


def __getattr__(name: str) -> Any:
    """``Limits``, ``serve``, ``create_app``, ... from :mod:`rnnkit.serve.app` (imported on first use, so that
    ``rnnkit --help`` works without the serve extra)."""
    if name in ("HTTPError", "Limits", "Server", "create_app", "serve", "report"):
        from rnnkit.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'rnnkit.serve' has no attribute {name!r}")


# --------------------------------------------------------------------------------------------------------------
# rnnkit serve


def _port(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is an integer in [0, 65535], got {text!r}")
    return value


def add_cli(subparsers: Any) -> None:
    """Declare ``rnnkit serve RUN [RUN ...] [--host H] [--port P] [--max-bytes N] [--max-items N] [--max-steps N]``."""
    from rnnkit.cliutil import Formatter, positive_int

    p = subparsers.add_parser(
        "serve",
        help="serve trained runs over HTTP on localhost: a page at /, JSON at /runs/NAME/predict|sample, /docs",
        description=(
            "Serve run folders (FastAPI on uvicorn; extra `serve`): the page at /, GET /health,\n"
            'POST /runs/NAME/predict {"items": [...], "top_k": 3} (a series run: {"series": [...]} numbers);\n'
            'POST /runs/NAME/sample {"category": ..., "num": 10} (NAME is the run folder\'s name)\n'
            '; schemas at /docs. Errors are JSON {"error": ...} with a 4xx status.\n'
            "No authentication: keep the loopback host. Ctrl-C or SIGTERM stops it."
        ),
        formatter_class=Formatter,
    )
    p.add_argument("run", nargs="+", help="run folders written by `rnnkit train`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (anything but loopback exposes the model)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port; 0 picks a free one")
    p.add_argument("--max-bytes", type=positive_int, default=65536, help="largest request body (413 beyond)")
    p.add_argument("--max-items", type=positive_int, default=256, help="most items per predict request")
    p.add_argument(
        "--max-steps",
        type=positive_int,
        default=10_000,
        help="most steps per series a series run's predict takes (a forecast run: at least its context)",
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: Any) -> int:
    try:
        web = require_serve_extra()
    except ValueError as error:
        print(f"rnnkit: error: {error}", file=sys.stderr)
        return 2
    from rnnkit.runs import load_run

    runs = [load_run(path) for path in args.run]
    limits = web.Limits(max_bytes=args.max_bytes, max_items=args.max_items, max_steps=args.max_steps)
    return serve_until_stopped(runs, args.host, args.port, limits=limits)


def require_serve_extra() -> Any:
    """:mod:`rnnkit.serve.app`, or a ``ValueError`` naming the extra when FastAPI or uvicorn are missing."""
    try:
        return importlib.import_module("rnnkit.serve.app")
    except ImportError:
        raise ValueError(_MISSING) from None


def check_port_free(host: str, port: int) -> None:
    """Raise ``OSError`` now if ``host:port`` cannot be bound (port 0 always can): callers that first work for
    minutes (``rnnkit demo --serve``) refuse a busy port before they start."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def serve_until_stopped(runs: Sequence[Any], host: str = "127.0.0.1", port: int = 8000, *, limits: Any = None) -> int:
    """Serve ``runs`` (loaded runs or their folders) on ``host:port`` until Ctrl-C or SIGTERM, printing the URL
    first and ``stopped`` last; returns 0 (the exit code of ``rnnkit serve`` and ``rnnkit demo --serve``).

    Raises ``ValueError`` without the serve extra, ``OSError`` when the port cannot be bound.
    """
    web = require_serve_extra()
    from rnnkit.runs import load_run

    loaded = [r if not isinstance(r, (str, Path)) else load_run(r) for r in runs]
    server = web.serve(loaded, host, port, limits=limits)
    if host not in LOOPBACK:
        print(
            f"rnnkit serve: warning: listening on {host}, beyond this machine, without authentication",
            file=sys.stderr,
        )
    names = ", ".join(f"{r.path.name} ({r.task})" for r in loaded)
    print(f"serving {names} on {server.url}: the page at /, schemas at /docs (Ctrl-C stops)", flush=True)
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the handler it found: a quiet
    # one here, so that a stop asked for is a clean exit (code 0) rather than death by the signal
    caught: list[int] = []
    quiet = {}
    if threading.current_thread() is threading.main_thread():
        quiet = {sig: signal.signal(sig, lambda s, f: caught.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_forever()
    finally:
        server.server_close()
        for sig, handler in quiet.items():
            signal.signal(sig, handler)
    print("stopped", flush=True)
    return 0
