"""What ``rnnkit serve`` says and accepts: its limits, its errors (:class:`HTTPError`, every answer as UTF-8 JSON),
the pydantic request and answer models (bounds from the :class:`Limits`, so ``/openapi.json`` shows them) and the
one-line wording of a request that fails validation (:func:`validation_message`).

The series runs' request models, whose shape comes from each run, are in :mod:`rnnkit.serve.series`.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, create_model

from rnnkit import ranges

__all__ = [
    "JSON",
    "Candidate",
    "FlowAnswer",
    "FlowRequest",
    "Forecast",
    "HTTPError",
    "Limits",
    "PredictAnswer",
    "Prediction",
    "SampleAnswer",
    "TinyAnswer",
    "TinyRequest",
    "TinyRow",
    "Top",
    "Transcription",
    "error_answer",
    "request_models",
    "validation_message",
]


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond it the server answers 4xx without running the model."""

    max_bytes: int = 65536  # request body (413 beyond)
    max_items: int = 256  # items per predict request
    max_item_chars: int = 1000  # characters per item (and per sample prefix)
    max_num: int = 100  # samples per sample request
    max_len: int = 200  # symbols per sample
    max_top_k: int = 1000  # predict top_k, sample top_k
    max_beam: int = 16  # predict beam (seq2seq runs)
    max_horizon: int = 1000  # predict horizon (forecast steps, characters an lm run generates)
    max_steps: int = 10_000  # steps per series a series run's predict takes (a forecast run: its context at least)
    timeout: float = 10.0  # seconds a client may take to send its whole request body (408 beyond)
    max_connections: int = 64  # uvicorn's limit_concurrency: more at once get 503


class HTTPError(Exception):
    """An answer other than 200: ``status`` and a one-line ``message`` for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class JSON(JSONResponse):
    """Every answer: UTF-8 JSON, never cached."""

    media_type = "application/json; charset=utf-8"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False).encode("utf-8")


def error_answer(status: int, message: str, headers: dict[str, str] | None = None) -> JSON:
    return JSON({"error": " ".join(str(message).split()) or "error"}, status_code=status, headers=headers)


# --------------------------------------------------------------------------------------------------------------
# Request and response models (bounds from the limits, so /openapi.json states them)


class Top(BaseModel):
    label: str
    prob: float


class Prediction(BaseModel):
    """A classifier's answer for one item: the item (a series run: its position in the request) and the most
    probable classes, best first."""

    item: str | int
    top: list[Top]


class Forecast(BaseModel):
    """A forecast run's answer for one series (its position in the request): the next ``K`` values."""

    item: int
    values: list[float]


class Candidate(BaseModel):
    """One output the beam found, and its score: the summed log-probability of its symbols and EOS."""

    output: str
    score: float


class Transcription(BaseModel):
    """A seq2seq run's answer for one item: the beam's candidates, best first (the first is its line's)."""

    item: str
    candidates: list[Candidate]


class PredictAnswer(BaseModel):
    """A classifier's answer (``predictions``), or the lines ``rnnkit predict`` prints for other kinds; a seq2seq
    run adds the beam's candidates per item (``outputs``), a forecast run given numbers the values (``forecasts``);
    a series classifier gives ``predictions`` and ``lines``."""

    predictions: list[Prediction] | None = None
    lines: list[str] | None = None
    outputs: list[Transcription] | None = None
    forecasts: list[Forecast] | None = None


class SampleAnswer(BaseModel):
    samples: list[str]


def request_models(limits: Limits) -> tuple[type[BaseModel], type[BaseModel]]:
    """The predict and sample request models under ``limits``."""
    strict = ConfigDict(extra="forbid")
    item = Annotated[StrictStr, Field(min_length=1, max_length=limits.max_item_chars)]
    predict = create_model(
        "PredictRequest",
        __config__=strict,
        items=(list[item], Field(min_length=1, max_length=limits.max_items, examples=[["Anna"]])),
        top_k=(StrictInt | None, Field(None, ge=1, le=limits.max_top_k)),
        beam=(StrictInt | None, Field(None, ge=1, le=limits.max_beam, description="seq2seq runs")),
        horizon=(StrictInt | None, Field(None, ge=1, le=limits.max_horizon, description="forecast and lm runs")),
    )
    sample_ = create_model(
        "SampleRequest",
        __config__=strict,
        category=(StrictStr | None, Field(None, max_length=limits.max_item_chars)),
        num=(StrictInt, Field(min(10, limits.max_num), ge=1, le=limits.max_num)),
        # the same ranges as the command line and the library (rnnkit.ranges): 1e-300 is refused here, not later
        temperature=(Annotated[StrictFloat, AfterValidator(ranges.validator("temperature"))], Field(0.8)),
        seed=(Annotated[StrictInt, AfterValidator(ranges.validator("seed"))] | None, Field(None)),
        prefix=(StrictStr, Field("", max_length=limits.max_item_chars)),
        max_len=(StrictInt, Field(min(30, limits.max_len), ge=1, le=limits.max_len)),
        top_k=(StrictInt | None, Field(None, ge=1, le=limits.max_top_k)),
    )
    return predict, sample_


