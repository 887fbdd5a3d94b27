"""``POST /runs/NAME/predict`` for series runs: series classification (``classify-series``) and ``forecast``.

A series comes as JSON numbers, oldest step first: a list of values (a one-channel run) or a list of per-step
channel vectors ``[[x_1, ..., x_C], ...]`` (``C`` the run's channels, in the order of its ``columns``)::

    {"series": S}                 one series
    {"items": [S, S, ...]}        several (unequal lengths allowed), at most Limits.max_items

with ``"top_k"`` (classification) or ``"horizon"`` (forecast: the steps to forecast, default the run's). A forecast
run still takes ``"items"`` as strings, the numbers ``rnnkit predict RUN V V ...`` takes, and answers the lines it
prints. The answers are what ``rnnkit predict`` computes for the same series:

- classification: ``{"predictions": [{"item": i, "top": [{"label": ..., "prob": ...}, ...]}, ...], "lines":
  ["i: CLASS p", ...]}`` — the lines ``rnnkit predict RUN --data FILE`` prints for a file holding those series;
- forecast: ``{"forecasts": [{"item": i, "values": [y_1, ..., y_K]}, ...], "lines": [...]}`` — ``"series"``
  gives the ``step k: value`` lines ``rnnkit predict RUN V V ...`` prints, ``"items"`` the same lines of each
  series prefixed with ``i: ``.

Each run gets its own request model (:func:`series_request_model`) whose schema states the run's shape (channels,
the fewest and most steps, the horizon), so ``/docs`` shows it. A body that does not fit is refused before the
model runs, with one line naming the place (``"items"[1][4] has 3 numbers; this run reads 2 channels per step``).

Shape symbols: N series, L steps of a series, C channels, K forecast steps.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    TypeAdapter,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from rnnkit.data.batching import FLOAT32_MAX, NonFiniteValues
from rnnkit.runs import Run, kind_of
from rnnkit.runs.classify_series import APP as SERIES_APP
from rnnkit.runs.classify_series import series_probabilities
from rnnkit.runs.forecast import APP as FORECAST_APP
from rnnkit.runs.forecast import forecaster_of
from rnnkit.serve.schemas import Limits

__all__ = ["SeriesShape", "is_series_run", "predict_series_request", "series_request_model", "series_shape"]

ERROR = "series"
"""The pydantic error type of a series that does not fit; :func:`rnnkit.serve.schemas.validation_message` passes
its message on as it is."""


@dataclass(frozen=True)
class SeriesShape:
    """What a series run reads: ``channels`` per step, ``min_steps`` to ``max_steps`` steps per series (the
    server's limit, or the run's context when that is longer); for forecasts the run's ``horizon`` and
    ``max_horizon``, the most steps it forecasts (its horizon for a direct model, the server's limit for a
    recursive one)."""

    kind: str  # SERIES_APP or FORECAST_APP
    channels: int
    min_steps: int
    max_steps: int
    columns: tuple[str, ...] = ()
    context: int | None = None
    horizon: int | None = None
    max_horizon: int | None = None
    classes: tuple[str, ...] = ()


def is_series_run(run: Run) -> bool:
    """Whether ``run`` reads real-valued series (its predict takes numbers, not strings)."""
    return kind_of(run).name in (SERIES_APP, FORECAST_APP)


def series_shape(run: Run, limits: Limits) -> SeriesShape:
    """The shape a series run reads under ``limits`` (its config says channels, context, horizon)."""
    name = kind_of(run).name
    if name == SERIES_APP:
        channels = int(run.config.get("num_channels", run.config["model"]["input_features"]))
        return SeriesShape(name, channels, 1, limits.max_steps, classes=tuple(run.classes))
    if name != FORECAST_APP:
        raise ValueError(f"{run.path} is a {name} run, not a series run")
    fc = forecaster_of(run)
    least = max(fc.context, fc.blend_season if fc.blend < 1.0 else 1)  # the seasonal-naive blend looks m back
    columns = tuple(run.config["forecast"]["columns"])
    most = min(fc.horizon if fc.strategy == "direct" else limits.max_horizon, limits.max_horizon)  # direct: K outputs
    steps = max(least, limits.max_steps)
    return SeriesShape(name, len(columns), least, steps, columns, fc.context, fc.horizon, most)


def info(run: Run, limits: Limits) -> dict[str, Any]:
    """What ``/health`` and the page list of a series run: channels, steps, columns, context, horizon."""
    s = series_shape(run, limits)
    out: dict[str, Any] = {"channels": s.channels, "min_steps": s.min_steps, "max_steps": s.max_steps}
    if s.kind == FORECAST_APP:
        out.update(columns=list(s.columns), context=s.context, horizon=s.horizon, max_horizon=s.max_horizon)
    return out


# ---------------------------------------------------------------------------------------------------------- checks
def _refuse(message: str) -> PydanticCustomError:
    return PydanticCustomError(ERROR, "{message}", {"message": message})


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _got(x: Any) -> str:
    text = repr(x) if not isinstance(x, (list, dict)) else type(x).__name__
    return text if len(text) <= 30 else text[:27] + "..."


def read_series(value: Any, where: str, shape: SeriesShape) -> np.ndarray:
    """One series of a request as a float64 array ``(L, C)``, or a pydantic error naming what is wrong."""
    C = shape.channels
    per_step = f"a list of {C} numbers" if C > 1 else "a number (or a list of 1)"
    if not isinstance(value, list):
        raise _refuse(f"{where} must be a series: a list with {per_step} per step, got {_got(value)}")
    if not shape.min_steps <= len(value) <= shape.max_steps:
        if len(value) < shape.min_steps:
            why = f"its context: the last {shape.min_steps} values" if shape.kind == FORECAST_APP else "at least 1"
            raise _refuse(f"{where} has {len(value)} steps; this run needs {why}")
        raise _refuse(f"{where} has {len(value)} steps, more than the limit of {shape.max_steps}")
    odd = next((t for t, x in enumerate(value) if not _is_number(x) and not isinstance(x, list)), None)
    if odd is not None:
        raise _refuse(f"{where}[{odd}] must be {per_step}, got {_got(value[odd])}")
    if all(_is_number(x) for x in value):
        if C != 1:
            raise _refuse(
                f"{where} is a list of numbers, but this run reads {C} channels per step: give every step as a list "
                f"of {C} numbers, [[x_1, ..., x_{C}], ...]"
            )
        rows = [[x] for x in value]
    else:
        for t, step in enumerate(value):
            if not isinstance(step, list):  # a number beside lists: which one was meant is not ours to guess
                raise _refuse(f"{where} mixes numbers and lists: give every step the same way ({where}[{t}])")
            if len(step) != C:
                numbers = "number" if len(step) == 1 else "numbers"
                raise _refuse(f"{where}[{t}] has {len(step)} {numbers}; this run reads {C} channel(s) per step")
            for c, x in enumerate(step):
                if not _is_number(x):
                    raise _refuse(f"{where}[{t}][{c}] must be a number, got {_got(x)}")
        rows = value
    a = np.asarray(rows, dtype=np.float64)  # (L, C)
    if not np.isfinite(a).all():
        t = int(np.argwhere(~np.isfinite(a))[0][0])
        raise _refuse(f"{where}[{t}] is not a finite number (beyond the float range)")
    return a


def _one(shape: SeriesShape):
    def check(value: Any) -> np.ndarray:
        return read_series(value, "'series'", shape)

    return check


def _several(shape: SeriesShape, limits: Limits):
    def check(value: Any) -> list[np.ndarray] | list[str]:
        if not isinstance(value, list) or not value:
            what = "is empty" if isinstance(value, list) else f"must be a list of series, got {_got(value)}"
            raise _refuse(f'"items" {what}; give {{"items": [[...], [...]]}}, or one series as {{"series": [...]}}')
        if len(value) > limits.max_items:
            raise _refuse(f'"items" has {len(value)} entries, more than the limit of {limits.max_items}')
        if shape.kind == FORECAST_APP and all(isinstance(x, str) for x in value):  # the command line's numbers
            for i, x in enumerate(value):
                if not x.strip() or len(x) > limits.max_item_chars:
                    raise _refuse(f'"items"[{i}] is empty' if not x.strip() else f'"items"[{i}] is too long')
            return list(value)
        return [read_series(s, f'"items"[{i}]', shape) for i, s in enumerate(value)]

    return check


def _schema(shape: SeriesShape) -> dict[str, Any]:
    """The JSON schema of one series of ``shape`` (from the precise type, so /docs states channels and steps)."""
    steps = {"min_length": shape.min_steps, "max_length": shape.max_steps}
    vector = Annotated[list[float], Field(min_length=shape.channels, max_length=shape.channels)]
    vectors = Annotated[list[vector], Field(**steps)]
    one = vectors if shape.channels > 1 else Annotated[list[float], Field(**steps)] | vectors
    cols = f" ({', '.join(shape.columns)})" if shape.columns else ""
    return {
        **TypeAdapter(one).json_schema(),
        "description": f"a series, oldest step first: {shape.channels} channel(s){cols} per step, "
        f"{shape.min_steps} to {shape.max_steps} steps",
    }


def series_request_model(name: str, shape: SeriesShape, limits: Limits) -> type[BaseModel]:
    """The predict request model of the series run ``name`` of ``shape``: ``series`` or ``items``, and ``top_k``
    (classification) or ``horizon`` (forecast)."""
    one = _schema(shape)
    several: dict[str, Any] = {"type": "array", "items": one, "minItems": 1, "maxItems": limits.max_items}
    if shape.kind == FORECAST_APP:
        several = {"anyOf": [several, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    fields: dict[str, Any] = {
        "series": (Annotated[Any, PlainValidator(_one(shape)), WithJsonSchema(one)], Field(None)),
        "items": (
            Annotated[Any, PlainValidator(_several(shape, limits)), WithJsonSchema(several)],
            Field(None, description="several series (a forecast run also takes the numbers of one as strings)"),
        ),
    }
    if shape.kind == FORECAST_APP:
        fields["horizon"] = (
            StrictInt | None,
            Field(None, ge=1, le=shape.max_horizon, description=f"steps to forecast (default {shape.horizon})"),
        )
    else:
        top = min(limits.max_top_k, max(1, len(shape.classes)))
        fields["top_k"] = (StrictInt | None, Field(None, ge=1, le=top, description="classes per series (default 3)"))
    safe = re.sub(r"\W", "_", name)
    return create_model(
        f"SeriesPredictRequest_{safe}",
        __config__=ConfigDict(extra="forbid"),
        __validators__={"_one_of": model_validator(mode="after")(_one_of)},
        **fields,
    )


def _one_of(body: BaseModel) -> BaseModel:
    given = [k for k in ("series", "items") if getattr(body, k) is not None]
    if len(given) != 1:
        what = "both" if given else "neither"
        raise _refuse(
            f'give one series as {{"series": [...]}} or several as {{"items": [[...], ...]}}; this body has {what}'
        )
    return body


# ---------------------------------------------------------------------------------------------------------- answers
NOT_FINITE = "the model's output is not finite for these values: they lie far beyond what the run was trained on"


def _finite_or_refuse(values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        raise ValueError(NOT_FINITE)


def _float32_or_refuse(series: Sequence[np.ndarray]) -> None:
    """Refuse a request whose values (finite in float64: :func:`read_series`) lie beyond float32's range, before
    any arithmetic on them: the model computes in float32, and numpy would warn of overflows (in a cast, or in
    the squares of a per-series z-score) on the way to the same non-finite answer."""
    if any(a.size and float(np.abs(a).max()) > FLOAT32_MAX for a in series):
        raise ValueError(NOT_FINITE)


def classify(run: Run, series: Sequence[np.ndarray], top_k: int | None) -> dict[str, Any]:
    """Class probabilities of ``series`` (each ``(L_i, C)``): what ``rnnkit predict RUN --data FILE`` computes."""
    _float32_or_refuse(series)
    try:
        probs = series_probabilities(run, [s.T for s in series])  # (N, classes), from N × (C, L_i)
    except NonFiniteValues:  # within float32, but the run's scaling took them beyond it (checked before the cast)
        raise ValueError(NOT_FINITE) from None
    _finite_or_refuse(probs)
    k = min(3 if top_k is None else top_k, len(run.classes))
    predictions, lines = [], []
    for i, row in enumerate(probs):
        order = sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]  # the best first, ties by class order
        predictions.append(
            {"item": i, "top": [{"label": run.classes[c], "prob": round(float(row[c]), 6)} for c in order]}
        )
        best = int(row.argmax())
        lines.append(f"{i}: {run.classes[best]} {row[best]:.3f}")
    return {"predictions": predictions, "lines": lines}


def forecast(run: Run, series: Sequence[np.ndarray], horizon: int | None, several: bool) -> dict[str, Any]:
    """The ``K`` values after each series (each ``(L, C)``): what ``rnnkit predict RUN V V ...`` computes."""
    _float32_or_refuse(series)
    fc = forecaster_of(run)
    k = fc.horizon if horizon is None else horizon
    forecasts, lines = [], []
    for i, values in enumerate(series):
        ys = fc.next_values(values, k)  # (K,)
        _finite_or_refuse(ys)
        forecasts.append({"item": i, "values": [float(y) for y in ys]})
        prefix = f"{i}: " if several else ""
        lines += [f"{prefix}step {j}: {y:.6g}" for j, y in enumerate(ys, 1)]
    return {"forecasts": forecasts, "lines": lines}


def predict_series_request(run: Run, body: BaseModel) -> dict[str, Any]:
    """The answer to a validated request of :func:`series_request_model` for ``run``."""
    several = body.items is not None  # type: ignore[attr-defined]
    data = body.items if several else [body.series]  # type: ignore[attr-defined]
    if data and isinstance(data[0], str):  # a forecast run given the command line's numbers
        options = {"horizon": body.horizon} if body.horizon is not None else {}  # type: ignore[attr-defined]
        return kind_of(run).serve_predict(run, list(data), **options)
    if kind_of(run).name == FORECAST_APP:
        return forecast(run, data, body.horizon, several)  # type: ignore[attr-defined]
    return classify(run, data, body.top_k)  # type: ignore[attr-defined]
