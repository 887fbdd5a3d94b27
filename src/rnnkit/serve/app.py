"""The ASGI application of ``rnnkit serve`` (FastAPI): :func:`create_app` builds it for one or more runs, :func:`serve`
binds a socket and returns a :class:`~rnnkit.serve.server.Server` (uvicorn) that answers on it.

The package's parts: :mod:`~rnnkit.serve.schemas` (the :class:`Limits`, errors, request and answer models, the
wording of validation errors), :mod:`~rnnkit.serve.series` (the request models and answers of series runs),
:mod:`~rnnkit.serve.demos` (the lecture's gradient demos), :mod:`~rnnkit.serve.server` (uvicorn); this module holds
the routes, the body checks and the run reports. Limits live in :class:`Limits`: the request models carry the
per-field bounds (so ``/openapi.json`` shows them), :class:`_BodyLimit` (ASGI middleware) the body's size, type and
the time a client may take to send it, uvicorn the header size (h11), concurrent connections
(``limit_concurrency``, 503 beyond) and idle keep-alive connections (``timeout_keep_alive``).
"""

import asyncio
import csv
import json
import math
import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rnnkit import __version__
from rnnkit.checkpoint import read_json
from rnnkit.runs import Run, kind_of, load_run, sample
from rnnkit.serve import series
from rnnkit.serve.demos import flow_curves, tiny_table
from rnnkit.serve.schemas import (
    JSON,
    FlowAnswer,
    FlowRequest,
    HTTPError,
    Limits,
    PredictAnswer,
    SampleAnswer,
    TinyAnswer,
    TinyRequest,
    error_answer,
    request_models,
    validation_message,
)
from rnnkit.serve.server import Server

__all__ = ["HTTPError", "Limits", "Server", "create_app", "report", "serve"]

STATIC = Path(__file__).with_name("static")


# --------------------------------------------------------------------------------------------------------------
# The body: size, type, time and JSON checked before the app sees it


def _no_constant(name: str) -> None:
    raise HTTPError(400, f"malformed JSON: {name} is not a JSON number")


def check_json(data: bytes) -> Any:
    """``data`` parsed as one JSON object, or :class:`HTTPError` 400 saying why not."""
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


class _BodyLimit:
    """ASGI middleware: a POST needs a Content-Length (411) of at most ``max_bytes`` (413, refused unread), JSON in
    UTF-8 (415), parseable as one object (400), arriving whole within ``timeout`` seconds (408). uvicorn has no
    setting for these; FastAPI's ``max_body_size`` answers 413 in plain text (its responder replaces any answer
    sent through it), which would break "every error is JSON", so this is the one place that checks them. The body
    then reaches the app as it came."""

    def __init__(self, app: Any, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(scope, receive)
        except HTTPError as error:
            headers = {"Connection": "close", **error.headers}
            await error_answer(error.status, error.message, headers)(scope, receive, send)
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, scope: dict[str, Any], receive: Any) -> bytes:
        limits = self.limits
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if "transfer-encoding" in headers:
            raise HTTPError(411, "send the body with a Content-Length header (chunked transfer is not accepted)")
        raw = headers.get("content-length")
        if raw is None:
            raise HTTPError(411, "a POST needs a Content-Length header")
        length = int(raw) if raw.isdigit() else -1
        if length < 0:
            raise HTTPError(400, f"Content-Length must be a non-negative integer, got {raw!r}")
        if length > limits.max_bytes:  # refused unread
            raise HTTPError(413, f"the body has {length} bytes, more than the limit of {limits.max_bytes}")
        content_type = headers.get("content-type", "")
        main, *params = [p.strip().lower() for p in content_type.split(";")]
        charset = next((p.split("=", 1)[1].strip('"') for p in params if p.startswith("charset=")), "utf-8")
        if main != "application/json" or charset not in ("utf-8", "utf8"):
            raise HTTPError(415, f"send JSON with Content-Type: application/json (UTF-8), got {content_type!r}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.timeout  # one deadline for the whole body, not per read
        parts = []
        while True:
            left = deadline - loop.time()
            try:
                if left <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(receive(), left)
            except (TimeoutError, asyncio.TimeoutError):
                raise HTTPError(408, f"the body did not arrive within {limits.timeout:g} s") from None
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "the client went away before sending its body")
            parts.append(message.get("body", b""))
            if sum(map(len, parts)) > length:  # more than announced (uvicorn stops at Content-Length anyway)
                raise HTTPError(400, f"the body is longer than the {length} bytes Content-Length announced")
            if not message.get("more_body", False):
                break
        data = b"".join(parts)
        check_json(data)
        return data


