"""``rnnkit train ... --tensorboard DIR`` (issue 18, point 4): the event files hold exactly curve.csv's numbers per
epoch (as float32, TensorBoard's scalar precision), and per step the loss, the lr and the gradient norm before
clipping; every task; a resume continues the
steps (purging what an interrupted process logged past its checkpoint); without the extra, one line and exit 2.

The events are read back with TensorBoard's own (plugin) EventAccumulator, the one its dashboards read through.
"""

from __future__ import annotations

import csv
import math
import random
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")

from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

import rnnkit.runs.kind
from rnnkit import cli
from rnnkit.data.batching import Batch
from rnnkit.data.stream import synthetic_text
from rnnkit.train import TensorBoardLogger, TrainConfig, fit

LETTERS = {"Alpha": "aeiou", "Beta": "bcdfg", "Gamma": "klmnp"}


def read_events(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in ``folder``: ``[(step, value), ...]`` in step order (purges applied)."""
    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})  # the accumulator TensorBoard's dashboards use
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        out[tag] = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
    return out


def read_curve(run: Path) -> list[dict[str, str]]:
    with (run / "curve.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def f32(text: str) -> float:
    """A curve.csv cell as TensorBoard stores a scalar: rounded to float32."""
    return float(np.float32(float(text)))


def assert_events_match_curve(events: dict[str, list[tuple[int, float]]], curve: list[dict[str, str]]) -> None:
    """Per epoch: every numeric curve.csv cell is the event ``epoch/COLUMN`` at the row's step, equal to the cell
    rounded to float32 (TensorBoard's scalar precision). Per step: steps 1..N once each; the epoch's max of
    ``step/grad_norm`` and its last ``step/lr`` are the row's (exactly, in float32), their mean its grad_norm."""
    assert curve, "no curve rows"
    for column in curve[0]:
        if column == "step":
            continue
        expected = [(int(r["step"]), f32(r[column])) for r in curve if r[column] != ""]
        assert events.get(f"epoch/{column}", []) == expected, column
    last = int(curve[-1]["step"])
    for tag in ("step/train_loss", "step/lr", "step/grad_norm"):
        assert [s for s, _ in events[tag]] == list(range(1, last + 1)), tag
        assert all(math.isfinite(v) for _, v in events[tag]), tag
    norms, lrs = dict(events["step/grad_norm"]), dict(events["step/lr"])
    first = 1
    for row in curve:
        end = int(row["step"])
        in_epoch = [norms[s] for s in range(first, end + 1)]
        assert sum(in_epoch) / len(in_epoch) == pytest.approx(float(row["grad_norm"]), rel=1e-6)
        assert max(in_epoch) == f32(row["grad_norm_max"])
        assert lrs[end] == f32(row["lr"])
        first = end + 1


# --------------------------------------------------------------------------------------------------------------
# data for every task


def write_names(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for cls, letters in LETTERS.items():
        rng = random.Random(cls)
        items = sorted({cls[0] + "".join(rng.choice(letters) for _ in range(rng.randint(2, 6))) for _ in range(40)})
        (folder / f"{cls}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    return folder


def write_series(path: Path, n: int = 300) -> Path:
    rng = random.Random(0)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["date", "level"])
        for i in range(n):
            w.writerow([(date(2001, 1, 1) + timedelta(days=i)).isoformat(), 5 + math.sin(i / 1.6) + rng.gauss(0, 0.1)])
    return path


def write_pairs(path: Path) -> Path:
    rng = random.Random(0)
    words = sorted({"".join(rng.choice("abcdef") for _ in range(rng.randint(2, 5))) for _ in range(300)})
    path.write_text("".join(f"{w}\t{' '.join(w[::-1].upper())}\n" for w in words), encoding="utf-8")
    return path


def write_conll(path: Path) -> Path:
    rng = random.Random(0)
    lines = []
    for _ in range(80):
        for _ in range(rng.randint(2, 6)):
            word = rng.choice(["the", "a", "cat", "dog", "runs", "sees"])
            lines.append(f"{word}\t{'DET' if word in ('the', 'a') else 'X'}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


TASKS = {
    "classify": (lambda d: write_names(d / "names"), ["--hidden", "8", "--embed", "4", "--batch-size", "16"]),
    "generate": (lambda d: write_names(d / "names"), ["--hidden", "8", "--embed", "4", "--batch-size", "16"]),
    "tag": (lambda d: write_conll(d / "tags.conll"), ["--hidden", "8", "--embed", "4", "--batch-size", "16"]),
    "seq2seq": (lambda d: write_pairs(d / "pairs.tsv"), ["--hidden", "8", "--embed", "4", "--batch-size", "32"]),
    "forecast": (
        lambda d: write_series(d / "wave.csv"),
        ["--hidden", "8", "--batch-size", "32", "--context", "12", "--horizon", "3"],
    ),
    "lm": (
        lambda d: d.joinpath("book.txt").write_text(synthetic_text(4_000, seed=1), encoding="utf-8") and d / "book.txt",
        ["--hidden", "8", "--embed", "4", "--batch-size", "8", "--tbptt", "16,32"],
    ),
}


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_logs_the_numbers_of_its_curve(tmp_path: Path, task: str) -> None:
    make, flags = TASKS[task]
    data = make(tmp_path)
    run, tb = tmp_path / "run", tmp_path / "tb"
    args = ["train", "--task", task, "--data", str(data), *flags, "--epochs", "2", "--out", str(run)]
    assert cli.main([*args, "--tensorboard", str(tb)]) == 0
    assert_events_match_curve(read_events(tb), read_curve(run))


def test_resume_continues_the_steps_and_purges_what_the_interrupted_process_logged_after_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = write_names(tmp_path / "names")
    args = ["train", "--data", str(names), "--hidden", "8", "--embed", "4", "--batch-size", "16", "--epochs", "3"]
    args += ["--dropout", "0.2", "--seed", "4"]
    assert cli.main([*args, "--out", str(tmp_path / "a"), "--tensorboard", str(tmp_path / "tb-a")]) == 0
    stop_at: list[int] = []

    def interrupting_fit(*a, on_step, **kw):
        def stop_mid_epoch_2(trainer):
            on_step(trainer)  # the TensorBoard logger's
            if trainer.state["step"] == trainer.state["steps_per_epoch"] * 3 // 2:
                stop_at.append(trainer.state["step"])
                trainer.request_stop()

        return rnnkit.train.fit(*a, on_step=stop_mid_epoch_2, **kw)

    tb = tmp_path / "tb-b"
    with monkeypatch.context() as m:
        m.setattr(rnnkit.runs.kind, "fit", interrupting_fit)
        assert cli.main([*args, "--out", str(tmp_path / "b"), "--tensorboard", str(tb)]) == 0
    # a killed process may have logged steps past its last checkpoint: a wrong value at the next step
    with TensorBoardLogger(tb) as stray:
        stray._open(stop_at[0] + 1)
        stray._scalar("step/grad_norm", -1.0, stop_at[0] + 1)
    assert cli.main(["train", "--resume", "--out", str(tmp_path / "b"), "--tensorboard", str(tb)]) == 0
    resumed, whole = read_events(tb), read_events(tmp_path / "tb-a")
    assert_events_match_curve(resumed, read_curve(tmp_path / "b"))
    for tag in ("step/train_loss", "step/lr", "step/grad_norm", "epoch/train_loss", "epoch/val_loss"):
        assert resumed[tag] == whole[tag], tag  # the resumed run's numbers are the uninterrupted run's


class Linear(torch.nn.Module):
    """A tiny regression model with the trainer's ``forward(batch) -> (outputs, loss)``."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 1, dtype=torch.float64)

    def forward(self, batch: Batch):
        out = self.lin(batch.inputs).squeeze(-1)
        return out, torch.nn.functional.mse_loss(out, batch.targets)


def test_step_grad_norm_is_the_norm_before_clipping(tmp_path: Path) -> None:
    """With a tiny clip norm the logged step norms are the unclipped ones: the first equals a hand-computed norm."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=g, dtype=torch.float64)
    y = 10 * x.sum(-1)
    batches = [
        Batch(inputs=x[i : i + 8], lengths=torch.ones(8, dtype=torch.long), targets=y[i : i + 8]) for i in (0, 8)
    ]
    torch.manual_seed(1)
    model = Linear()
    reference = Linear()
    reference.load_state_dict(model.state_dict())
    _, loss = reference(batches[0])
    loss.backward()
    expected = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in reference.parameters()])))
    cfg = TrainConfig(epochs=2, clip_norm=1e-3, seed=0, progress="none")
    with TensorBoardLogger(tmp_path / "tb") as tb:
        fit(model, lambda e: batches, None, cfg, **tb.callbacks())
    events = read_events(tmp_path / "tb")
    first = events["step/grad_norm"][0]
    assert first[0] == 1 and first[1] == float(np.float32(expected))
    assert all(v > 1e-3 for _, v in events["step/grad_norm"])  # above the clip norm: logged before clipping
    assert events["step/train_loss"][0][1] == float(np.float32(float(loss.detach())))


def test_without_the_extra_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    names = write_names(tmp_path / "names")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    capsys.readouterr()
    code = cli.main(["train", "--data", str(names), "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "rnnkit: error: --tensorboard needs the tensorboard package: pip install 'rnnkit[tensorboard]'"
    ]
    assert not (tmp_path / "run").exists()
