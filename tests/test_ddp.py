"""Data-parallel training with DistributedDataParallel: sharding, and two CPU processes launched by ``torchrun``.

One ``torchrun --standalone --nproc-per-node 2`` launch (gloo) runs :func:`worker` in both processes:

1. ``plain``: a float64 model on padded batches of 5 rows (shards of 3 and 2 rows with different numbers of loss
   terms), with validation and best-weights selection;
2. ``tbptt``: a language model on 3 parallel streams (shards of 2 and 1) with truncated BPTT (K1=4, K2=6);
3. ``resume``: (2) stopped mid-epoch by a stop request on rank 1 only (every rank must agree to stop at the same
   step), then resumed — the carried TBPTT state of both ranks is gathered into rank 0's checkpoint;
4. ``cli``: ``rnnkit train --task lm`` through :func:`rnnkit.cli.main`.

A second launch runs :func:`series_worker`: ``rnnkit train --task classify`` on a small ``.ts`` with the kernel
ridge (``--kernels 168``).

Checks: both ranks end with identical weights; each equals a single-process run on the same global batches (within
1e-10 in float64: each rank's mean loss is scaled by ``W·n_r/N`` so that DDP's gradient average is the global
batch's mean-loss gradient even for unequal shards); the resumed run equals the uninterrupted one; only rank 0
writes the run folder, its weights have no ``module.`` prefix and load with :func:`rnnkit.runs.load_run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import rnnkit.runs.lm  # noqa: F401  (registers the lm kind)
from rnnkit import distributed
from rnnkit.data.batching import Batch, collate_generation
from rnnkit.data.stream import TokenStream, synthetic_text
from rnnkit.runs import load_run
from rnnkit.runs.lm import LanguageModel
from rnnkit.tasks import ModelConfig
from rnnkit.train import TrainConfig, Trainer, fit

V = 9


def make_model(seed: int = 0, dropout: float = 0.0) -> LanguageModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(task="lm", model="lstm", vocab_size=V, embed_dim=3, hidden_size=4, num_layers=1, dropout=dropout)
    return LanguageModel(cfg).double()


def padded_batches() -> tuple[list[Batch], list[Batch]]:
    """Three training batches of 5 items of 1–7 symbols (so the shards' loss terms differ), one validation batch."""
    g = torch.Generator().manual_seed(1)

    def batch(n: int) -> Batch:
        items = [
            torch.randint(4, V, (int(torch.randint(1, 8, (1,), generator=g)),), generator=g).tolist() for _ in range(n)
        ]
        return collate_generation(items)

    return [batch(5) for _ in range(3)], [batch(6)]


def stream() -> TokenStream:
    ids = torch.randint(4, V, (100,), generator=torch.Generator().manual_seed(2))
    return TokenStream(ids, batch_size=3, chunk=4)  # 33 steps per row: 9 chunks


def plain_config() -> TrainConfig:
    return TrainConfig(epochs=2, lr=0.02, progress="none", seed=0, patience=None)


def tbptt_config() -> TrainConfig:
    return TrainConfig(epochs=2, lr=0.02, progress="none", seed=0, tbptt=(4, 6))


def worker(out: Path) -> None:
    """What each torchrun process runs (``python -m torch.distributed.run ... this_file.py OUT``)."""
    world = distributed.init_from_env()
    assert world is not None and world.size == 2 and world.backend == "gloo", world
    r = world.rank

    def save(model: torch.nn.Module, name: str) -> None:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"{name}-rank{r}.safetensors"))

    train, val = padded_batches()
    model = make_model()
    result = fit(model, train, val, plain_config())
    save(model, "plain")
    (out / f"plain-rank{r}.json").write_text(json.dumps({"best_epoch": result.best_epoch, "steps": result.steps}))

    model = make_model()
    straight = fit(model, stream(), None, tbptt_config())
    save(model, "tbptt")

    def stop_on_rank_1(trainer: Trainer) -> None:
        if r == 1 and trainer.state["step"] == 5:  # mid-epoch 1; rank 0 does not ask, it must follow
            trainer.request_stop()

    run_dir = out / "resume-run"
    model = make_model()
    first = fit(model, stream(), None, tbptt_config(), run_dir, on_step=stop_on_rank_1)
    model = make_model(seed=7)  # other weights: the checkpoint replaces them
    second = fit(model, stream(), None, tbptt_config(), run_dir, resume=True)
    save(model, "resume")
    (out / f"resume-rank{r}.json").write_text(
        json.dumps({"first": [first.stopped_reason, first.steps], "second": [second.stopped_reason, second.steps]})
    )
    # with dropout every process draws its own masks: a mid-epoch resume restores each process's generators
    model = make_model(dropout=0.3)
    fit(model, stream(), None, tbptt_config())
    save(model, "dropout")
    model = make_model(dropout=0.3)
    fit(model, stream(), None, tbptt_config(), out / "dropout-run", on_step=stop_on_rank_1)
    model = make_model(seed=7, dropout=0.3)
    fit(model, stream(), None, tbptt_config(), out / "dropout-run", resume=True)
    save(model, "dropout-resumed")
    # the training curve too: a mid-epoch resume must count the epoch's first part once, not once per process
    losses = {
        "straight": [h["train_loss"] for h in straight.history],
        "resumed": [h["train_loss"] for h in second.history],
    }
    (out / f"curve-rank{r}.json").write_text(json.dumps(losses))

    from rnnkit import cli

    (out / "book.txt").write_text(synthetic_text(6000, seed=3), encoding="utf-8")
    code = cli.main(
        ["train", "--task", "lm", "--data", str(out / "book.txt"), "--tbptt", "8,12", "--hidden", "8", "--embed", "4",
         "--epochs", "1", "--batch-size", "6", "--out", str(out / "lm-run")]
    )  # fmt: skip
    assert code == 0


