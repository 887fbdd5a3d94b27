"""rnnkit.bench on tiny shapes: the documented keys with positive numbers, and `rnnkit bench --json`.

Timings are never asserted (DESIGN.md §3: benchmarks report, tests do not time).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit import bench

KEYS = {"cell", "T", "B", "I", "H", "rnnkit_ms", "torch_ms", "loop_ms", "ratio"}


@pytest.mark.parametrize("cell", bench.CELLS)
def test_measure_tiny_shape_has_documented_keys(cell: str) -> None:
    result = bench.measure(cell, 4, 2, 3, 5, repeats=3, seed=0)
    assert set(result) >= KEYS
    assert (result["cell"], result["T"], result["B"], result["I"], result["H"]) == (cell, 4, 2, 3, 5)
    for key in ("rnnkit_ms", "torch_ms", "loop_ms", "ratio", "floor_ms", "mm_gflops"):
        assert isinstance(result[key], float) and math.isfinite(result[key]) and result[key] > 0, key
    assert result["ratio"] == pytest.approx(result["rnnkit_ms"] / result["torch_ms"])
    assert result["repeats"] == 3
    # rnnkit agrees with its reference: torch.nn (same weights), or the lecture's loop for gru-before.
    assert result["max_abs_diff"] < 1e-5


def test_gemm_flops_counts_forward_and_backward() -> None:
    # LSTM: G = 4 gates; forward x W_ihᵀ and h W_hhᵀ, backward twice that.
    T, B, I, H = 3, 2, 5, 7
    assert bench.gemm_flops("lstm", T, B, I, H) == 3 * (2 * T * B * I * 4 * H + 2 * T * B * H * 4 * H)
    assert bench.gemm_flops("gru-before", T, B, I, H) == bench.gemm_flops("gru", T, B, I, H)


def test_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown cell"):
        bench.measure("transformer", 2, 2, 2, 2)
    with pytest.raises(ValueError, match="shape T"):
        bench.measure("rnn", 0, 2, 2, 2)
    with pytest.raises(ValueError, match="repeats"):
        bench.measure("rnn", 2, 2, 2, 2, repeats=0)


def test_table_lists_every_result() -> None:
    results = bench.run([(3, 2, 2, 3)], ["rnn", "gru-before"], repeats=1)
    table = bench.format_table(results)
    assert "rnnkit/torch" in table
    assert "gru-before" in table and "\nrnn " in table


def test_cli_json_prints_only_a_json_array() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rnnkit", "bench", "--json", "--shapes", "5,2,3,4", "--repeats", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)  # stdout is the JSON array and nothing else
    assert isinstance(results, list)
    assert [r["cell"] for r in results] == list(bench.CELLS)
    for r in results:
        assert set(r) >= KEYS
        assert (r["T"], r["B"], r["I"], r["H"]) == (5, 2, 3, 4)
        assert r["rnnkit_ms"] > 0 and r["torch_ms"] > 0 and r["loop_ms"] > 0
    assert "bench:" in proc.stderr  # progress went to stderr


def test_extra_rows_have_the_keys_and_modes() -> None:
    rows = bench.run_extras(["gru", "lstm"], budget_s=0.05, modes=("infer", "sample"))
    assert [(r["mode"], r["cell"]) for r in rows] == [
        ("infer", "gru"),
        ("infer", "lstm"),
        ("sample", "gru"),
        ("sample", "lstm"),
    ]
    for r in rows:
        assert set(r) >= KEYS - {"loop_ms"} and r["B"] == 1
        assert r["ratio"] == pytest.approx(r["rnnkit_ms"] / r["torch_ms"])
        if r["mode"] == "infer" or r["cell"] == "lstm":  # inference rows time torch.nn.LSTM too
            assert r["lstm_ms"] > 0 and r["ratio_lstm"] == pytest.approx(r["rnnkit_ms"] / r["lstm_ms"])
    assert rows[2]["steps_per_s"] == pytest.approx(rows[2]["T"] / (rows[2]["rnnkit_ms"] / 1e3))
    assert all(r["timing"] == "blocks" for r in rows)  # B = 1 inference: back-to-back blocks, not interleaved
    table = bench.format_table(rows)
    assert "infer:" in table and "sample:" in table and "steps/s" in table


def test_time_blocks_runs_each_path_back_to_back_and_alternates_the_blocks() -> None:
    from rnnkit.bench_timing import time_blocks

    calls: list[str] = []

    def runner(name: str):
        return lambda: calls.append(name) or name

    times, outputs = time_blocks({"a": runner("a"), "b": runner("b")}, 0.0, rounds=4, min_block_s=0.0)
    assert outputs == {"a": "a", "b": "b"}
    assert [len(times["a"]), len(times["b"])] == [4, 4] and all(t > 0 for t in times["a"] + times["b"])
    # warm-ups (each path alone), then per round one untimed and the block's calls of one path at a time
    # (rounds a b | b a | a b | b a: adjacent blocks of one path merge into one run of calls)
    runs = [name for k, name in enumerate(calls) if k == 0 or calls[k - 1] != name]
    assert runs == ["a", "b", "a", "b", "a", "b", "a"]
    assert len(calls) == calls.count("a") + calls.count("b") and calls.count("a") >= 2 + 4 * 2


def test_measure_peers_lstm_and_gemm_share() -> None:
    r = bench.measure("gru", 4, 2, 3, 5, repeats=2, peers=("lstm",))
    assert r["loop_ms"] is None and r["lstm_ms"] > 0 and r["ratio_lstm"] == pytest.approx(r["rnnkit_ms"] / r["lstm_ms"])
    assert r["gemm_pct"] == pytest.approx(100 * r["floor_ms"] / r["rnnkit_ms"])
    assert r["mode"] == "train" and r["threads"] >= 1
    if r["jax_ms"] is not None:  # only with the `bench` extra
        assert r["jax_ratio"] == pytest.approx(r["rnnkit_ms"] / r["jax_ms"])


_PINNED_JAX = """
import json, os, torch
from rnnkit import bench
torch.set_num_threads(1)
def tasks():
    return set(os.listdir("/proc/self/task"))
