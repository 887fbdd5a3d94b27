"""How ``rnnkit bench`` times its rows: interleaved single calls (training rows) or alternating blocks of
back-to-back calls (the B = 1 inference rows).

* :func:`time_interleaved` — after a warm-up, rounds of one call of each implementation, the order cycling
  through all permutations. Used for forward+backward: a training step is one call among other work (the
  optimizer, the data), and interleaving makes drift of the machine hit every implementation alike.
* :func:`time_blocks` — as ``torch.utils.benchmark.Timer`` times a statement: a warm-up, then a block of
  repeated calls of ONE implementation, timed as a whole (per call = block time / calls); the blocks of the
  implementations alternate over several rounds (the order reversed every other round) and the report takes
  medians over the rounds, so drift hits them alike. Used for forward-only rows at B = 1 (serving, sampling):
  there the same model is called back to back, its weights stay in the core's caches between calls, and one
  call of another implementation in between (as interleaving does) evicts them — which made every B = 1
  inference row measure a cold-cache call that such a loop never runs.

Times are wall clock (``time.perf_counter``); the garbage collector is off while timing (a collection inside one
timed call would land on one implementation only).
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable

__all__ = ["time_blocks", "time_interleaved"]


def time_interleaved(
    runners: dict[str, Callable[[], object]], repeats: int | None, budget_s: float
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Per-call seconds of each runner, interleaved (the order cycles), and each runner's last output.

    ``runners`` maps a name to a call; ``repeats`` timed rounds (None: picked from ``budget_s``). Returns
    ``(times {name: [seconds per call, one per round]}, outputs {name: its last output})``.
    """
    names = list(runners)
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection inside one timed call would land on one implementation only
    try:
        # Warm-up, in rounds of one call each, until every implementation's latest call is within 15% of its
        # fastest earlier one (at least 2 rounds and 0.2 s, at most 8 rounds or ``budget_s``). Large shapes need
        # it: their first calls touch fresh memory and ran 3-14x slower than later ones on these machines.
        warm: dict[str, list[float]] = {name: [] for name in names}
        outputs: dict[str, object] = {}
        for rounds in range(1, 9):
            for name in names:
                t0 = time.perf_counter()
                outputs[name] = runners[name]()
                warm[name].append(time.perf_counter() - t0)
            settled = rounds >= 2 and all(ts[-1] <= 1.15 * min(ts[:-1]) for ts in warm.values())
            spent = sum(map(sum, warm.values()))
            if (settled and spent >= 0.2) or (rounds >= 2 and spent > budget_s):
                break
        auto = repeats is None
        if repeats is None:
            per_round = max(sum(ts[-1] for ts in warm.values()), 1e-6)
            repeats = int(max(5, min(60, budget_s // per_round)))
            if repeats >= 6:
                repeats -= repeats % 6  # every order equally often (with three implementations)

        orders = list(itertools.permutations(names))
        times: dict[str, list[float]] = {name: [] for name in names}
        start = time.perf_counter()
        for k in range(repeats):
            if auto and k >= 3 and time.perf_counter() - start > 2 * budget_s:
                break  # the machine slowed down (other processes): keep the whole grid within its time
            for name in orders[k % len(orders)]:  # interleaved; the order cycles through all permutations
                fn = runners[name]
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times, outputs


def time_blocks(
    runners: dict[str, Callable[[], object]], budget_s: float, *, rounds: int = 7, min_block_s: float = 0.01
) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Per-call seconds of each runner in blocks of back-to-back calls (``torch.utils.benchmark.Timer`` semantics).

    Each runner is warmed up alone (calls until the latest is within 15% of the fastest before it, 2 to 8
    calls); its block size is the number of calls that fill ``budget_s / (rounds · len(runners))`` (at least
    ``min_block_s``, at least 1 call). Then ``rounds`` rounds: in each, every runner in turn (the order reversed
    every other round) makes one untimed call — so its block starts as a back-to-back loop runs, after a call of
    itself — and one timed block. Returns ``(times {name: [seconds per call, one per round]}, outputs {name:
    its last output})``; take medians over the rounds.
    """
    names = list(runners)
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        outputs: dict[str, object] = {}
        block: dict[str, int] = {}
        share = max(budget_s / (max(rounds, 1) * len(names)), min_block_s)
        for name in names:
            fn, warm = runners[name], []
            for k in range(8):
                t0 = time.perf_counter()
                outputs[name] = fn()
                warm.append(time.perf_counter() - t0)
                if k >= 1 and warm[-1] <= 1.15 * min(warm[:-1]):
                    break
            block[name] = max(1, int(share / max(min(warm), 1e-7)))
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(max(rounds, 1)):
            for name in names if r % 2 == 0 else names[::-1]:
                fn, n = runners[name], block[name]
                outputs[name] = fn()  # untimed: the block starts after a call of itself, as a loop does
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                times[name].append((time.perf_counter() - t0) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times, outputs
