"""Reliability: nothing lost when training is killed, nothing executed when loading, numbers guarded, runs repeatable.

1. Kills. Training (``rnnkit.train.fit``) killed with SIGKILL at every stage of a checkpoint write (after the
   temporary file is written, after its fsync, after the rename; through ``rnnkit.checkpoint._write_hook`` in
   forked children of a fresh interpreter), and ``python -m rnnkit train`` killed at 6 random moments, always
   leave a loadable last checkpoint, and resuming ends with bitwise the weights, curve (and metrics) of an
   uninterrupted run, with no temporary file left. SIGINT stops cleanly after saving, and the run resumes to the
   same end.
2. Loading never runs code: run folders whose files are pickles (with a live payload), truncated, name an unknown
   model or mismatch the weights are refused with one line, the payload never runs, the folder is unchanged; no
   ``torch.load`` in ``src/`` lacks ``weights_only=True`` and nothing else unpickles.
3. Numeric guards: the logged gradient norm equals an independent computation and the gradients are clipped to
   ``clip_norm``; a NaN/inf loss stops with one clear line and the last good checkpoint intact and resumable.
4. Two CPU runs with the same seed give bitwise-equal weights and metrics (timings aside).

Run as a script (``python tests/test_reliability.py stage-kills ...``) this file is the kill driver of section 1.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LETTERS = {"Alpha": "aeiou", "Beta": "bcdfg", "Gamma": "klmnp"}
TINY = ["--hidden", "8", "--embed", "4", "--batch-size", "8", "--dropout", "0.2", "--seed", "3"]
TIMING = {"seconds", "items_per_second", "train_seconds"}
KILLED = -signal.SIGKILL  # Popen.returncode / waitpid status of a process killed by SIGKILL

# the stage-kill scenarios: (file, stage, occurrence); occurrence counts that file's writes at that stage
CHECKPOINT_FILES = ["model.safetensors", "state.safetensors", "state.json", "latest.json"]
STAGES = ["written", "fsynced", "renamed"]
SCENARIOS = [(f, s, 2) for f in CHECKPOINT_FILES for s in STAGES] + [
    ("curve.csv", "renamed", 2),  # after the epoch-2 checkpoint, as its curve row lands
    ("run:model.safetensors", "written", 1),  # the final weights, after training completed
    ("run:model.safetensors", "renamed", 1),
]


def make_names(folder: Path, n: int = 30, seed: int = 0) -> Path:
    """A folder of ``<Category>.txt`` files: each class draws its names from its own letters."""
    folder.mkdir(parents=True)
    for cls, letters in LETTERS.items():
        rng = random.Random(f"{seed}-{cls}")
        items: set[str] = set()
        while len(items) < n:
            items.add(cls[0] + "".join(rng.choice(letters) for _ in range(rng.randint(2, 6))))
        (folder / f"{cls}.txt").write_text("\n".join(sorted(items)) + "\n", encoding="utf-8")
    return folder


def lib_model() -> torch.nn.Module:
    """The tiny rnnkit classifier of :func:`lib_fit` (GRU core, dropout > 0 so that the RNG state matters)."""
    from rnnkit.tasks import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(task="classify", model="gru", vocab_size=12, num_classes=3, embed_dim=4, hidden_size=6,
                      dropout=0.3)  # fmt: skip
    return build_model(cfg)


def lib_fit(out: Path, *, resume: bool = False):
    """A 3-epoch run of the trainer on :func:`lib_model` with validation (curve, best weights, early-stop state).

    Returns ``(model, TrainResult)``. The stage-kill children run it, and so does the test (reference, resumes).
    """
    from rnnkit.data import collate_classification
    from rnnkit.train import TrainConfig, fit

    gen = torch.Generator().manual_seed(0)
    items = [torch.randint(4, 12, (int(n),), generator=gen).tolist() for n in torch.randint(1, 7, (40,), generator=gen)]
    labels = [sum(x) % 3 for x in items]

    def batches(epoch: int):
        order = torch.randperm(32, generator=torch.Generator().manual_seed(epoch)).tolist()
        return [collate_classification([items[i] for i in order[k : k + 8]], [labels[i] for i in order[k : k + 8]])
                for k in range(0, 32, 8)]  # fmt: skip

    val = [collate_classification(items[32:], labels[32:])]
    model = lib_model()
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2, patience=None, progress="none", seed=0)
    return model, fit(model, batches, val, config, out, resume=resume)


def train_args(data: Path, out: Path, epochs: int) -> list[str]:
    return ["train", "--task", "generate", "--data", str(data), "--out", str(out), "--epochs", str(epochs), *TINY]


def child_env() -> dict[str, str]:
    """The environment of child interpreters: torch's thread count equal to this process's (bitwise equality)."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RNNKIT_DEBUG", None)
    return env


def weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs between {a} and {b}"


def curve(run: Path) -> list[dict[str, str]]:
    """curve.csv without its timing columns."""
    with (run / "curve.csv").open(encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return {k: v for k, v in m.items() if k not in TIMING}


def assert_same_run(a: Path, b: Path) -> None:
    """Same final weights (bitwise), same curve and metrics except timings."""
    assert_same_weights(a, b)
    assert curve(a) == curve(b)
    assert metrics(a) == metrics(b)


def assert_clean(run: Path) -> None:
    """No temporary file anywhere, exactly one checkpoint sub-folder."""
    assert [p for p in run.rglob("*.tmp")] == []
    assert len([p for p in (run / "checkpoint").iterdir() if p.is_dir()]) == 1


def assert_checkpoint_loads(run: Path) -> dict:
    """Load the run's current checkpoint completely into a model rebuilt from its config; return the state."""
    from rnnkit.tasks import ModelConfig, build_model
    from rnnkit.train.checkpoints import load_checkpoint

    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    model = build_model(ModelConfig.from_dict(config["model"]))
    return load_checkpoint(run / "checkpoint", model, restore_rng=False).state


def cli(*args: str | Path) -> tuple[int, str, str]:
    """``rnnkit ARGS`` in process; returns (exit code, stdout, stderr)."""
    from rnnkit import cli as rnnkit_cli

    out, err = io.StringIO(), io.StringIO()
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = rnnkit_cli.main([str(a) for a in args])
    finally:
        sys.stdout, sys.stderr = stdout, stderr
    return code, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(code: int, out: str, err: str, *needles: str, after_progress: bool = False) -> None:
    """Exit 2, no traceback, one ``rnnkit: error:`` line naming ``needles`` (the last line, after the training
    log when ``after_progress``; else the only one)."""
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 or (after_progress and lines), err
    assert lines[-1].startswith("rnnkit: error: ") and sum(x.startswith("rnnkit: error") for x in lines) == 1, err
    for needle in needles:
        assert needle in lines[-1], (needle, err)


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="module")
def names(base: Path) -> Path:
    return make_names(base / "names")


@pytest.fixture(scope="module")
def short_ref(base: Path, names: Path) -> Path:
    """An uninterrupted 3-epoch ``rnnkit train``, in process: the run the loading, NaN and determinism tests use."""
    out = base / "short-ref"
    code, _, err = cli(*train_args(names, out, 3))
    assert code == 0, err
    return out


LONG_EPOCHS = 16


@pytest.fixture(scope="module")
def long_ref(base: Path, names: Path) -> Path:
    """An uninterrupted 16-epoch run, in process (children get this process's thread count: same numbers)."""
    out = base / "long-ref"
    code, _, err = cli(*train_args(names, out, LONG_EPOCHS))
    assert code == 0, err
    return out


# ---------------------------------------------------------------------------------------------------- 1. kills


def test_atomic_write_order_file_fsync_rename_then_folder_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """write → fsync(file) → rename → fsync(folder); a new folder's parent is fsynced too."""
    from rnnkit import checkpoint

    events: list[tuple[str, str]] = []
    real_fsync = os.fsync
    monkeypatch.setattr(checkpoint, "_write_hook", lambda stage, path: events.append((stage, path.name)))
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: (events.append(("fsync", "fd")), real_fsync(fd))[1])
    monkeypatch.setattr(checkpoint, "_fsync_dir", lambda d: events.append(("fsync-dir", d.name)))  # recorded only
    target = tmp_path / "new" / "w.bin"
    checkpoint.write_bytes_atomic(target, b"data")
    assert target.read_bytes() == b"data"
    order = [e[0] if e[0] != "fsync-dir" else f"fsync-dir:{e[1]}" for e in events]
    assert order[0] == f"fsync-dir:{tmp_path.name}"  # the new folder "new" is durable in its parent
    assert order[1:] == ["written", "fsync", "fsynced", "renamed", "fsync-dir:new"]


