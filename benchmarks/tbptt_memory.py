"""Peak memory of training a character language model against the text's length: truncated vs full BPTT.

Each measurement runs in a fresh Python process (peak RSS, ``resource.getrusage(...).ru_maxrss``, only grows, and
tracemalloc does not see torch's CPU allocator): make an English-like text of N characters
(:func:`rnnkit.data.stream.synthetic_text`; no book ships with rnnkit's dependencies), build the character
vocabulary, cut the text into B parallel streams (:class:`rnnkit.data.stream.TokenStream`) and take a fixed number of
optimizer steps with :func:`rnnkit.train.fit` — the path ``rnnkit train --task lm`` takes:

* ``tbptt``: ``TrainConfig.tbptt = (K1, K2)``, the state carried across chunks;
* ``full``: one chunk per row (``K1 = K2 = N/B``), i.e. backpropagation through the whole text at every step (an
  epoch is then one step, so one step is measured);
* ``idle``: everything but the training steps (imports, text, model, an AdamW optimizer), the floor the others
  stand on.

``s/step`` is the mean time between the measured steps (after the first, which pays one-time set-up costs); for
``full``, the one step's time with that set-up included.

Usage: ``python benchmarks/tbptt_memory.py`` (about a minute on 2 CPU cores); ``--sizes``, ``--full-sizes``,
``--hidden``, ``--batch-size``, ``--tbptt``, ``--steps`` change the grid. Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

RSS_UNIT = 1024 if sys.platform != "darwin" else 1  # ru_maxrss: KiB on Linux, bytes on macOS


def child(n_chars: int, mode: str, hidden: int, batch: int, k1: int, k2: int, steps: int) -> dict:
    """One measurement (runs in its own process); returns the facts as a dict."""
    import torch

    from rnnkit.data.stream import TokenStream, char_vocab, encode_text, synthetic_text
    from rnnkit.runs.lm import LanguageModel
    from rnnkit.tasks import ModelConfig
    from rnnkit.train import TrainConfig, Trainer, fit

    torch.manual_seed(0)
    text = synthetic_text(n_chars, seed=0)
    vocab = char_vocab(text)
    ids = encode_text(text, vocab)
    del text
    if mode == "full":
        k1 = k2 = (len(ids) - 1) // batch  # one chunk holds each whole row
    stream = TokenStream(ids, batch, k1)
    cfg = ModelConfig(task="lm", model="lstm", vocab_size=len(vocab), embed_dim=32, hidden_size=hidden, dropout=0.0)
    model = LanguageModel(cfg)
    step_times: list[float] = []  # when each optimizer step ended
    t_fit = time.perf_counter()
    if mode == "idle":
        torch.optim.AdamW(model.parameters())  # the trainer's imports and optimizer, without a step
    else:

        def stop_after(trainer: Trainer) -> None:
            step_times.append(time.perf_counter())
            if trainer.state["step"] >= steps:
                trainer.request_stop()

        tcfg = TrainConfig(epochs=1, lr=3e-3, progress="none", tbptt=(k1, k2), patience=None)
        t_fit = time.perf_counter()
        fit(model, stream, None, tcfg, on_step=stop_after)
    if len(step_times) > 1:
        per_step = (step_times[-1] - step_times[0]) / (len(step_times) - 1)
    else:
        per_step = step_times[0] - t_fit if step_times else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT / 2**20
    return {
        "chars": n_chars,
        "mode": mode,
        "tbptt": f"{k1},{k2}",
        "steps": len(step_times),
        "peak_mib": round(peak, 1),
        "s_per_step": None if per_step is None else round(per_step, 3),
    }


def measure(n_chars: int, mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n_chars), mode, "--hidden", str(args.hidden)]
    cmd += ["--batch-size", str(args.batch_size), "--tbptt", args.tbptt, "--steps", str(args.steps)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement {n_chars} {mode} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 400_000, 1_600_000], help="text lengths (TBPTT)")
    p.add_argument("--full-sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000], help="full BPTT lengths")
    p.add_argument("--hidden", type=int, default=256, help="LSTM hidden size H")
    p.add_argument("--batch-size", type=int, default=32, help="parallel streams B")
    p.add_argument("--tbptt", default="64,64", help="K1,K2 of the TBPTT runs")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per TBPTT measurement (full: one epoch)")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each measurement")
    p.add_argument("--child", nargs=2, metavar=("CHARS", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    k1, k2 = (int(k) for k in args.tbptt.split(","))
    if args.child:
        n, mode = int(args.child[0]), args.child[1]
        print(json.dumps(child(n, mode, args.hidden, args.batch_size, k1, k2, args.steps)))
        return 0
    print(f"LSTM H={args.hidden}, E=32, B={args.batch_size} streams, peak RSS of a fresh process per row", flush=True)
    rows = [measure(min(args.sizes), "idle", args)]
    rows += [measure(n, "tbptt", args) for n in args.sizes]
    rows += [measure(n, "full", args) for n in args.full_sizes]
    idle = rows[0]["peak_mib"]
    print(f"{'chars':>10} {'mode':>6} {'K1,K2':>11} {'steps':>5} {'peak MiB':>9} {'over idle':>9} {'s/step':>7}")
    for r in rows:
        per_step = "-" if r["s_per_step"] is None else f"{r['s_per_step']:.3f}"
        print(
            f"{r['chars']:>10,} {r['mode']:>6} {r['tbptt']:>11} {r['steps']:>5} {r['peak_mib']:>9.1f} "
            f"{r['peak_mib'] - idle:>9.1f} {per_step:>7}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
