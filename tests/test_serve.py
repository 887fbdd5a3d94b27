"""Tests of rnnkit.serve: the FastAPI app through starlette's TestClient, and uvicorn on a free loopback port.

Two tiny runs are trained once (classify, and a category-conditioned generate) and served by ONE app under
``/runs/NAME/``. Answers are checked against the library calls they wrap (``rnnkit.runs.predict`` and ``sample``
with the same seed); every error is JSON with the right 4xx status and one line, never a traceback: malformed JSON,
non-object bodies, unknown fields, wrong types, out-of-range values, unknown symbols and categories, too many items,
oversized bodies (refused before they are read, and the server keeps serving), missing Content-Length, wrong
Content-Type, unknown paths and methods, and a bug inside an endpoint (500 with a generic message). On a real
uvicorn: a slow body gets 408, a header too long and a garbage request line get a 4xx and the server stays up;
``rnnkit serve`` runs in a thread through the CLI and in a subprocess that SIGTERM stops with exit code 0.
"""

import argparse
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (fastapi, uvicorn) is not installed")

from fastapi.testclient import TestClient

import rnnkit.runs.text
from rnnkit import cli
from rnnkit import serve as rserve
from rnnkit.data.vocab import Vocab
from rnnkit.runs import load_run, predict, predict_lines, sample
from rnnkit.serve import Limits, create_app, serve

