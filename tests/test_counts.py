"""A text run's count member (``--ngram-order N``; :mod:`rnnkit.tasks.counts`, :mod:`rnnkit.runs.text_counts`;
issue 16, eighth session): next-symbol counts beside a generator, a count classifier (Bayes' rule) beside a
classifier.

The count model is checked in float64 against a hand-written interpolated Witten–Bell model (dictionaries of
counts, the recursion written out), conditional and not, on seen and unseen contexts; the network's per-symbol
probabilities against the trainer's evaluation loss; a run's metrics, ``evaluate``, ``sample`` and export against
the model and the member computed by hand.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error, make_folder, rnnkit_main
from rnnkit.checkpoint import load_safetensors
from rnnkit.data.vocab import BOS, EOS, PAD, UNK
from rnnkit.tasks.counts import WEIGHTS, NgramCounts, choose_weight, mixed_nll

V = 9  # ids 4..8 are symbols


def corpus(seed: int, n: int = 40, conditions: int = 3) -> tuple[list[list[int]], list[int]]:
    rng = random.Random(seed)
    seqs = [[rng.randrange(4, V) for _ in range(rng.randint(1, 7))] for _ in range(n)]
    return seqs, [rng.randrange(conditions) for _ in range(n)]


class ReferenceWB:
    """Interpolated Witten–Bell written out with dictionaries: contexts (category, x_{t-1}, ..., x_{t-n})."""

    def __init__(self, seqs, conds, order):
        self.order, self.cond = order, conds is not None
        self.count = defaultdict(lambda: defaultdict(int))
        for i, s in enumerate(seqs):
            full = [BOS, *s, EOS]
            for t in range(1, len(full)):
                for ctx in self.contexts(None if conds is None else conds[i], full[:t]):
                    self.count[ctx][full[t]] += 1

    def contexts(self, c, history):
        out = [()]
        if self.cond:
            out.append((c,))
        back = history[::-1]
        for n in range(1, self.order + 1):
            if n > len(back):
                break
            out.append(((c,) if self.cond else ()) + tuple(back[:n]))
        return out

    def prob(self, c, history, x):
        p = 1.0 / V
        for ctx in self.contexts(c, history):
            seen = self.count.get(ctx)
            if not seen:
                break
            total, types = sum(seen.values()), len(seen)
            p = (seen.get(x, 0) + types * p) / (total + types)
        return p


@pytest.mark.parametrize("conditional", [True, False])
@pytest.mark.parametrize("order", [1, 2, 4])
def test_counts_equal_a_hand_written_witten_bell_model(conditional: bool, order: int) -> None:
    seqs, conds = corpus(0)
    conds = conds if conditional else None
    model = NgramCounts(order, V, 3 if conditional else 0).fit(seqs, conds)
    ref = ReferenceWB(seqs, conds, order)
    # seen and unseen histories (another corpus), every symbol of the vocabulary
    test, test_conds = corpus(1, n=15)
    histories, cats = [], []
    for s, c in zip(test, test_conds, strict=True):
        full = [BOS, *s]
        for t in range(1, len(full) + 1):
            histories.append(full[:t])
            cats.append(c)
    dist = model.distribution(model.step_columns(histories, cats if conditional else None))
    want = torch.tensor(
        [[ref.prob(c, h, x) for x in range(V)] for h, c in zip(histories, cats, strict=True)], dtype=torch.float64
    )
    torch.testing.assert_close(dist, want, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(dist.sum(1), torch.ones(len(histories), dtype=torch.float64))
    # the targets of whole sequences, in order
    got = model.target_probabilities(test, test_conds if conditional else None)
    expect = [
        ref.prob(c, [BOS, *s][:t], ([*s, EOS])[t - 1])
        for s, c in zip(test, test_conds, strict=True)
        for t in range(1, len(s) + 2)
    ]
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    # chunked evaluation gives the same
    np.testing.assert_array_equal(model.target_probabilities(test, test_conds if conditional else None, chunk=3), got)


def test_state_round_trip_and_refusals(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    seqs, conds = corpus(2)
    model = NgramCounts(3, V, 3).fit(seqs, conds)
    model.weight = 0.275
    save_file(model.state_dict(), tmp_path / "n.safetensors")
    back = NgramCounts.from_state(load_file(tmp_path / "n.safetensors"))
    assert (back.order, back.vocab_size, back.num_conditions, back.weight) == (3, V, 3, 0.275)
    cols = model.step_columns([[BOS, 4, 5], [BOS], [BOS, 8, 8, 8, 8]], [0, 1, 2])
    torch.testing.assert_close(back.distribution(cols), model.distribution(cols), rtol=0, atol=0)
    with pytest.raises(ValueError, match="ngram_order"):
        NgramCounts(0, V)
    with pytest.raises(ValueError, match="categories"):
        NgramCounts(2, V, 3).fit(seqs)  # conditional without categories
    with pytest.raises(ValueError, match="symbol ids"):
        NgramCounts(2, 5, 0).fit([[7]])
    with pytest.raises(ValueError, match="category ids"):
        NgramCounts(2, V, 3).fit([[4]], [3])
    # stored tables fit cannot have written are refused, whatever part is damaged
    for key, damage, needle in (
        ("level1.indptr", lambda t: t[:-1], "indptr"),
        ("level2.symbols", lambda t: torch.cat([t[:-1], t.new_tensor([V])]), "symbols outside"),
        ("level2.keys", lambda t: t.flip(0), "keys not increasing"),
        ("level3.counts", lambda t: -t, "counts must be finite"),
        ("level0.counts", lambda t: t * float("nan"), "counts must be finite"),
    ):
        broken = model.state_dict()
        broken[key] = damage(broken[key])
        with pytest.raises(ValueError, match=needle):
            NgramCounts.from_state(broken)
    # columns beyond the model's ids are unseen contexts, not another context's key
    cols = model.step_columns([[BOS, 5]], [0])
    far = cols.clone()
    far[0, 1] = model.width + 5  # would alias row + 1's key without the check
    torch.testing.assert_close(model.distribution(far), model.distribution(torch.tensor([[0, -1, -1, -1]])))


def test_choose_weight_takes_the_lowest_mixed_nll() -> None:
    rng = np.random.default_rng(0)
    net, cnt = rng.uniform(0.05, 1, 200), rng.uniform(0.05, 1, 200)
    w = choose_weight(net, cnt)
    losses = [float(-np.log((1 - v) * net + v * cnt).mean()) for v in WEIGHTS]
    assert w == WEIGHTS[int(np.argmin(losses))]
    assert mixed_nll(net, cnt, w) == pytest.approx(min(losses), rel=1e-12)
    assert choose_weight(np.full(5, 0.9), np.full(5, 0.1)) == 0.0  # counts that never help get no share


# ------------------------------------------------------------------------------------------------ a run
TINY = ["--hidden", "8", "--embed", "4", "--epochs", "1", "--batch-size", "8", "--threads", "1"]


@pytest.fixture(scope="module")
def names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data") / "names", n=30)


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory, names: Path) -> Path:
    from rnnkit import cli

    out = tmp_path_factory.mktemp("runs") / "gen"
    assert cli.main(["train", "--task", "generate", "--data", str(names), "--out", str(out), *TINY]) == 0
    return out


def _parts(run, part: str):
    """A part of the run's saved split: token ids and category ids (None for an unconditional generator)."""
    from rnnkit.data import apply_split
    from rnnkit.runs.folder import read_split
    from rnnkit.runs.options import RunOptions
    from rnnkit.runs.text import _encode, _label_ids, _read

    data = apply_split(_read(run.config["data"]["data"], RunOptions()), read_split(run.path))
    ids, kept = _encode(run.vocab, getattr(data, part))
    labeled = run.task == "classify" or run.config["data"]["conditional"]
    return ids, (_label_ids(run, getattr(data, part), kept) if labeled else None)