def test_checkpoint_folder_is_fsynced_before_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The new sub-folder's entry is durable before latest.json (the commit point) names it; the previous
    checkpoint is deleted only after the commit."""
    from torch import nn

    from rnnkit import checkpoint
    from rnnkit.train import checkpoints

    model = nn.GRU(2, 3)
    first = checkpoints.save_checkpoint(tmp_path, model, None, None, {"epoch": 1})
    events: list[str] = []
    monkeypatch.setattr(checkpoint, "_write_hook", lambda stage, path: events.append(f"{stage}:{path.name}"))
    real_dir = checkpoint._fsync_dir
    monkeypatch.setattr(checkpoint, "_fsync_dir", lambda d: (events.append(f"dir:{d.name}"), real_dir(d))[1])
    real_rmtree = shutil.rmtree
    monkeypatch.setattr(
        checkpoints.shutil, "rmtree", lambda p, **kw: (events.append(f"rmtree:{Path(p).name}"), real_rmtree(p, **kw))[1]
    )
    second = checkpoints.save_checkpoint(tmp_path, model, None, None, {"epoch": 2})
    commit = events.index("renamed:latest.json")
    state_json = events.index("renamed:state.json")
    assert f"dir:{tmp_path.name}" in events[state_json:commit]
    assert f"dir:{second.name}" in events[state_json:commit]
    assert events.index(f"rmtree:{first.name}") > commit
    assert not first.exists() and second.exists()


def test_stale_temporaries_of_dead_writers_are_swept(tmp_path: Path):
    from rnnkit.checkpoint import write_bytes_atomic

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a finished (reaped) process: its pid is free
    stale = tmp_path / f".w.bin.{dead.pid}.0123abcd.tmp"
    live = tmp_path / f".w.bin.{os.getpid()}.0123abcd.tmp"  # this process: alive
    other = tmp_path / f".x.bin.{dead.pid}.0123abcd.tmp"  # another file's temporary: not ours to judge here
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    write_bytes_atomic(tmp_path / "w.bin", b"new")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "w.bin").read_bytes() == b"new"


def _driver(argv: list[str]) -> None:
    """Child-interpreter side of :func:`test_sigkill_at_every_stage_of_a_checkpoint_write`.

    For each scenario, fork a child that trains (:func:`lib_fit`) into ``OUT/<index>`` and SIGKILLs itself (no
    cleanup of any kind) when the hook reports the scenario's file at its stage for the given time. Prints one
    JSON line: the children's exit statuses.
    """
    out_base, threads = Path(argv[0]), int(argv[1])
    torch.set_num_threads(threads)
    from rnnkit import checkpoint

    lib_fit(out_base / "warm-up")  # the first run pays one-off costs (lazy imports, kernels); children start warm
    shutil.rmtree(out_base / "warm-up")
    statuses = []
    for i, (name, stage, nth) in enumerate(SCENARIOS):
        out = out_base / str(i)
        pid = os.fork()
        if pid == 0:  # the child: train until the hook kills it
            seen = 0

            def hook(s: str, path: Path, name=name, stage=stage, nth=nth) -> None:
                nonlocal seen
                file = name.removeprefix("run:")
                if s != stage or not (path.name == file or path.name.startswith(f".{file}.")):
                    return  # another stage, or another file (a temporary is named .FILE.PID.HEX.tmp)
                in_checkpoint = path.parent.name.startswith("ckpt-") or path.parent.name == "checkpoint"
                if in_checkpoint != (name in CHECKPOINT_FILES):
                    return  # e.g. the run's model.safetensors is not the checkpoint's
                seen += 1
                if seen == nth:
                    os.kill(os.getpid(), signal.SIGKILL)

            checkpoint._write_hook = hook
            lib_fit(out)
            os._exit(0)  # not killed: the scenario did not happen (the test reports it)
        _, status = os.waitpid(pid, 0)
        statuses.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    print(json.dumps(statuses))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_at_every_stage_of_a_checkpoint_write(tmp_path: Path) -> None:
    """Killed after write / fsync / rename of each checkpoint file (and of curve.csv and the final weights): the
    last checkpoint loads, resuming ends bitwise where the uninterrupted run ended, nothing stale is left."""
    from rnnkit.train.checkpoints import load_checkpoint

    # one torch thread here and in the driver: a child forked after OpenMP started its thread pool can hang in it
    # (GNU libgomp is not fork-safe), and bitwise equality needs the same thread count on both sides
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _stage_kills(tmp_path, load_checkpoint)
    finally:
        torch.set_num_threads(threads)


def _stage_kills(tmp_path: Path, load_checkpoint) -> None:
    ref_model, ref = lib_fit(tmp_path / "ref")
    env = child_env()
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, __file__, "stage-kills", str(tmp_path), "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    statuses = json.loads(proc.stdout.strip().splitlines()[-1])
    assert statuses == [KILLED] * len(SCENARIOS), list(zip(SCENARIOS, statuses, strict=True))
    for i, (name, stage, _) in enumerate(SCENARIOS):
        out = tmp_path / str(i)
        label = f"killed after {stage} of {name}"
        # the last checkpoint is loadable: epoch 2's once its latest.json was renamed, else still epoch 1's; the
        # run's own files come after the checkpoint of their epoch (curve.csv: 2) or of the whole run (3)
        if name in CHECKPOINT_FILES:
            expected = 2 if (name, stage) == ("latest.json", "renamed") else 1
        else:
            expected = 2 if name == "curve.csv" else 3
        assert load_checkpoint(out / "checkpoint", lib_model(), restore_rng=False).state["epoch"] == expected, label
        model, result = lib_fit(out, resume=True)
        assert result.stopped_reason == "completed", label
        for k, v in ref_model.state_dict().items():
            assert torch.equal(v, model.state_dict()[k]), (label, k)
        assert_same_weights(tmp_path / "ref", out)
        no_time = [{k: v for k, v in r.items() if k not in TIMING} for r in result.history]
        assert no_time == [{k: v for k, v in r.items() if k not in TIMING} for r in ref.history], label
        assert curve(out) == curve(tmp_path / "ref"), label
        assert_clean(out)


def _wait_for_new_checkpoint(proc: subprocess.Popen, latest: Path, before: str | None, timeout: float) -> str | None:
    """Poll until ``latest`` names a checkpoint other than ``before`` (return its text) or the process ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            now = latest.read_text(encoding="utf-8")
        except (FileNotFoundError, PermissionError):
            now = None
        if now is not None and now != before:
            return now
        time.sleep(0.003)
    return None