# --------------------------------------------------------------------------------------------------------------
# Run reports (for the page): metrics, the training curve, the confusion matrix


def _read_json(path: Path) -> Any:
    """A report file for the page (shown as it is, or not at all): regular files only, size-capped."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def _curve(path: Path) -> dict[str, list[float | None]]:
    """curve.csv as columns of numbers (None where a cell is empty or not a number)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return {}
    columns: dict[str, list[float | None]] = {}
    for row in rows:
        for key, text in row.items():
            try:
                value: float | None = float(text)
                value = value if math.isfinite(value) else None
            except (TypeError, ValueError):
                value = None
            columns.setdefault(key, []).append(value)
    return columns


def _info(run: Run, limits: Limits | None) -> dict[str, Any]:
    """The kind's serve_info, and for a series run the shape it reads (channels, steps, context, horizon)."""
    out = kind_of(run).serve_info(run)
    return {**out, **series.info(run, limits or Limits())} if series.is_series_run(run) else out


def report(run: Run, limits: Limits | None = None) -> dict[str, Any]:
    """What the page shows of a run: its task, model, classes, metrics, training curve and confusion matrix, and in
    ``info`` what its predict or sample takes (a series run: the shape of its series under ``limits``)."""
    return {
        "run": run.path.name,
        "task": run.task,
        "app": kind_of(run).app,
        "model": run.config["model"]["model"],
        "classes": list(run.classes),
        "endpoints": list(kind_of(run).endpoints),
        "info": _info(run, limits),
        "metrics": _read_json(run.path / "metrics.json") or {},
        "curve": _curve(run.path / "curve.csv"),
        "confusion": _read_json(run.path / "confusion.json"),
    }


# --------------------------------------------------------------------------------------------------------------
# The app


def _summary(run: Run, limits: Limits) -> dict[str, Any]:
    kind = kind_of(run)
    return {
        "run": run.path.name,
        "task": run.task,
        "app": kind.app,
        "model": run.config["model"]["model"],
        "classes": list(run.classes),
        **_info(run, limits),
    }


@dataclass
class _Served:
    run: Run
    lock: threading.Lock


def _names(runs: Sequence[Run]) -> list[str]:
    names = [r.path.name for r in runs]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two runs are named {name!r}: serve run folders with different names")
        seen.add(name)
    return names