LETTERS = {"Alpha": "aeiou", "Beta": "bcdfg"}
JSON = {"Content-Type": "application/json"}
LIMITS = Limits(max_bytes=4096, max_items=8, max_item_chars=40, max_num=5, max_len=20, timeout=5.0)
C, G = "/runs/classify", "/runs/generate"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("serve")
    data = base / "names"
    data.mkdir()
    for i, (cls, letters) in enumerate(LETTERS.items()):
        items = sorted({cls[0] + letters[j % 5] + letters[(j * 7) % 5] * (1 + j % 3) for j in range(40 + i)})
        (data / f"{cls}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    tiny = ["--hidden", "6", "--embed", "4", "--epochs", "1", "--batch-size", "8"]
    out = {}
    for task in ("classify", "generate"):
        out[task] = base / task
        assert cli.main(["train", "--task", task, "--data", str(data), "--out", str(out[task]), *tiny]) == 0
    return out


@pytest.fixture(scope="module")
def client(runs: dict[str, Path]) -> Iterator[TestClient]:
    """Both runs in one app, called in process."""
    with TestClient(create_app(list(runs.values()), LIMITS), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def port(runs: dict[str, Path]) -> Iterator[int]:
    """Both runs on a real uvicorn in a thread, on a free loopback port."""
    server = serve(list(runs.values()), port=0, limits=Limits(max_bytes=4096, timeout=0.3), quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    yield server.server_address[1]
    server.shutdown()
    thread.join(10)
    server.server_close()


def call(client: TestClient, method: str, path: str, body: object = None, headers: dict | None = None, raw=None):
    """One request; returns (status, response, decoded JSON body)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    resp = client.request(method, path, content=data, headers=JSON if headers is None else headers)
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8", resp.headers
    return resp.status_code, resp, resp.json() if resp.content else None


def http_call(port: int, method: str, path: str, body: object = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=None if body is None else json.dumps(body).encode(), headers=headers or JSON)
    resp = conn.getresponse()
    text = resp.read().decode("utf-8")
    conn.close()
    return resp.status, resp, json.loads(text) if text else None


def assert_error(answer, status: int, *needles: str) -> None:
    code, _, body = answer
    assert code == status, body
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"], body
    for needle in needles:
        assert needle in body["error"], (needle, body)


# --------------------------------------------------------------------------------------------------------------
# What a good request gets


def test_health_says_what_the_runs_serve(client: TestClient) -> None:
    code, _, body = call(client, "GET", "/health")
    assert code == 200 and body["status"] == "ok"
    demos = ["POST /demo/tiny", "POST /demo/flow"]
    assert body["endpoints"] == ["GET /health", "GET /runs", f"POST {C}/predict", f"POST {G}/sample", *demos]
    assert body["runs"]["classify"]["task"] == "classify" and body["runs"]["classify"]["classes"] == sorted(LETTERS)
    assert body["runs"]["generate"]["conditional"] is True
    assert body["limits"]["max_bytes"] == LIMITS.max_bytes and body["limits"]["max_beam"] == 16
    assert call(client, "GET", "/health?verbose=1")[0] == 200


def test_one_run_health_has_its_task_at_the_top(runs: dict[str, Path]) -> None:
    with TestClient(create_app(runs["generate"])) as c:
        body = c.get("/health").json()
    assert body["task"] == "generate" and body["run"] == "generate" and body["conditional"] is True
    assert body["endpoints"] == ["GET /health", "GET /runs", f"POST {G}/sample", "POST /demo/tiny", "POST /demo/flow"]


def test_openapi_states_the_schemas_and_limits(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {f"{C}/predict", f"{G}/sample", "/health", "/runs"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    predict_req = schemas["PredictRequest"]["properties"]
    assert predict_req["items"]["maxItems"] == LIMITS.max_items
    assert any(alt.get("maximum") == 16 for alt in predict_req["beam"]["anyOf"])
    assert any(alt.get("maximum") == 1000 for alt in predict_req["horizon"]["anyOf"])
    assert schemas["SampleRequest"]["properties"]["num"]["maximum"] == LIMITS.max_num
    assert {"PredictAnswer", "SampleAnswer"} <= set(schemas)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_predict_answers_what_the_library_predicts(client: TestClient, runs: dict[str, Path]) -> None:
    items = ["Aeio", "Bcdf", "Abc"]
    code, _, body = call(client, "POST", f"{C}/predict", {"items": items, "top_k": 2})
    assert code == 200
    want = predict(load_run(runs["classify"]), items, top_k=2)
    assert [p["item"] for p in body["predictions"]] == items
    for got, row in zip(body["predictions"], want, strict=True):
        assert [t["label"] for t in got["top"]] == [c for c, _ in row]
        assert [t["prob"] for t in got["top"]] == pytest.approx([p for _, p in row], abs=1e-6)
        assert got["top"][0]["prob"] >= got["top"][1]["prob"]


def test_sample_answers_what_the_library_samples(client: TestClient, runs: dict[str, Path]) -> None:
    request = {"category": "Beta", "num": 4, "temperature": 0.9, "seed": 7, "max_len": 12}
    code, _, body = call(client, "POST", f"{G}/sample", request)
    assert code == 200
    want = sample(load_run(runs["generate"]), "Beta", 4, 0.9, "", 12, 7, None)
    assert body["samples"] == want and len(want) == 4
    # the same seed again gives the same samples; a prefix starts every sample
    assert call(client, "POST", f"{G}/sample", request)[2] == body
    code, _, body = call(client, "POST", f"{G}/sample", {"category": "Alpha", "prefix": "A", "seed": 1})
    assert code == 200 and len(body["samples"]) == LIMITS.max_num and all(s.startswith("A") for s in body["samples"])


FIXTURES = Path(__file__).parent / "fixtures" / "runs" / "v0.1.0"


def test_seq2seq_predict_answers_the_beams_candidates_with_their_scores(tmp_path: Path) -> None:
    """The old ``lines`` stay (what ``rnnkit predict`` prints); ``outputs`` add, per item, the beam's candidates
    best first, the first being the line's output and every score the model's teacher-forced log-probability."""
    folder = shutil.copytree(FIXTURES / "seq2seq", tmp_path / "seq2seq")
    run = load_run(folder)
    items = ["abc", "zoe", "a"]
    with TestClient(create_app([folder]), raise_server_exceptions=False) as c:
        for beam in (None, 1, 4):
            request = {"items": items} if beam is None else {"items": items, "beam": beam}
            code, _, body = call(c, "POST", "/runs/seq2seq/predict", request)
            assert code == 200, body
            width = beam or run.config["data"]["beam"]
            assert body["lines"] == predict_lines(run, items, beam=beam)
            assert [o["item"] for o in body["outputs"]] == items
            for item, line, out in zip(items, body["lines"], body["outputs"], strict=True):
                cands = out["candidates"]
                assert 1 <= len(cands) <= width
                assert line == f"{item}: {cands[0]['output']}"
                scores = [x["score"] for x in cands]
                assert scores == sorted(scores, reverse=True)
                tgt = Vocab.from_dict(run.config["target_vocab"])
                targets = [tgt.encode(x["output"], strict=True) for x in cands]
                reference = run.model.score([run.vocab.encode(item, strict=True)] * len(cands), targets)
                assert scores == pytest.approx(reference.tolist(), abs=1e-4)
        assert_error(call(c, "POST", "/runs/seq2seq/predict", {"items": ["ab#"]}), 400, "#")
        schema = c.get("/openapi.json").json()["components"]["schemas"]
        assert schema["PredictAnswer"]["properties"]["outputs"]
        assert set(schema["Candidate"]["properties"]) == {"output", "score"}


def test_run_reports_hold_metrics_curve_and_confusion(client: TestClient, runs: dict[str, Path]) -> None:
    reports = client.get("/runs").json()
    assert [r["run"] for r in reports] == ["classify", "generate"]
    one = client.get(f"{C}").json()
    assert one == reports[0]
    metrics = json.loads((runs["classify"] / "metrics.json").read_text())
    assert one["metrics"] == metrics and one["curve"]["epoch"] == [1.0] and "train_loss" in one["curve"]
    assert one["confusion"] is None or len(one["confusion"]["matrix"]) == len(LETTERS)


def test_the_page_and_its_script_are_served_from_the_package(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/page.js"' in page.text and "http" not in page.text.replace('href="docs"', "")  # no CDN
    script = client.get("/static/page.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "fetch(" in script.text and "https://" not in script.text
    assert_error(call(client, "GET", "/static/missing.js"), 404)
    assert client.get("/static/..%2F__init__.py").status_code == 404


def test_the_gradient_demo_answers_what_diagnostics_computes(client: TestClient) -> None:
    from rnnkit.diagnostics import compare_flow, show_grads

    code, _, body = call(client, "POST", "/demo/tiny", {"wh": 0.5, "lengths": [1, 10]})
    assert code == 200 and body["lines"] == show_grads(0.5, [1, 10])
    assert body["rows"][1]["length"] == 10 and body["rows"][1]["grads"]["wh"] == pytest.approx(2 * 10 * 0.5**9)
    code, _, body = call(client, "POST", "/demo/tiny", {"wh": 10, "lengths": [50]})
    assert code == 200 and body["lines"][0] == "wh_init = 10"  # float32 overflows: null, not NaN in the JSON
    code, _, body = call(client, "POST", "/demo/flow", {"models": ["rnn", "gru"], "length": 12, "hidden": 8})
    want = compare_flow(["rnn", "gru"], 12, 8)
    assert code == 200 and set(body["norms"]) == set(want) == {"rnn l0", "gru l0"}
    assert body["norms"]["gru l0"] == pytest.approx(want["gru l0"])
    assert_error(call(client, "POST", "/demo/tiny", {"lengths": [0]}), 400, "'lengths'[0] must be ≥ 1")
    assert_error(call(client, "POST", "/demo/flow", {"length": 201}), 400, "'length' must lie in [1, 200]")
    assert_error(call(client, "POST", "/demo/flow", {"models": ["tcn"]}), 400, "'models'[0]")
    page = client.get("/demo")
    assert page.status_code == 200 and 'src="static/demo.js"' in page.text


# --------------------------------------------------------------------------------------------------------------
# What a bad request gets


def test_malformed_json_and_non_objects_are_400(client: TestClient) -> None:
    path = f"{C}/predict"
    assert_error(call(client, "POST", path, raw=b'{"items": ["Ab"'), 400, "malformed JSON")
    assert_error(call(client, "POST", path, raw=b"\xff\xfe"), 400, "not UTF-8")
    assert_error(call(client, "POST", path, raw=b'{"items": [NaN]}'), 400, "NaN is not a JSON number")
    assert_error(call(client, "POST", path, raw=b""), 400, "malformed JSON")
    assert_error(call(client, "POST", path, ["Ab"]), 400, "must be a JSON object, got list")
    assert_error(call(client, "POST", path, raw=b"[" * 2000 + b"]" * 2000), 400, "nested too deeply")


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        (f"{C}/predict", {}, 'needs "items"'),
        (f"{C}/predict", {"items": "Ab"}, "must be a list of strings"),
        (f"{C}/predict", {"items": []}, "is empty"),
        (f"{C}/predict", {"items": ["Ab", 3]}, '"items"[1] must be a string'),
        (f"{C}/predict", {"items": ["  "]}, '"items"[0] is empty'),
        (f"{C}/predict", {"items": ["Ab"] * 9}, "more than the limit of 8"),
        (f"{C}/predict", {"items": ["A" * 41]}, "more than the limit of 40"),
        (f"{C}/predict", {"items": ["Ab"], "top_k": True}, "'top_k' must be an integer"),
        (f"{C}/predict", {"items": ["Ab"], "top_k": 0}, "'top_k' must lie in"),
        (f"{C}/predict", {"items": ["Ab"], "beam": 17}, "'beam' must lie in [1, 16]"),
        (f"{C}/predict", {"items": ["Ab"], "horizon": 1001}, "'horizon' must lie in [1, 1000]"),
        (f"{C}/predict", {"items": ["Ab"], "itmes": 1}, "unknown field(s) 'itmes'"),
        (f"{C}/predict", {"items": ["Ab"], "beam": 2}, "takes no 'beam'"),
        (f"{C}/predict", {"items": ["Zq"]}, "unknown characters 'Z', 'q'"),
        (f"{G}/sample", {"num": 2}, "pass --category"),
        (f"{G}/sample", {"category": "Omega"}, "unknown category 'Omega'"),
        (f"{G}/sample", {"category": 1}, "'category' must be a string"),
        (f"{G}/sample", {"category": "Alpha", "num": "3"}, "'num' must be an integer"),
        (f"{G}/sample", {"category": "Alpha", "num": 6}, "'num' must lie in [1, 5]"),
        (f"{G}/sample", {"category": "Alpha", "temperature": -1}, "'temperature' must lie in"),
        (f"{G}/sample", {"category": "Alpha", "temperature": "hot"}, "must be a finite number"),
        (f"{G}/sample", {"category": "Alpha", "seed": -1}, "'seed' must lie in"),
        (f"{G}/sample", {"category": "Alpha", "prefix": "Zz"}, "unknown characters"),
        (f"{G}/sample", {"category": "Alpha", "prefix": "Aaa", "max_len": 2}, "longer than 'max_len'"),
    ],
)
def test_wrong_fields_are_400_naming_the_problem(client: TestClient, path: str, body: dict, needle: str) -> None:
    assert_error(call(client, "POST", path, body), 400, needle)


def test_oversized_bodies_are_refused_unread_and_the_server_keeps_serving(client: TestClient, port: int) -> None:
    big = {"items": ["Ab" * 20] * 200}  # ~9 kB > 4096
    assert_error(call(client, "POST", f"{C}/predict", big), 413, "more than the limit of 4096")
    # a huge announced length is refused at once, without waiting for a body that never comes (real uvicorn)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", f"{C}/predict")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(10**12))
    conn.endheaders()
    conn.send(b'{"items": ')
    start = time.monotonic()
    resp = conn.getresponse()
    assert resp.status == 413 and "more than the limit" in json.loads(resp.read())["error"]
    assert time.monotonic() - start < 3
    conn.close()
    assert http_call(port, "POST", f"{C}/predict", {"items": ["Ab"]})[0] == 200


def test_headers_paths_and_methods_get_their_4xx(client: TestClient) -> None:
    chunked = {"Content-Type": "application/json"}  # an iterator body goes chunked, without Content-Length
    assert_error(call(client, "POST", f"{C}/predict", raw=iter([b'{"items": ["Ab"]}']), headers=chunked), 411)
    body = json.dumps({"items": ["Ab"]}).encode()
    assert_error(call(client, "POST", f"{C}/predict", raw=body, headers={"Content-Type": "text/plain"}), 415)
    latin = {"Content-Type": "application/json; charset=latin-1"}
    assert_error(call(client, "POST", f"{C}/predict", raw=body, headers=latin), 415, "application/json")
    assert_error(call(client, "GET", "/nowhere"), 404, "no endpoint '/nowhere'", f"POST {C}/predict")
    assert_error(call(client, "POST", f"{C}/sample", {"num": 1}), 404, "classify run")
    assert_error(call(client, "POST", f"{G}/predict", {"items": ["Ab"]}), 404, f"POST {G}/sample")
    assert_error(call(client, "POST", "/runs/nobody/predict", {"items": ["Ab"]}), 404, "no endpoint")
    answer = call(client, "GET", f"{C}/predict")
    assert_error(answer, 405, "takes POST")
    assert answer[1].headers["Allow"] == "POST"
    assert_error(call(client, "DELETE", "/health"), 405)
    assert client.head("/health").status_code == 200


def test_what_uvicorn_refuses_is_4xx_and_it_keeps_serving(port: int) -> None:
    """A header over h11's limit (64 KiB) and a garbage request line are uvicorn's to refuse (400 in plain text, not
    JSON: the app never sees them; an oversized header may be cut off by a reset instead); the server answers the
    next request."""
    long_header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"x" * 200_000 + b"\r\n\r\n"
    for request in (long_header, b"GARBAGE\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            try:
                sock.sendall(request)
                reply = sock.makefile("rb").read().decode()
            except ConnectionResetError:
                reply = "HTTP/1.1 4xx (reset while sending)"
        assert reply.startswith("HTTP/1.1 4"), reply[:80]
        assert "Traceback" not in reply
    assert http_call(port, "GET", "/health")[0] == 200


def test_slow_bodies_get_408(port: int) -> None:
    """A body that stops arriving gets 408 after the timeout (0.3 s here), one trickling a byte at a time too:
    the timeout is for the whole body, not for each read."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST {C}/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n"
        sock.sendall(head.encode() + b'{"items"')
        reply = sock.makefile("rb").read().decode()
    head, _, payload = reply.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 408") and "did not arrive within 0.3 s" in json.loads(payload)["error"]
    body = b'{"items": ["Ab"], "top_k": 1}'
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST {C}/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode())
        t0 = time.monotonic()
        answered, reply = None, ""
        try:
            for byte in body:
                sock.sendall(bytes([byte]))
                if select.select([sock], [], [], 0.05)[0]:  # the server answered (and stops reading): read it now
                    answered = time.monotonic() - t0
                    reply = sock.recv(65536).decode()
                    break
        except OSError:  # the server gave up and closed; a byte sent after that may reset the answer away
            answered = time.monotonic() - t0
            reply = reply or "HTTP/1.1 408 (reset before it was read)"
    # the whole body would take 30 × 0.05 s = 1.5 s; the server answers after its 0.3 s deadline
    assert reply.startswith("HTTP/1.1 408") and answered is not None and answered < 1.2, (reply, answered)
    assert http_call(port, "GET", "/health")[0] == 200


def test_a_bug_is_a_500_without_traceback(client: TestClient, monkeypatch, capsys) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(rnnkit.runs.text, "predict", broken)  # what the classify kind answers predict with
    answer = call(client, "POST", f"{C}/predict", {"items": ["Ab"]})
    assert_error(answer, 500, "internal error")
    assert "secret" not in answer[2]["error"]
    assert "secret internals" in capsys.readouterr().err  # the log has it


# --------------------------------------------------------------------------------------------------------------
# rnnkit serve


@pytest.fixture
def rnnkit_main(capsys: pytest.CaptureFixture[str]):
    """``rnnkit ARGS`` in process."""
    parser = cli.build_parser()
    assert "serve" in next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    def main(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return main


def test_cli_serve_runs_until_stopped(runs: dict[str, Path], rnnkit_main, monkeypatch) -> None:
    made = []

    def keep(*args, **kwargs):
        made.append(serve(*args, **{**kwargs, "quiet": True}))
        return made[-1]

    monkeypatch.setattr(rserve.app, "serve", keep)
    result = {}
    args = ("serve", runs["generate"], runs["classify"], "--port", "0")
    thread = threading.Thread(target=lambda: result.update(rc=rnnkit_main(*args)))
    thread.start()
    for _ in range(500):
        if made and made[0].started:
            break
        time.sleep(0.02)
    assert made and made[0].started, "the CLI did not start a server"
    code, _, body = http_call(made[0].server_address[1], "GET", "/health")
    assert code == 200 and set(body["runs"]) == {"generate", "classify"}
    made[0].shutdown()
    thread.join(10)
    code, out, _ = result["rc"]
    assert code == 0 and f"on {made[0].url}:" in out and "generate (generate), classify (classify)" in out


def test_cli_serve_errors_are_one_line(runs: dict[str, Path], rnnkit_main, tmp_path: Path) -> None:
    for args, needle in (
        (("serve", tmp_path / "missing"), "does not exist"),
        (("serve", runs["classify"], "--port", "70000"), "a port is an integer in [0, 65535]"),
        (("serve", runs["classify"], "--max-bytes", "0"), "expected a positive integer"),
        (("serve", runs["classify"], runs["classify"]), "two runs are named 'classify'"),
    ):
        code, out, err = rnnkit_main(*args)
        assert code == 2 and out == "", (args, out, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("rnnkit: error: ") and needle in lines[0], err


def test_cli_serve_without_the_extra_says_how_to_get_it(runs: dict[str, Path], rnnkit_main, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "rnnkit.serve.app", None)  # as if fastapi/uvicorn were not installed
    code, out, err = rnnkit_main("serve", runs["classify"])
    assert (
        code == 2
        and out == ""
        and err.splitlines()
        == ["rnnkit: error: rnnkit serve needs the serve extra: pip install 'rnnkit[serve]' (FastAPI and uvicorn)"]
    )


def test_uvicorn_subprocess_answers_and_sigterm_stops_it_cleanly(runs: dict[str, Path]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", "serve", str(runs["classify"]), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert "serving classify (classify) on http://127.0.0.1:" in line, (line, proc.stderr.read())
        port = int(line.split("http://127.0.0.1:")[1].split(":")[0])
        for _ in range(200):
            try:
                code, _, body = http_call(port, "POST", f"{C}/predict", {"items": ["Ab"], "top_k": 1})
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        assert code == 200 and len(body["predictions"][0]["top"]) == 1
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"temperature": 1e-300}, "'temperature' must lie in [0.01, 100] or be 0, got 1e-300"),
        ({"temperature": 1e300}, "'temperature' must lie in [0.01, 100] or be 0, got 1e+300"),
        ({"temperature": 0.005}, "'temperature' must lie in [0.01, 100] or be 0, got 0.005"),
        ({"temperature": -1.0}, "'temperature' must lie in [0.01, 100] or be 0, got -1.0"),
        ({"seed": 2**40}, "'seed' must lie in [0, 4294967295], got 1099511627776"),
        ({"seed": -1}, "'seed' must lie in [0, 4294967295], got -1"),
    ],
)
def test_sample_numbers_use_the_ranges_of_the_command_line(client: TestClient, body: dict, needle: str) -> None:
    """Issue 13: the server's numbers come from rnnkit.ranges (a tiny or huge temperature was a 500 once); the
    same request without the bad number is answered."""
    assert_error(call(client, "POST", f"{G}/sample", {"category": "Beta", **body}), 400, needle)
    from rnnkit.ranges import RANGES

    key = next(iter(body))
    good = 0.5 if key == "temperature" else int(RANGES["seed"].hi)
    assert call(client, "POST", f"{G}/sample", {"category": "Beta", key: good, "num": 2})[0] == 200