def test_random_sigkills_then_resume_equal_the_uninterrupted_run(base: Path, names: Path, long_ref: Path) -> None:
    """``python -m rnnkit train`` SIGKILLed at 6 random moments (one during start-up, five after two epochs each),
    each time continued with ``--resume`` (or restarted with ``--overwrite`` when no checkpoint existed yet): the
    final weights, curve and metrics equal the uninterrupted run's."""
    out = base / "random-kills"
    latest = out / "checkpoint" / "latest.json"
    rng = random.Random(20240611)
    kills_after_progress = 0
    log = []
    for attempt in range(12):
        resume = latest.exists()
        args = ["--resume", "--out", str(out)] if resume else train_args(names, out, LONG_EPOCHS)
        if resume:
            args = ["train", *args]
        elif out.exists():
            args.append("--overwrite")
        before = latest.read_text(encoding="utf-8") if latest.exists() else None
        proc = subprocess.Popen(
            [sys.executable, "-m", "rnnkit", *args],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            progressed = False
            if attempt == 0:
                time.sleep(rng.uniform(0.2, 1.5))  # somewhere in start-up: imports, data, config.json
            else:
                # two new checkpoints (progress), then a random moment of the next epoch, its checkpoint write
                # included; the epoch's length is measured live, so a run never outlives its kills
                # (the waits are generous: a loaded machine, e.g. another test worker, slows a process's start-up)
                first = _wait_for_new_checkpoint(proc, latest, before, timeout=180)
                t_first = time.monotonic()
                if first is not None and _wait_for_new_checkpoint(proc, latest, first, timeout=180) is not None:
                    time.sleep(rng.uniform(0, time.monotonic() - t_first))
                    progressed = True
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.append((attempt, "resume" if resume else "start", proc.returncode))
        assert proc.returncode in (KILLED, 0), (log, err)
        assert "Traceback" not in err
        if proc.returncode == 0:
            break  # finished before the kill landed: nothing left to interrupt
        if latest.exists():  # every kill leaves a loadable checkpoint (once the first was written)
            assert_checkpoint_loads(out)
        kills_after_progress += progressed
        if kills_after_progress >= 5:
            break
    assert kills_after_progress >= 5, log
    code, _, err = cli("train", "--resume", "--out", out)  # the last stretch in process
    assert code == 0, err
    assert_same_run(long_ref, out)
    assert_clean(out)


def test_sigint_stops_cleanly_after_saving_and_resumes(base: Path, names: Path, long_ref: Path) -> None:
    """Ctrl-C during training: the run saves, writes its (interrupted) metrics and exits 0 without a traceback;
    ``--resume`` then ends bitwise where the uninterrupted run ended."""
    from rnnkit.train.checkpoints import read_checkpoint_state

    out = base / "sigint"
    latest = out / "checkpoint" / "latest.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", *train_args(names, out, LONG_EPOCHS)],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for_new_checkpoint(proc, latest, None, timeout=60) is not None
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stopped (interrupted)" in stderr or "(interrupted)" in stdout
    assert json.loads((out / "metrics.json").read_text())["stopped_reason"] == "interrupted"
    state = read_checkpoint_state(out / "checkpoint")
    assert state["stopped_reason"] is None and 1 <= state["epoch"] < LONG_EPOCHS
    code, _, err = cli("train", "--resume", "--out", out)
    assert code == 0, err
    assert "resuming" in err
    assert_same_run(long_ref, out)


