"""Serve a trained run over HTTP: JSON requests in, JSON answers out, on localhost (the standard library only).

``rnnkit serve RUN --port P`` (or :func:`serve`) answers:

``GET /health``
    ``{"status": "ok", "task": ..., "app": ..., "model": ..., "run": ..., "endpoints": [...], "classes": [...],
    "limits": {...}}``.
``POST /predict`` (runs of every kind but generate)
    ``{"items": ["Anna", ...], "top_k": 3}`` → ``{"predictions": [{"item": "Anna", "top": [{"label": "Alpha",
    "prob": 0.91}, ...]}, ...]}``; for a run of another kind (``beam``, ``horizon`` and ``top_k`` are passed on) →
    ``{"lines": [...]}``, the lines ``rnnkit predict`` prints.
``POST /sample`` (generate runs)
    ``{"category": "Alpha", "num": 10, "temperature": 0.8, "seed": 0, "prefix": "", "max_len": 30, "top_k": null}``
    (all optional but ``category`` for a conditional run) → ``{"samples": ["Anna", ...]}``.

Every error is JSON ``{"error": "<one line>"}`` with a 4xx status: 400 malformed JSON, a body that is not an object,
unknown fields, wrong types or values out of range, unknown symbols or categories; 404 a path this run does not
serve; 405 the wrong method (with ``Allow``); 408 a body that does not arrive in time; 411 no ``Content-Length``;
413 a body over ``max_bytes``; 415 a body that is not ``application/json`` (UTF-8). A bug gives 500 with a generic
message: the traceback goes to the server's log, never to the client. The server binds the loopback interface
unless told otherwise and has no authentication: keep it there, or put a proxy in front.
"""

from __future__ import annotations

import json
import math
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rnnkit import __version__
from rnnkit.runs import Run, kind_of, load_run, sample

