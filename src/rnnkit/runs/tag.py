"""The ``tag`` task app: synced many→many tagging of CoNLL-style files from the command line.

``rnnkit train --task tag --data FILE.conll [--val-data F] [--test-data F] [--max-items N]`` trains a
:class:`~rnnkit.tasks.tagger.SequenceTagger` (a bidirectional GRU by default) into a run folder. Without explicit
files, 10% of the distinct sentences of ``--data`` go to test and 10% of the rest to validation, chosen by a hash
seeded with ``--seed`` (identical sentences stay in one part); ``--max-items N`` keeps the first N sequences.
``metrics.json`` holds ``test_token_accuracy`` (per-token accuracy over the test tokens), ``macro_f1`` over the
tags, ``majority_token_accuracy`` (always predicting the most frequent training tag), ``test_loss`` (mean
cross-entropy per token) and the training facts.

Words: the vocabulary holds the training words seen at least :data:`MIN_COUNT` times; the others — and every
unknown word at evaluate/predict time — map to ``UNK``, whose embedding the training words seen once have
trained. Tags: the tag set is that of every file read at training time (a tag seen only in the test part is
still a class; the model just never learned it).

``rnnkit evaluate RUN [--data F]`` scores the saved test part or another CoNLL file; ``rnnkit predict RUN
"tok tok tok" ... [--data F]`` prints ``tok/TAG tok/TAG ...`` per item (``--data``: a CoNLL file whose first
column is the token; tags, if any, are ignored).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rnnkit.cliutil import ranged
from rnnkit.data.batching import Batch, Batches
from rnnkit.data.tagging import (
    TaggedSequences,
    build_tag_list,
    build_word_vocab,
    collate_tagging,
    encode_tags,
    encode_tokens,
    read_conll,
    split_sequences,
    unk_rate,
)
from rnnkit.data.vocab import Vocab
from rnnkit.metrics import Confusion, confusion, macro_f1
from rnnkit.runs.folder import Run, read_split
from rnnkit.runs.kind import Flag, Prepared, RunKind, register_kind
from rnnkit.runs.options import RunOptions, absolute_path, restore_options
from rnnkit.tasks import TASKS, ModelConfig
from rnnkit.tasks.tagger import SequenceTagger
from rnnkit.train import TrainConfig, evaluate

__all__ = ["APP", "DEFAULTS", "MIN_COUNT", "score", "tag_items"]

APP = "tag"
MIN_COUNT = 2
"""Training words seen fewer times than this map to UNK (so UNK is trained and stands for unseen words)."""

DEFAULTS: dict[str, Any] = {
    "model": "gru",
    "embed_dim": 64,
    "hidden_size": 128,
    "num_layers": 1,
    "bidirectional": True,  # a tag may depend on the words after it
    "dropout": 0.2,
    "epochs": 10,
    "batch_size": 32,
    "lr": 3e-3,
    "max_items": None,  # use at most this many sequences of --data (the first ones); None: all
}

# until rnnkit.tasks.TASKS lists "tag" itself, load_run's build_model needs this entry to rebuild tag runs
TASKS.setdefault(APP, SequenceTagger)


# ---------------------------------------------------------------------------------------------------------- data
def _read_data(path: str | None, max_items: int | None) -> TaggedSequences:
    if path is None:
        raise ValueError(
            "--task tag needs --data FILE: a CoNLL-style file of 'token<TAB>tag' lines, a blank line between sequences"
        )
    data = read_conll(path)
    if max_items is not None:
        data = data.subset(range(min(len(data), int(max_items))))
    return data


def _carve(data: TaggedSequences, rest: list[int], part: str, seed: int) -> tuple[list[int], list[int]]:
    """Take 10% of the sequences ``rest`` of ``data`` for ``part`` ("val" or "test"): (taken, left)."""
    fractions = {"val": 0.1 if part == "val" else 0.0, "test": 0.1 if part == "test" else 0.0}
    sub = split_sequences(data.subset(rest), seed=seed, **fractions)
    return [rest[i] for i in sub[part]], [rest[i] for i in sub["train"]]


def _split(opts: RunOptions) -> tuple[dict[str, TaggedSequences], dict[str, Any]]:
    """Read the data and split it: the three parts and the record saved as ``split.json``."""
    data = _read_data(opts.data, opts.resolved("max_items", DEFAULTS))
    test = read_conll(opts.test_data) if opts.test_data else None
    val = read_conll(opts.val_data) if opts.val_data else None
    drop = {tuple(t) for other in (test, val) if other is not None for t in other.tokens}
    rest = [i for i, toks in enumerate(data.tokens) if tuple(toks) not in drop]
    idx: dict[str, list[int] | None] = {"val": None, "test": None}
    if test is None:
        idx["test"], rest = _carve(data, rest, "test", opts.seed)
    if val is None:
        idx["val"], rest = _carve(data, rest, "val", opts.seed)
    if not rest:
        raise ValueError(f"{data.source}: no training sequence is left once the validation/test sequences are out")
    parts = {
        "train": data.subset(rest),
        "val": val if val is not None else data.subset(idx["val"] or []),
        "test": test if test is not None else data.subset(idx["test"] or []),
    }
    record = {
        "seed": opts.seed,
        "num_sequences": len(data),
        "fingerprint": data.fingerprint(),
        "train": rest,
        **idx,  # None: that part is an explicit file
    }
    return parts, record


def _batches(ids: list[list[int]], tags: list[list[int]] | None, batch_size: int, seed: int) -> Batches:
    """Tagging batches of one split, bucketed by length; the order is a function of ``(seed, epoch)``."""

    def collate(index: list[int]) -> Batch:
        return collate_tagging([ids[i] for i in index], None if tags is None else [tags[i] for i in index])

    return Batches([len(s) for s in ids], collate, batch_size, seed)


def _encoded(vocab: Vocab, classes: list[str], data: TaggedSequences) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids (unknown words → UNK) and tag ids (an unknown tag is an error naming its sequence's line)."""
    if not data.is_tagged:
        raise ValueError(f"{data.source or 'the data'} has no tags (one column only); expected 'token<TAB>tag' lines")
    index = {t: i for i, t in enumerate(classes)}
    ids = [encode_tokens(vocab, toks) for toks in data.tokens]
    tags = [encode_tags(t, index, f"{data.source}, line {line}") for t, line in zip(data.tags, data.lines, strict=True)]
    return ids, tags


