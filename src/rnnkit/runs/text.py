"""The text kinds: ``classify`` (many→one: a name → its country) and ``generate`` (one→many: a category → names).

``rnnkit train --task classify|generate --data D`` reads a folder of ``<Category>.txt`` files, a one-item-per-line
file, a CSV, or the embedded first-name dictionary (``embedded:country``, the default; ``embedded:gender``), splits
it 80/10/10 by a hash seeded with ``--seed`` (or uses ``--val-data``/``--test-data``), builds a character (or word)
vocabulary and trains a :class:`~rnnkit.tasks.SequenceClassifier` or :class:`~rnnkit.tasks.SequenceGenerator`.

``metrics.json``: classify — ``test_accuracy``, ``macro_f1``, ``majority_accuracy``, ``test_loss``; generate —
``test_nll_per_char`` and ``bigram_nll_per_char`` (makemore's counting bigram model, :func:`bigram_nll`).
``config.json`` of a text run has no ``"app"`` key (as every earlier release wrote it).
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from rnnkit import ranges
from rnnkit.data import (
    LabeledItems,
    Split,
    Vocab,
    apply_split,
    carve_validation,
    collate_classification,
    collate_generation,
    default_names,
    exclude_items,
    load_data,
    split_items,
)
from rnnkit.data.batching import Batch, Batches
from rnnkit.data.vocab import BOS, EOS
from rnnkit.metrics import confusion, macro_f1, mean_nll, mixture
from rnnkit.runs.folder import Run, read_split
from rnnkit.runs.kind import Prepared, RunKind, accuracy_line, note, register_kind
from rnnkit.runs.options import RunOptions, absolute_path, restore_options
from rnnkit.runs.text_counts import (
    fit_class_member,
    fit_member,
    load_counts,
    ngram_record,
    save_counts,
    target_nll,
)
from rnnkit.runs.text_flags import TEXT_FLAGS
from rnnkit.tasks import ModelConfig
from rnnkit.tasks.modes import eval_mode
from rnnkit.train import TrainConfig, evaluate

__all__ = [
    "EMBEDDED",
    "ClassifyKind",
    "GenerateKind",
    "accuracy_line",
    "bigram_nll",
    "evaluate_run",
    "predict",
    "prepare_split",
    "sample",
    "saved_test_data",
]

DEFAULTS: dict[str, dict[str, Any]] = {
    # Chosen by benchmarks/sweep_defaults.py on the embedded default, by the validation split (docs/defaults-names.md).
    "classify": {
        "model": "gru",
        "embed_dim": 64,
        "hidden_size": 256,
        "num_layers": 1,
        "bidirectional": True,
        "dropout": 0.4,
        "epochs": 12,
        "batch_size": 64,
        "lr": 3e-3,
        "pool": "last",
        "label_smoothing": 0.0,
        "token_dropout": 0.0,
        "ngram_filters": 0,
        "ngram_buckets": 32768,  # issue 16, fifth session: the hashed n-gram bag beside the GRU
        "ngram_dropout": 0.5,
        "ngram_order": 4,  # eighth session: the count member (a 4-symbol count model per class, Bayes' rule)
    },
    "generate": {  # issue 16: 2 layers of 384, E 128, dropout 0.3 (0.1.0: 1 of 256, E 64, 0.1, 12 epochs)
        "model": "lstm",
        "embed_dim": 128,
        "hidden_size": 384,
        "num_layers": 2,
        "bidirectional": False,
        "dropout": 0.3,
        "epochs": 12,  # sixth session: weight decay 0.1 and peak lr 4e-3 reach in 12 epochs what 16 did
        "batch_size": 64,
        "lr": 4e-3,
        "weight_decay": 0.1,
        "token_dropout": 0.0,
        "ngram_order": 4,  # eighth session: the count member over the category and the last 4 symbols
    },
}
"""The text kinds' defaults for the model and the trainer when the user names nothing."""


