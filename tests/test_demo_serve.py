"""``rnnkit demo --serve`` (issue 18, point 2): when the demo is done, its four runs are served on the page of
``rnnkit serve`` (loopback, the URL printed); SIGTERM ends it with exit code 0. The demo is made tiny by wrapping
:func:`rnnkit.demo.run_demo` with ``options`` (a small names folder, tiny sizes, one epoch) in the subprocess that
runs the real command line. A missing serve extra and a busy port are refused in one line before any training.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")

from cli_helpers import write_names  # the tiny names folder the demo tests share
from rnnkit import cli


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_demo_serve_serves_the_demos_runs_until_sigterm(tmp_path: Path) -> None:
    names = write_names(tmp_path / "names")
    out = tmp_path / "demo"
    tiny = {"data": str(names), "hidden_size": 6, "embed_dim": 4, "batch_size": 16, "progress": "none"}
    script = textwrap.dedent(
        f"""
        import functools, sys
        import rnnkit.demo
        rnnkit.demo.run_demo = functools.partial(rnnkit.demo.run_demo, options={tiny!r})
        from rnnkit.cli import main
        sys.exit(main(["demo", "--serve", "--port", "0", "--out", {str(out)!r}, "--epochs", "1"]))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = []
        while True:  # the demo's report, then the line with the URL
            line = proc.stdout.readline()
            assert line, ("the demo ended before serving", "".join(lines), proc.stderr.read())
            lines.append(line)
            if line.startswith("serving "):
                break
        assert any(line.startswith("runs: ") for line in lines), lines
        url = line.split(" on ")[1].split(": the page")[0]
        assert url.startswith("http://127.0.0.1:"), line
        port = int(url.rsplit(":", 1)[1])
        for _ in range(400):
            try:
                code, body = get(port, "/health")
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        assert code == 200
        health = json.loads(body)
        assert set(health["runs"]) == {"classify", "classify-window", "generate", "generate-window"}
        assert {r["task"] for r in health["runs"].values()} == {"classify", "generate"}
        code, page = get(port, "/")
        assert code == 200 and b"page.js" in page
        reports = json.loads(get(port, "/runs")[1])
        assert [r["run"] for r in reports] == ["classify", "classify-window", "generate", "generate-window"]
        assert all(r["metrics"]["epochs"] == 1 for r in reports)
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert rest.splitlines()[-1] == "stopped" and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["classify", "classify-window", "generate", "generate-window"]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused_before_training(code: int, out: str, err: str, out_dir: Path, needle: str) -> None:
    assert code == 2 and out == "", (out, err)
    assert len(err.splitlines()) == 1 and err.startswith("rnnkit: error: ") and needle in err, err
    assert not out_dir.exists()  # nothing trained


def test_demo_serve_refuses_a_missing_extra_and_a_busy_port_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "demo"
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "rnnkit.serve.app", None)  # as if fastapi/uvicorn were not installed
        got = run_cli(capsys, "demo", "--serve", "--out", str(out))
    assert_refused_before_training(
        *got, out, "--serve: rnnkit serve needs the serve extra: pip install 'rnnkit[serve]'"
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        got = run_cli(capsys, "demo", "--serve", "--port", str(port), "--out", str(out))
    assert_refused_before_training(*got, out, f"cannot listen on 127.0.0.1:{port}")
    got = run_cli(capsys, "demo", "--port", "0", "--out", str(out))
    assert_refused_before_training(*got, out, "--port is the port of --serve")
    got = run_cli(capsys, "demo", "--serve", "--port", "70000", "--out", str(out))
    assert_refused_before_training(*got, out, "--port must be an integer in [0, 65535]")