# ---------------------------------------------------------------------------------------------------------- metrics
def score(run: Run, data: TaggedSequences) -> tuple[dict[str, Any], Confusion]:
    """Metrics of a tag run on tagged ``data`` and its :class:`~rnnkit.metrics.Confusion` (rows: true tag,
    columns: predicted).

    ``test_token_accuracy`` counts every token of every sequence once; ``macro_f1`` averages the F1 of the tags
    that occur in the truth or the predictions; ``majority_token_accuracy`` is the accuracy of always answering
    the most frequent training tag; ``test_loss`` is the mean cross-entropy per token.
    """
    if len(data) == 0:
        raise ValueError("no sequences to evaluate")
    ids, tags = _encoded(run.vocab, run.classes, data)
    ordered = _batches(ids, tags, 256, 0).indexed()
    out = evaluate(run.model, [b for _, b in ordered])
    gold, pred = [], []
    for index, batch in ordered:
        pred += [p for row in run.model.predict(batch) for p in row]
        gold += [t for i in index for t in tags[i]]
    conf = confusion(gold, pred, len(run.classes))
    majority = run.classes.index(run.config["majority_tag"])
    metrics = {
        "test_token_accuracy": round(sum(int(g == p) for g, p in zip(gold, pred, strict=True)) / len(gold), 4),
        "macro_f1": round(macro_f1(conf), 4),
        "majority_token_accuracy": round(sum(int(g == majority) for g in gold) / len(gold), 4),
        "majority_tag": run.config["majority_tag"],
        "test_loss": round(out["loss"], 4),
        "test_unk_rate": round(unk_rate(run.vocab, data), 4),
        "num_test_tokens": len(gold),
    }
    return metrics, conf


def _summary(metrics: dict[str, Any]) -> str:
    return (
        f"test token accuracy {metrics['test_token_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
        f"(majority-tag baseline {metrics['majority_token_accuracy']:.3f})"
    )