class TinyRequest(BaseModel):
    """The lecture's TinyRNN: ``h_t = relu(w_h·h_{t−1})``, the loss gradients for each sequence length."""

    model_config = ConfigDict(extra="forbid")
    wh: StrictFloat = Field(1.0, ge=-100.0, le=100.0, allow_inf_nan=False)
    lengths: list[Annotated[StrictInt, Field(ge=1, le=200)]] = Field([1, 2, 5, 10, 20, 50], min_length=1, max_length=20)
    dtype: Literal["float32", "float64"] = "float32"


class TinyRow(BaseModel):
    length: int
    grads: dict[str, float | None]


class TinyAnswer(BaseModel):
    lines: list[str]
    rows: list[TinyRow]


class FlowRequest(BaseModel):
    """‖∂L/∂h_t‖ through time of fresh rnn/lstm/gru cores on one synthetic batch (``rnnkit gradients --compare``)."""

    model_config = ConfigDict(extra="forbid")
    models: list[Literal["rnn", "lstm", "gru"]] = Field(["rnn", "lstm", "gru"], min_length=1, max_length=3)
    length: StrictInt = Field(50, ge=1, le=200)
    hidden: StrictInt = Field(32, ge=1, le=128)
    seed: StrictInt = Field(0, ge=0, le=2**31 - 1)


class FlowAnswer(BaseModel):
    norms: dict[str, list[float | None]]


_KIND_WORDS = {
    "int": "an integer",
    "float": "a finite number",
    "finite": "a finite number",
    "string": "a string",
    "list": "a list of strings",
}


def _field_name(loc: Sequence[Any]) -> str:
    parts = [p for p in loc if p != "body" and not (isinstance(p, str) and p.startswith(("function-", "constrained")))]
    parts = [p for p in parts if p not in ("int", "float", "str", "none", "list[constrained-str]")]
    if not parts:
        return "the body"
    name = f'"{parts[0]}"' if parts[0] == "items" else repr(parts[0])
    return name + "".join(f"[{p}]" for p in parts[1:])


def validation_message(error: dict[str, Any], models: dict[str, type[BaseModel]], path: str) -> str:
    """One line for pydantic's first error, worded for people (and like the answers of rnnkit's first server)."""
    kind, loc, ctx = error.get("type", ""), tuple(error.get("loc", ())), error.get("ctx") or {}
    name = _field_name(loc)
    got = json.dumps(error.get("input"), ensure_ascii=False, default=str)[:40]
    model = models.get(path.rsplit("/", 1)[-1])
    if kind == "series":  # a series run's body (rnnkit.serve.series): the message names the place
        return str(error.get("msg"))
    if kind == "missing":
        if name == '"items"':
            return 'the body needs "items": a list of strings, e.g. {"items": ["Anna"]}'
        return f"the body needs {name}"
    if kind == "extra_forbidden":
        allowed = ", ".join(model.model_fields) if model else ""
        return f"unknown field(s) {name}; allowed: {allowed}"
    if kind in ("model_attributes_type", "dict_type", "model_type"):
        return f"the body must be a JSON object, got {type(error.get('input')).__name__}"
    if kind in ("greater_than_equal", "less_than_equal"):
        field = model.model_fields.get(str(loc[1])) if model and len(loc) > 1 else None
        lo = hi = None
        for meta in field.metadata if field else ():
            lo = getattr(meta, "ge", lo)
            hi = getattr(meta, "le", hi)
        if lo is None and hi is None:  # a list's entry: its own bound only
            bound = f"≥ {ctx['ge']}" if "ge" in ctx else f"≤ {ctx.get('le')}"
            return f"{name} must be {bound}, got {error.get('input')}"
        return f"{name} must lie in [{lo}, {hi}], got {error.get('input')}"
    if kind == "too_short":
        return f"{name} is empty" if name == '"items"' else f"{name}: {error.get('msg')}"
    if kind == "too_long":
        return f"{name} has {ctx.get('actual_length')} entries, more than the limit of {ctx.get('max_length')}"
    if kind == "value_error":  # a range of rnnkit.ranges: "must be 0 or a finite number in [0.01, 100]"
        return f"{name} {str(error.get('msg')).removeprefix('Value error, ')}, got {got}"
    if kind == "string_too_short":
        return f"{name} is empty"
    if kind == "string_too_long":
        return f"{name} has {len(error.get('input') or '')} characters, more than the limit of {ctx.get('max_length')}"
    for stem, words in _KIND_WORDS.items():
        if kind.startswith(stem) or kind.endswith(f"{stem}_type"):
            return f"{name} must be {words}, got {got}"
    return f"{name}: {error.get('msg', 'invalid')}"