def series_worker(out: Path) -> None:
    """What each process of the second launch runs: ``rnnkit train --task classify`` on a small ``.ts`` with the
    kernel ridge (its own launch: a process initialises its process group once, as the command line does)."""
    from rnnkit import cli
    from test_series_classify import make_series, write_ts

    r = int(os.environ["RANK"])
    X, y = make_series(8, seed=20)
    Xt, yt = make_series(3, seed=21)
    train, test = write_ts(out / f"TRAIN-{r}.ts", X, y), write_ts(out / f"TEST-{r}.ts", Xt, yt)  # no shared file
    code = cli.main(
        ["train", "--task", "classify", "--data", str(train), "--test-data", str(test), "--hidden", "8", "--epochs",
         "1", "--batch-size", "8", "--ensemble", "1", "--kernels", "168", "--out", str(out / "series-run")]
    )  # fmt: skip
    assert code == 0


def single_process(kind: str) -> dict[str, torch.Tensor]:
    model = make_model()
    if kind == "plain":
        train, val = padded_batches()
        fit(model, train, val, plain_config())
    else:
        fit(model, stream(), None, tbptt_config())
    return model.state_dict()


def _launch(out: Path, worker: str) -> str:
    """``torchrun --standalone --nproc-per-node 2`` of ``test_ddp.<worker>(out)``; returns its stdout and stderr."""
    script = out / "launch.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from pathlib import Path\n"
        "import test_ddp\n"
        f"test_ddp.{worker}(Path(sys.argv[1]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RNNKIT_DEBUG", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(script),
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ddp")
    return out, _launch(out, "worker")


@pytest.fixture(scope="module")
def launched_series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ddp_series")
    return out, _launch(out, "series_worker")


def ranks(out: Path, name: str) -> list[dict[str, torch.Tensor]]:
    return [load_file(str(out / f"{name}-rank{r}.safetensors")) for r in (0, 1)]


@pytest.mark.parametrize("kind", ["plain", "tbptt"])
def test_two_processes_keep_identical_weights_equal_to_one_process(launched, kind: str):
    out, _ = launched
    r0, r1 = ranks(out, kind)
    ref = single_process(kind)
    assert set(r0) == set(ref)
    for name in ref:
        assert torch.equal(r0[name], r1[name]), f"{kind}: {name} differs between the ranks"
        torch.testing.assert_close(r0[name], ref[name], rtol=1e-10, atol=1e-10, msg=f"{kind}: {name} vs one process")
    if kind == "plain":
        facts = [json.loads((out / f"plain-rank{r}.json").read_text()) for r in (0, 1)]
        assert facts[0] == facts[1] and facts[0]["steps"] == 6  # the same steps and best epoch on both


def test_a_stop_on_one_rank_stops_all_and_resume_is_exact(launched):
    out, _ = launched
    facts = [json.loads((out / f"resume-rank{r}.json").read_text()) for r in (0, 1)]
    assert facts[0] == facts[1] == {"first": ["interrupted", 5], "second": ["completed", 18]}
    for r in (0, 1):
        losses = json.loads((out / f"curve-rank{r}.json").read_text())
        assert losses["resumed"] == pytest.approx(losses["straight"], rel=1e-9, abs=0), losses
    with_dropout, resumed_with_dropout = ranks(out, "dropout"), ranks(out, "dropout-resumed")
    for name in with_dropout[0]:
        assert torch.equal(resumed_with_dropout[0][name], resumed_with_dropout[1][name]), name
        assert torch.equal(resumed_with_dropout[0][name], with_dropout[0][name]), name
    resumed = ranks(out, "resume")
    straight = ranks(out, "tbptt")
    for name in straight[0]:
        assert torch.equal(resumed[0][name], resumed[1][name]), name
        torch.testing.assert_close(resumed[0][name], straight[0][name], rtol=1e-12, atol=1e-12, msg=name)


