"""A bounded load test of ``rnnkit serve`` on loopback: N concurrent clients, at most ``--budget`` seconds in all.

    python benchmarks/serve_load.py [--clients 20] [--seconds 15] [--budget 60] [--baseline 11d0336] [--keep-alive]

Serves the release's classify and generate run folders (tests/fixtures/runs/v0.1.0, copied to a temp folder) in a
subprocess, warms each endpoint up (10 requests), then for ``predict`` and then ``sample`` runs ``--clients``
threads, each opening a connection per request (as the baseline must; ``--keep-alive`` reuses one), sending
requests back to back for ``--seconds`` (shortened so that everything, servers' start and stop included, ends
within ``--budget``). Prints requests/second, p50/p99 latency, the requests that failed (a failure is a non-200
answer or a broken connection), whether the server still answers, and its resident memory after the warm-up and
after the load (flat: no growth per request); a failed request is named by its cause (``HTTP 503``,
``ConnectionResetError``, ...). Exits 1 if a request to rnnkit's server failed or it stopped answering.
``--baseline COMMIT`` measures the hand-written http.server of that commit (``src/rnnkit/serve.py``; HTTP/1.0,
paths without ``/runs/NAME``) the same way, for comparison: its failures are reported, not a failure of the run.

Its figures depend on the machine and on what else runs there: the README's come from one run, stated there.
"""

import argparse
import collections
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "runs" / "v0.1.0"
REQUESTS = {
    "predict": ("classify", {"items": ["nors", "sun"], "top_k": 2}),
    "sample": ("generate", {"category": "north", "num": 5, "temperature": 0.8, "max_len": 12}),
}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start(cmd: list[str]) -> tuple[subprocess.Popen, int]:
    # the checkout's rnnkit, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)
    line = proc.stdout.readline()
    # keep reading what it prints (uvicorn's access log goes to stdout): a full pipe would block the server
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    port = int(line.split("http://127.0.0.1:")[1].split(":")[0].split("/")[0].rstrip())
    for _ in range(200):
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/health")
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not come up")


def load(port: int, path: str, body: dict, clients: int, seconds: float, keep_alive: bool) -> dict:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[collections.Counter[str]] = [collections.Counter() for _ in range(clients)]  # cause -> count
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = None
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                if conn is None or not keep_alive:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", path, body=data, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    failures[i][f"HTTP {resp.status}"] += 1
                if not keep_alive or resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except OSError as e:
                failures[i][type(e).__name__] += 1
                conn = None
                continue
            latencies[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    lat = sorted(x for per in latencies for x in per)
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0] if lat else 0.0] * 99
    causes = sum(failures, collections.Counter())
    unanswered = sum(n for cause, n in causes.items() if not cause.startswith("HTTP "))
    return {
        "requests": len(lat) + unanswered,  # sent: answered (any status) or lost with the connection
        "rps": len(lat) / elapsed,  # answered per second
        "p50_ms": q[49] * 1e3,
        "p99_ms": q[98] * 1e3,
        "failed": sum(causes.values()),
        "causes": causes,
    }


STOP_MARGIN = 3.0  # seconds kept per server for stopping it (SIGTERM, requests in flight finish)


class Budget:
    """The wall-clock budget of the whole test: each load phase gets ``--seconds``, or its share of what is left."""

    def __init__(self, seconds: float, phases: int) -> None:
        self.deadline, self.phases_left = time.monotonic() + seconds, phases

    def phase(self, wanted: float, servers_left: int) -> float:
        left = self.deadline - time.monotonic() - STOP_MARGIN * servers_left
        share = max(0.5, left / max(self.phases_left, 1))
        self.phases_left -= 1
        return min(wanted, share)


def warm_up(port: int, path: str, body: dict, n: int = 10) -> None:
    """``n`` requests one after another, so the memory measured after includes the model's first-call costs."""
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()


