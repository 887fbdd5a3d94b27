"""``rnnkit serve`` for series runs: ``POST /runs/NAME/predict`` with the series as JSON numbers.

Tiny runs are trained once (one epoch, one thread): series classification on a two-channel ``.ts`` file of unequal
lengths, alone and as an ensemble of two; forecasts of a one-column series, alone and as an ensemble, and of a
two-column one. Every answer is checked against the command line (``rnnkit predict RUN --data FILE`` for the same
series, ``rnnkit predict RUN V V ...``), the library (:func:`series_probabilities`, ``Forecaster.next_values``) and
an independent reference (the run's own scaler and model on a batch made here; for an ensemble the mean of its
members). The request models state each run's shape in ``/openapi.json``; a body that does not fit gets one JSON
line with a 400 naming the place, and the next good request is answered (in process and on a real uvicorn).
"""

import dataclasses
import json
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")

from fastapi.testclient import TestClient

import rnnkit.serve.series
from cli_helpers import rnnkit_main, write_tiny_ts
from rnnkit import cli
from rnnkit.data.arrays import Standardizer, as_sequences, read_ts
from rnnkit.data.batching import NonFiniteValues
from rnnkit.runs import load_run, predict_lines
from rnnkit.runs.classify_series import series_batch, series_probabilities
from rnnkit.runs.forecast import forecaster_of
from rnnkit.serve import Limits, create_app, serve
from rnnkit.serve.series import NOT_FINITE

LIMITS = Limits(max_items=4, max_steps=40)
TINY = ["--hidden", "4", "--epochs", "1", "--batch-size", "8", "--threads", "1"]
CONTEXT, HORIZON = 8, 3


def _values(n: int = 160) -> np.ndarray:
    t = np.arange(n)
    return np.sin(t / 5.0) * 10 + 0.5 * np.cos(t / 3.0) + 20  # (n,), positive: a command line takes them as values


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("serve_series")
    files = {"train": write_tiny_ts(base / "TRAIN.ts", 8, 1, 0.3), "test": write_tiny_ts(base / "TEST.ts", 3, 3, 0.3)}
    one = base / "one.csv"
    one.write_text("value\n" + "\n".join(f"{v:.5f}" for v in _values()) + "\n", encoding="utf-8")
    two = base / "two.csv"
    rows = [f"{v:.5f},{np.cos(i / 4):.5f}" for i, v in enumerate(_values())]
    two.write_text("a,b\n" + "\n".join(rows) + "\n", encoding="utf-8")
    series = ["--task", "classify", "--data", files["train"], "--test-data", files["test"]]
    series += ["--kernels", "0"]  # the networks' path (tests/test_kernels.py: the ridge beside them)
    forecast = ["--task", "forecast", "--context", str(CONTEXT), "--horizon", str(HORIZON)]
    jobs = {
        "series": series,
        "series_ensemble": [*series, "--ensemble", "2"],
        "series_downsampled": [*series, "--downsample", "2"],  # the server reads series as the run did
        "forecast": [*forecast, "--data", one],
        "forecast_ensemble": [*forecast, "--data", one, "--ensemble", "2"],
        "forecast_two": [*forecast, "--data", two],
    }
    for name, args in jobs.items():
        files[name] = base / name
        assert cli.main([str(a) for a in ["train", *args, *TINY, "--out", files[name]]]) == 0, name
    files["base"] = base
    return files


@pytest.fixture(scope="module")
def client(runs: dict[str, Path]) -> Iterator[TestClient]:
    names = ("series", "series_ensemble", "series_downsampled", "forecast", "forecast_ensemble", "forecast_two")
    with TestClient(create_app([runs[n] for n in names], LIMITS), raise_server_exceptions=False) as c:
        yield c


def post(client: TestClient, path: str, body: object) -> tuple[int, dict]:
    resp = client.post(path, json=body)
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    return resp.status_code, resp.json()