def create_app(runs: Sequence[Run | str | Path] | Run | str | Path, limits: Limits | None = None) -> FastAPI:
    """The FastAPI app answering for ``runs`` (loaded runs or their folders) under ``/runs/NAME/``.

    Besides ``/health``, ``/runs/NAME/predict`` and ``/runs/NAME/sample`` (as the run's kind serves them) it answers
    ``GET /runs`` (every run's report), ``GET /runs/NAME`` (one report) and the page at ``/``; ``/docs`` and
    ``/openapi.json`` describe them all.
    """
    if isinstance(runs, (Run, str, Path)):
        runs = [runs]
    loaded = [r if isinstance(r, Run) else load_run(r) for r in runs]
    if not loaded:
        raise ValueError("give at least one run folder to serve")
    limits = limits or Limits()
    for key, value in asdict(limits).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"limit {key} must be a positive number, got {value!r}")
    served = {name: _Served(run, threading.Lock()) for name, run in zip(_names(loaded), loaded, strict=True)}
    predict_model, sample_model = request_models(limits)
    models = {"predict": predict_model, "sample": sample_model, "tiny": TinyRequest, "flow": FlowRequest}
    series_models = {  # a series run's predict takes numbers in the shape it reads (rnnkit.serve.series)
        f"/runs/{name}/predict": series.series_request_model(name, series.series_shape(s.run, limits), limits)
        for name, s in served.items()
        if series.is_series_run(s.run)
    }

    app = FastAPI(
        title="rnnkit serve",
        version=__version__,
        description="JSON answers of trained rnnkit runs, and a page for them at /.",
        default_response_class=JSON,
    )
    app.state.limits = limits
    app.state.served = served
    app.add_middleware(_BodyLimit, limits=limits)

    def endpoints() -> list[str]:
        out = ["GET /health", "GET /runs"]
        for name, s in served.items():
            out += [f"POST /runs/{name}/{e}" for e in kind_of(s.run).endpoints if e in models]
        return [*out, "POST /demo/tiny", "POST /demo/flow"]

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def httperror_answer(request: Request, exc: StarletteHTTPException) -> JSON:
        path = request.url.path
        if exc.status_code == 404:
            parts = path.strip("/").split("/")
            if len(parts) >= 2 and parts[0] == "runs" and parts[1] in served:
                run = served[parts[1]].run
                mine = [e for e in endpoints() if f"/runs/{parts[1]}/" in e]
                where = f"on the {run.task} run {parts[1]!r}"
                return error_answer(404, f"no endpoint {path!r} {where}; it answers {', '.join(mine)}")
            return error_answer(404, f"no endpoint {path!r}; this server answers {', '.join(endpoints())}")
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            return error_answer(405, f"{path} takes {allow}, not {request.method}", {"Allow": allow})
        return error_answer(exc.status_code, str(exc.detail), exc.headers)

    def _models_at(path: str) -> dict[str, Any]:
        return {**models, "predict": series_models[path]} if path in series_models else models

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSON:
        errors = exc.errors()
        first = dict(errors[0]) if errors else {}
        return error_answer(400, validation_message(first, _models_at(request.url.path), request.url.path))

    @app.exception_handler(HTTPError)
    async def refused(request: Request, exc: HTTPError) -> JSON:
        return error_answer(exc.status, exc.message, exc.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSON:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return error_answer(500, "internal error while answering the request; see the server's log")

    def answer(name: str, call: Any) -> Any:
        """``call()`` under the run's lock: a ValueError (unknown symbol, category, ...) is a 400."""
        with served[name].lock:
            try:
                return call()
            except ValueError as error:
                raise HTTPError(400, str(error)) from None

    @app.head("/health", include_in_schema=False)
    @app.get("/health", tags=["server"])
    def health() -> dict[str, Any]:
        """The server's limits, endpoints and runs; with one run, its task, model and classes at the top too."""
        out: dict[str, Any] = {
            "status": "ok",
            "version": __version__,
            "endpoints": endpoints(),
            "limits": asdict(limits),
            "runs": {name: _summary(s.run, limits) for name, s in served.items()},
        }
        if len(served) == 1:
            out.update(_summary(next(iter(served.values())).run, limits))
        return out

    @app.get("/runs", tags=["runs"])
    def run_list() -> list[dict[str, Any]]:
        """Every served run's report: task, model, classes, metrics, training curve, confusion matrix."""
        return [report(s.run, limits) for s in served.values()]

    for name, s in served.items():
        kind = kind_of(s.run)

        def one_report(name: str = name) -> dict[str, Any]:
            return report(served[name].run, limits)

        app.add_api_route(f"/runs/{name}", one_report, methods=["GET"], tags=["runs"], summary=f"report of {name}")
        endpoint, summary = None, f"predict with {name} ({s.run.task})"
        if f"/runs/{name}/predict" in series_models:
            series_model = series_models[f"/runs/{name}/predict"]

            def series_endpoint(body: series_model, name: str = name) -> PredictAnswer:  # type: ignore[valid-type]
                run = served[name].run
                return answer(name, lambda: series.predict_series_request(run, body))

            endpoint, summary = series_endpoint, summary + ": series as numbers"
        elif "predict" in kind.endpoints:

            def predict_endpoint(body: predict_model, name: str = name) -> PredictAnswer:  # type: ignore[valid-type]
                options = body.model_dump(exclude={"items"}, exclude_none=True)  # type: ignore[attr-defined]
                run = served[name].run
                if any(not item.strip() for item in body.items):  # type: ignore[attr-defined]
                    i = next(i for i, item in enumerate(body.items) if not item.strip())  # type: ignore[attr-defined]
                    raise HTTPError(400, f'"items"[{i}] is empty')
                return answer(name, lambda: kind_of(run).serve_predict(run, list(body.items), **options))  # type: ignore[attr-defined]

            endpoint = predict_endpoint
        if endpoint is not None:
            app.add_api_route(
                f"/runs/{name}/predict",
                endpoint,
                methods=["POST"],
                response_model=PredictAnswer,
                response_model_exclude_none=True,
                tags=["runs"],
                summary=summary,
            )
        if "sample" in kind.endpoints:

            def sample_endpoint(body: sample_model, name: str = name) -> SampleAnswer:  # type: ignore[valid-type]
                b = body
                run = served[name].run
                if b.prefix and b.max_len < len(run.vocab.tokenize(b.prefix)):  # type: ignore[attr-defined]
                    raise HTTPError(
                        400, f"'prefix' is longer than 'max_len' ({b.max_len}): raise max_len or shorten the prefix"
                    )
                items = answer(
                    name,
                    lambda: sample(run, b.category, b.num, float(b.temperature), b.prefix, b.max_len, b.seed, b.top_k),  # type: ignore[attr-defined]
                )
                return SampleAnswer(samples=items)

            app.add_api_route(
                f"/runs/{name}/sample",
                sample_endpoint,
                methods=["POST"],
                response_model=SampleAnswer,
                tags=["runs"],
                summary=f"sample from {name} ({s.run.task})",
            )

    demo_lock = threading.Lock()

    @app.post("/demo/tiny", tags=["lecture"])
    def demo_tiny(body: TinyRequest) -> TinyAnswer:
        """The lecture's TinyRNN table (``rnnkit gradients --tiny``) for one ``wh`` and the given lengths."""
        with demo_lock:
            return TinyAnswer(**tiny_table(body.wh, body.lengths, body.dtype))

    @app.post("/demo/flow", tags=["lecture"])
    def demo_flow(body: FlowRequest) -> FlowAnswer:
        """‖∂L/∂h_t‖ through time for rnn/lstm/gru (``rnnkit gradients --compare``)."""
        with demo_lock:
            return FlowAnswer(**flow_curves(body.models, body.length, body.hidden, body.seed))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/demo", include_in_schema=False)
    def demo_page() -> FileResponse:
        return FileResponse(STATIC / "demo.html", media_type="text/html; charset=utf-8")

    @app.get("/static/{file}", include_in_schema=False)
    def static(file: str) -> FileResponse:
        path = STATIC / file
        if "/" in file or file.startswith(".") or not path.is_file():
            raise StarletteHTTPException(404)
        types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
        return FileResponse(path, media_type=types.get(path.suffix, "application/octet-stream"))

    return app


def serve(
    runs: Sequence[Run | str | Path] | Run | str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    limits: Limits | None = None,
    quiet: bool = False,
) -> Server:
    """A server for ``runs`` (loaded runs or their folders) bound to ``host:port``, not yet serving.

    ``port=0`` picks a free port (see ``server.url``). ``quiet`` silences the per-request log.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in [0, 65535], got {port!r}")
    limits = limits or Limits()
    app = create_app(runs, limits)
    return Server(app, host, port, limits, quiet=quiet)
