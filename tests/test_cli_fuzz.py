"""Issue 13, point 8: a fuzz test of the command line itself.

Hypothesis draws argv (subcommands, flags, numbers at and beyond their ranges: NaN, inf, negative, huge; odd
strings) and run-folder mutations (a deleted or retyped config field, a FIFO, a symlink to /dev/zero, to a folder
or to itself, a truncated or oversized file, a damaged checkpoint state.json or latest.json) and checks the
contract of docs/errors.md: exit 0 or 2, no traceback, at most 3 lines on stderr, nothing outside the folders the
command may write changed, within a memory limit (RLIMIT_AS: 4 GiB beyond what the process maps) and a time limit
(an alarm turns a hang into a failure). Seeded (derandomize) and bounded: 50 argv cases, 60 sampled pairs of
mutation and command, and every one of the 81 mutations once (through evaluate and predict, the checkpoint's
through train --resume too): 83 tests, about 290 command lines, about 60 s on two busy cores.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import time
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rnnkit import cli  # noqa: E402

CASE_SECONDS = 20

NUMBERS = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e-300", "1e308", "100000000", "99999999999999999999", "x"]),
    st.integers(min_value=-5, max_value=70_000).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
)
TEXT = st.text(alphabet=st.sampled_from("Aaeiou bcd\t\\'\"-é\x00"), max_size=12)


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if skip == p or skip in p.parents:
            continue
        st_ = p.lstat()
        out[str(p)] = (st_.st_mode, st_.st_size, os.readlink(p) if p.is_symlink() else "")
    return out


MEMORY_LIMIT = 4 * 2**30
"""Address space a case may add to what the process already maps (RLIMIT_AS, the soft limit, lowered for the
case and restored after): an allocation rnnkit did not refuse first fails the case instead of swapping."""


@contextlib.contextmanager
def _memory_limit(extra: int = MEMORY_LIMIT):
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status", encoding="ascii") as f:
        used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = used + extra if hard == resource.RLIM_INFINITY else min(hard, used + extra)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _run(argv: list[str]) -> tuple[int, str, str, float]:
    out, err = io.StringIO(), io.StringIO()

    def hang(signum, frame):
        raise TimeoutError(f"rnnkit {' '.join(argv)} ran over {CASE_SECONDS} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(CASE_SECONDS)
    start = time.monotonic()
    try:
        with _memory_limit(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, out.getvalue(), err.getvalue(), time.monotonic() - start


def _check(code: int, err: str, argv: list[str]) -> None:
    assert code in (0, 2), (argv, code, err[-2000:])
    assert "Traceback" not in err, (argv, err[-2000:])
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("rnnkit: error")]
        assert len(errors) == 1 and (len(lines) <= 3 or lines[-1].startswith("rnnkit: error")), (argv, err[-2000:])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    data = root / "names"
    data.mkdir()
    for cls, letters in (("Alpha", "aeiou"), ("Beta", "bcdfg")):
        items = sorted({cls[0] + letters[i % 5] + letters[(i * 3) % 5] * (1 + i % 3) + str(i) for i in range(12)})
        (data / f"{cls}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    tiny = ["--hidden", "4", "--embed", "2", "--epochs", "1", "--batch-size", "8"]
    for task in ("classify", "generate"):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert cli.main(["train", "--task", task, "--data", str(data), "--out", str(root / task), *tiny]) == 0
    return root


ARGV = st.one_of(
    st.tuples(
        st.just("sample"), st.sampled_from(["--temperature", "--num", "--max-len", "--top-k", "--seed"]), NUMBERS
    ),
    st.tuples(st.just("predict"), st.sampled_from(["--top-k", "--beam", "--horizon"]), NUMBERS),
    st.tuples(st.just("predict-item"), st.just(""), TEXT),
    st.tuples(
        st.just("train"),
        st.sampled_from(
            [
                "--hidden",
                "--embed",
                "--lr",
                "--dropout",
                "--max-minutes",
                "--seed",
                "--epochs",
                "--batch-size",
                "--window",
                "--layers",
            ]
        ),
        NUMBERS,
    ),
    st.tuples(st.just("gradients"), st.sampled_from(["--lengths", "--length", "--hidden", "--batch-size"]), NUMBERS),
)


def _argv(world: Path, work: Path, case: tuple[str, str, str]) -> list[str]:
    cmd, flag, value = case
    if cmd == "sample":
        return ["sample", str(work / "generate"), "--category", "Alpha", flag, value]
    if cmd == "predict":
        return ["predict", str(work / "classify"), "Aei", flag, value]
    if cmd == "predict-item":
        return ["predict", str(work / "classify"), "--", value]
    if cmd == "train":
        tiny = ["--epochs", "1", "--hidden", "4", "--embed", "2"]
        if flag in ("--hidden", "--embed", "--epochs", "--window", "--layers", "--batch-size"):
            try:  # a valid but large size would train for long: the range tests cover the big ones
                if float(value) > 16:
                    value = "1e308"
            except ValueError:
                pass
        extra = ["--model", "window"] if flag == "--window" else []
        return ["train", "--data", str(world / "names"), "--out", str(work / "out"), *tiny, *extra, flag, value]
    if flag in ("--lengths", "--length", "--hidden", "--batch-size"):
        try:
            if float(value) > 64:
                value = "1e308"
        except ValueError:
            pass
    mode = ["--tiny"] if flag == "--lengths" else ["--compare", "rnn", "--plot", str(work / "out" / "g.png")]
    return ["gradients", *mode, flag, value]


@settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(case=ARGV)
def test_fuzz_argv(world: Path, tmp_path_factory: pytest.TempPathFactory, case: tuple[str, str, str]) -> None:
    work = Path(tmp_path_factory.mktemp("case"))
    for name in ("classify", "generate"):
        shutil.copytree(world / name, work / name)
    (work / "out").mkdir()
    argv = _argv(world, work, case)
    before = _snapshot(work, work / "out")
    data_before = _snapshot(world, world / "nothing")
    code, _, err, _ = _run(argv)
    _check(code, err, argv)
    after = _snapshot(work, work / "out")
    assert after == before, argv
    assert _snapshot(world, world / "nothing") == data_before, argv


def _mutations():
    def drop(section: str, key: str | None = None):
        def f(run: Path) -> None:
            c = json.loads((run / "config.json").read_text(encoding="utf-8"))
            if key is None:
                c.pop(section, None)
            else:
                c.get(section, {}).pop(key, None)
            (run / "config.json").write_text(json.dumps(c), encoding="utf-8")

        return f

    def retype(section: str, key: str, value):
        def f(run: Path) -> None:
            c = json.loads((run / "config.json").read_text(encoding="utf-8"))
            if isinstance(c.get(section), dict):
                c[section][key] = value
            else:
                c[section] = value
            (run / "config.json").write_text(json.dumps(c), encoding="utf-8")

        return f

    def fifo(name: str):
        def f(run: Path) -> None:
            (run / name).unlink(missing_ok=True)
            os.mkfifo(run / name)

        return f

    def devzero(name: str):
        def f(run: Path) -> None:
            (run / name).unlink(missing_ok=True)
            (run / name).symlink_to("/dev/zero")

        return f

    def truncate(name: str, keep: float):
        def f(run: Path) -> None:
            data = (run / name).read_bytes()
            (run / name).write_bytes(data[: int(len(data) * keep)])

        return f

    def oversize(name: str):
        def f(run: Path) -> None:
            with (run / name).open("r+b") as fh:
                fh.truncate(2**40)  # sparse

        return f

    def state(edit):
        def f(run: Path) -> None:
            (path,) = (run / "checkpoint").glob("ckpt-*/state.json")
            doc = json.loads(path.read_text(encoding="utf-8"))
            edit(doc)
            path.write_text(json.dumps(doc), encoding="utf-8")

        return f

    def latest(edit):
        def f(run: Path) -> None:
            path = run / "checkpoint" / "latest.json"
            doc = json.loads(path.read_text(encoding="utf-8"))
            edit(doc)
            path.write_text(json.dumps(doc), encoding="utf-8")

        return f

    def link(name: str, target: str):
        def f(run: Path) -> None:
            (run / name).unlink(missing_ok=True)
            (run / name).symlink_to(run / target if target != "loop" else run / name)

        return f

    def in_checkpoint(make, name: str):
        def f(run: Path) -> None:
            (path,) = (run / "checkpoint").glob(f"ckpt-*/{name}")
            make(path)

        return f

    out_of_checkpoint = [
        state(lambda d: d["state"].update(batch_in_epoch=10**9)),
        state(lambda d: d["state"].update(epoch=-1)),
        state(lambda d: d["state"].update(step="7")),
        state(lambda d: d["state"].pop("history")),
        state(lambda d: d["state"].update(epoch_acc=[1])),
        state(lambda d: d.pop("files")),
        state(lambda d: d.update(version="1")),
        state(lambda d: d.update(state=None)),
        latest(lambda d: d.update(current="../../etc")),
        latest(lambda d: d.update(current=None)),
        latest(lambda d: d.pop("format")),
        in_checkpoint(lambda p: (p.unlink(), os.mkfifo(p)), "state.json"),
        in_checkpoint(lambda p: (p.unlink(), p.symlink_to("/dev/zero")), "state.json"),
        in_checkpoint(lambda p: p.write_bytes(p.read_bytes()[:40]), "state.safetensors"),
        in_checkpoint(lambda p: p.write_bytes(p.read_bytes()[:100]), "model.safetensors"),
        link("config.json", "checkpoint"),  # a folder
        link("config.json", "loop"),  # a symlink to itself
        link("model.safetensors", "config.json"),
    ]
    files = ["config.json", "model.safetensors", "split.json"]
    out = []
    for section in ("model", "train", "data", "vocab", "classes", "format"):
        out.append(drop(section))
    for key in ("task", "model", "hidden_size", "num_classes", "vocab_size"):
        out.append(drop("model", key))
        out.extend(retype("model", key, v) for v in ("x", -1, 10**12, None, [1], 1.5))
    out.extend(retype("classes", "", v) for v in (["A", "A"], "AB", [1, 2], []))
    out.extend(retype("vocab", "symbols", v) for v in (["a", "a"], "abc", None))
    for name in files:
        out += [fifo(name), devzero(name), truncate(name, 0.5), truncate(name, 0.0), oversize(name)]
    return out + out_of_checkpoint


MUTATIONS = _mutations()


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    which=st.integers(min_value=0, max_value=len(MUTATIONS) - 1),
    command=st.sampled_from(["evaluate", "predict", "sample", "resume", "gradients"]),
)
def test_fuzz_run_folder(world: Path, tmp_path_factory: pytest.TempPathFactory, which: int, command: str) -> None:
    work = Path(tmp_path_factory.mktemp("mut"))
    run = work / ("generate" if command == "sample" else "classify")
    shutil.copytree(world / run.name, run)
    MUTATIONS[which](run)
    argv = {
        "evaluate": ["evaluate", str(run)],
        "predict": ["predict", str(run), "Aei"],
        "sample": ["sample", str(run), "--category", "Alpha", "--num", "2"],
        "resume": ["train", "--resume", "--out", str(run)],
        "gradients": ["gradients", str(run)],
    }[command]
    before = _snapshot(work, run if command in ("resume", "gradients") else work / "nothing")
    code, _, err, _ = _run(argv)
    _check(code, err, argv)
    assert _snapshot(work, run if command in ("resume", "gradients") else work / "nothing") == before, argv


CHECKPOINT_MUTATIONS = len(MUTATIONS) - 18  # the last 18 damage the checkpoint or link files: resume reads them


@pytest.mark.parametrize("which", range(len(MUTATIONS)))
def test_every_run_folder_mutation_once(world: Path, tmp_path: Path, which: int) -> None:
    """Every mutation at least once (hypothesis above samples pairs of mutation and command): the checkpoint's
    damage through ``train --resume``, which reads it, the others through ``evaluate`` and ``predict``."""
    run = tmp_path / "classify"
    shutil.copytree(world / "classify", run)
    MUTATIONS[which](run)
    commands = [["train", "--resume", "--out", str(run)]] if which >= CHECKPOINT_MUTATIONS else []
    commands += [["evaluate", str(run)], ["predict", str(run), "Aei"]]
    for argv in commands:
        before = _snapshot(tmp_path, run if argv[0] == "train" else tmp_path / "nothing")
        code, _, err, _ = _run(argv)
        _check(code, err, argv)
        assert _snapshot(tmp_path, run if argv[0] == "train" else tmp_path / "nothing") == before, argv