# ---------------------------------------------------------------------------------------------------- 2. loading


class Payload:
    """A pickle that creates a file when unpickled: proof of execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_the_payload_is_live(tmp_path: Path) -> None:
    """The control: unpickling the payload does run it (so its absence below means it never ran)."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))  # deliberately, on our own payload
    assert marker.exists()


@pytest.fixture(scope="module")
def run_copy(base: Path, short_ref: Path):
    """A fresh copy of the finished 3-epoch run, per call."""
    counter = iter(range(1000))

    def copy(name: str) -> Path:
        dst = base / "copies" / f"{name}-{next(counter)}"
        shutil.copytree(short_ref, dst)
        return dst

    return copy


@pytest.mark.parametrize(
    "target", ["model.safetensors", "config.json", "checkpoint:model.safetensors", "checkpoint:state.json"]
)
def test_a_pickle_in_a_run_folder_is_refused_and_never_executed(run_copy, tmp_path: Path, target: str) -> None:
    run = run_copy("pickle")
    marker = tmp_path / "payload-ran"
    payload = pickle.dumps(Payload(marker))
    if target.startswith("checkpoint:"):
        sub = next(p for p in (run / "checkpoint").iterdir() if p.is_dir())
        (sub / target.split(":")[1]).write_bytes(payload)
        commands = [["train", "--resume", "--out", run]]
    else:
        (run / target).write_bytes(payload)
        commands = [["evaluate", run], ["predict", run, "Aeiou"], ["sample", run, "--category", "Alpha"]]
        commands.append(["train", "--resume", "--out", run])
    if target == "checkpoint:model.safetensors":
        # make the checksum agree, so that the pickle check itself must refuse it
        doc = json.loads((sub / "state.json").read_text())
        import hashlib

        doc["files"]["model.safetensors"] = hashlib.sha256(payload).hexdigest()
        (sub / "state.json").write_text(json.dumps(doc))
    before = snapshot(run)
    for command in commands:
        code, out, err = cli(*command)
        if command[0] == "train" and target in ("model.safetensors",):
            # a finished run's final weights are rewritten from its checkpoint, which is intact
            assert code == 0, err
            continue
        assert_one_line_error(code, out, err)
        assert snapshot(run) == before, command
    assert not marker.exists(), "the pickle's payload ran"


