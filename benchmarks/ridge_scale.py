"""Time and peak memory of one fit of the series classifier's kernel ridge as the number of series grows.

The default ridge (20,000 random-kernel features, PPV and LSPV, and Hydra's 64 groups) fitted on N synthetic
univariate series of L steps in 3 classes (random walks plus a class-dependent sine), in a fresh process per N so
that the peak resident memory is that fit's. What ``RIDGE_MAX_SERIES`` in ``rnnkit.runs.series_kernels`` and
``SELECT_MAX_SERIES`` in ``rnnkit.tasks.kernels`` are set from: the fit costs ``O(N²·F + N³)`` (the ``N × N`` Gram
matrices and their eigendecompositions, one per combination of feature groups). Run it alone.

    python benchmarks/ridge_scale.py                 # N = 1,000, 2,000, 5,000; L = 100
    python benchmarks/ridge_scale.py --n 10000 --length 100
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(n: int, length: int, threads: int) -> dict[str, float]:
    import numpy as np
    import torch

    import rnnkit.tasks.kernels as kernels
    from rnnkit.tasks.hydra import CompetingKernels

    torch.set_num_threads(threads)
    spent = {"ridge_loo_s": 0.0}
    solve = kernels.KernelRidge._select  # the Gram matrices, the choice of feature groups and the solve

    def timed(*args):
        t = time.perf_counter()
        out = solve(*args)
        spent["ridge_loo_s"] += time.perf_counter() - t
        return out

    kernels.KernelRidge._select = timed
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    wave = np.sin(np.arange(length) / 5)[:, None]
    series = [rng.standard_normal((length, 1)).cumsum(0) + y[i] * wave for i in range(n)]
    ridge = kernels.KernelRidge(kernels.RandomKernels(1, 20_000, stretch=True), 3, CompetingKernels(1, 64))
    t = time.perf_counter()
    ridge.fit(series, y.tolist(), 0)
    return {
        "n": n,
        "length": length,
        "features": int(ridge.mean.numel()),
        "fit_s": round(time.perf_counter() - t, 1),
        "ridge_loo_s": round(spent["ridge_loo_s"], 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 2000, 5000], help="numbers of series")
    ap.add_argument("--length", type=int, default=100, help="steps per series")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child process: one N
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.n[0], args.length, args.threads)))
        return 0
    print("| series | steps | features | fit (s) | of which the ridge's solve (s) | peak memory (GB) |")
    print("|---|---|---|---|---|---|")
    for n in args.n:
        cmd = [sys.executable, __file__, "--one", "--n", str(n), "--length", str(args.length)]
        row = json.loads(subprocess.run([*cmd, "--threads", str(args.threads)], check=True, capture_output=True,
                                        text=True).stdout)  # fmt: skip
        print(f"| {n:,} | {row['length']} | {row['features']:,} | {row['fit_s']} | {row['ridge_loo_s']} | "
              f"{row['peak_rss_gb']} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