def _reference_probabilities(run_path: Path, X: list[np.ndarray]) -> np.ndarray:
    """Class probabilities ``(N, classes)`` made here: the run's scaler and input normalisation on one padded batch,
    the softmax of the model (of an ensemble: the mean of its members' softmax), in float64."""
    run = load_run(run_path)
    scaler = Standardizer.from_dict(run.config["scaler"])
    norm = run.config.get("series_norm", "none")
    batch = series_batch(as_sequences(X), scaler, series_norm=norm, downsample=run.config.get("downsample", 1))
    members = run.model.members if hasattr(run.model, "members") else [run.model]
    with torch.no_grad():
        probs = [torch.softmax(m.eval()(batch)[0].double(), -1) for m in members]  # K × (N, classes)
    return (sum(probs) / len(probs)).numpy()


# --------------------------------------------------------------------------------------------------------------
# Series classification


@pytest.mark.parametrize("name", ["series", "series_ensemble", "series_downsampled"])
def test_series_classification_answers_what_rnnkit_predict_prints(
    client: TestClient, runs: dict[str, Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    X = read_ts(runs["test"]).X  # N × (C, L_i), unequal lengths
    assert len({x.shape[1] for x in X}) > 1
    items = [x.T.tolist() for x in X]  # N × L_i × C: per-step channel vectors
    code, body = post(client, f"/runs/{name}/predict", {"items": items[:4], "top_k": 2})
    assert code == 200, body
    # the command line on a file holding the same series (there: every series of TEST.ts)
    cli_code, out, err = rnnkit_main(capsys, "predict", runs[name], "--data", runs["test"])
    assert cli_code == 0, err
    assert body["lines"] == out.splitlines()[:4]
    run = load_run(runs[name])
    assert predict_lines(run, [], data=str(runs["test"]))[:4] == body["lines"]
    assert run.config.get("downsample", 1) == (2 if name == "series_downsampled" else 1)
    # the library's probabilities, and a reference made here (another batching; the ensemble's members' mean)
    library = series_probabilities(run, X[:4])  # (4, classes)
    reference = _reference_probabilities(runs[name], X[:4])
    np.testing.assert_allclose(library, reference, rtol=0, atol=1e-6)
    for i, got in enumerate(body["predictions"]):
        assert got["item"] == i and len(got["top"]) == 2
        labels = [t["label"] for t in got["top"]]
        assert labels == sorted(run.classes, key=lambda c: -library[i, run.classes.index(c)])
        assert [t["prob"] for t in got["top"]] == [round(float(library[i, run.classes.index(c)]), 6) for c in labels]
    # one series as "series": the same answer as the first of the items
    code, one = post(client, f"/runs/{name}/predict", {"series": items[0], "top_k": 2})
    assert code == 200 and one["predictions"] == body["predictions"][:1] and one["lines"] == body["lines"][:1]


def test_a_series_ensemble_differs_from_its_members_alone(client: TestClient, runs: dict[str, Path]) -> None:
    """The ensemble's answer is its members' mean, not member 0's (which is the single run of the same seed)."""
    X = read_ts(runs["test"]).X[:3]
    run = load_run(runs["series_ensemble"])
    first = dataclasses.replace(run, model=run.model.members[0])
    code, body = post(client, "/runs/series_ensemble/predict", {"items": [x.T.tolist() for x in X], "top_k": 2})
    assert code == 200
    probs = {t["label"]: t["prob"] for t in body["predictions"][0]["top"]}
    alone = series_probabilities(first, X)[0]
    mean = series_probabilities(run, X)[0]
    assert probs == {c: round(float(mean[i]), 6) for i, c in enumerate(run.classes)}
    assert not np.allclose(mean, alone, atol=1e-6)


# --------------------------------------------------------------------------------------------------------------
# Forecasts


@pytest.mark.parametrize("name", ["forecast", "forecast_ensemble"])
def test_forecast_answers_what_rnnkit_predict_prints(
    client: TestClient, runs: dict[str, Path], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    values = [round(float(v), 4) for v in _values(200)[-20:]]  # a context longer than the run's
    code, body = post(client, f"/runs/{name}/predict", {"series": values, "horizon": 2})
    assert code == 200, body
    cli_code, out, err = rnnkit_main(capsys, "predict", runs[name], *map(repr, values), "--horizon", "2")
    assert cli_code == 0, err
    assert body["lines"] == out.splitlines() and len(body["lines"]) == 2
    run = load_run(runs[name])
    fc = forecaster_of(run)
    want = fc.next_values(np.asarray(values)[:, None], 2)  # (2,)
    assert body["forecasts"] == [{"item": 0, "values": want.tolist()}]
    if name == "forecast_ensemble":  # the members' mean forecast, computed here
        each = [dataclasses.replace(fc, model=m).next_values(np.asarray(values)[:, None], 2) for m in run.model.members]
        np.testing.assert_allclose(want, sum(each) / len(each), rtol=1e-6, atol=1e-6)
    # the run's horizon by default; several contexts at once; the command line's numbers as strings (as before)
    code, default = post(client, f"/runs/{name}/predict", {"series": values})
    assert code == 200 and len(default["forecasts"][0]["values"]) == HORIZON
    code, two = post(client, f"/runs/{name}/predict", {"items": [values, values[:-3]], "horizon": 2})
    assert code == 200 and two["forecasts"][0] == body["forecasts"][0]
    shorter = fc.next_values(np.asarray(values[:-3])[:, None], 2).tolist()
    assert two["forecasts"][1] == {"item": 1, "values": shorter}
    assert two["lines"][:2] == [f"0: {line}" for line in body["lines"]]
    with TestClient(create_app([runs[name]])) as wide:  # 20 strings: more items than LIMITS allows
        code, old = post(wide, f"/runs/{name}/predict", {"items": list(map(repr, values)), "horizon": 2})
    assert code == 200 and old == {"lines": body["lines"]}


def test_a_two_column_forecast_takes_per_step_vectors(
    client: TestClient, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Per-step vectors in the run's column order; the command line reads the same rows from a file."""
    steps = [[round(float(v), 4), round(float(np.cos(i / 4)), 4)] for i, v in enumerate(_values(30)) if i >= 18]
    code, body = post(client, "/runs/forecast_two/predict", {"series": steps})
    assert code == 200, body
    csv = tmp_path / "context.csv"
    csv.write_text("a,b\n" + "\n".join(f"{a!r},{b!r}" for a, b in steps) + "\n", encoding="utf-8")
    cli_code, out, err = rnnkit_main(capsys, "predict", runs["forecast_two"], "--data", csv)
    assert cli_code == 0, err
    assert body["lines"] == out.splitlines()
    want = forecaster_of(load_run(runs["forecast_two"])).next_values(np.asarray(steps), HORIZON)
    assert body["forecasts"][0]["values"] == want.tolist()


# --------------------------------------------------------------------------------------------------------------
# The schemas


def test_the_request_models_state_each_runs_shape(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    cls = schemas["SeriesPredictRequest_series"]["properties"]
    assert cls["series"]["minItems"] == 1 and cls["series"]["maxItems"] == LIMITS.max_steps
    assert cls["series"]["items"]["minItems"] == cls["series"]["items"]["maxItems"] == 2  # channels
    assert cls["items"]["maxItems"] == LIMITS.max_items
    assert any(alt.get("maximum") == 2 for alt in cls["top_k"]["anyOf"])  # two classes
    assert "horizon" not in cls
    fc = schemas["SeriesPredictRequest_forecast"]["properties"]
    assert all(alt["minItems"] == CONTEXT for alt in fc["series"]["anyOf"])  # values, or vectors of one
    assert any(alt.get("maximum") == HORIZON for alt in fc["horizon"]["anyOf"])  # a direct model's K
    assert "top_k" not in fc
    two = schemas["SeriesPredictRequest_forecast_two"]["properties"]["series"]
    assert two["items"]["minItems"] == 2 and "(a, b)" in two["description"]
    body = spec["paths"]["/runs/forecast/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/SeriesPredictRequest_forecast")
    health = client.get("/health").json()
    assert (
        health["runs"]["forecast_two"] | {"columns": ["a", "b"], "context": CONTEXT, "horizon": HORIZON}
        == (health["runs"]["forecast_two"])
    )
    assert health["runs"]["series"]["channels"] == 2 and health["runs"]["series_ensemble"]["min_steps"] == 1
    assert client.get("/runs/forecast").json()["info"]["channels"] == 1
    assert client.get("/docs").status_code == 200


# --------------------------------------------------------------------------------------------------------------
# Bad requests: one line, 400, and the next request is answered

GOOD = {"series": [[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]]}
FORECAST = [float(v) for v in _values(12)]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("series", {"series": [[1, 2, 3]]}, "'series'[0] has 3 numbers; this run reads 2 channel(s) per step"),
        ("series", {"items": [[[1, 2]], [[1, 2], [3]]]}, '"items"[1][1] has 1 number; this run reads 2 channel(s)'),
        ("series", {"series": [1, 2, 3]}, "is a list of numbers, but this run reads 2 channels per step"),
        ("series", {"series": [[1, "2"]]}, "'series'[0][1] must be a number, got '2'"),
        ("series", {"series": [[1, 2], 3]}, "'series' mixes numbers and lists: give every step the same way"),
        ("forecast", {"series": [*FORECAST[:-1], "9"]}, "'series'[11] must be a number (or a list of 1), got '9'"),
        ("series", {"series": [[1, True]]}, "'series'[0][1] must be a number, got True"),
        ("series", {"series": [[1, None]]}, "'series'[0][1] must be a number, got None"),
        ("series", {"series": [[1e300, 1]]}, "the model's output is not finite for these values"),
        ("series", {"series": []}, "'series' has 0 steps; this run needs at least 1"),
        ("series", {"series": [[1, 2]] * 41}, "'series' has 41 steps, more than the limit of 40"),
        ("series", {"series": 5}, "'series' must be a series: a list with a list of 2 numbers per step, got 5"),
        ("series", {"items": [[[1, 2]]] * 5}, '"items" has 5 entries, more than the limit of 4'),
        ("series", {"items": []}, '"items" is empty'),
        ("series", {"items": ["1,2,3"]}, '"items"[0] must be a series'),
        ("series", {}, "this body has neither"),
        ("series", {**GOOD, "items": [GOOD["series"]]}, "this body has both"),
        ("series", {**GOOD, "horizon": 2}, "unknown field(s) 'horizon'; allowed: series, items, top_k"),
        ("series", {**GOOD, "top_k": 3}, "'top_k' must lie in [1, 2], got 3"),
        ("series_ensemble", {"series": [[1, 2, 3]]}, "this run reads 2 channel(s) per step"),
        ("forecast", {"series": FORECAST[:5]}, "'series' has 5 steps; this run needs its context: the last 8 values"),
        ("forecast", {"series": FORECAST * 4}, "'series' has 48 steps, more than the limit of 40"),
        ("forecast", {"series": FORECAST, "horizon": 4}, "'horizon' must lie in [1, 3], got 4"),
        ("forecast", {"series": FORECAST, "top_k": 1}, "unknown field(s) 'top_k'; allowed: series, items, horizon"),
        ("forecast", {"series": [[v, v] for v in FORECAST]}, "'series'[0] has 2 numbers; this run reads 1 channel(s)"),
        ("forecast", {"items": ["1", " "]}, '"items"[1] is empty'),
        ("forecast_two", {"series": FORECAST}, "this run reads 2 channels per step"),
    ],
)
def test_a_body_that_does_not_fit_is_one_line_and_the_next_is_answered(
    client: TestClient, path: str, body: dict, needle: str
) -> None:
    code, answer = post(client, f"/runs/{path}/predict", body)
    assert code == 400 and set(answer) == {"error"}, answer
    assert needle in answer["error"] and "\n" not in answer["error"] and "Traceback" not in answer["error"], answer
    good = {"series": FORECAST if path.startswith("forecast") else GOOD["series"]}
    if path == "forecast_two":
        good = {"series": [[v, 0.5] for v in FORECAST]}
    assert post(client, f"/runs/{path}/predict", good)[0] == 200


def test_values_beyond_the_float_range_and_nan_are_refused(client: TestClient) -> None:
    """JSON has no NaN (malformed JSON, as for every request); 1e400 parses as infinity: not a finite number."""
    headers = {"Content-Type": "application/json"}
    for raw, needle in (
        (b'{"series": [[1e400, 1]]}', "'series'[0] is not a finite number"),
        (b'{"series": [[NaN, 1]]}', "NaN is not a JSON number"),
        (b'{"items": [[[1, 2]], [[2, -Infinity]]]}', "-Infinity is not a JSON number"),
    ):
        resp = client.post("/runs/series/predict", content=raw, headers=headers)
        assert resp.status_code == 400 and needle in resp.json()["error"], resp.text
    assert post(client, "/runs/series/predict", GOOD)[0] == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("series", {"series": [[1e300, 1]]}),
        ("series", {"items": [[[1, 2]], [[2, -1e300], [3, 4]]]}),
        ("series_downsampled", {"series": [[1e300, 1]] * 2}),
        ("forecast", {"series": [*FORECAST[:-1], 1e300]}),
    ],
)
def test_values_near_1e300_are_a_400_without_a_numpy_overflow_warning(
    client: TestClient, path: str, body: dict
) -> None:
    """Finite in float64 but beyond float32 once scaled: refused before the cast (data.batching), no RuntimeWarning
    ("overflow encountered in cast") in the server's log, and the one-line 400 of a non-finite answer."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, answer = post(client, f"/runs/{path}/predict", body)
    assert code == 400 and answer == {"error": NOT_FINITE}, answer
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert post(client, f"/runs/{path}/predict", GOOD if path.startswith("series") else {"series": FORECAST})[0] == 200


def test_values_the_scaling_takes_beyond_float32_are_the_same_400(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values within float32 that a run's scaling takes beyond it are refused by the batch before its cast
    (data.batching.NonFiniteValues): the server answers them as any non-finite answer."""

    def beyond(run: object, X: object) -> None:
        raise NonFiniteValues("sequence 0: a value of magnitude 1e+39 lies beyond the float32 range")

    monkeypatch.setattr(rnnkit.serve.series, "series_probabilities", beyond)
    assert post(client, "/runs/series/predict", GOOD) == (400, {"error": NOT_FINITE})


def test_a_real_server_refuses_a_bad_series_and_answers_the_next(runs: dict[str, Path]) -> None:
    import http.client

    server = serve([runs["series"], runs["forecast"]], port=0, limits=LIMITS, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            time.sleep(0.01)

        def call(path: str, body: object) -> tuple[int, dict]:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            out = resp.status, json.loads(resp.read())
            conn.close()
            return out

        assert call("/runs/series/predict", {"series": [[1, 2, 3]]})[0] == 400
        assert call("/runs/forecast/predict", {"series": FORECAST[:3]})[0] == 400
        code, body = call("/runs/series/predict", GOOD)
        assert code == 200 and body["lines"][0].startswith("0: ")
        code, body = call("/runs/forecast/predict", {"series": FORECAST})
        assert code == 200 and len(body["forecasts"][0]["values"]) == HORIZON
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def test_cli_serve_passes_max_steps_and_refuses_a_bad_one(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import rnnkit.serve as rserve

    got = {}
    monkeypatch.setattr(rserve, "serve_until_stopped", lambda runs, host, port, limits: got.update(limits=limits) or 0)
    code, _, err = rnnkit_main(capsys, "serve", runs["series"], "--max-steps", "7", "--port", "0")
    assert code == 0, err
    assert got["limits"].max_steps == 7 and got["limits"].max_items == Limits().max_items
    with TestClient(create_app([runs["series"]], got["limits"])) as c:
        code, body = post(c, "/runs/series/predict", {"series": [[1, 2]] * 8})
    assert code == 400 and "'series' has 8 steps, more than the limit of 7" in body["error"]
    code, out, err = rnnkit_main(capsys, "serve", runs["series"], "--max-steps", "0")
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "--max-steps" in err, err