def test_load_run_and_resume_refuse_truncated_unknown_and_mismatched(run_copy) -> None:
    """A truncated safetensors file, a config naming an unknown model, a config whose sizes do not match the
    weights: one line each, nothing changed on disk."""
    cases = {}
    run = run_copy("truncated")
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (run, ["model.safetensors", "truncated"])
    run = run_copy("unknown-model")
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["model"] = "transformer"
    (run / "config.json").write_text(json.dumps(cfg))
    cases["unknown-model"] = (run, ["unknown model 'transformer'"])
    run = run_copy("mismatch")
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["hidden_size"] = 12
    (run / "config.json").write_text(json.dumps(cfg))
    cases["mismatch"] = (run, ["do not fit this model", "the model expects (48,)"])  # LSTM: 4·12
    for name, (run, needles) in cases.items():
        before = snapshot(run)
        for command in (["evaluate", run], ["sample", run, "--category", "Alpha"]):
            assert_one_line_error(*cli(*command), *needles)
            assert snapshot(run) == before, name
    # --resume with the mismatched config: refused before anything is loaded or written
    run = cases["mismatch"][0]
    before = snapshot(run)
    assert_one_line_error(*cli("train", "--resume", "--out", run), "do not fit")
    assert snapshot(run) == before


def test_weights_are_checked_against_a_meta_model_before_any_allocation(short_ref: Path) -> None:
    """``check_weights_file`` reads only the header and takes a model on the meta device: a config asking for a
    huge model is refused without allocating it (the way for ``load_run``, see the report to the lead)."""
    from rnnkit.checkpoint import CheckpointError, check_weights_file, read_safetensors_header
    from rnnkit.tasks import ModelConfig, build_model

    cfg = json.loads((short_ref / "config.json").read_text())["model"]
    header = read_safetensors_header(short_ref / "model.safetensors")
    real = weights(short_ref)
    assert {k: (tuple(v.shape), v.dtype) for k, v in header.items()} == {
        k: (tuple(v.shape), v.dtype) for k, v in real.items()
    }
    with torch.device("meta"):
        fits = build_model(ModelConfig.from_dict(cfg))
        huge = build_model(ModelConfig.from_dict({**cfg, "hidden_size": 200_000}))  # ~2·10^11 weights: 800 GB
    check_weights_file(short_ref / "model.safetensors", fits)
    expected = tuple(huge.state_dict()["core.weight_hh_l0"].shape)
    with pytest.raises(CheckpointError, match=re.escape(f"the model expects {expected}")):
        check_weights_file(short_ref / "model.safetensors", huge)


def test_no_unpickling_anywhere_in_src() -> None:
    """Every ``torch.load(`` in src passes ``weights_only=True``; no pickle/marshal/shelve/dill/joblib loads, no
    ``allow_pickle=True``, no eval/exec."""
    offenders = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"\btorch\.load\(", text):
            depth, i = 1, m.end()
            while depth and i < len(text):
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            call = text[m.start() : i]
            if not re.search(r"weights_only\s*=\s*True", call):
                offenders.append(f"{path.name}: {call}")
        for pattern in (
            r"^\s*(import|from)\s+(pickle|cPickle|marshal|shelve|dill|joblib|cloudpickle)\b",
            r"\b(pickle|marshal|dill|joblib)\.loads?\(",
            r"allow_pickle\s*=\s*True",
            r"(?<![\w.])(eval|exec)\(",
        ):
            for line in text.splitlines():
                if re.search(pattern, line) and not line.lstrip().startswith("#"):
                    offenders.append(f"{path.name}: {line.strip()}")
    assert offenders == []


# ---------------------------------------------------------------------------------------------------- 3. numbers


def test_gradient_norm_is_logged_and_clipped() -> None:
    """The trainer's logged norm equals an independent computation of the global gradient norm, and the
    gradients it steps with have norm min(norm, clip_norm)."""
    from rnnkit.data import collate_classification
    from rnnkit.tasks import ModelConfig, build_model
    from rnnkit.train import TrainConfig, fit

    cfg = ModelConfig(
        task="classify", model="gru", vocab_size=9, num_classes=3, embed_dim=4, hidden_size=6, dropout=0.0
    )
    batches = [collate_classification([[4, 5, 6], [7, 8], [4]], [0, 1, 2])]
    for clip in (1e-3, 1e3):
        torch.manual_seed(1)
        model = build_model(cfg)
        twin = build_model(cfg)
        twin.load_state_dict(model.state_dict())
        seen = []

        def on_step(trainer, seen=seen) -> None:
            grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
            seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

        result = fit(model, batches, None, TrainConfig(epochs=1, clip_norm=clip, progress="none", seed=0), None,
                     on_step=on_step)  # fmt: skip
        _, loss = twin.train()(batches[0])  # no dropout: the same loss as the trainer's first step
        loss.backward()
        raw = float(
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in twin.parameters()]))
        )
        logged = result.history[0]["grad_norm"]
        assert logged == pytest.approx(raw, rel=1e-6)
        assert seen[0] == pytest.approx(min(raw, clip), rel=1e-5)


