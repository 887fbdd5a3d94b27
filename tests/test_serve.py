"""Tests of rnnkit.serve: a real server on a free loopback port, called over HTTP with http.client.

Two tiny runs are trained once (classify, and a category-conditioned generate). Answers are checked against the
library calls they wrap (``rnnkit.runs.predict`` and ``sample`` with the same seed); every error is JSON with the
right 4xx status and one line, never a traceback: malformed JSON, non-object bodies, unknown fields, wrong types,
out-of-range values, unknown symbols and categories, too many items, oversized bodies (refused before they are
read, and the server keeps serving), missing Content-Length, wrong Content-Type, unknown paths and methods, a
garbage request line, and a bug inside an endpoint (500 with a generic message). ``rnnkit serve`` is run in a
thread through the CLI once, and its argument errors are checked.
"""

from __future__ import annotations

import argparse
import http.client
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rnnkit.runs.text
from rnnkit import cli
from rnnkit import serve as rserve
from rnnkit.runs import load_run, predict, sample
from rnnkit.serve import Limits, serve

LETTERS = {"Alpha": "aeiou", "Beta": "bcdfg"}
JSON = {"Content-Type": "application/json"}
LIMITS = Limits(max_bytes=4096, max_items=8, max_item_chars=40, max_num=5, max_len=20, timeout=5.0)


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
def servers(runs: dict[str, Path]) -> Iterator[dict[str, int]]:
    """Both runs served on free loopback ports; task → port."""
    started = {}
    for task, path in runs.items():
        server = serve(path, port=0, limits=LIMITS, quiet=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started[task] = server
    yield {task: s.server_address[1] for task, s in started.items()}
    for s in started.values():
        s.shutdown()
        s.server_close()


def call(port: int, method: str, path: str, body: object = None, headers: dict | None = None, raw: bytes | None = None):
    """One request; returns (status, headers, decoded JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=JSON if headers is None else headers)
    resp = conn.getresponse()
    text = resp.read().decode("utf-8")
    conn.close()
    assert resp.getheader("Content-Type") == "application/json; charset=utf-8"
    return resp.status, resp, json.loads(text) if text else None


def assert_error(answer, status: int, *needles: str) -> None:
    code, _, body = answer
    assert code == status, body
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"], body
    for needle in needles:
        assert needle in body["error"], (needle, body)


# --------------------------------------------------------------------------------------------------------------
# What a good request gets


def test_health_says_what_the_run_serves(servers: dict[str, int], runs: dict[str, Path]) -> None:
    code, _, body = call(servers["classify"], "GET", "/health")
    assert code == 200
    assert body["status"] == "ok" and body["task"] == "classify" and body["run"] == "classify"
    assert body["endpoints"] == ["GET /health", "POST /predict"]
    assert body["classes"] == sorted(LETTERS) and body["limits"]["max_bytes"] == LIMITS.max_bytes
    code, _, body = call(servers["generate"], "GET", "/health?verbose=1")
    assert code == 200 and body["task"] == "generate" and body["conditional"] is True
    assert body["endpoints"] == ["GET /health", "POST /sample"]


def test_predict_answers_what_the_library_predicts(servers: dict[str, int], runs: dict[str, Path]) -> None:
    items = ["Aeio", "Bcdf", "Abc"]
    code, _, body = call(servers["classify"], "POST", "/predict", {"items": items, "top_k": 2})
    assert code == 200
    want = predict(load_run(runs["classify"]), items, top_k=2)
    assert [p["item"] for p in body["predictions"]] == items
    for got, row in zip(body["predictions"], want, strict=True):
        assert [t["label"] for t in got["top"]] == [c for c, _ in row]
        assert [t["prob"] for t in got["top"]] == pytest.approx([p for _, p in row], abs=1e-6)
        assert got["top"][0]["prob"] >= got["top"][1]["prob"]


def test_sample_answers_what_the_library_samples(servers: dict[str, int], runs: dict[str, Path]) -> None:
    request = {"category": "Beta", "num": 4, "temperature": 0.9, "seed": 7, "max_len": 12}
    code, _, body = call(servers["generate"], "POST", "/sample", request)
    assert code == 200
    want = sample(load_run(runs["generate"]), "Beta", 4, 0.9, "", 12, 7, None)
    assert body["samples"] == want and len(want) == 4
    # the same seed again gives the same samples; a prefix starts every sample
    assert call(servers["generate"], "POST", "/sample", request)[2] == body
    code, _, body = call(servers["generate"], "POST", "/sample", {"category": "Alpha", "prefix": "A", "seed": 1})
    assert code == 200 and len(body["samples"]) == LIMITS.max_num and all(s.startswith("A") for s in body["samples"])


# --------------------------------------------------------------------------------------------------------------
# What a bad request gets


def test_malformed_json_and_non_objects_are_400(servers: dict[str, int]) -> None:
    port = servers["classify"]
    assert_error(call(port, "POST", "/predict", raw=b'{"items": ["Ab"'), 400, "malformed JSON")
    assert_error(call(port, "POST", "/predict", raw=b"\xff\xfe"), 400, "not UTF-8")
    assert_error(call(port, "POST", "/predict", raw=b'{"items": [NaN]}'), 400, "NaN is not a JSON number")
    assert_error(call(port, "POST", "/predict", raw=b""), 400, "malformed JSON")
    assert_error(call(port, "POST", "/predict", ["Ab"]), 400, "must be a JSON object, got list")
    assert_error(call(port, "POST", "/predict", raw=b"[" * 2000 + b"]" * 2000), 400, "nested too deeply")


@pytest.mark.parametrize(
    ("task", "path", "body", "needle"),
    [
        ("classify", "/predict", {}, 'needs "items"'),
        ("classify", "/predict", {"items": "Ab"}, "must be a list of strings"),
        ("classify", "/predict", {"items": []}, "is empty"),
        ("classify", "/predict", {"items": ["Ab", 3]}, '"items"[1] must be a string'),
        ("classify", "/predict", {"items": ["  "]}, '"items"[0] is empty'),
        ("classify", "/predict", {"items": ["Ab"] * 9}, "more than the limit of 8"),
        ("classify", "/predict", {"items": ["A" * 41]}, "more than the limit of 40"),
        ("classify", "/predict", {"items": ["Ab"], "top_k": True}, "'top_k' must be an integer"),
        ("classify", "/predict", {"items": ["Ab"], "top_k": 0}, "'top_k' must lie in"),
        ("classify", "/predict", {"items": ["Ab"], "itmes": 1}, "unknown field(s) 'itmes'"),
        ("classify", "/predict", {"items": ["Ab"], "beam": 2}, "takes no 'beam'"),
        ("classify", "/predict", {"items": ["Zq"]}, "unknown characters 'Z', 'q'"),
        ("generate", "/sample", {"num": 2}, "pass --category"),
        ("generate", "/sample", {"category": "Omega"}, "unknown category 'Omega'"),
        ("generate", "/sample", {"category": 1}, "'category' must be a string"),
        ("generate", "/sample", {"category": "Alpha", "num": "3"}, "'num' must be an integer"),
        ("generate", "/sample", {"category": "Alpha", "num": 6}, "'num' must lie in [1, 5]"),
        ("generate", "/sample", {"category": "Alpha", "temperature": -1}, "'temperature' must lie in"),
        ("generate", "/sample", {"category": "Alpha", "temperature": "hot"}, "must be a finite number"),
        ("generate", "/sample", {"category": "Alpha", "seed": -1}, "'seed' must lie in"),
        ("generate", "/sample", {"category": "Alpha", "prefix": "Zz"}, "unknown characters"),
        ("generate", "/sample", {"category": "Alpha", "prefix": "Aaa", "max_len": 2}, "longer than 'max_len'"),
    ],
)
def test_wrong_fields_are_400_naming_the_problem(servers, task: str, path: str, body: dict, needle: str) -> None:
    assert_error(call(servers[task], "POST", path, body), 400, needle)


def test_oversized_bodies_are_refused_unread_and_the_server_keeps_serving(servers: dict[str, int]) -> None:
    port = servers["classify"]
    big = {"items": ["Ab" * 20] * 200}  # ~9 kB > 4096
    assert_error(call(port, "POST", "/predict", big), 413, "more than the limit of 4096")
    # a huge announced length is refused at once, without waiting for a body that never comes
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(10**12))
    conn.endheaders()
    conn.send(b'{"items": ')
    start = time.monotonic()
    resp = conn.getresponse()
    assert resp.status == 413 and "more than the limit" in json.loads(resp.read())["error"]
    assert time.monotonic() - start < 3
    conn.close()
    assert call(port, "POST", "/predict", {"items": ["Ab"]})[0] == 200


def test_headers_paths_and_methods_get_their_4xx(servers: dict[str, int]) -> None:
    port = servers["classify"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", "/predict")  # no Content-Length
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411 and "Content-Length" in json.loads(resp.read())["error"]
    conn.close()
    body = json.dumps({"items": ["Ab"]})
    assert_error(call(port, "POST", "/predict", raw=body.encode(), headers={"Content-Type": "text/plain"}), 415)
    latin = {"Content-Type": "application/json; charset=latin-1"}
    assert_error(call(port, "POST", "/predict", raw=body.encode(), headers=latin), 415, "application/json")
    assert_error(call(port, "GET", "/nowhere"), 404, "no endpoint '/nowhere'", "POST /predict")
    assert_error(call(port, "POST", "/sample", {"num": 1}), 404, "classify run")
    assert_error(call(servers["generate"], "POST", "/predict", {"items": ["Ab"]}), 404, "POST /sample")
    answer = call(port, "GET", "/predict")
    assert_error(answer, 405, "takes POST")
    assert answer[1].getheader("Allow") == "POST"
    assert_error(call(port, "DELETE", "/health"), 405)
    assert call(port, "HEAD", "/health")[0] == 200
    # what http.server itself refuses is answered in JSON too: a header line over its limit, a garbage request
    # line (answered HTTP/0.9 style: the body alone)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\nX-Long: " + b"x" * 70000 + b"\r\n\r\n")
        reply = sock.makefile("rb").read().decode()
    head, _, payload = reply.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 431") and "application/json" in head
    assert set(json.loads(payload)) == {"error"}
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        reply = sock.makefile("rb").read().decode()
    assert json.loads(reply) == {"error": "Bad request syntax ('GARBAGE')"}


def test_slow_and_chunked_bodies(runs: dict[str, Path]) -> None:
    """A body that stops arriving gets 408 after the timeout; a chunked one 411 (a length is required)."""
    server = serve(runs["classify"], port=0, limits=Limits(timeout=0.3), quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = "POST /predict HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n"
            sock.sendall(head.encode() + b'{"items"')
            reply = sock.makefile("rb").read().decode()
        head, _, payload = reply.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.0 408") and "did not arrive within 0.3 s" in json.loads(payload)["error"]
        chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        assert_error(call(port, "POST", "/predict", raw=iter([b'{"items": ["Ab"]}']), headers=chunked), 411)
        # a body trickling in a byte at a time: the timeout is for the whole body, not for each read
        body = b'{"items": ["Ab"], "top_k": 1}'
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = f"POST /predict HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode())
            t0 = time.monotonic()
            answered = None
            try:
                for byte in body:
                    sock.sendall(bytes([byte]))
                    if select.select([sock], [], [], 0.05)[0]:  # the server answered (and stops reading)
                        answered = time.monotonic() - t0
                        break
            except OSError:
                answered = time.monotonic() - t0  # the server gave up and closed
            reply = sock.makefile("rb").read().decode()
        # the whole body would take 30 × 0.05 s = 1.5 s; the server answers after its 0.3 s deadline
        assert reply.startswith("HTTP/1.0 408") and answered is not None and answered < 1.2, (reply, answered)
    finally:
        server.shutdown()
        server.server_close()


def test_a_bug_is_a_500_without_traceback(servers: dict[str, int], monkeypatch, capsys) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(rnnkit.runs.text, "predict", broken)  # what the classify kind answers /predict with
    answer = call(servers["classify"], "POST", "/predict", {"items": ["Ab"]})
    assert_error(answer, 500, "internal error")
    assert "secret" not in answer[2]["error"]
    assert "secret internals" in capsys.readouterr().err  # the log has it


# --------------------------------------------------------------------------------------------------------------
# rnnkit serve


@pytest.fixture
def rnnkit_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``rnnkit ARGS`` in process with the serve subcommand (added here until the CLI lists it)."""
    parser = cli.build_parser()
    if "serve" not in next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices:
        original = cli.build_parser

        def build() -> argparse.ArgumentParser:
            p = original()
            rserve.add_cli(next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)))
            return p

        monkeypatch.setattr(cli, "build_parser", build)

    def main(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return main


def test_cli_serve_runs_until_stopped(runs: dict[str, Path], rnnkit_main, monkeypatch) -> None:
    made = []

    def keep(*args, **kwargs):
        made.append(serve(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(rserve, "serve", keep)
    result = {}
    thread = threading.Thread(target=lambda: result.update(rc=rnnkit_main("serve", runs["generate"], "--port", "0")))
    thread.start()
    for _ in range(200):
        if made:
            break
        time.sleep(0.02)
    assert made, "the CLI did not start a server"
    made[0].quiet = True
    code, _, body = call(made[0].server_address[1], "GET", "/health")
    assert code == 200 and body["task"] == "generate"
    made[0].shutdown()
    thread.join(10)
    code, out, _ = result["rc"]
    assert code == 0 and f"on {made[0].url}:" in out and "POST /sample" in out


def test_cli_serve_errors_are_one_line(runs: dict[str, Path], rnnkit_main, tmp_path: Path) -> None:
    for args, needle in (
        (("serve", tmp_path / "missing"), "does not exist"),
        (("serve", runs["classify"], "--port", "70000"), "a port is an integer in [0, 65535]"),
        (("serve", runs["classify"], "--max-bytes", "0"), "expected a positive integer"),
    ):
        code, out, err = rnnkit_main(*args)
        assert code == 2 and out == "", (args, out, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("rnnkit: error: ") and needle in lines[0], err
