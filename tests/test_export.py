"""Tests of rnnkit.export: ONNX graphs of task models, run in onnxruntime and compared with PyTorch at 1e-5.

The recurrence the graphs are built from (``scan`` over the cells' step functions) is first checked in PyTorch
itself against every core's own ``forward`` in float64 (all cell kinds, two layers, both directions, lengths).
Then, in onnxruntime on random inputs of several lengths and batch sizes: a bidirectional two-layer ``gru-before``
classifier (whole-sequence graph only), a conditional two-layer LSTM generator (sequence and step graphs; greedy
decoding in onnxruntime equals ``model.sample(temperature=0)``), and ``rnnkit export RUN`` on a trained run
(files, JSON, the step graph's probabilities equal ``rnnkit predict``'s), with its one-line errors. LSTM-FCN and
MLSTM-FCN classifiers (the series default; the graph module first checked in float64 against the model) and
ensembles of classifiers and regressors (the mean of the members' probabilities / outputs) as whole-sequence
graphs. Exports cost a few seconds each (torch.export), so there are few graphs in all.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit import GRU, LSTM, RNN, cli
from rnnkit import export as rexport
from rnnkit.checkpoint import load_safetensors
from rnnkit.data.batching import Batch
from rnnkit.data.vocab import BOS, EOS, PAD, UNK
from rnnkit.export import export_model
from rnnkit.export.recurrence import _Recurrence
from rnnkit.runs import load_run, predict
from rnnkit.tasks import ModelConfig, build_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

ATOL = 1e-5


def padded_ids(B: int, T: int, vocab: int, gen: torch.Generator, first: int | None = None):
    """Random ids ``(B, T)`` padded with PAD after random lengths in ``[1, T]`` (one row of length T)."""
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T
    ids = torch.randint(4, vocab, (B, T), generator=gen)
    if first is not None:
        ids[:, 0] = first
    ids = ids.masked_fill(torch.arange(T) >= lengths.unsqueeze(1), PAD)
    return ids, lengths


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def graph_io(path: Path) -> tuple[list[str], list[str]]:
    model = onnx.load(str(path))
    return [i.name for i in model.graph.input], [o.name for o in model.graph.output]


# --------------------------------------------------------------------------------------------------------------
# 1. The exported recurrence equals every core's forward (PyTorch, float64)

CORES = {  # eager scan compiles each direction's body (~0.5 s each), so few cores cover every path
    "lstm-2layer-bidir": lambda: LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True),
    "gru-before-2layer-bidir": lambda: GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True, reset="before"),
    "gru-bidir": lambda: GRU(3, 4, bidirectional=True, batch_first=True),
    "rnn-relu-2layer-nobias": lambda: RNN(3, 4, num_layers=2, nonlinearity="relu", bias=False, batch_first=True),
    "torch.nn.RNN": lambda: torch.nn.RNN(3, 4, batch_first=True),
}


@pytest.mark.parametrize("name", list(CORES))
def test_scan_recurrence_equals_the_core_forward(name: str) -> None:
    torch.manual_seed(0)
    core = CORES[name]().double()
    rec = _Recurrence(core)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    ours = isinstance(core, (LSTM, GRU, RNN))
    lengths = torch.tensor([7, 3, 1, 5]) if ours else torch.full((4,), 7)  # torch.nn takes no lengths
    with torch.no_grad():
        want, want_n = core(x, lengths=lengths) if ours else core(x)
        got, finals = rec(x.transpose(0, 1), lengths, rec.zeros(x[:, 0]))
    torch.testing.assert_close(got.transpose(0, 1), want, rtol=0, atol=1e-12)
    want_n = want_n if isinstance(want_n, tuple) else (want_n,)
    for g, w in zip(rec.stack(finals), want_n, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)
    if not core.bidirectional:  # the step path: steps through all layers give forward's last output and state
        state = rec.zeros(x[:1, 0])
        with torch.no_grad():
            for t in range(7):
                y, state = rec.step(x[:1, t], state)
        torch.testing.assert_close(y, want[0, -1:], rtol=0, atol=1e-12)
        for g, w in zip(rec.stack(state), want_n, strict=True):
            torch.testing.assert_close(g, w[:, :1], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------------------
# 2. Classifier: the whole-sequence graph in onnxruntime


def test_bidirectional_classifier_graph_matches_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="classify", model="gru-before", vocab_size=12, num_classes=3, embed_dim=5, hidden_size=6,
        num_layers=2, bidirectional=True, dropout=0.3,
    )  # fmt: skip
    model = build_model(cfg)
    model.train()  # export must use eval mode (no dropout) on its own copy, leaving the caller's module as it was
    info = export_model(model, tmp_path / "clf.onnx")
    assert model.training
    model.eval()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.onnx", "clf.onnx.json"]  # no step graph: two directions
    saved = json.loads((tmp_path / "clf.onnx.json").read_text())
    assert saved == info and list(saved["graphs"]) == ["sequence"]
    spec = saved["graphs"]["sequence"]
    assert spec["inputs"] == [
        {"name": "ids", "dtype": "int64", "shape": ["B", "T"]},
        {"name": "lengths", "dtype": "int64", "shape": ["B"]},
    ]
    assert spec["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["B", 3]}]
    assert graph_io(tmp_path / "clf.onnx") == (["ids", "lengths"], ["logits"])

    sess = session(tmp_path / "clf.onnx")
    gen = torch.Generator().manual_seed(1)
    for B, T in ((1, 1), (3, 4), (5, 11)):
        ids, lengths = padded_ids(B, T, cfg.vocab_size, gen)
        with torch.no_grad():
            want = model(Batch(ids, lengths, None))[0].numpy()  # (B, C)
        (got,) = sess.run(None, {"ids": ids.numpy(), "lengths": lengths.numpy()})
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------------------------------
# 3. Generator: sequence and step graphs, and greedy decoding in onnxruntime


def test_conditional_lstm_generator_graphs_match_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        task="generate", model="lstm", vocab_size=10, num_conditions=3, embed_dim=4, hidden_size=5, num_layers=2,
        condition_mode="both",
    )  # fmt: skip
    model = build_model(cfg).eval()
    info = export_model(model, tmp_path / "gen.onnx")
    assert [s["name"] for s in info["graphs"]["sequence"]["inputs"]] == ["ids", "lengths", "category"]
    assert [s["name"] for s in info["graphs"]["sequence"]["outputs"]] == ["logits", "h_n", "c_n"]
    assert [s["name"] for s in info["graphs"]["step"]["inputs"]] == ["ids", "category", "h", "c"]
    assert [s["name"] for s in info["graphs"]["step"]["outputs"]] == ["logits", "h_out", "c_out"]
    assert info["graphs"]["step"]["inputs"][2]["shape"] == [2, "B", 5]
    for spec in info["graphs"].values():
        names = [s["name"] for s in spec["inputs"]], [s["name"] for s in spec["outputs"]]
        assert graph_io(tmp_path / spec["file"]) == names

    seq, step = session(tmp_path / "gen.onnx"), session(tmp_path / "gen.step.onnx")
    gen = torch.Generator().manual_seed(2)
    for B, T in ((1, 1), (4, 6)):
        ids, lengths = padded_ids(B, T, cfg.vocab_size, gen, first=BOS)
        category = torch.randint(0, 3, (B,), generator=gen)
        with torch.no_grad():
            want_logits = model(Batch(ids, lengths, None, category))[0]  # (B, T, V)
            c = model._condition(category, B)
            _, (h_n, c_n) = model.core(model._inputs(ids, c), model._initial_state(c), lengths=lengths)
        got = seq.run(None, {"ids": ids.numpy(), "lengths": lengths.numpy(), "category": category.numpy()})
        for g, w in zip(got, (want_logits, h_n, c_n), strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=ATOL, rtol=0)

        # one step on from there, against the core's own step
        nxt = torch.randint(4, cfg.vocab_size, (B,), generator=gen)
        with torch.no_grad():
            y, (h1, c1) = model.core.step(model._inputs(nxt.unsqueeze(1), c)[:, 0], (h_n, c_n))
            want_step = (model.head(y), h1, c1)
        feeds = {"ids": nxt.numpy(), "category": category.numpy(), "h": got[1], "c": got[2]}
        for g, w in zip(step.run(None, feeds), want_step, strict=True):
            np.testing.assert_allclose(g, w.numpy(), atol=ATOL, rtol=0)

    # greedy decoding with the two graphs gives what model.sample(temperature=0) gives
    for category in range(3):
        want = model.sample(category, n=1, temperature=0, max_len=8)[0]
        feeds = {"ids": np.array([[BOS]]), "lengths": np.array([1]), "category": np.array([category])}
        logits, h, c = seq.run(None, feeds)
        logits, out = logits[:, 0], []
        for _ in range(8):
            logits[:, [PAD, BOS, UNK]] = -np.inf
            tok = int(logits[0].argmax())
            if tok == EOS:
                break
            out.append(tok)
            logits, h, c = step.run(None, {"ids": np.array([tok]), "category": np.array([category]), "h": h, "c": c})
        assert out == want


# --------------------------------------------------------------------------------------------------------------
# 3b. LSTM-FCN (the series-classification default) and ensembles: one whole-sequence graph each


def _fcn_model(model: str, **kw) -> torch.nn.Module:
    """An LSTM-FCN classifier whose batch norms hold running statistics of a few training batches (not 0 and 1)."""
    torch.manual_seed(0)
    cfg = ModelConfig(task="classify", model=model, input_features=3, num_classes=4, hidden_size=5, **kw)
    m = build_model(cfg).train()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(6, 9, 3, generator=gen) * 2 + 1
            m(Batch(x, torch.tensor([9, 4, 7, 1, 9, 3]), torch.randint(0, 4, (6,), generator=gen)))
    return m.eval()


def padded_reals(B: int, T: int, F: int, gen: torch.Generator, dtype=torch.float32):
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T
    x = torch.randn(B, T, F, generator=gen, dtype=dtype)
    return x * (torch.arange(T) < lengths.unsqueeze(1)).unsqueeze(2).to(dtype), lengths


@pytest.mark.parametrize(("model", "kw"), [("lstm-fcn", {}), ("mlstm-fcn", {"num_layers": 2, "bidirectional": True})])
def test_lstm_fcn_graph_equals_the_model(tmp_path: Path, model: str, kw: dict) -> None:
    fcn = _fcn_model(model, **kw)
    # the graph module itself, in PyTorch and float64, equals the model's forward (LSTM branch through scan)
    graph = rexport.graphs._ManyToOneGraph(fcn).double()
    x, lengths = padded_reals(4, 7, 3, torch.Generator().manual_seed(4), torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(graph(x, lengths), fcn.double()(Batch(x, lengths, None))[0], rtol=0, atol=1e-12)
    fcn = fcn.float()
    info = export_model(fcn, tmp_path / "fcn.onnx")
    assert list(info["graphs"]) == ["sequence"] and not (tmp_path / "fcn.step.onnx").exists()  # no step graph
    assert graph_io(tmp_path / "fcn.onnx") == (["inputs", "lengths"], ["logits"])
    sess = session(tmp_path / "fcn.onnx")
    gen = torch.Generator().manual_seed(5)
    for B, T in ((1, 1), (3, 4), (5, 23)):
        x, lengths = padded_reals(B, T, 3, gen)
        with torch.no_grad():
            want = fcn(Batch(x, lengths, None))[0].numpy()  # (B, C)
        (got,) = sess.run(None, {"inputs": x.numpy(), "lengths": lengths.numpy()})
        assert np.abs(want).max() > 1e-3  # the comparison is not between zeros
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_pooled_classifier_graphs_equal_the_model(tmp_path: Path) -> None:
    """``pool`` other than "last" (masked mean / max over the top layer's outputs, in the order given): the graph
    module equals the model in float64 for each setting, and one graph in onnxruntime."""
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(7)
    ids, lengths = padded_ids(4, 6, 9, gen)
    for pool in ("mean", "max", "last+mean+max", "max+last"):
        cfg = ModelConfig(
            task="classify", model="gru", vocab_size=9, embed_dim=3, num_classes=3, hidden_size=4,
            bidirectional=True, num_layers=2, pool=pool,
        )  # fmt: skip
        model = build_model(cfg).double().eval()
        with torch.no_grad():
            want = model(Batch(ids, lengths, None))[0]
            torch.testing.assert_close(rexport.graphs._ManyToOneGraph(model)(ids, lengths), want, rtol=0, atol=1e-12)
    _assert_onnx_equals_model(model.float(), tmp_path / "pool.onnx", gen)


def _assert_onnx_equals_model(model: torch.nn.Module, path: Path, gen: torch.Generator) -> None:
    """The float32 ``model`` exported to ``path`` gives in onnxruntime what it gives in PyTorch, on 5 fresh names."""
    export_model(model, path)
    ids, lengths = padded_ids(5, 9, 9, gen)
    (got,) = session(path).run(None, {"ids": ids.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        want = model(Batch(ids, lengths, None))[0].numpy()
    assert np.abs(want).max() > 1e-3  # the comparison is not between zeros
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


def test_ngram_classifier_graph_equals_the_model(tmp_path: Path) -> None:
    """``ngram_filters``: the n-gram convolutions' max-pooled features follow the pooled states in the graph as in
    the model — float64 graph module against the model for "last" and a pooled setting, then onnxruntime."""
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(11)
    ids, lengths = padded_ids(4, 7, 9, gen)
    for pool in ("last", "last+max"):
        cfg = ModelConfig(
            task="classify", model="gru", vocab_size=9, embed_dim=3, num_classes=3, hidden_size=4,
            bidirectional=True, pool=pool, ngram_filters=2,
        )  # fmt: skip
        model = build_model(cfg).double().eval()
        with torch.no_grad():
            want = model(Batch(ids, lengths, None))[0]
            torch.testing.assert_close(rexport.graphs._ManyToOneGraph(model)(ids, lengths), want, rtol=0, atol=1e-12)
    _assert_onnx_equals_model(model.float(), tmp_path / "ngram.onnx", gen)


def test_ngram_bag_classifier_graph_equals_the_model(tmp_path: Path) -> None:
    """``ngram_buckets``: the hashed n-gram bag's logits are added in the graph as in the model (float64 graph
    module against the model, then onnxruntime against the float32 model)."""
    torch.manual_seed(4)
    gen = torch.Generator().manual_seed(12)
    ids, lengths = padded_ids(4, 7, 9, gen)
    cfg = ModelConfig(
        task="classify", model="gru", vocab_size=9, embed_dim=3, num_classes=3, hidden_size=4,
        bidirectional=True, ngram_buckets=31,
    )  # fmt: skip
    model = build_model(cfg).double().eval()
    torch.nn.init.normal_(model.bag.bag.weight)  # zero at the start: random so that the bag counts
    with torch.no_grad():
        want = model(Batch(ids, lengths, None))[0]
        got = rexport.graphs._ManyToOneGraph(model)(ids, lengths)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
        assert (want - model.head(model.encode(Batch(ids, lengths, None)))).abs().max() > 0.1
    _assert_onnx_equals_model(model.float(), tmp_path / "bag.onnx", gen)
    one_way = build_model(replace(cfg, bidirectional=False)).eval()  # the bag reads whole names: no step graph
    assert list(rexport.specs._specs(one_way)) == ["sequence"]  # what export_model writes (its graphs' specs)
    assert "n-gram bag" in rexport.graphs._no_step_reason(one_way)


@pytest.mark.parametrize("task", ["classify", "regress"])
def test_an_ensemble_is_one_graph_averaging_its_members(tmp_path: Path, task: str) -> None:
    torch.manual_seed(1)
    kw = {"num_classes": 3} if task == "classify" else {"num_outputs": 2}
    cfg = ModelConfig(task=task, model="gru", input_features=2, hidden_size=4, ensemble=2, **kw)
    model = build_model(cfg).eval()
    info = export_model(model, tmp_path / "ens.onnx")
    assert info["ensemble"] == 2 and list(info["graphs"]) == ["sequence"]
    name = "logits" if task == "classify" else "outputs"
    assert graph_io(tmp_path / "ens.onnx") == (["inputs", "lengths"], [name])
    sess = session(tmp_path / "ens.onnx")
    gen = torch.Generator().manual_seed(6)
    for B, T in ((1, 1), (4, 9)):
        x, lengths = padded_reals(B, T, 2, gen)
        (got,) = sess.run(None, {"inputs": x.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            each = [m(Batch(x, lengths, None))[0] for m in model.members]  # 2 × (B, C | K)
        if task == "classify":  # softmax of the graph's output: the mean of the members' probabilities
            got_p = np.exp(got - got.max(1, keepdims=True))
            got_p /= got_p.sum(1, keepdims=True)
            want = (sum(torch.softmax(o, -1) for o in each) / 2).numpy()
            np.testing.assert_allclose(got_p, want, atol=ATOL, rtol=0)
        else:
            np.testing.assert_allclose(got, (sum(each) / 2).numpy(), atol=ATOL, rtol=0)
        np.testing.assert_allclose(got, model(Batch(x, lengths, None))[0].detach().numpy(), atol=ATOL, rtol=0)


def test_unsupported_models_are_refused(tmp_path: Path) -> None:
    window = build_model(ModelConfig(task="classify", model="window", vocab_size=8, num_classes=2, hidden_size=4))
    with pytest.raises(ValueError, match="window model"):
        export_model(window, tmp_path / "w.onnx")
    with pytest.raises(TypeError, match="got Linear"):
        export_model(torch.nn.Linear(2, 2), tmp_path / "l.onnx")
    gru = build_model(ModelConfig(task="classify", model="gru", vocab_size=8, num_classes=2, hidden_size=4))
    with pytest.raises(ValueError, match=r"must name a \.onnx file"):
        export_model(gru, tmp_path / "model.bin")
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------------------------
# 4. `rnnkit export RUN`


@pytest.fixture
def rnnkit_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``rnnkit ARGS`` in process with the export subcommand (added here until the CLI lists it)."""
    parser = cli.build_parser()
    if "export" not in next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices:
        original = cli.build_parser

        def build() -> argparse.ArgumentParser:
            p = original()
            rexport.add_cli(next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)))
            return p

        monkeypatch.setattr(cli, "build_parser", build)

    def main(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return main


@pytest.fixture(scope="module")
def clf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny one-direction classify run (rnn core), so both graphs are written."""
    base = tmp_path_factory.mktemp("export")
    data = base / "names"
    data.mkdir()
    for cls, letters in (("Alpha", "aeiou"), ("Beta", "bcdfg")):
        rng = np.random.default_rng(len(cls))
        items = {cls[0] + "".join(rng.choice(list(letters), size=rng.integers(2, 7))) for _ in range(30)}
        (data / f"{cls}.txt").write_text("\n".join(sorted(items)) + "\n", encoding="utf-8")
    out = base / "run"
    tiny = ["--hidden", "6", "--embed", "4", "--epochs", "1", "--batch-size", "8"]
    args = [*tiny, "--model", "rnn", "--no-bidirectional", "--ngram-buckets", "0"]  # the bag has no step graph
    assert cli.main(["train", "--task", "classify", "--data", str(data), "--out", str(out), *args]) == 0
    return out


def test_cli_export_writes_both_graphs_and_their_description(rnnkit_main, clf_run: Path) -> None:
    code, out, err = rnnkit_main("export", clf_run)
    assert code == 0, err
    for name in ("model.onnx", "model.step.onnx", "model.onnx.json"):
        assert (clf_run / name).is_file(), name
    assert "onnxruntime check: max |ONNX - PyTorch| =" in out
    assert "ids (B, T) int64, lengths (B,) int64 -> logits (B, 2) float32" in out
    info = json.loads((clf_run / "model.onnx.json").read_text())
    run = load_run(clf_run)
    assert info["format"] == "rnnkit-onnx" and info["task"] == "classify" and info["model"] == "rnn"
    assert info["classes"] == run.classes == ["Alpha", "Beta"]
    assert info["vocab"]["symbols"] == run.vocab.symbols
    assert isinstance(info["opset"], int)

    # the step graph fed one symbol at a time, mixed with the exported count member as the JSON says, gives the
    # probabilities `rnnkit predict` gives
    from rnnkit.tasks.counts import CountClassifier

    member = CountClassifier.from_state(load_safetensors(clf_run / info["ngram"]["file"]))
    w = info["ngram"]["weight"]
    step = session(clf_run / "model.step.onnx")
    items = ["Aeiou", "Bcd"]
    want = predict(run, items, top_k=2)
    for item, row in zip(items, want, strict=True):
        h = np.zeros((1, 1, 6), np.float32)
        ids = run.vocab.encode(item, strict=True)
        for i in ids:
            logits, h = step.run(None, {"ids": np.array([i]), "h": h})
        probs = np.exp(logits[0] - logits[0].max())
        probs /= probs.sum()
        probs = (1 - w) * probs + w * member.probabilities([ids])[0]
        got = {run.classes[c]: float(p) for c, p in enumerate(probs)}
        assert got == pytest.approx(dict(row), abs=ATOL, rel=0)  # compared by label: near-ties may swap order


def test_cli_export_errors_are_one_line(rnnkit_main, clf_run: Path, tmp_path: Path) -> None:
    for args, needle in (
        (("export", clf_run, "--output", tmp_path / "m.txt", "--no-check"), "must name a .onnx file"),
        (("export", tmp_path / "missing"), "does not exist"),
        (("export", clf_run, "--format", "tflite"), "invalid choice"),
    ):
        code, out, err = rnnkit_main(*args)
        assert code == 2 and out == "", (args, out, err)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("rnnkit: error: ") and needle in lines[0], err
    assert not (tmp_path / "m.txt").exists()


def test_a_series_run_export_says_how_a_raw_series_reaches_its_graph(rnnkit_main, tmp_path: Path) -> None:
    """``model.onnx.json``'s ``input_steps`` (downsampling, per-series z-scores beside the raw channels, the
    per-channel standardizer), applied by hand in NumPy to raw series and fed to onnxruntime, give the class
    probabilities ``rnnkit predict`` computes for the same series."""
    from cli_helpers import write_tiny_ts
    from rnnkit.data.arrays import read_ts
    from rnnkit.runs.classify_series import series_probabilities

    train = write_tiny_ts(tmp_path / "TRAIN.ts", 8, 1, 0.3)
    test = write_tiny_ts(tmp_path / "TEST.ts", 3, 3, 0.3)
    run_dir = tmp_path / "run"
    tiny = ["--hidden", "4", "--epochs", "1", "--batch-size", "8", "--threads", "1", "--downsample", "2"]
    tiny += ["--kernels", "0"]  # the networks' graph: a run with a kernel ridge is not exported
    assert (
        cli.main(
            [
                "train",
                "--task",
                "classify",
                "--data",
                str(train),
                "--test-data",
                str(test),
                "--out",
                str(run_dir),
                *tiny,
            ]
        )
        == 0
    )
    code, _, err = rnnkit_main("export", run_dir)
    assert code == 0, err
    steps = json.loads((run_dir / "model.onnx.json").read_text())["input_steps"]
    assert [next(iter(s)) for s in steps] == ["downsample", "series_norm", "standardize"]
    assert steps[0]["downsample"] == 2 and steps[1]["series_norm"] == "both"

    def by_hand(series: np.ndarray) -> np.ndarray:  # (L, C) raw -> (L', 2C) as the graph reads it
        f = steps[0]["downsample"]
        x = np.stack([series[i : i + f].mean(axis=0) for i in range(0, len(series), f)])
        std = x.std(axis=0)
        z = (x - x.mean(axis=0)) / np.where(std > 1e-12 * np.maximum(1.0, np.abs(x.mean(axis=0))), std, 1.0)
        x = np.concatenate([z, x], axis=1)
        return (x - np.array(steps[2]["standardize"]["mean"])) / np.array(steps[2]["standardize"]["std"])

    X = read_ts(test).X[:4]  # N × (C, L_i), unequal lengths
    sess = session(run_dir / "model.onnx")
    want = series_probabilities(load_run(run_dir), X)  # (4, classes)
    for i, raw in enumerate(X):
        x = by_hand(raw.T)[None].astype(np.float32)  # (1, L', 2C)
        (logits,) = sess.run(None, {"inputs": x, "lengths": np.array([x.shape[1]])})
        probs = np.exp(logits[0] - logits[0].max())
        np.testing.assert_allclose(probs / probs.sum(), want[i], atol=ATOL, rtol=0)


def test_input_steps_are_only_written_for_series_classifiers() -> None:
    assert rexport.series_input_steps({"app": "classify", "classes": ["a"]}) == []
    old = {"app": "classify-series", "scaler": {"mean": [0.5], "std": [2.0]}}  # saved before --series-norm/--downsample
    assert rexport.series_input_steps(old) == [{"standardize": {"mean": [0.5], "std": [2.0]}}]