MODEL_EXTRAS: dict[str, tuple[str, ...]] = {
    "classify": ("pool", "label_smoothing", "token_dropout", "ngram_filters", "ngram_buckets", "ngram_dropout"),
    "generate": ("token_dropout",),
}
"""Model settings of the text kinds added since rnnkit 0.1.0 (fields of :class:`~rnnkit.tasks.ModelConfig`)."""


def _with_model_extras(opts: RunOptions, saved: dict[str, Any], task: str) -> RunOptions:
    """``opts`` with the :data:`MODEL_EXTRAS` a saved run's model was built with (its value from before they
    existed where the saved model section has none)."""
    model = saved["model"]
    original = ModelConfig()
    built = {key: model.get(key, getattr(original, key)) for key in MODEL_EXTRAS.get(task, ())}
    return replace(opts, options={**opts.options, **built})


def _with_ngram_order(opts: RunOptions, saved: dict[str, Any]) -> RunOptions:
    """``opts`` with the count member's order of the saved run: its ``"ngram"`` record's, 0 without one."""
    order = int((saved.get("ngram") or {}).get("order", 0))
    return replace(opts, options={**opts.options, "ngram_order": order})


# ---------------------------------------------------------------------------------------------------------- data
EMBEDDED = {"embedded:country": "country", "embedded:gender": "gender"}
"""``--data`` names of the embedded first-name dictionary: name → country or region (the default), name → gender."""


def _read(path: str | None, opts: RunOptions) -> LabeledItems:
    if path is None or path in EMBEDDED:
        return default_names(EMBEDDED.get(path or "embedded:country", "country"))
    return load_data(path, text_column=opts.text_column, label_column=opts.label_column)


def sample_items(data: LabeledItems, max_items: int | None, seed: int) -> LabeledItems:
    """``--max-items N``: a sample of ``N`` of the items (seeded by ``seed``, in their order), or all of them."""
    if max_items is None or max_items >= len(data):
        return data
    return data.subset(sorted(random.Random(seed).sample(range(len(data)), max_items)))


def prepare_split(opts: RunOptions) -> Split:
    """Read ``opts.data`` (or the embedded default), sample ``--max-items`` of it and split it as asked."""
    data = sample_items(_read(opts.data, opts), opts.options.get("max_items"), opts.seed)
    if len(data) == 0:
        raise ValueError(f"{data.source or opts.data}: no items to train on")
    if opts.task == "classify":
        data.require_classes()
    if opts.test_data is None and opts.val_data is None:
        return split_items(data, val=0.1, test=0.1, seed=opts.seed)
    test = _read(opts.test_data, opts) if opts.test_data else None
    val = _read(opts.val_data, opts) if opts.val_data else None
    for other in (test, val):
        if other is not None and other.is_labeled and data.is_labeled:
            unknown = sorted(set(other.labels) - set(data.classes))
            if unknown:
                raise ValueError(f"{other.source}: labels {unknown} do not occur in the training data")
            other.classes = list(data.classes)
    train = exclude_items(data, *[o for o in (test, val) if o is not None])
    if val is None:
        carved = carve_validation(train, val=0.1, seed=opts.seed)
        train, val = carved.train, carved.val
    if test is None:
        carved = split_items(train, val=0.0, test=0.1, seed=opts.seed)
        train, test = carved.train, carved.test
    record = {
        "seed": opts.seed,
        "explicit": True,
        **{name: sorted(set(part.items)) for name, part in (("train", train), ("val", val), ("test", test))},
    }
    return Split(train=train, val=val, test=test, record=record)


def _encode(vocab: Vocab, data: LabeledItems) -> tuple[list[list[int]], list[int]]:
    """Token ids of every item that keeps at least one symbol, and the indices kept."""
    ids, kept = [], []
    for i, item in enumerate(data.items):
        e = vocab.encode(item)
        if e:
            ids.append(e)
            kept.append(i)
    return ids, kept


def text_batches(task: str, ids: list[list[int]], labels: list[int] | None, batch_size: int, seed: int) -> Batches:
    """The batches of one split of a text run: classify batches carry class ids, generate batches the
    (optional) category of each item."""

    def collate(index: list[int]) -> Batch:
        items = [ids[i] for i in index]
        if task == "classify":
            return collate_classification(items, [labels[i] for i in index])
        return collate_generation(items, None if labels is None else [labels[i] for i in index])

    return Batches([len(s) for s in ids], collate, batch_size, seed)