def test_cli_under_torchrun_writes_once_without_ddp_prefix(launched):
    out, stdout = launched
    run_dir = out / "lm-run"
    assert stdout.count("lm · lstm: test") == 1, stdout  # rank 0 alone reports
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["app"] == "lm"
    keys = list(load_file(str(run_dir / "model.safetensors")))
    assert keys and not any(k.startswith("module.") for k in keys)
    run = load_run(run_dir)  # any command loads the weights
    assert isinstance(run.model, LanguageModel)
    leftovers = [p.name for p in run_dir.rglob("*.tmp")]
    assert not leftovers


def test_series_run_with_the_kernel_ridge_under_torchrun(launched_series):
    """Every rank fits the same ridge after the networks (same data, seed and validation probabilities); rank 0
    alone writes it, and what it wrote equals a refit in this process on the run's training + validation series."""
    from rnnkit.runs import classify_series as cs
    from rnnkit.runs.series_kernels import KERNELS_FILE, fit_kernels, load_kernels

    out, output = launched_series
    run_dir = out / "series-run"
    assert output.count("kernel ridge:") == 1 and output.count("classify · ") == 1, output  # rank 0 alone reports
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["processes"] == 2  # every kind reports it, not the lm kind alone
    assert "kernels_weight" in metrics and metrics["kernels_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert (run_dir / KERNELS_FILE).is_file() and not list(run_dir.rglob("*.tmp"))
    run = load_run(run_dir)
    ridge = load_kernels(run)
    assert ridge is not None and ridge.kernels.num_features == 168
    split = cs.prepare_series(str(out / "TRAIN-0.ts"), test_data=str(out / "TEST-0.ts"), seed=0)  # rank 0's files
    record = run.config["kernels"]
    again = fit_kernels([split.train, split.val], split.classes, 168, int(record["seed"]), int(record["hydra"]),
                        str(record["pooling"]))  # fmt: skip
    assert ridge.competing is not None and record["hydra"] == 64  # the defaults beside --kernels 168
    assert record["pooling"] == "ppv+lspv" and ridge.kernels.pools == 2
    for name, value in again.state_dict().items():
        if name != "weight":  # the weight is the run's choice, not part of the fit
            torch.testing.assert_close(ridge.state_dict()[name], value, rtol=1e-12, atol=1e-12, msg=name)
    gold = np.array(split.test.label_ids())
    accuracy = float((cs.series_probabilities(run, split.test.X).argmax(1) == gold).mean())
    assert metrics["test_accuracy"] == round(accuracy, 4)


# ---------------------------------------------------------------------------------------------------------- sharding
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("rows", [1, 2, 5, 8])
def test_shards_are_disjoint_and_cover_the_batch(rows: int, world: int):
    shards = [distributed.shard_rows(rows, r, world).tolist() for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(rows)), "together the shards cover every row exactly once"
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    batch = collate_generation([[4 + i] * (i + 1) for i in range(rows)], conditions=list(range(rows)))
    for r in range(world):
        part, has_rows = distributed.shard_batch(batch, r, world)
        want = shards[r] or [0]
        assert has_rows == bool(shards[r])
        assert torch.equal(part.inputs, batch.inputs[want]) and torch.equal(part.targets, batch.targets[want])
        assert torch.equal(part.lengths, batch.lengths[want]) and torch.equal(part.condition, batch.condition[want])


def test_single_process_helpers(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init_from_env() is None and distributed.env_world() is None
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.all_reduce_sum([1.5, 2]) == [1.5, 2.0]
    t = torch.randn(2, 3, 4)
    assert distributed.gather_rows(t, 3) is t
    model = torch.nn.Linear(2, 2)
    assert distributed.unwrap(model) is model
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        distributed.env_world()
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="launch with torchrun"):
        distributed.env_world()
    with pytest.raises(ValueError, match="rank must lie in"):
        distributed.shard_rows(4, 2, 2)


def test_shutdown_waits_for_every_process_only_after_a_normal_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaving the group after a normal end passes a barrier first (no process tears its connections down while a
    peer still sends); after an error it leaves at once (the peers may never reach a barrier)."""
    calls: list[str] = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append("destroy"))
    distributed.shutdown()
    assert calls == ["barrier", "destroy"]
    calls.clear()
    distributed.shutdown(finished=False)
    assert calls == ["destroy"]
