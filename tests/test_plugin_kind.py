"""A run kind is one module: a toy kind written here, installed the way a third-party package would be.

The module ``toykind`` (written into ``tmp_path`` with a ``toykind-0.dist-info`` folder whose ``entry_points.txt``
names it in the group ``rnnkit.kinds``) defines the kind ``last-digit``: strings of digits → whether the last digit
is ``even`` or ``odd``, a problem a small GRU learns in a few epochs. It uses only rnnkit's public run-kind API
(:class:`rnnkit.runs.RunKind` with the shared train skeleton's hooks) and nothing under ``src/`` knows it. The
test trains, evaluates and predicts it through ``python -m rnnkit`` in fresh processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

TOYKIND = '''
"""The ``last-digit`` run kind: strings of digits -> "even" or "odd" (their last digit's parity)."""

import json
import random

import torch

from rnnkit.data import Batches, Vocab, collate_classification
from rnnkit.runs import Flag, Prepared, RunKind, register_kind, restore_options
from rnnkit.tasks import ModelConfig
from rnnkit.train import evaluate

CLASSES = ["even", "odd"]


def make_items(n, seed):
    """``n`` strings of 3..8 digits and their labels (ids into CLASSES), the same for the same seed."""
    rng = random.Random(seed)
    items = ["".join(rng.choice("0123456789") for _ in range(rng.randint(3, 8))) for _ in range(n)]
    return items, [int(s[-1]) % 2 for s in items]


def parts(n, seed):
    """80/10/10: train, validation, test as (items, labels)."""
    items, labels = make_items(n, seed)
    a, b = int(0.8 * n), int(0.9 * n)
    return {"train": (items[:a], labels[:a]), "val": (items[a:b], labels[a:b]), "test": (items[b:], labels[b:])}


def batches(vocab, items, labels, batch_size, seed):
    """The source's batches (rnnkit.data.Batches): (epoch -> shuffled batches, the batches in a fixed order)."""
    ids = [vocab.encode(s) for s in items]

    def collate(index):
        return collate_classification([ids[i] for i in index], [labels[i] for i in index])

    source = Batches([len(s) for s in ids], collate, batch_size, seed)
    return source.epoch, source.ordered()


@register_kind
class LastDigitKind(RunKind):
    name = "last-digit"
    app = "last-digit"
    help = "last-digit (a toy plugin: digits -> parity of the last one)"
    defaults = {
        "model": "gru",
        "embed_dim": 16,
        "hidden_size": 32,
        "num_layers": 1,
        "bidirectional": False,
        "dropout": 0.0,
        "epochs": 6,
        "batch_size": 32,
        "lr": 1e-2,
        "num_items": 800,
    }
    flags = (Flag("--num-items", {"type": int, "default": None, "help": "last-digit: items to make (default: 800)"}),)

    def options_from_config(self, saved, opts):
        return restore_options(saved, opts, self.name, options={"num_items": saved["data"]["num_items"]})

    def prepare(self, opts, saved):
        n = int(opts.resolved("num_items", self.defaults))
        p = parts(n, opts.seed)
        vocab = Vocab.from_dict(saved["vocab"]) if saved else Vocab.build(p["train"][0])
        bs = int(opts.resolved("batch_size", self.defaults))
        train_epoch, _ = batches(vocab, *p["train"], bs, opts.seed)
        _, val = batches(vocab, *p["val"], bs, opts.seed)
        return Prepared(train_epoch, val, {"seed": opts.seed, "num_items": n}, vocab, CLASSES, extra={"parts": p})

    def model_config(self, opts, prepared):
        r = lambda key: opts.resolved(key, self.defaults)  # noqa: E731
        return ModelConfig(
            task="classify",
            model=r("model"),
            vocab_size=len(prepared.vocab),
            num_classes=len(CLASSES),
            embed_dim=int(r("embed_dim")),
            hidden_size=int(r("hidden_size")),
            num_layers=int(r("num_layers")),
            dropout=float(r("dropout")),
        )

    def trainer_settings(self, opts, prepared):
        return opts.train_config(self.defaults, monitor="accuracy")

    def data_config(self, opts, prepared):
        return {"data": None, "seed": opts.seed, "num_items": prepared.split_record["num_items"]}

    def _metrics(self, run, items, labels):
        _, ordered = batches(run.vocab, items, labels, 256, 0)
        out = evaluate(run.model, ordered)
        return {"test_accuracy": round(out["accuracy"], 4), "test_loss": round(out["loss"], 4)}

    def after_fit(self, run, prepared):  # a part fitted after the network: here, the validation accuracy it reached
        part = {"epochs": prepared.result.epochs_run, **self._metrics(run, *prepared.extra["parts"]["val"])}
        (run.path / "after_fit.json").write_text(json.dumps(part))
        run.parts["after_fit"] = part

    def score(self, run, prepared):
        metrics = {"app": self.name, "task": self.name, "model": run.config["model"]["model"]}
        metrics.update(self._metrics(run, *prepared.extra["parts"]["test"]))
        metrics["val_accuracy_after_fit"] = run.parts["after_fit"]["test_accuracy"]  # after_fit ran first
        return metrics, {}

    def evaluate(self, run, path, **columns):
        d = run.config["data"]
        metrics = self._metrics(run, *parts(d["num_items"], d["seed"])["test"])
        metrics["num_items"] = len(parts(d["num_items"], d["seed"])["test"][0])
        return metrics

    def predict(self, run, items, **options):
        if not items:
            raise ValueError("give digit strings to answer")
        batch = collate_classification([run.vocab.encode(s, strict=True) for s in items])
        with torch.no_grad():
            probs = run.model.predict_proba(batch)
        return [f"{s}: {CLASSES[int(p.argmax())]} {float(p.max()):.3f}" for s, p in zip(items, probs)]

    def summary(self, metrics):
        return f"test accuracy {metrics['test_accuracy']:.3f}"
'''


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose PYTHONPATH holds the toy kind's module and its dist-info (an installed package)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "toykind.py").write_text(textwrap.dedent(TOYKIND))
    info = site / "toykind-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toykind\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[rnnkit.kinds]\nlast-digit = toykind\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def rnnkit(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rnnkit", *map(str, args)], env=env, capture_output=True, text=True, timeout=300
    )


def test_a_kind_of_another_package_trains_evaluates_and_predicts(plugin_env: dict[str, str], tmp_path: Path) -> None:
    helped = rnnkit(plugin_env, "train", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "last-digit" in helped.stdout and "--num-items" in helped.stdout

    out = tmp_path / "run"
    trained = rnnkit(plugin_env, "train", "--task", "last-digit", "--seed", "1", "--out", out)
    assert trained.returncode == 0, trained.stderr
    assert "last-digit" in trained.stdout and "test accuracy" in trained.stdout
    for name in ("config.json", "split.json", "model.safetensors", "metrics.json", "curve.csv"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["app"] == "last-digit" and config["data"]["num_items"] == 800
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["app"] == "last-digit" and metrics["epochs"] == 6
    assert metrics["test_accuracy"] >= 0.9, metrics  # the parity of the last digit: a trivially learnable problem
    part = json.loads((out / "after_fit.json").read_text())  # the after_fit hook: after training, before scoring
    assert part["epochs"] == 6 and metrics["val_accuracy_after_fit"] == part["test_accuracy"]

    evaluated = rnnkit(plugin_env, "evaluate", out, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    again = json.loads(evaluated.stdout)
    assert again["test_accuracy"] == metrics["test_accuracy"] and again["test_loss"] == metrics["test_loss"]
    assert again["num_items"] == 80

    predicted = rnnkit(plugin_env, "predict", out, "1234", "98765", "502")
    assert predicted.returncode == 0, predicted.stderr
    lines = predicted.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["even", "odd", "even"], lines

    unknown = rnnkit(plugin_env, "predict", out, "12a")
    assert unknown.returncode == 2 and unknown.stderr.startswith("rnnkit: error:") and "Traceback" not in unknown.stderr


def test_without_the_plugin_its_task_and_runs_are_refused(plugin_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert rnnkit(plugin_env, "train", "--task", "last-digit", "--epochs", "1", "--out", out).returncode == 0
    bare = {**plugin_env, "PYTHONPATH": str(SRC)}
    refused = rnnkit(bare, "train", "--task", "last-digit", "--out", tmp_path / "other")
    assert refused.returncode == 2 and "invalid choice: 'last-digit'" in refused.stderr
    loaded = rnnkit(bare, "evaluate", out)
    assert loaded.returncode == 2 and "'last-digit'" in loaded.stderr and "does not know" in loaded.stderr
