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
    assert lines[-1].endswith("no request failed")