def measure(
    label: str,
    cmd: list[str],
    prefix: dict[str, str],
    args: argparse.Namespace,
    keep_alive: bool,
    budget: Budget,
    servers_left: int,
) -> bool:
    """Load one server; True if no request failed and it still answers."""
    proc, port = start(cmd)
    ok = True
    try:
        for endpoint, (run, body) in REQUESTS.items():
            warm_up(port, prefix[run] + "/" + endpoint, body)
        before = rss_kib(proc.pid)
        for endpoint, (run, body) in REQUESTS.items():
            seconds = budget.phase(args.seconds, servers_left)
            r = load(port, prefix[run] + "/" + endpoint, body, args.clients, seconds, keep_alive)
            ok = ok and r["failed"] == 0
            causes = ", ".join(f"{n} × {cause}" for cause, n in r["causes"].most_common())
            print(
                f"{label:9s} {endpoint:8s} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms"
                f"  {r['requests']} requests, {r['failed']} failed{f' ({causes})' if causes else ''}"
                f" ({args.clients} clients, {seconds:.1f} s)",
                flush=True,
            )
        after = rss_kib(proc.pid)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            up = conn.getresponse().status == 200
        except OSError:
            up = False
        ok = ok and up
        print(
            f"{label:9s} still answers: {up}; RSS {before / 1024:.0f} MiB after the warm-up, {after / 1024:.0f} MiB "
            f"after the load ({(after - before) / 1024:+.1f} MiB)",
            flush=True,
        )
    finally:
        proc.terminate()
        proc.wait(20)
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--seconds", type=float, default=15.0, help="of load per endpoint (less if --budget needs)")
    p.add_argument(
        "--budget", type=float, default=60.0, help="seconds for everything, servers' start and stop included"
    )
    p.add_argument("--baseline", metavar="COMMIT", help="also measure the http.server of this commit")
    p.add_argument(
        "--keep-alive", action="store_true", help="reuse each client's connection (the baseline cannot: HTTP/1.0)"
    )
    args = p.parse_args()
    t0 = time.monotonic()
    budget = Budget(args.budget, 4 if args.baseline else 2)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [str(shutil.copytree(FIXTURES / k, Path(tmp) / k)) for k in ("classify", "generate")]
        cmd = [sys.executable, "-m", "rnnkit", "serve", *runs, "--port", "0", "--max-items", "256"]
        prefixes = {"classify": "/runs/classify", "generate": "/runs/generate"}
        ok = measure("fastapi", cmd, prefixes, args, args.keep_alive, budget, 3 if args.baseline else 1)
        if args.baseline:
            old = subprocess.run(
                ["git", "show", f"{args.baseline}:src/rnnkit/serve.py"], cwd=ROOT, capture_output=True, text=True
            )
            if old.returncode != 0:
                print(f"no src/rnnkit/serve.py at {args.baseline}: {old.stderr.strip()}")
                return 1
            (Path(tmp) / "old_serve.py").write_text(old.stdout)
            baseline_ok = True
            for run in runs:
                code = (
                    f"import sys; sys.path.insert(0, {tmp!r}); import old_serve; "
                    f"s = old_serve.serve({run!r}, port=0, quiet=True); "
                    "print(f'serving on {s.url}:', flush=True); s.serve_forever()"
                )
                label = "http.srv"
                name = Path(run).name
                proc_cmd = [sys.executable, "-c", code]
                args_one = argparse.Namespace(**vars(args))
                one = {k: v for k, v in REQUESTS.items() if v[0] == name}
                saved = dict(REQUESTS)
                REQUESTS.clear()
                REQUESTS.update(one)
                try:
                    servers_left = 2 if name == "classify" else 1
                    one_ok = measure(label, proc_cmd, {name: ""}, args_one, False, budget, servers_left)
                    baseline_ok = baseline_ok and one_ok
                finally:
                    REQUESTS.clear()
                    REQUESTS.update(saved)
            if not baseline_ok:
                print(f"the baseline ({args.baseline}) lost requests or stopped answering: see its lines above")
    print(
        f"{time.monotonic() - t0:.0f} s in all; rnnkit's server: {'no request failed' if ok else 'FAILED, see above'}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