# ---------------------------------------------------------------------------------------------------------- kinds
class _TextKind(RunKind):
    """Text classification and generation share data, split, vocabulary and config; the hooks differ by name."""

    yields_on_resume = True  # `train --resume --out RUN` (no --task: classify) continues any run

    flags = TEXT_FLAGS

    def options_from_config(self, saved: dict[str, Any], opts: RunOptions) -> RunOptions:
        d = saved["data"]
        restored = restore_options(
            saved,
            opts,
            saved["model"]["task"],
            text_column=d["text_column"],
            label_column=d["label_column"],
            unit=d["unit"],
            fold_ascii=d["fold_ascii"],
            window=saved["model"].get("window", 5),
            embed_dim=saved["model"]["embed_dim"],
            conditional=d["conditional"],
        )
        return _with_ngram_order(_with_model_extras(restored, saved, self.name), saved)

    def ngram_order(self, opts: RunOptions) -> int:
        """The ``--ngram-order`` of this call (the default when unset; 0: no count member). The lecture's window
        model stays as it is: it takes none."""
        order = int(opts.resolved("ngram_order"))
        ranges.check_value("ngram_order", order)
        if opts.resolved("model") == "window":
            if opts.options.get("ngram_order") not in (None, 0):
                raise ValueError("the window model is the lecture's as it is: leave out --ngram-order")
            return 0
        return order

    def config_extra(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        order = self.ngram_order(opts)
        return {**super().config_extra(opts, prepared), **({"ngram": ngram_record(order)} if order else {})}

    def after_fit(self, run: Run, prepared: Prepared) -> None:
        """The network is trained: fit the count member and choose its share (:mod:`rnnkit.runs.text_counts`)."""
        record = run.config.get("ngram")
        if not record:
            return
        from rnnkit import distributed

        split, order = prepared.extra["split"], int(record["order"])
        labeled = run.task == "classify" or bool(run.config["data"]["conditional"])

        def part(data: LabeledItems) -> tuple[list[list[int]], list[int] | None]:
            ids, kept = _encode(run.vocab, data)
            return ids, (_label_ids(run, data, kept) if labeled else None)

        train, val = part(split.train), part(split.val)
        if run.task == "classify":
            network = _network_probabilities(run.model, val[0])
            member, chosen = fit_class_member(network, order, len(run.vocab), len(run.classes), train, val)
            line = (
                f"count member: a {order}-symbol count model per class (Bayes' rule, temperature "
                f"{chosen['temperature']:g}), share {chosen['weight']:g} chosen on the validation part (accuracy "
                f"there: network {chosen['network_val_accuracy']:.4f}, counts {chosen['counts_val_accuracy']:.4f}, "
                f"mixed {chosen['mixed_val_accuracy']:.4f})"
            )
        else:
            classes = len(run.classes) if labeled else 0
            member, chosen = fit_member(run.model, order, len(run.vocab), classes, train, val)
            line = (
                f"count member: {order}-symbol contexts" + (" and the category" if labeled else "")
                + f", share {chosen['weight']:g} chosen on the validation part (NLL per symbol there: network "
                f"{chosen['network_val_nll']:.4f}, counts {chosen['counts_val_nll']:.4f}, mixed "
                f"{chosen['mixed_val_nll']:.4f})"
            )  # fmt: skip
        if distributed.is_main():
            save_counts(run.path, member)
        run.parts["ngram"] = member
        note(prepared.log, line + "; then counted on training and validation names")

    def _score_member(self, member: tuple[Run, Any], prepared: Prepared, seed: int) -> dict[str, Any]:
        """A member of an ensemble is one network: scored without the run's count member."""
        run, result = member
        alone = replace(run, config={k: v for k, v in run.config.items() if k != "ngram"}, parts={})
        return super()._score_member((alone, result), prepared, seed)

    def prepare(self, opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
        split = prepare_split(opts)
        if saved is not None:
            vocab = Vocab.from_dict(saved["vocab"])
        else:
            vocab = Vocab.build(
                split.train.items, unit=opts.unit, fold_ascii=opts.fold_ascii, max_len=opts.options.get("max_len")
            )
        tr_ids, tr_kept = _encode(vocab, split.train)
        if not tr_ids:
            raise ValueError("no training item has a symbol left (is --fold-ascii removing everything?)")
        conditional = opts.task == "generate" and opts.conditional and split.train.is_labeled
        use_labels = opts.task == "classify" or conditional
        classes = list(split.train.classes) if use_labels else []

        def labels_of(data: LabeledItems, kept: list[int]) -> list[int] | None:
            if not use_labels:
                return None
            ids = data.label_ids()
            return [ids[i] for i in kept]

        bs = int(opts.resolved("batch_size"))
        train_b = text_batches(opts.task, tr_ids, labels_of(split.train, tr_kept), bs, opts.seed)
        va_ids, va_kept = _encode(vocab, split.val)
        if not va_ids:
            raise ValueError("the validation split is empty: give more data or --val-data")
        val_b = text_batches(opts.task, va_ids, labels_of(split.val, va_kept), bs, opts.seed).ordered()
        return Prepared(
            train_b.epoch, val_b, split.record, vocab, classes, extra={"split": split, "conditional": conditional}
        )

    def model_config(self, opts: RunOptions, prepared: Prepared) -> ModelConfig:
        model_name = opts.resolved("model")
        windowed = model_name == "window"
        if windowed and opts.bidirectional:
            raise ValueError("the window model has no direction: drop --bidirectional")
        classes, conditional = prepared.classes, prepared.extra["conditional"]
        return ModelConfig(
            task=opts.task,
            model=model_name,
            vocab_size=len(prepared.vocab),
            num_classes=len(classes) if opts.task == "classify" else 0,
            embed_dim=int(opts.resolved("embed_dim")),
            hidden_size=int(opts.resolved("hidden_size")),
            num_layers=int(opts.resolved("num_layers")),
            bidirectional=bool(opts.resolved("bidirectional")) if opts.task == "classify" and not windowed else False,
            dropout=float(opts.resolved("dropout")),
            num_conditions=len(classes) if conditional else 0,
            # a window model has no state to condition: the category enters through every step's input
            condition_mode="input" if windowed else "both",
            window=5 if opts.window is None else int(opts.window),
            **self.model_extras(opts),
        )

    def model_extras(self, opts: RunOptions) -> dict[str, Any]:
        """The model settings added since rnnkit 0.1.0 that this kind reads (:data:`MODEL_EXTRAS`), resolved."""
        extras = {key: opts.resolved(key) for key in MODEL_EXTRAS[self.name]}
        for key in MODEL_EXTRAS["classify"]:
            if key not in extras and opts.options.get(key) is not None:
                raise ValueError(f"--{key.replace('_', '-')} is for --task classify: leave it out")
        for key in ("label_smoothing", "token_dropout", "ngram_dropout"):
            if key in extras:
                extras[key] = float(extras[key])
                ranges.check_value(key, extras[key])
        for key in ("ngram_filters", "ngram_buckets"):
            if key in extras:
                extras[key] = int(extras[key])
                ranges.check_value(key, extras[key])
        if opts.resolved("model") == "window":  # the lecture's window model stays as it is
            extras["token_dropout"] = 0.0
            for key in ("ngram_filters", "ngram_buckets"):
                if key in extras:
                    if opts.options.get(key) not in (None, 0):
                        flag = "--" + key.replace("_", "-")
                        raise ValueError(f"the window model is the lecture's as it is: leave out {flag}")
                    extras[key] = 0
            if "label_smoothing" in extras:
                extras["label_smoothing"] = 0.0
            if "pool" in extras:
                if opts.options.get("pool") not in (None, "last"):
                    raise ValueError("the window model averages its windows: leave out --pool")
                extras["pool"] = "last"
        return extras

    def restore(self, saved: dict[str, Any], opts: RunOptions) -> RunOptions:
        """The run's options, with the model settings added since 0.1.0 read from its saved model (a run that
        predates them has none there and built its model without them), and its count member's order from its
        ``"ngram"`` record (a run that has none — 0.1.0's, or one started before the member — has no member, and
        a resume does not add one)."""
        return _with_ngram_order(_with_model_extras(super().restore(saved, opts), saved, self.name), saved)

    def trainer_settings(self, opts: RunOptions, prepared: Prepared) -> TrainConfig:
        # a classifier keeps the epoch that classifies best: validation loss turns up (over-confidence) while
        # accuracy is still rising
        return opts.train_config(monitor="accuracy" if opts.task == "classify" else "loss")

    def data_config(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        split = prepared.extra["split"]
        sampled = opts.options.get("max_items")
        return {
            **({} if sampled is None else {"max_items": sampled}),  # written only when given, as before
            "source": split.train.source or (opts.data or "embedded"),
            # absolute, so that `evaluate RUN` and `--resume` find the data from any working directory
            "data": absolute_path(opts.data),
            "val_data": absolute_path(opts.val_data),
            "test_data": absolute_path(opts.test_data),
            "text_column": opts.text_column,
            "label_column": opts.label_column,
            "unit": opts.unit,
            "fold_ascii": opts.fold_ascii,
            "conditional": prepared.extra["conditional"],
            "seed": opts.seed,
        }

    def score(self, run: Run, prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        split = prepared.extra["split"]
        metrics: dict[str, Any] = {"task": run.task, "model": run.config["model"]["model"]}
        metrics.update(evaluate_run(run, split.test, train=split.train, val=split.val))
        metrics["num_train"], metrics["num_val"], metrics["num_test"] = (
            len(split.train),
            len(split.val),
            len(split.test),
        )
        confusion = metrics.pop("confusion", None)
        prepared.extra["confusion"] = confusion
        files = {} if confusion is None else {"confusion": confusion.record(run.classes)}
        return metrics, files

    def finish(self, run: Run, metrics: dict[str, Any], prepared: Prepared) -> None:
        confusion = prepared.extra.get("confusion")
        if confusion is not None:
            from rnnkit import distributed
            from rnnkit.plots import plot_confusion

            if distributed.is_main():
                plot_confusion(confusion, run.classes, run.path / "confusion.png")

    def evaluate(self, run: Run, path: str | None, **columns: Any) -> dict[str, Any]:
        if path is None:
            data = saved_test_data(run)
        else:
            data = load_data(path, text_column=columns.get("text_column"), label_column=columns.get("label_column"))
        metrics = evaluate_run(run, data)
        metrics.pop("confusion", None)
        metrics.pop("majority_accuracy", None)  # a baseline needs the training data; the run's metrics.json has it
        metrics.pop("majority_class", None)
        metrics["num_items"] = len(data)
        return metrics

    def summary(self, metrics: dict[str, Any]) -> str:
        return accuracy_line(metrics)

    def gradient_batch(self, run: Run, size: int) -> Batch:
        """The first ``size`` items of the saved test split (classify: with their classes; generate: their
        categories when conditional)."""
        data = saved_test_data(run)
        ids, kept = _encode(run.vocab, data)
        if not ids:
            raise ValueError(f"{run.path}: its test split has no item with a symbol the model knows")
        labeled = run.task == "classify" or run.config["data"]["conditional"]
        labels = _label_ids(run, data, kept) if labeled else None
        first = list(range(min(size, len(ids))))  # the first test items, in the split's order
        return text_batches(run.task, ids, labels, size, 0).collate(first)


@register_kind
class ClassifyKind(_TextKind):
    """``--task classify`` on text: many→one (a name → its class)."""

    predict_flags = ("data", "top_k")
    name = "classify"
    embedded = tuple(EMBEDDED)
    ensembles = True  # --ensemble K: K seeds, mean probabilities (the flag is declared by the series kind)
    ignores = ("conditional",)  # --unconditional is for generate
    defaults = DEFAULTS["classify"]
    help = "classify (many->one)"

    def predict(self, run: Run, items: list[str], **options: Any) -> list[str]:
        for key in ("beam", "horizon"):
            if options.get(key) is not None:
                raise ValueError(f"--{key} is not for a {run.task} run: leave it out")
        if options.get("data") is not None:  # one item per line, after the ITEMs given
            from rnnkit.data.datasets import _existing, _read_text

            text = _read_text(_existing(options["data"], "--data file"))
            items = [*items, *(line.strip() for line in text.splitlines() if line.strip())]
            if not items:
                raise ValueError(f"--data {options['data']} holds no item (one per line)")
        top = predict(run, items, top_k=options.get("top_k", 3))
        return [f"{item}: " + ", ".join(f"{c} {p:.3f}" for c, p in row) for item, row in zip(items, top, strict=True)]

    def serve_predict(self, run: Run, items: list[str], **options: Any) -> dict[str, Any]:
        if "beam" in options or "horizon" in options:
            raise ValueError(f"a {run.task} run takes no 'beam' or 'horizon'")
        rows = predict(run, items, top_k=options.get("top_k", 3))
        return {
            "predictions": [
                {"item": item, "top": [{"label": c, "prob": round(p, 6)} for c, p in row]}
                for item, row in zip(items, rows, strict=True)
            ]
        }


@register_kind
class GenerateKind(_TextKind):
    """``--task generate``: one→many (a category → names), sampled with ``rnnkit sample``."""

    name = "generate"
    embedded = tuple(EMBEDDED)
    defaults = DEFAULTS["generate"]
    help = "generate (one->many)"
    endpoints = ("sample",)

    def serve_info(self, run: Run) -> dict[str, Any]:
        return {"conditional": bool(run.config["data"]["conditional"])}

    def predict(self, run: Run, items: list[str], **options: Any) -> list[str]:
        return ClassifyKind.predict(self, run, items, **options)  # predict() names the fix: use `rnnkit sample`

    def sample(self, run: Run, **options: Any) -> list[str]:
        return sample(run, **options)


# ---------------------------------------------------------------------------------------------------------- metrics
def evaluate_run(
    run: Run, data: LabeledItems, train: LabeledItems | None = None, val: LabeledItems | None = None
) -> dict[str, Any]:
    """Test metrics of ``run`` on ``data``, and the baselines when the run's ``train`` (and ``val``) are given.

    Classifiers also get ``confusion`` (rows: true class, columns: predicted), which is not a flat metric and
    is saved to ``confusion.json`` rather than ``metrics.json``.
    """
    if len(data) == 0:
        raise ValueError("no items to evaluate")
    ids, kept = _encode(run.vocab, data)
    if not ids:
        raise ValueError("no item to evaluate has a symbol the model knows")
    if run.task == "classify":
        return _classify_metrics(run, data, ids, kept, train)
    return _generate_metrics(run, data, ids, kept, train, val)


def _label_ids(run: Run, data: LabeledItems, kept: list[int]) -> list[int]:
    if not data.is_labeled:
        raise ValueError(f"{data.source or 'the data'} has no labels to evaluate against")
    index = {c: i for i, c in enumerate(run.classes)}
    unknown = sorted({lab for lab in data.labels if lab not in index})
    if unknown:
        raise ValueError(
            f"labels {unknown} are not classes of this run ({', '.join(run.classes)}); "
            "evaluate on data labelled with the run's classes"
        )
    return [index[data.labels[i]] for i in kept]


def _network_probabilities(model: torch.nn.Module, ids: list[list[int]]) -> np.ndarray:
    """A classifier's (or an ensemble's mean) class probabilities ``(N, C)`` float64, in the order of ``ids``."""
    out: np.ndarray | None = None
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with eval_mode(model), torch.no_grad():
        for index, batch in text_batches("classify", ids, [0] * len(ids), 256, 0).indexed():
            probs = torch.softmax(model(batch.to(device))[0].double(), dim=-1).cpu().numpy()
            if out is None:
                out = np.empty((len(ids), probs.shape[1]), dtype=np.float64)
            out[index] = probs
    return out if out is not None else np.zeros((0, 0))


def _classify_metrics(run, data, ids, kept, train) -> dict[str, Any]:
    y = _label_ids(run, data, kept)
    member = load_counts(run)
    parts: dict[str, Any] = {}
    if member is None:  # the network alone, scored by the trainer's evaluation
        batches = text_batches("classify", ids, y, 256, 0).ordered()
        out = evaluate(run.model, batches)
        accuracy, loss, preds, golds = out["accuracy"], out["loss"], [], []
        with torch.no_grad():
            for b in batches:
                logits, _ = run.model(b)
                preds += logits.argmax(-1).tolist()
                golds += b.targets.tolist()
    else:  # with its count member (rnnkit.runs.text_counts): the mixture, and each part's accuracy alone
        network, counts = _network_probabilities(run.model, ids), member.probabilities(ids)
        probs = mixture(network, counts, member.weight)
        gold = np.asarray(y)
        preds, golds = probs.argmax(1).tolist(), y
        accuracy = float((probs.argmax(1) == gold).mean())
        loss = mean_nll(probs, y)
        parts = {
            "network_accuracy": round(float((network.argmax(1) == gold).mean()), 4),
            "ngram_accuracy": round(float((counts.argmax(1) == gold).mean()), 4),
            "ngram_weight": float(member.weight),
            "ngram_temperature": float(member.temperature),
        }
    conf = confusion(golds, preds, len(run.classes))
    ref = train if train is not None and train.is_labeled else data
    majority = Counter(ref.labels).most_common(1)[0][0]
    return {
        "test_accuracy": round(accuracy, 4),
        "macro_f1": round(macro_f1(conf), 4),
        "majority_accuracy": round(sum(1 for i in kept if data.labels[i] == majority) / len(kept), 4),
        "majority_class": majority,
        "test_loss": round(loss, 4),
        **parts,
        "confusion": conf,
    }


def _generate_metrics(run, data, ids, kept, train, val) -> dict[str, Any]:
    conditional = run.config["data"]["conditional"]
    y = _label_ids(run, data, kept) if conditional else None
    mixed = target_nll(run, ids, y)
    if mixed is None:  # the network alone
        loss = evaluate(run.model, text_batches("generate", ids, y, 256, 0).ordered())["loss"]
        metrics: dict[str, Any] = {}
    else:  # with its count member (rnnkit.runs.text_counts)
        loss, parts = mixed
        metrics = {key: round(value, 4) for key, value in parts.items()}
        metrics["ngram_weight"] = float(run.parts["ngram"].weight)
    metrics = {"test_nll_per_char": round(loss, 4), "test_loss": round(loss, 4), **metrics}
    if train is not None:
        tr_ids, _ = _encode(run.vocab, train)
        va_ids = _encode(run.vocab, val)[0] if val is not None and len(val) else tr_ids
        metrics["bigram_nll_per_char"] = round(bigram_nll(tr_ids, va_ids, ids, len(run.vocab)), 4)
    return metrics


def bigram_nll(
    train: Sequence[Sequence[int]], val: Sequence[Sequence[int]], test: Sequence[Sequence[int]], vocab_size: int
) -> float:
    """Mean NLL on ``test`` (nats per predicted symbol, EOS included) of makemore's counting bigram model.

    Counts come from ``train``; the add-α smoothing is picked on ``val`` from a small grid. Sequences are wrapped
    as ``[BOS] + s + [EOS]`` exactly like the generator's inputs and targets.
    """
    V = vocab_size

    def pairs(seqs) -> torch.Tensor:  # the flat index a·V + b of every (symbol, next symbol) pair, (N,)
        flat = [i for s in seqs for i in (BOS, *s, EOS)]
        ends = list(itertools.accumulate(len(s) + 2 for s in seqs))
        x = torch.tensor(flat, dtype=torch.long)
        keep = torch.ones(len(flat) - 1, dtype=torch.bool)
        keep[[e - 1 for e in ends[:-1]]] = False  # EOS of one sequence → BOS of the next is not a pair
        return (x[:-1] * V + x[1:])[keep] if len(flat) > 1 else x[:0]

    counts = torch.bincount(pairs(train), minlength=V * V).to(torch.float64).view(V, V)

    def nll(alpha: float, seqs) -> float:
        logp = ((counts + alpha) / (counts + alpha).sum(1, keepdim=True)).log().view(-1)
        idx = pairs(seqs)
        return float(-logp[idx].sum() / len(idx))

    alpha = min((0.01, 0.03, 0.1, 0.3, 1.0), key=lambda a: nll(a, val))
    return nll(alpha, test)


# ---------------------------------------------------------------------------------------------------------- use
def saved_test_data(run: Run) -> LabeledItems:
    """The test items of a run, rebuilt from its saved data settings and ``split.json``."""
    d = run.config["data"]
    opts = RunOptions(text_column=d["text_column"], label_column=d["label_column"])
    if d["test_data"]:
        return _read(d["test_data"], opts)
    data = sample_items(_read(d["data"], opts), d.get("max_items"), d["seed"])
    return apply_split(data, read_split(run.path)).test


def predict(run: Run, items: Sequence[str], top_k: int = 3) -> list[list[tuple[str, float]]]:
    """The ``top_k`` classes and probabilities of each item; unknown symbols are an error naming them.

    Runs of other task apps answer through their own ``predict`` (see :func:`predict_lines`).
    """
    if run.task != "classify":
        raise ValueError(f"{run.path} is a {run.task} run; predict needs a classify run (use `rnnkit sample`)")
    if not items:
        raise ValueError("give at least one item to predict")
    ids = []
    for item in items:
        if not item.strip():
            raise ValueError("an item to predict is empty; give at least one symbol per item")
        ids.append(run.vocab.encode(item, strict=True))
    k = max(1, min(top_k, len(run.classes)))
    probs = run.model.predict_proba(collate_classification(ids))
    member = load_counts(run)
    if member is not None:  # the run's count member (rnnkit.runs.text_counts)
        counts = torch.from_numpy(member.probabilities(ids)).to(probs.dtype)
        probs = mixture(probs, counts, member.weight)
    top = torch.topk(probs, k, dim=1)
    return [
        [(run.classes[c], float(p)) for p, c in zip(pv.tolist(), cv.tolist(), strict=True)]
        for pv, cv in zip(top.values, top.indices, strict=True)
    ]


def sample(
    run: Run,
    category: str | None = None,
    num: int = 10,
    temperature: float = 0.8,
    prefix: str = "",
    max_len: int = 30,
    seed: int | None = None,
    top_k: int | None = None,
) -> list[str]:
    """``num`` items drawn from a generate run, of ``category`` when the run is conditional."""
    if run.task != "generate":
        raise ValueError(f"{run.path} is a {run.task} run; sample needs a generate run (use `rnnkit predict`)")
    ranges.check(num=num, temperature=temperature, seed=seed, top_k=top_k)
    ranges.check_value("sample_max_len", max_len, "--max-len")
    cond = None
    if run.config["data"]["conditional"]:
        if category is None:
            raise ValueError(f"this run generates per category: pass --category (one of {', '.join(run.classes)})")
        if category not in run.classes:
            raise ValueError(f"unknown category {category!r}; choose one of: {', '.join(run.classes)}")
        cond = run.classes.index(category)
    elif category is not None:
        raise ValueError("this run was trained without categories: leave out --category")
    pre = run.vocab.encode(prefix, strict=True) if prefix else []
    gen = torch.Generator().manual_seed(seed if seed is not None else int(time.time_ns() % 2**31))
    seqs = run.model.sample(
        cond,
        n=num,
        temperature=temperature,
        top_k=top_k,
        prefix=pre,
        max_len=max_len,
        generator=gen,
        counts=load_counts(run),
    )
    return [run.vocab.decode(s) for s in seqs]


def fmt_seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"