before = tasks()
bench._import_jax()
new = tasks() - before
def allowed(tid):
    for line in open(f"/proc/self/task/{tid}/status"):
        if line.startswith("Cpus_allowed_list"):
            return line.split(":")[1].strip()
print(json.dumps([sorted({allowed(t) for t in new}), len(os.sched_getaffinity(0))]))
"""


def test_the_jax_column_runs_on_one_cpu_with_one_torch_thread() -> None:
    """On one torch thread, every thread XLA starts may use one CPU only (its products would otherwise run on all
    cores while torch's run on one), and the process's own affinity is as before."""
    pytest.importorskip("jax", reason="jax is optional (the bench extra)")
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2 or not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux with at least two CPUs")
    out = subprocess.run([sys.executable, "-c", _PINNED_JAX], capture_output=True, text=True, check=True).stdout
    allowed, process_cpus = json.loads(out)  # the new threads' Cpus_allowed_list values, e.g. ["0"]
    assert allowed and all(a.isdigit() for a in allowed), out  # each new thread: one CPU
    assert process_cpus == len(os.sched_getaffinity(0))


def test_jax_column_matches_the_cell_when_installed() -> None:
    pytest.importorskip("jax", reason="jax is optional (the bench extra)")
    r = bench.measure("gru-before", 4, 2, 3, 5, repeats=2, peers=("jax",))
    assert r["jax_ms"] > 0


def test_pick_threads_rule() -> None:
    from rnnkit.cli import pick_threads

    assert pick_threads(64, 32, cpus=2, busy=0.0) == 2  # an idle machine: every CPU
    assert pick_threads(64, 32, cpus=2, busy=1.2) == 1  # another process holds a core: one thread
    assert pick_threads(8, 4, cpus=8, busy=0.0) == 1  # a tiny model: one thread
    assert pick_threads(None, None, cpus=8, busy=2.0) == 6  # unknown size: the free CPUs
    assert pick_threads(512, 256, cpus=2, busy=5.0) == 1  # at least one
    assert pick_threads(512, 256, cpus=4, busy=-1.0) == 4  # at most the CPUs


def test_busy_cpus_reads_the_machine() -> None:
    from rnnkit.cli import busy_cpus

    busy = busy_cpus(2, interval=0.02)
    assert 0.0 <= busy <= 2.0 + 1e-9


def test_threads_flag_is_applied_and_restored(capsys) -> None:
    import torch

    from rnnkit.cli import main

    before = torch.get_num_threads()
    seen = []
    orig = bench.run

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return orig(*a, **k)

    mp = pytest.MonkeyPatch()
    mp.setattr(bench, "run", spy)
    try:
        assert (
            main(["bench", "--json", "--shapes", "3,2,2,3", "--cells", "rnn", "--repeats", "1", "--threads", "2"]) == 0
        )
    finally:
        mp.undo()
    assert seen == [2] and torch.get_num_threads() == before
    assert main(["bench", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