def test_nan_loss_stops_with_one_line_and_the_last_good_checkpoint_resumes(
    base: Path, names: Path, short_ref: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loss turning NaN in epoch 2: exit 2, one line naming the epoch, the checkpoint and the fixes; the epoch-1
    checkpoint is intact, and ``--resume`` (once the cause is gone) ends where the uninterrupted run ended."""
    from rnnkit.tasks.generator import SequenceGenerator
    from rnnkit.train.checkpoints import read_checkpoint_state

    out = base / "nan"
    real_forward = SequenceGenerator.forward
    calls = {"n": 0}

    def poisoned(self, batch):
        outputs, loss = real_forward(self, batch)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 13 and loss is not None:  # epoch 2 (10 batches per epoch)
                loss = loss * float("nan")
        return outputs, loss

    with monkeypatch.context() as m:
        m.setattr(SequenceGenerator, "forward", poisoned)
        code, stdout, err = cli(*train_args(names, out, 3))
    needles = ("became nan", "epoch 2", "last good checkpoint is intact", "--lr")
    assert_one_line_error(code, stdout, err, *needles, after_progress=True)
    assert read_checkpoint_state(out / "checkpoint")["epoch"] == 1
    assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()
    code, _, err = cli("train", "--resume", "--out", out)
    assert code == 0, err
    assert_same_run(short_ref, out)


def test_nan_or_inf_in_real_valued_data_is_refused_or_stops_training() -> None:
    """Library level, until the series readers land: collate refuses NaN/inf; a batch built around collate
    stops the trainer at the first step with the data named as a cause."""
    import numpy as np

    from rnnkit.data import Batch, collate_sequences
    from rnnkit.tasks import ModelConfig, build_model
    from rnnkit.train import NonFiniteLossError, TrainConfig, fit

    for bad in (float("nan"), float("inf")):
        x = np.zeros((4, 2))
        x[2, 1] = bad
        with pytest.raises(ValueError, match="sequence 0 contains NaN or inf"):
            collate_sequences([x])
    torch.manual_seed(0)
    model = build_model(ModelConfig(task="regress", model="lstm", input_features=2, num_outputs=1, hidden_size=4))
    inputs = torch.zeros(2, 3, 2)
    inputs[1, 1, 0] = float("inf")
    batch = Batch(inputs=inputs, lengths=torch.tensor([3, 2]), targets=torch.zeros(2, 1))
    with pytest.raises(NonFiniteLossError, match="check the data for NaN/inf") as info:
        fit(model, [batch], None, TrainConfig(epochs=1, progress="none"))
    assert info.value.step == 1


# ---------------------------------------------------------------------------------------------------- 4. determinism


def test_two_runs_with_the_same_seed_are_bitwise_equal(base: Path, names: Path, short_ref: Path) -> None:
    """The same command twice: identical weight bytes (final and checkpoint), curve, metrics (timings aside)."""
    out = base / "again"
    code, _, err = cli(*train_args(names, out, 3))
    assert code == 0, err
    assert (out / "model.safetensors").read_bytes() == (short_ref / "model.safetensors").read_bytes()
    assert_same_run(short_ref, out)
    a, b = (next(p for p in (r / "checkpoint").iterdir() if p.is_dir()) for r in (short_ref, out))
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "state.safetensors").read_bytes() == (b / "state.safetensors").read_bytes()
    # and a different seed does change them (the comparison can fail)
    other = base / "other-seed"
    args = train_args(names, other, 3)
    args[args.index("--seed") + 1] = "4"
    assert cli(*args)[0] == 0
    assert (other / "model.safetensors").read_bytes() != (short_ref / "model.safetensors").read_bytes()


if __name__ == "__main__":
    if sys.argv[1:2] == ["stage-kills"]:
        _driver(sys.argv[2:])
    else:
        sys.exit("usage: python tests/test_reliability.py stage-kills OUT THREADS")
