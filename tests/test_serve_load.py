"""benchmarks/serve_load.py keeps working: a smoke run (2 clients, half a second per endpoint) ends with exit 0,
no failed request, the server still answering and its memory printed. Its figures are not checked (they depend
on the machine); the README's come from one stated run."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")

ROOT = Path(__file__).resolve().parents[1]


def test_the_load_test_runs_and_loses_no_request() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), "--clients", "2", "--seconds", "0.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    lines = proc.stdout.splitlines()
    for endpoint in ("predict", "sample"):
        line = next(x for x in lines if x.split()[:2] == ["fastapi", endpoint])
        assert "req/s" in line and "p50" in line and "p99" in line and " 0 failed" in line, line
    assert any("still answers: True" in x and "MiB after the load" in x for x in lines), lines
    assert lines[-1].endswith("rnnkit's server: no request failed")


def test_a_failed_request_is_named_by_its_cause() -> None:
    import http.server
    import threading

    from script_helpers import load_benchmark

    load_test = load_benchmark("serve_load")

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = load_test.load(server.server_address[1], "/x", {"items": []}, 2, 0.3, False)
    finally:
        server.shutdown()
    assert r["failed"] > 0 and r["requests"] == r["failed"] and dict(r["causes"]) == {"HTTP 503": r["failed"]}