def test_network_probabilities_agree_with_the_trainers_loss(counted: Path) -> None:
    from rnnkit.runs import load_run
    from rnnkit.runs.text import text_batches
    from rnnkit.runs.text_counts import network_target_probabilities
    from rnnkit.train import evaluate

    run = load_run(counted)
    ids, y = _parts(run, "test")
    probs = network_target_probabilities(run.model, ids, y, batch_size=5)
    assert len(probs) == sum(len(s) + 1 for s in ids)
    loss = evaluate(run.model, text_batches("generate", ids, y, 256, 0).ordered())["loss"]
    assert float(-np.log(probs).mean()) == pytest.approx(loss, rel=1e-5)


def test_a_default_run_mixes_its_count_member_everywhere(counted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rnnkit.runs import load_run
    from rnnkit.runs.text_counts import load_counts, network_target_probabilities

    config = json.loads((counted / "config.json").read_text())
    assert config["ngram"] == {"order": 4, "file": "ngram.safetensors"}
    run = load_run(counted)
    counts = load_counts(run)
    assert counts is not None and counts.order == 4 and counts.num_conditions == 2 and 0 <= counts.weight <= 1
    # the member counts the training and validation names (not the test ones)
    train_ids, train_y = _parts(run, "train")
    val_ids, val_y = _parts(run, "val")
    again = NgramCounts(4, len(run.vocab), 2).fit(train_ids + val_ids, train_y + val_y)
    for a, b in zip(again.counts, counts.counts, strict=True):
        torch.testing.assert_close(a, b)
    # metrics.json: the mixture, and each part alone, computed here by hand
    ids, y = _parts(run, "test")
    net = network_target_probabilities(run.model, ids, y)
    mine = counts.target_probabilities(ids, y)
    metrics = json.loads((counted / "metrics.json").read_text())
    w = counts.weight
    assert metrics["ngram_weight"] == w
    assert metrics["test_nll_per_char"] == pytest.approx(float(-np.log((1 - w) * net + w * mine).mean()), abs=6e-5)
    assert metrics["network_nll_per_char"] == pytest.approx(float(-np.log(net).mean()), abs=6e-5)
    assert metrics["ngram_nll_per_char"] == pytest.approx(float(-np.log(mine).mean()), abs=6e-5)
    # `rnnkit evaluate RUN` gives the same figures
    code, out, _ = rnnkit_main(capsys, "evaluate", counted)
    assert code == 0 and f"test_nll_per_char: {metrics['test_nll_per_char']}" in out
    assert f"ngram_weight: {w}" in out


def test_the_weight_is_the_validation_choice(counted: Path) -> None:
    from rnnkit.runs import load_run
    from rnnkit.runs.text_counts import fit_member, load_counts

    run = load_run(counted)
    member, chosen = fit_member(run.model, 4, len(run.vocab), 2, _parts(run, "train"), _parts(run, "val"))
    assert member.weight == chosen["weight"] == load_counts(run).weight
    assert chosen["mixed_val_nll"] <= min(chosen["network_val_nll"], chosen["counts_val_nll"]) + 1e-12


def test_sampling_draws_from_the_mixture(counted: Path) -> None:
    """Greedy samples (temperature 0): with the share 1 they are the counts' argmax path, with 0 the network's."""
    from rnnkit.runs import load_run

    run = load_run(counted)
    counts = NgramCounts.from_state(load_safetensors(counted / "ngram.safetensors"))

    def greedy_counts(c: int) -> list[int]:
        out: list[int] = []
        for _ in range(12):
            p = counts.distribution(counts.step_columns([[BOS, *out]], [c]))[0]
            p[[PAD, BOS, UNK]] = -1
            nxt = int(p.argmax())
            if nxt == EOS:
                break
            out.append(nxt)
        return out

    counts.weight = 1.0
    got = run.model.sample(torch.tensor([0, 1]), n=2, temperature=0, max_len=12, counts=counts)
    assert got == [greedy_counts(0), greedy_counts(1)]
    counts.weight = 0.0
    assert run.model.sample(1, n=2, temperature=0, max_len=12, counts=counts) == run.model.sample(
        1, n=2, temperature=0, max_len=12
    )
    # the run's own share: `rnnkit sample` goes through it, seeded
    from rnnkit.runs.text import sample

    first = sample(run, category="Alpha", num=5, seed=3)
    assert first == sample(run, category="Alpha", num=5, seed=3) and len(first) == 5


def test_no_member_with_order_0_and_runs_before_it(tmp_path: Path, names: Path) -> None:
    from rnnkit import cli
    from rnnkit.runs import load_run
    from rnnkit.runs.text_counts import load_counts

    out = tmp_path / "plain"
    argv = ["train", "--task", "generate", "--data", str(names), "--out", str(out), "--ngram-order", "0", *TINY]
    assert cli.main(argv) == 0
    assert not (out / "ngram.safetensors").exists() and "ngram" not in json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert "ngram_weight" not in metrics and "network_nll_per_char" not in metrics
    assert load_counts(load_run(out)) is None
    # folders of rnnkit 0.1.0 have no record: their networks alone, as they were
    for kind in ("generate", "classify"):
        assert load_counts(load_run(Path(__file__).parent / "fixtures" / "runs" / "v0.1.0" / kind)) is None


def test_resume_keeps_the_runs_order(counted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A resumed run keeps its member's order; a run started before the member (its config's options have no
    ngram_order, its config no record) is resumed without one, whatever the default is now."""
    import shutil

    from rnnkit.runs import load_run
    from rnnkit.runs.kind import kind_of
    from rnnkit.runs.options import RunOptions

    run = load_run(counted)
    kind = kind_of(run)
    assert kind.restore(run.config, RunOptions(task="generate")).options["ngram_order"] == 4
    old = {k: v for k, v in run.config.items() if k != "ngram"}
    kept = {k: v for k, v in old["options"]["options"].items() if k != "ngram_order"}
    old["options"] = {**old["options"], "options": kept}
    assert kind.restore(old, RunOptions(task="generate")).options["ngram_order"] == 0
    # end to end: such a folder, resumed, writes no member and scores its network alone, as evaluate does
    before = tmp_path / "before"
    shutil.copytree(counted, before)
    (before / "ngram.safetensors").unlink()
    (before / "config.json").write_text(json.dumps(old))
    code, _, err = rnnkit_main(capsys, "train", "--resume", "--out", before, "--threads", "1")
    assert code == 0, err
    assert not (before / "ngram.safetensors").exists()
    assert "ngram" not in json.loads((before / "config.json").read_text())
    metrics = json.loads((before / "metrics.json").read_text())
    assert "ngram_weight" not in metrics
    code, out, _ = rnnkit_main(capsys, "evaluate", before)
    assert code == 0 and f"test_nll_per_char: {metrics['test_nll_per_char']}" in out


def test_bad_order_and_a_missing_member_are_one_line(
    tmp_path: Path, names: Path, counted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    for extra, needle in (
        (["--task", "classify", "--model", "window", "--ngram-order", "3"], "leave out --ngram-order"),
        (["--task", "generate", "--model", "window", "--ngram-order", "3"], "leave out --ngram-order"),
        (["--task", "generate", "--ngram-order", "9"], "[0, 8]"),
        (["--task", "generate", "--ngram-order", "-1"], "[0, 8]"),
    ):
        out = tmp_path / "bad"
        assert_one_line_error(*rnnkit_main(capsys, "train", "--data", names, "--out", out, *extra, *TINY), needle)
        assert not out.exists()
    broken = tmp_path / "broken"
    shutil.copytree(counted, broken)
    (broken / "ngram.safetensors").unlink()
    assert_one_line_error(*rnnkit_main(capsys, "evaluate", broken), "ngram.safetensors", "missing")
    (broken / "ngram.safetensors").write_bytes(b"not safetensors")
    assert_one_line_error(*rnnkit_main(capsys, "sample", broken, "--category", "Alpha"), "ngram.safetensors")
    # a member that loads but is not this run's (another order, vocabulary or set of categories), or damaged inside
    from safetensors.torch import save_file

    state = load_safetensors(counted / "ngram.safetensors")
    for change, needle in (
        ({"sizes": torch.tensor([3, *state["sizes"][1:].tolist()])}, "belongs to another run"),
        ({"level0.counts": -state["level0.counts"]}, "counts must be finite"),
        ({"weight": torch.tensor(1.5, dtype=torch.float64)}, "weight"),
    ):
        save_file({**state, **change}, broken / "ngram.safetensors")
        assert_one_line_error(*rnnkit_main(capsys, "evaluate", broken), "ngram.safetensors", needle)
    config = json.loads((broken / "config.json").read_text())
    for record, needle in (({"order": 4, "file": "../x.safetensors"}, "ngram.file"), ({"order": 12}, "ngram.order")):
        (broken / "config.json").write_text(json.dumps({**config, "ngram": {"file": "ngram.safetensors", **record}}))
        assert_one_line_error(*rnnkit_main(capsys, "evaluate", broken), needle)


def test_export_writes_the_member_beside_the_graphs(tmp_path: Path, counted: Path) -> None:
    pytest.importorskip("onnx")
    from rnnkit.export import export_run
    from rnnkit.runs import load_run

    run = load_run(counted)
    info = export_run(run, tmp_path / "m.onnx")
    assert info["ngram"]["file"] == "m.ngram.safetensors" and info["ngram"]["weight"] == run.parts["ngram"].weight
    assert str(tmp_path / "m.ngram.safetensors") in info["paths"]
    exported = NgramCounts.from_state(load_safetensors(tmp_path / "m.ngram.safetensors"))
    mine = run.parts["ngram"]
    cols = mine.step_columns([[BOS], [BOS, 4, 5, 6]], [0, 1])
    torch.testing.assert_close(exported.distribution(cols), mine.distribution(cols), rtol=0, atol=0)
    assert json.loads((tmp_path / "m.onnx.json").read_text())["ngram"]["order"] == 4


# ------------------------------------------------------------------------------------------------ classify
def test_the_count_classifier_is_bayes_rule_over_the_hand_written_model() -> None:
    from rnnkit.tasks.counts import CountClassifier, tempered_softmax

    seqs, labels = corpus(3, n=60)
    clf = CountClassifier.fit(3, V, 3, seqs, labels)
    ref = ReferenceWB(seqs, labels, 3)
    test, _ = corpus(4, n=12)
    prior = np.log((np.bincount(labels, minlength=3) + 1.0) / (len(labels) + 3))
    want = np.array(
        [
            [
                prior[c] + sum(np.log(ref.prob(c, [BOS, *s][:t], [*s, EOS][t - 1])) for t in range(1, len(s) + 2))
                for c in range(3)
            ]
            for s in test
        ]
    )
    np.testing.assert_allclose(clf.scores(test), want, rtol=1e-12)
    for tau in (0.3, 1.0):
        e = np.exp(tau * (want - want.max(1, keepdims=True)))
        np.testing.assert_allclose(clf.probabilities(test, tau), e / e.sum(1, keepdims=True), rtol=1e-12)
        np.testing.assert_allclose(tempered_softmax(want, tau), e / e.sum(1, keepdims=True), rtol=1e-12)
    assert clf.scores([]).shape == (0, 3)
    back = CountClassifier.from_state(clf.state_dict())
    np.testing.assert_array_equal(back.scores(test), clf.scores(test))


def test_choose_class_mixture_takes_the_lowest_nll_of_the_grid() -> None:
    from rnnkit.tasks.counts import TEMPERATURES, choose_class_mixture, mixed_class_nll, tempered_softmax

    rng = np.random.default_rng(1)
    net = rng.dirichlet(np.ones(4), 50)
    scores = rng.normal(0, 5, (50, 4))
    gold = rng.integers(0, 4, 50)
    tau, w = choose_class_mixture(net, scores, gold)
    grid = {(t, v): mixed_class_nll(net, tempered_softmax(scores, t), v, gold) for t in TEMPERATURES for v in WEIGHTS}
    assert grid[(tau, w)] == min(grid.values())


@pytest.fixture(scope="module")
def classified(tmp_path_factory: pytest.TempPathFactory, names: Path) -> Path:
    from rnnkit import cli

    out = tmp_path_factory.mktemp("runs") / "clf"
    assert cli.main(["train", "--task", "classify", "--data", str(names), "--out", str(out), *TINY]) == 0
    return out


def test_a_classify_run_mixes_its_count_classifier(classified: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rnnkit.runs import load_run
    from rnnkit.runs.text import _network_probabilities, predict
    from rnnkit.runs.text_counts import load_counts
    from rnnkit.tasks.counts import CountClassifier

    run = load_run(classified)
    member = load_counts(run)
    assert isinstance(member, CountClassifier) and member.counts.order == 4
    train_ids, train_y = _parts(run, "train")
    val_ids, val_y = _parts(run, "val")
    again = CountClassifier.fit(4, len(run.vocab), 2, train_ids + val_ids, train_y + val_y)
    torch.testing.assert_close(again.class_counts, member.class_counts)
    ids, y = _parts(run, "test")
    network = _network_probabilities(run.model, ids)
    counts = member.probabilities(ids)
    probs = (1 - member.weight) * network + member.weight * counts
    metrics = json.loads((classified / "metrics.json").read_text())
    gold = np.asarray(y)
    assert metrics["test_accuracy"] == round(float((probs.argmax(1) == gold).mean()), 4)
    assert metrics["network_accuracy"] == round(float((network.argmax(1) == gold).mean()), 4)
    assert metrics["ngram_accuracy"] == round(float((counts.argmax(1) == gold).mean()), 4)
    assert metrics["test_loss"] == pytest.approx(float(-np.log(probs[np.arange(len(gold)), gold]).mean()), abs=6e-5)
    assert (metrics["ngram_weight"], metrics["ngram_temperature"]) == (member.weight, member.temperature)
    # predict gives the mixture's probabilities; evaluate the test figures again
    data_items = [run.vocab.decode(s) for s in ids[:4]]
    top = predict(run, data_items, top_k=2)
    for row, p in zip(top, probs[:4], strict=True):
        assert row[0] == (run.classes[int(p.argmax())], pytest.approx(float(p.max()), rel=1e-5))
    code, out, _ = rnnkit_main(capsys, "evaluate", classified)
    assert code == 0 and f"test_accuracy: {metrics['test_accuracy']}" in out


def test_a_classify_ensemble_mixes_the_mean_and_scores_members_alone(tmp_path: Path, names: Path) -> None:
    from rnnkit import cli
    from rnnkit.runs import load_run
    from rnnkit.runs.text import _network_probabilities
    from rnnkit.runs.text_counts import load_counts

    out = tmp_path / "ens"
    argv = ["train", "--task", "classify", "--data", str(names), "--out", str(out), "--ensemble", "2", *TINY]
    assert cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["members"]) == 2 and all("network_accuracy" not in m for m in metrics["members"])
    run = load_run(out)
    member = load_counts(run)
    ids, y = _parts(run, "test")
    probs = (1 - member.weight) * _network_probabilities(run.model, ids) + member.weight * member.probabilities(ids)
    assert metrics["test_accuracy"] == round(float((probs.argmax(1) == np.asarray(y)).mean()), 4)


def test_export_of_a_classify_run_describes_its_temperature(tmp_path: Path, classified: Path) -> None:
    pytest.importorskip("onnx")
    from rnnkit.export import export_run
    from rnnkit.runs import load_run
    from rnnkit.tasks.counts import CountClassifier

    run = load_run(classified)
    info = export_run(run, tmp_path / "m.onnx")
    assert info["ngram"]["temperature"] == run.parts["ngram"].temperature and "softmax_c" in info["ngram"]["combine"]
    back = CountClassifier.from_state(load_safetensors(tmp_path / "m.ngram.safetensors"))
    ids, _ = _parts(run, "test")
    np.testing.assert_array_equal(back.probabilities(ids), run.parts["ngram"].probabilities(ids))


def test_an_unconditional_generate_run_counts_without_categories(tmp_path: Path) -> None:
    """One item per line (makemore's names.txt): the member's contexts are the symbols alone."""
    from rnnkit import cli
    from rnnkit.runs import load_run
    from rnnkit.runs.text import sample
    from rnnkit.runs.text_counts import load_counts, network_target_probabilities

    rng = random.Random(0)
    data = tmp_path / "names.txt"
    data.write_text(
        "\n".join(sorted({"".join(rng.choice("abcdef") for _ in range(rng.randint(2, 6))) for _ in range(200)}))
    )
    out = tmp_path / "plain"
    assert cli.main(["train", "--task", "generate", "--data", str(data), "--out", str(out), *TINY]) == 0
    run = load_run(out)
    member = load_counts(run)
    assert member.num_conditions == 0 and member.levels == 5  # the root, then 4 symbols back
    ids, _ = _parts(run, "test")
    net = network_target_probabilities(run.model, ids, None)
    mine = member.target_probabilities(ids)
    want = float(-np.log((1 - member.weight) * net + member.weight * mine).mean())
    assert json.loads((out / "metrics.json").read_text())["test_nll_per_char"] == pytest.approx(want, abs=6e-5)
    assert len(sample(run, num=3, seed=0)) == 3


def test_sampling_mixes_at_any_share(counted: Path) -> None:
    """``_mix`` is log((1 − w) · softmax(logits) + w · p_counts) for 0 < w < 1; top_k = 1 then draws its argmax."""
    from rnnkit.runs import load_run
    from rnnkit.tasks.generator import SequenceGenerator

    run = load_run(counted)
    counts = NgramCounts.from_state(load_safetensors(counted / "ngram.safetensors"))
    counts.weight = 0.4
    logits = torch.randn(3, len(run.vocab), generator=torch.Generator().manual_seed(0))
    out = [[], [5], [5, 6, 7, 8, 9]]
    cond = torch.tensor([0, 1, 0])
    got = SequenceGenerator._mix(logits, counts, out, cond)
    p = counts.distribution(counts.step_columns([[BOS, *o] for o in out], [0, 1, 0]))
    want = (0.6 * torch.softmax(logits.double(), -1) + 0.4 * p).log().float()
    torch.testing.assert_close(got, want)
    greedy = run.model.sample(0, n=2, temperature=0, max_len=10, counts=counts)
    assert run.model.sample(0, n=2, temperature=0.7, top_k=1, max_len=10, counts=counts) == greedy
    with pytest.raises(ValueError, match="symbols"):
        SequenceGenerator._mix(logits[:, :-1], counts, out, cond)


def test_the_share_is_chosen_with_counts_of_the_training_names_only(counted: Path) -> None:
    from rnnkit.runs import load_run
    from rnnkit.runs.text_counts import load_counts, network_target_probabilities

    run = load_run(counted)
    train, val = _parts(run, "train"), _parts(run, "val")
    trial = NgramCounts(4, len(run.vocab), 2).fit(*train)
    w = choose_weight(network_target_probabilities(run.model, *val), trial.target_probabilities(*val))
    assert load_counts(run).weight == w


def test_a_class_without_counted_names_gets_no_share_from_the_counts() -> None:
    from rnnkit.tasks.counts import CountClassifier

    seqs, labels = corpus(5, n=30, conditions=2)  # classes 0 and 1 only; class 2 has no name
    clf = CountClassifier.fit(2, V, 3, seqs, labels)
    probs = clf.probabilities(seqs[:5])
    assert np.all(probs[:, 2] == 0) and np.allclose(probs.sum(1), 1)
    with pytest.raises(ValueError, match="temperature"):
        CountClassifier(clf.counts, clf.class_counts, float("inf"))
    with pytest.raises(ValueError, match="class_counts"):
        CountClassifier(clf.counts, torch.zeros(3))
