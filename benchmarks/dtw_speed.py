"""DTW distance matrices: rnnkit's compiled kernel and PyTorch scan beside aeon's numba ``dtw_pairwise_distance``.

Each path computes the same ``(N, N)`` matrix of DTW distances (no window, squared differences) between two sets of
``N`` random-walk series of ``L`` steps (two sets: the job of scoring series against references, with no symmetry
to exploit), in float64; the script checks that they agree (relative 1e-9) and prints one Markdown row
per path and size: seconds (best of ``--repeat``) and cells per second (``N²·L²`` cells). aeon's and the compiled
kernel's first calls (numba's compile, the C++ build) happen before any timing. Run it alone: a parallel job makes
every figure meaningless.

    python benchmarks/dtw_speed.py                      # n = N = 200, L = 128 and 512; one thread
    python benchmarks/dtw_speed.py --threads 2 --sizes 100x256
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable

import numpy as np


def best_of(repeat: int, fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    """The shortest wall time of ``repeat`` calls of ``fn`` and its last result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    assert out is not None
    return min(times), out


def timed_paths(
    A: np.ndarray, B: np.ndarray, compiled: bool, with_scan: bool, threads: int = 1
) -> dict[str, Callable[[], np.ndarray]]:
    """The calls timed on the series ``A``, ``B`` ``(N, 1, L)``: aeon's, the compiled kernel (when it loads) and
    the scan (``with_scan``), each returning the ``(N, N)`` distances between them; aeon with ``n_jobs=threads``."""
    import torch
    from aeon.distances import dtw_pairwise_distance

    from rnnkit.tasks.elastic import dtw_distances

    a, b = (torch.from_numpy(S.transpose(0, 2, 1).copy()) for S in (A, B))  # rnnkit's (N, L, C)
    la, lb = torch.full((A.shape[0],), A.shape[2]), torch.full((B.shape[0],), B.shape[2])
    paths: dict[str, Callable[[], np.ndarray]] = {
        "aeon dtw_pairwise_distance": lambda: dtw_pairwise_distance(A, B, n_jobs=threads)
    }
    for method, name in (("compiled", "rnnkit compiled"), ("scan", "rnnkit scan (PyTorch)")):
        if (method == "compiled" and compiled) or (method == "scan" and with_scan):
            paths[name] = lambda m=method: dtw_distances(a, la, b, lb, method=m).numpy()
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["200x128", "200x512"], help="NxL: N series of L steps")
    ap.add_argument("--threads", type=int, default=1, help="threads of torch, and aeon's n_jobs (default: 1)")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per path (default: 3)")
    ap.add_argument("--scan-max-cells", type=float, default=2e9, help="skip the PyTorch scan above this many cells")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")  # numba's casting notes
    import torch
    from aeon.distances import dtw_pairwise_distance

    from rnnkit.tasks.elastic import _kernel

    torch.set_num_threads(args.threads)
    compiled = _kernel() is not None
    g = np.random.default_rng(0)
    warm = g.standard_normal((4, 1, 16)).cumsum(-1)
    dtw_pairwise_distance(warm)  # numba compiles here
    print(f"threads {args.threads}; compiled kernel: {'loaded' if compiled else 'not available'}; "
          f"CPUs busy before: {os.getloadavg()[0]:.2f}\n")  # fmt: skip
    print("| N | L | path | seconds | cells/s | vs aeon |\n|---|---|---|---|---|---|")
    for size in args.sizes:
        N, L = (int(v) for v in size.lower().split("x"))
        A, B = (g.standard_normal((N, 1, L)).cumsum(-1) for _ in range(2))  # aeon's (N, C, L)
        cells = N * N * L * L
        paths = timed_paths(A, B, compiled, with_scan=cells <= args.scan_max_cells, threads=args.threads)
        results = {name: best_of(args.repeat if "scan" not in name else 1, fn) for name, fn in paths.items()}
        reference = results["aeon dtw_pairwise_distance"]
        for name, (seconds, out) in results.items():
            np.testing.assert_allclose(out, reference[1], rtol=1e-9, atol=1e-9)
            print(f"| {N} | {L} | {name} | {seconds:.3f} | {cells / seconds:.2e} | {seconds / reference[0]:.2f}× |")
    print(f"\nCPUs busy after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