# ---------------------------------------------------------------------------------------------------------- train
def _resumed_options(saved: dict[str, Any], opts: RunOptions) -> RunOptions:
    m, d = saved["model"], saved["data"]
    return restore_options(
        saved,
        opts,
        APP,
        window=m["window"],
        embed_dim=m["embed_dim"],
        options={"max_items": d["max_items"]},
    )


def _prepare(opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
    """Read and split the data, build (or restore) the word vocabulary and tag list, make the batches."""
    parts, record = _split(opts)
    train, val, test = parts["train"], parts["val"], parts["test"]
    for name, part in parts.items():
        if len(part) == 0:
            raise ValueError(f"the {name} part is empty: give more sequences in --data or an explicit file")
    if saved is not None:
        vocab, tags, majority = Vocab.from_dict(saved["vocab"]), list(saved["classes"]), saved["majority_tag"]
    else:
        vocab = build_word_vocab(train.tokens, MIN_COUNT)
        tags = build_tag_list(train.tags, val.tags or [], test.tags or [])
        majority = Counter(t for seq in train.tags for t in seq).most_common(1)[0][0]
    if len(tags) < 2:
        raise ValueError(f"{train.source}: the data has only the tag {tags[0]!r}; tagging needs at least 2 tags")
    tr_ids, tr_tags = _encoded(vocab, tags, train)
    va_ids, va_tags = _encoded(vocab, tags, val)
    _encoded(vocab, tags, test)  # an untagged test file fails now, before anything is written
    bs = int(opts.resolved("batch_size", DEFAULTS))
    train_b = _batches(tr_ids, tr_tags, bs, opts.seed)
    val_b = _batches(va_ids, va_tags, bs, opts.seed).ordered()
    return Prepared(train_b.epoch, val_b, record, vocab, tags, extra={"parts": parts, "majority": majority})


# ---------------------------------------------------------------------------------------------------------- use
def _saved_test(run: Run) -> TaggedSequences:
    d = run.config["data"]
    if d["test_data"]:
        return read_conll(d["test_data"])
    data = _read_data(d["data"], d["max_items"])
    record = read_split(run.path)
    if data.fingerprint() != record.get("fingerprint") or len(data) != record.get("num_sequences"):
        raise ValueError(
            f"{d['data']} changed since the run was trained (its sequences differ from the saved split); "
            "evaluate on a file with --data"
        )
    return data.subset(record["test"])


def _evaluate(run: Run, path: str | None) -> dict[str, Any]:
    """Metrics of ``run`` on the CoNLL file ``path``, or on its saved test part when ``path`` is None."""
    data = _saved_test(run) if path is None else read_conll(path)
    metrics, _ = score(run, data)
    metrics["num_sequences"] = len(data)
    return metrics


def tag_items(run: Run, token_lists: list[list[str]]) -> list[list[str]]:
    """The predicted tag of every token of every sequence (unknown tokens are read as UNK)."""
    ids = [encode_tokens(run.vocab, toks) for toks in token_lists]
    tags: list[list[str] | None] = [None] * len(ids)
    for index, batch in _batches(ids, None, 256, 0).indexed():
        for i, row in zip(index, run.model.predict(batch), strict=True):
            tags[i] = [run.classes[t] for t in row]
    return tags  # type: ignore[return-value]


def _predict(run: Run, items: list[str], **options: Any) -> list[str]:
    """``rnnkit predict``: one ``tok/TAG tok/TAG ...`` line per item (or per sequence of ``--data``)."""
    for key in ("beam", "horizon"):
        if options.get(key) is not None:
            raise ValueError(f"--{key} does not apply to a tag run")
    path = options.get("data")
    if path is not None and items:
        raise ValueError("give items or --data, not both")
    if path is not None:
        token_lists = read_conll(path, require_tags=False).tokens
    else:
        if not items:
            raise ValueError('give at least one item to tag: a sentence of whitespace-separated tokens, "tok tok tok"')
        token_lists = []
        for item in items:
            toks = item.split()
            if not toks:
                raise ValueError("an item to tag is empty: give whitespace-separated tokens")
            token_lists.append(toks)
    tagged = tag_items(run, token_lists)
    return [
        " ".join(f"{tok}/{tag}" for tok, tag in zip(toks, tags, strict=True))
        for toks, tags in zip(token_lists, tagged, strict=True)
    ]


@register_kind
class TagKind(RunKind):
    """``--task tag``: synced many→many tagging of CoNLL-style files."""

    name = APP
    app = APP
    defaults = DEFAULTS
    help = "tag (synced many->many)"
    ignores = ("text_column", "label_column", "unit", "fold_ascii", "conditional")
    flags = (
        Flag(
            "--max-items",
            {
                "type": ranged("max_items"),
                "default": None,
                "help": "seq2seq/tag: use at most this many items (default: the task's)",
            },
        ),
    )

    def options_from_config(self, saved: dict[str, Any], opts: RunOptions) -> RunOptions:
        return _resumed_options(saved, opts)

    def prepare(self, opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
        return _prepare(opts, saved)

    def model_config(self, opts: RunOptions, prepared: Prepared) -> ModelConfig:
        model_name = opts.resolved("model", DEFAULTS)
        windowed = model_name == "window"
        if windowed and opts.bidirectional:
            raise ValueError("the window model has no direction: drop --bidirectional")
        return ModelConfig(
            task=APP,
            model=model_name,
            vocab_size=len(prepared.vocab),
            num_classes=len(prepared.classes),
            embed_dim=int(opts.resolved("embed_dim", DEFAULTS)),
            hidden_size=int(opts.resolved("hidden_size", DEFAULTS)),
            num_layers=int(opts.resolved("num_layers", DEFAULTS)),
            bidirectional=False if windowed else bool(opts.resolved("bidirectional", DEFAULTS)),
            dropout=float(opts.resolved("dropout", DEFAULTS)),
            window=5 if opts.window is None else int(opts.window),
        )

    def trainer_settings(self, opts: RunOptions, prepared: Prepared) -> TrainConfig:
        return opts.train_config(DEFAULTS, monitor="accuracy")  # per-token validation accuracy: keep the best

    def build(self, mcfg: ModelConfig) -> SequenceTagger:
        return SequenceTagger(mcfg)

    def data_config(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        max_items = opts.resolved("max_items", DEFAULTS)
        return {
            "source": prepared.extra["parts"]["train"].source,
            # absolute, so that `evaluate RUN` and `--resume` find the data from any working directory
            "data": absolute_path(opts.data),
            "val_data": absolute_path(opts.val_data),
            "test_data": absolute_path(opts.test_data),
            "max_items": None if max_items is None else int(max_items),
            "min_count": MIN_COUNT,
            "seed": opts.seed,
        }

    def config_extra(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        return {**super().config_extra(opts, prepared), "majority_tag": prepared.extra["majority"]}

    def score(self, run: Run, prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        parts = prepared.extra["parts"]
        metrics: dict[str, Any] = {"app": APP, "task": APP, "model": run.config["model"]["model"]}
        scored, conf = score(run, parts["test"])
        metrics.update(scored)
        metrics.update(
            num_train=len(parts["train"]),
            num_val=len(parts["val"]),
            num_test=len(parts["test"]),
            vocab_size=len(run.vocab),
        )
        prepared.extra["confusion"] = conf
        return metrics, {"confusion": conf.record(run.classes)}

    def finish(self, run: Run, metrics: dict[str, Any], prepared: Prepared) -> None:
        from rnnkit.plots import plot_confusion

        conf = prepared.extra["confusion"]
        plot_confusion(conf, run.classes, run.path / "confusion.png", title="tags: confusion matrix (rows normalised)")

    def evaluate(self, run: Run, path: str | None, **columns: Any) -> dict[str, Any]:
        return _evaluate(run, path)

    def predict(self, run: Run, items: list[str], **options: Any) -> list[str]:
        return _predict(run, items, **options)

    def summary(self, metrics: dict[str, Any]) -> str:
        return _summary(metrics)

    def gradient_batch(self, run: Run, size: int) -> Batch:
        """The first ``size`` sequences of the saved test part with their tags."""
        ids, tags = _encoded(run.vocab, run.classes, _saved_test(run))
        return collate_tagging(ids[:size], tags[:size])