__all__ = ["HTTPError", "Limits", "RunServer", "serve"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond it the server answers 4xx without running the model."""

    max_bytes: int = 65536  # request body (413 beyond)
    max_items: int = 256  # items per /predict request
    max_item_chars: int = 1000  # characters per item (and per /sample prefix)
    max_num: int = 100  # samples per /sample request
    max_len: int = 200  # symbols per sample
    max_top_k: int = 1000  # /predict top_k, /sample top_k
    max_beam: int = 16  # /predict beam (seq2seq runs)
    max_horizon: int = 1000  # /predict horizon (forecast steps, characters an lm run generates)
    timeout: float = 10.0  # seconds a client may take to send its whole request body
    max_connections: int = 64  # requests handled at once; more get 503 at once


class HTTPError(Exception):
    """An answer other than 200: ``status`` and a one-line ``message`` for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# --------------------------------------------------------------------------------------------------------------
# Request fields


def _check_fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise HTTPError(400, f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")


def _int(body: dict[str, Any], key: str, default: int | None, lo: int, hi: int) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise HTTPError(400, f"{key!r} must be an integer, got {json.dumps(value)[:40]}")
    if not lo <= value <= hi:
        raise HTTPError(400, f"{key!r} must lie in [{lo}, {hi}], got {value}")
    return value


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HTTPError(400, f"{key!r} must be a finite number, got {json.dumps(value)[:40]}")
    if not lo <= value <= hi:
        raise HTTPError(400, f"{key!r} must lie in [{lo}, {hi}], got {value}")
    return float(value)


def _string(body: dict[str, Any], key: str, default: str | None, max_chars: int) -> str | None:
    value = body.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise HTTPError(400, f"{key!r} must be a string, got {json.dumps(value)[:40]}")
    if len(value) > max_chars:
        raise HTTPError(400, f"{key!r} has {len(value)} characters, more than the limit of {max_chars}")
    return value


def _items(body: dict[str, Any], limits: Limits) -> list[str]:
    if "items" not in body:
        raise HTTPError(400, 'the body needs "items": a list of strings, e.g. {"items": ["Anna"]}')
    items = body["items"]
    if not isinstance(items, list):
        raise HTTPError(400, f'"items" must be a list of strings, got {json.dumps(items)[:40]}')
    if not items:
        raise HTTPError(400, '"items" is empty: give at least one item')
    if len(items) > limits.max_items:
        raise HTTPError(400, f'"items" has {len(items)} entries, more than the limit of {limits.max_items}')
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise HTTPError(400, f'"items"[{i}] must be a string, got {json.dumps(item)[:40]}')
        if not item.strip():
            raise HTTPError(400, f'"items"[{i}] is empty')
        if len(item) > limits.max_item_chars:
            raise HTTPError(
                400, f'"items"[{i}] has {len(item)} characters, more than the limit of {limits.max_item_chars}'
            )
    return items


# --------------------------------------------------------------------------------------------------------------
# Endpoints


def _health(server: RunServer, body: Any) -> dict[str, Any]:
    run = server.run
    kind = kind_of(run)
    answer = {
        "status": "ok",
        "task": run.task,
        "app": kind.app,
        "model": run.config["model"]["model"],
        "run": run.path.name,
        "endpoints": [f"{method} {path}" for path, (method, _) in server.routes.items()],
        "classes": list(run.classes),
        "limits": asdict(server.limits),
    }
    answer.update(kind.serve_info(run))
    return answer


def _predict(server: RunServer, body: dict[str, Any]) -> dict[str, Any]:
    limits = server.limits
    _check_fields(body, ("items", "top_k", "beam", "horizon"))
    items = _items(body, limits)
    options: dict[str, Any] = {}
    caps = {"top_k": limits.max_top_k, "beam": limits.max_beam, "horizon": limits.max_horizon}
    for key, cap in caps.items():
        value = _int(body, key, None, 1, cap)
        if value is not None:
            options[key] = value
    with server.lock:
        return kind_of(server.run).serve_predict(server.run, items, **options)


def _sample(server: RunServer, body: dict[str, Any]) -> dict[str, Any]:
    limits = server.limits
    _check_fields(body, ("category", "num", "temperature", "seed", "prefix", "max_len", "top_k"))
    category = _string(body, "category", None, limits.max_item_chars)
    num = _int(body, "num", min(10, limits.max_num), 1, limits.max_num)
    temperature = _number(body, "temperature", 0.8, 0.0, 100.0)
    seed = _int(body, "seed", None, 0, 2**63 - 1)
    prefix = _string(body, "prefix", "", limits.max_item_chars)
    max_len = _int(body, "max_len", min(30, limits.max_len), 1, limits.max_len)
    top_k = _int(body, "top_k", None, 1, limits.max_top_k)
    if prefix and max_len < len(server.run.vocab.tokenize(prefix)):
        raise HTTPError(400, f"'prefix' is longer than 'max_len' ({max_len}): raise max_len or shorten the prefix")
    with server.lock:
        items = sample(server.run, category, num, temperature, prefix, max_len, seed, top_k)
    return {"samples": items}


Endpoint = Callable[["RunServer", Any], dict[str, Any]]


def _routes(run: Run) -> dict[str, tuple[str, Endpoint]]:
    """The paths this run answers: ``path -> (method, endpoint)``."""
    routes: dict[str, tuple[str, Endpoint]] = {"/health": ("GET", _health)}
    endpoints = kind_of(run).endpoints
    if "predict" in endpoints:
        routes["/predict"] = ("POST", _predict)
    if "sample" in endpoints:
        routes["/sample"] = ("POST", _sample)
    return routes


# --------------------------------------------------------------------------------------------------------------
# The server


class _Handler(BaseHTTPRequestHandler):
    """One request: route it, read and check its JSON body, answer JSON (errors included)."""

    server: RunServer
    protocol_version = "HTTP/1.0"  # one request per connection: simple, and nothing half-read is ever reused
    server_version = f"rnnkit/{__version__}"
    sys_version = ""
    error_content_type = "application/json"

    def setup(self) -> None:
        self.timeout = self.server.limits.timeout  # read by StreamRequestHandler.setup: a slow client times out
        self._unread = 0
        super().setup()

    # every method goes through _dispatch, so that a known path with the wrong method is a JSON 405
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        headers: dict[str, str] = {}
        declared = self.headers.get("Content-Length", "0")
        self._unread = int(declared) if declared.isdigit() else 0  # drained after the answer unless read
        try:
            path = urlsplit(self.path).path
            routes = self.server.routes
            if path not in routes:
                served = ", ".join(f"{m} {p}" for p, (m, _) in routes.items())
                raise HTTPError(404, f"no endpoint {path!r} on this {self.server.run.task} run; it answers {served}")
            want, endpoint = routes[path]
            if method != want and not (method == "HEAD" and want == "GET"):
                raise HTTPError(405, f"{path} takes {want}, not {method}", {"Allow": want})
            body = self._read_json() if method == "POST" else None
            status, payload = 200, endpoint(self.server, body)
        except HTTPError as error:
            status, payload, headers = error.status, {"error": error.message}, error.headers
        except ValueError as error:  # bad input found by the run's own checks: unknown symbol or category, ...
            status, payload = 400, {"error": " ".join(str(error).split()) or "invalid request"}
        except Exception:  # a bug: tell the log, not the client
            traceback.print_exc(file=sys.stderr)
            status, payload = 500, {"error": "internal error while answering the request; see the server's log"}
        self._send_json(status, payload, headers)
        self._drain()

    def _read_json(self) -> dict[str, Any]:
        """The request body as a JSON object, after the header checks (411, 413, 415) and the parse (400)."""
        limits = self.server.limits
        if self.headers.get("Transfer-Encoding"):
            raise HTTPError(411, "send the body with a Content-Length header (chunked transfer is not accepted)")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise HTTPError(411, "a POST needs a Content-Length header")
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            raise HTTPError(400, f"Content-Length must be a non-negative integer, got {raw!r}")
        if length > limits.max_bytes:
            raise HTTPError(413, f"the body has {length} bytes, more than the limit of {limits.max_bytes}")
        content_type = self.headers.get("Content-Type")
        charset = (self.headers.get_content_charset() or "utf-8").lower()
        if self.headers.get_content_type() != "application/json" or charset not in ("utf-8", "utf8"):
            raise HTTPError(415, f"send JSON with Content-Type: application/json (UTF-8), got {content_type!r}")
        # one deadline for the whole body, not per socket read: a client trickling a byte at a time is cut off
        deadline = time.monotonic() + limits.timeout
        parts, got = [], 0
        try:
            while got < length:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                chunk = self.rfile.read1(min(length - got, 65536))
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
        except TimeoutError:
            raise HTTPError(408, f"the body did not arrive within {limits.timeout:g} s") from None
        data = b"".join(parts)
        self._unread = 0
        if len(data) < length:
            raise HTTPError(400, f"the body ended after {len(data)} of the {length} bytes Content-Length announced")
        try:
            value = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
        except UnicodeDecodeError:
            raise HTTPError(400, "malformed JSON: the body is not UTF-8") from None
        except json.JSONDecodeError as error:
            raise HTTPError(400, f"malformed JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
        except RecursionError:
            raise HTTPError(400, "malformed JSON: nested too deeply") from None
        if not isinstance(value, dict):
            raise HTTPError(400, f"the body must be a JSON object, got {type(value).__name__}")
        return value

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _drain(self, cap: int = 1 << 20) -> None:
        """Read what a refused body left on the socket (up to ``cap``), so closing it does not reset the answer."""
        left = min(self._unread, cap)
        if left <= 0:
            return
        try:
            self.connection.settimeout(0.5)
            while left > 0:
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, unsupported method, ...) as JSON too."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.close_connection = True
        self._send_json(code, {"error": message or phrase})

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


def _no_constant(name: str) -> None:
    raise HTTPError(400, f"malformed JSON: {name} is not a JSON number")


class RunServer(ThreadingHTTPServer):
    """An HTTP server answering for one loaded run (:func:`serve` makes one); one thread per request.

    Requests that run the model hold ``lock``, so they take turns on it. ``url`` is where it listens.
    """

    daemon_threads = True

    def __init__(self, run: Run, address: tuple[str, int], limits: Limits, quiet: bool = False) -> None:
        self.run = run
        self.limits = limits
        self.quiet = quiet
        self.lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self.routes = _routes(run)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """One thread per request, at most ``limits.max_connections`` at once; beyond that a 503 at once."""
        if not self._slots.acquire(blocking=False):
            try:
                body = b'{"error": "too many requests at once; retry shortly"}'
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Retry-After: 1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def server_bind(self) -> None:
        """Bind without http.server's reverse DNS lookup of the host (``getfqdn``), which can stall for seconds."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"


def serve(
    run: Run | str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    limits: Limits | None = None,
    quiet: bool = False,
) -> RunServer:
    """A server for ``run`` (a loaded run or its folder) bound to ``host:port``, not yet serving.

    Call ``serve_forever()`` on it (in a thread if you like), ``shutdown()`` from another thread to stop it and
    ``server_close()`` to free the port. ``port=0`` picks a free port (see ``server.url``). ``quiet`` silences the
    one-line-per-request log on stderr.
    """
    if not isinstance(run, Run):
        run = load_run(run)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in [0, 65535], got {port!r}")
    limits = limits or Limits()
    for key, value in asdict(limits).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"limit {key} must be a positive number, got {value!r}")
    return RunServer(run, (host, port), limits, quiet=quiet)


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
    """Declare ``rnnkit serve RUN [--host H] [--port P] [--max-bytes N] [--max-items N]``."""
    from rnnkit.cliutil import Formatter, positive_int

    p = subparsers.add_parser(
        "serve",
        help="answer JSON requests for a trained run over HTTP on localhost (/predict, /sample, /health)",
        description=(
            'Serve a run folder: GET /health; POST /predict {"items": [...], "top_k": 3} for classify runs;\n'
            'POST /sample {"category": ..., "num": 10, "temperature": 0.8, "seed": 0} for generate runs.\n'
            'Errors are JSON {"error": ...} with a 4xx status. No authentication: keep the loopback host.'
        ),
        formatter_class=Formatter,
    )
    p.add_argument("run", help="a run folder written by `rnnkit train`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (anything but loopback exposes the model)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port; 0 picks a free one")
    p.add_argument("--max-bytes", type=positive_int, default=Limits.max_bytes, help="largest request body (413 beyond)")
    p.add_argument("--max-items", type=positive_int, default=Limits.max_items, help="most items per /predict")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: Any) -> int:
    run = load_run(args.run)
    server = serve(run, args.host, args.port, limits=Limits(max_bytes=args.max_bytes, max_items=args.max_items))
    if args.host not in LOOPBACK:
        print(
            f"rnnkit serve: warning: listening on {args.host}, beyond this machine, without authentication",
            file=sys.stderr,
        )
    endpoints = ", ".join(f"{m} {p}" for p, (m, _) in server.routes.items())
    print(f"serving {run.path} ({run.task}) on {server.url}: {endpoints} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0
