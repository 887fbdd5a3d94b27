"""The ``seq2seq`` task app: ``rnnkit train --task seq2seq`` trains an encoder–decoder into a run folder,
``rnnkit evaluate RUN`` scores it, ``rnnkit predict RUN WORD...`` transcribes words.

Data (``--data``): ``embedded:cmudict`` (the default) is grapheme → phoneme conversion on the CMU dictionary
(lowercase words → 39 ARPAbet phonemes, stress stripped; ``embedded:cmudict-stress`` keeps the stress digits),
see :mod:`rnnkit.data.g2p`; any other path is a pairs file of ``source<TAB>target symbols`` lines (sources read
character by character, or ``--unit word``). The split is by distinct source (5% validation, 10% test, seeded;
``--val-data`` / ``--test-data`` give them explicitly); ``--max-items`` keeps that many distinct sources
(default on the CMU dictionary: :data:`DEFAULT_MAX_ITEMS`, sized so that the default command ends within 15
minutes on 2 CPU cores, with :data:`DEFAULT_MAX_MINUTES` of training at most unless ``--max-minutes`` says
otherwise; a pairs file is used whole unless ``--max-items`` is given).

Run folder: ``config.json`` (model and train configs, data settings, the source ``vocab`` and the
``target_vocab``), ``split.json``, ``model.safetensors``, ``metrics.json``, ``curve.csv``, ``curves.png`` and
``checkpoint/`` (``--resume``). Metrics: ``test_wer`` / ``test_per`` with a beam of ``--beam`` (default 5),
``test_greedy_wer`` / ``test_greedy_per``, the teacher-forced ``test_loss`` (mean cross-entropy per target
symbol, EOS included), ``num_train`` / ``num_val`` / ``num_test`` (distinct sources), ``num_train_pairs``.
A word is right when its output equals any of its references; PER uses the closest reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnnkit import ranges
from rnnkit.cliutil import ranged
from rnnkit.data.batching import Batch, Batches
from rnnkit.data.g2p import (
    Lexicon,
    LexiconSplit,
    g2p_scores,
    read_cmudict,
    read_pairs,
    split_lexicon,
)
from rnnkit.data.vocab import Vocab
from rnnkit.runs.folder import SPLIT_FILE, Run, read_split
from rnnkit.runs.kind import Flag, Prepared, RunKind, register_kind
from rnnkit.runs.options import RunOptions, absolute_path, restore_options
from rnnkit.tasks import TASKS
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.seq2seq import Seq2Seq, collate_pairs
from rnnkit.train import TrainConfig, evaluate

__all__ = ["APP", "CMUDICT", "DEFAULTS", "DEFAULT_MAX_ITEMS", "DEFAULT_MAX_MINUTES", "decode", "max_output_len"]

APP = "seq2seq"
CMUDICT = {"embedded:cmudict": False, "embedded:cmudict-stress": True}
"""``--data`` names of the CMU dictionary → whether the stress digits are kept."""
DEFAULT_DATA = "embedded:cmudict"
VAL_FRACTION, TEST_FRACTION = 0.05, 0.1
DECODE_BATCH = 256  # sources decoded together (times the beam: rows per decoder step)

DEFAULT_MAX_ITEMS = 60000
"""Distinct words of the CMU dictionary the default run uses (of 124,926): 51,001 training words (54,554 pairs,
853 steps an epoch), 2,998 validation and 6,001 test words. Timed on the shared 2-core machine: one torch thread
takes 20–25 ms a training step (48 ms wall while other jobs ran), two threads 17 ms on an idle machine but over
100 ms while another job runs. So the default 15 epochs (12.8k steps) take 4.5–5.5 minutes of training, about 11
on a busy machine with one thread; reading the data takes ~5 s, each validation pass under a second, and decoding
the test words (beam 5 and greedy) ~0.7 ms a word. :data:`DEFAULT_MAX_MINUTES` ends training in time when the
machine is slower than that (run with ``OMP_NUM_THREADS=1`` on a busy machine)."""

DEFAULT_MAX_MINUTES = 12.0
"""Training time cap of a run on the CMU dictionary when ``--max-minutes`` is not given: a safety net so that the
default command ends within 15 minutes even on a slow or busy machine (the stopped run can be continued with
``--resume``); the default run needs about half of it."""

DEFAULTS: dict[str, Any] = {
    # GRU: as fast as LSTM per step here and faster to decode. Bidirectional encoder: a letter's sound depends on
    # the letters after it (the final e of "hate"). Attention: the decoder looks up the letters it is reading
    # instead of squeezing the word into one state. H=128 rather than 256: at equal CPU time it reached a lower
    # validation loss (0.43 vs 0.62 after 25 CPU-seconds), and the time it saves buys twice the training words.
    "model": "gru",
    "embed_dim": 64,
    "hidden_size": 128,
    "num_layers": 1,
    "bidirectional": True,
    "dropout": 0.2,
    "epochs": 15,
    "batch_size": 64,
    "lr": 3e-3,
    "max_items": DEFAULT_MAX_ITEMS,  # embedded:cmudict only; a pairs file is used whole by default
    "beam": 5,
}
"""What ``rnnkit train --task seq2seq`` uses for every flag left unset."""


def max_output_len(source_len: int) -> int:
    """The most output symbols decoding allows for a source of ``source_len`` symbols: ``2·S + 5`` (a word's
    phonemes rarely outnumber its letters; the margin covers other transliterations)."""
    return 2 * source_len + 5


# ---------------------------------------------------------------------------------------------------------- data
def _read_lexicon(path: str | None, unit: str, lowercase: bool = False) -> Lexicon:
    """The CMU dictionary (``path`` None or an ``embedded:`` name) or a pairs file, its sources lowercased when
    ``lowercase`` (a file scored against a model trained on the dictionary's lowercase words)."""
    if path is None or path in CMUDICT:
        if unit != "char":
            raise ValueError("the CMU dictionary is read letter by letter: drop --unit word")
        return read_cmudict(keep_stress=CMUDICT[path or DEFAULT_DATA])
    lex = read_pairs(path, unit=unit)
    if not lowercase:
        return lex
    entries: dict[str, list[tuple[str, ...]]] = {}
    for w, prons in lex.entries.items():
        merged = entries.setdefault(w.lower(), [])
        merged += [p for p in prons if p not in merged]
    return Lexicon(entries, lex.source)


def _split(s: dict[str, Any]) -> LexiconSplit:
    """Read the data that the settings ``s`` name and split it (by distinct source)."""
    lex = _read_lexicon(s["data"], s["unit"])
    if s["val_data"] is None and s["test_data"] is None:
        split = split_lexicon(lex, VAL_FRACTION, TEST_FRACTION, s["seed"], s["max_items"])
    else:
        val = _read_lexicon(s["val_data"], s["unit"], s["lowercase"]) if s["val_data"] else None
        test = _read_lexicon(s["test_data"], s["unit"], s["lowercase"]) if s["test_data"] else None
        rest = lex.without(*[x for x in (val, test) if x is not None])
        carved = split_lexicon(
            rest,
            VAL_FRACTION if val is None else 0.0,
            TEST_FRACTION if test is None else 0.0,
            s["seed"],
            s["max_items"],
        )
        val = carved.val if val is None else val
        test = carved.test if test is None else test
        record = {
            **carved.record,
            "explicit": True,
            "sizes": {"train": len(carved.train), "val": len(val), "test": len(test)},
            "val": sorted(val.entries),
            "test": sorted(test.entries),
        }
        split = LexiconSplit(carved.train, val, test, record)
    for name, part in (("training", split.train), ("validation", split.val), ("test", split.test)):
        if len(part) == 0:
            raise ValueError(
                f"{lex.source}: the {name} split is empty ({len(lex)} distinct sources, max_items="
                f"{s['max_items']}); give more data, a larger --max-items, or --val-data/--test-data"
            )
    return split


def _encode_pairs(lex: Lexicon, src_vocab: Vocab, tgt_vocab: Vocab) -> tuple[list[list[int]], list[list[int]]]:
    """Source and target ids of every pair whose source keeps a symbol (unknown symbols become UNK)."""
    sources, targets = [], []
    for src, tgt in lex.pairs():
        ids = src_vocab.encode(src)
        if ids:
            sources.append(ids)
            targets.append(tgt_vocab.encode(" ".join(tgt)))
    return sources, targets


def _pair_batches(sources: list[list[int]], targets: list[list[int]], batch_size: int, seed: int) -> Batches:
    """Batches of (source, target) pairs of one split, bucketed by the longer side (the target with its BOS)."""

    def collate(index: list[int]) -> Batch:
        return collate_pairs([sources[i] for i in index], [targets[i] for i in index])

    lengths = [max(len(s), len(t) + 1) for s, t in zip(sources, targets, strict=True)]
    return Batches(lengths, collate, batch_size, seed)


# ---------------------------------------------------------------------------------------------------------- train
def _settings(opts: RunOptions) -> dict[str, Any]:
    """Every setting of a run, defaults filled in: what ``config.json`` records under ``data``."""
    embedded = opts.data is None or opts.data in CMUDICT
    max_items = opts.options.get("max_items")
    if max_items is None and embedded:
        max_items = DEFAULTS["max_items"]
    beam = int(opts.resolved("beam", DEFAULTS))
    if beam < 1:
        raise ValueError(f"--beam must be ≥ 1, got {beam}")
    return {
        "data": absolute_path(opts.data) if not embedded else (opts.data or DEFAULT_DATA),
        "val_data": absolute_path(opts.val_data),
        "test_data": absolute_path(opts.test_data),
        "unit": opts.unit,
        "fold_ascii": opts.fold_ascii,
        "lowercase": embedded,  # the CMU dictionary's words are lowercased; so are words to evaluate or predict
        "seed": opts.seed,
        "max_items": max_items,
        "beam": beam,
    }


def _options_from_config(saved: dict[str, Any], opts: RunOptions) -> RunOptions:
    """The options a run was started with, so that ``--resume`` continues exactly that run."""
    d = saved["data"]
    return restore_options(
        saved,
        opts,
        APP,
        unit=d["unit"],
        fold_ascii=d["fold_ascii"],
        embed_dim=saved["model"]["embed_dim"],
        options={"max_items": d["max_items"], "beam": d["beam"]},
    )


def _prepare(opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
    """Read and split the lexicon, build (or restore) both vocabularies, make the pair batches."""
    if opts.window is not None:
        raise ValueError("--window is for --model window, which seq2seq does not offer: drop --window")
    s = _settings(opts)
    split = _split(s)
    if saved is not None:
        src_vocab, tgt_vocab = Vocab.from_dict(saved["vocab"]), Vocab.from_dict(saved["target_vocab"])
    else:
        src_vocab = Vocab.build(list(split.train.entries), unit=s["unit"], fold_ascii=s["fold_ascii"])
        tgt_vocab = Vocab.build([" ".join(t) for _, t in split.train.pairs()], unit="word")
    tr_src, tr_tgt = _encode_pairs(split.train, src_vocab, tgt_vocab)
    va_src, va_tgt = _encode_pairs(split.val, src_vocab, tgt_vocab)
    if not tr_src or not va_src:
        raise ValueError("no training or validation source has a symbol left (is --fold-ascii removing everything?)")
    bs = int(opts.resolved("batch_size", DEFAULTS))
    train_b = _pair_batches(tr_src, tr_tgt, bs, opts.seed)
    val_b = _pair_batches(va_src, va_tgt, bs, opts.seed).ordered()
    extra = {"settings": s, "split": split, "target_vocab": tgt_vocab, "num_train_pairs": len(tr_src)}
    return Prepared(train_b.epoch, val_b, split.record, src_vocab, [], extra=extra)


# ---------------------------------------------------------------------------------------------------------- use
def _vocabs(run: Run) -> tuple[Vocab, Vocab]:
    return run.vocab, Vocab.from_dict(run.config["target_vocab"])


def decode(model: Seq2Seq, sources: Sequence[list[int]], beam: int, batch_size: int = DECODE_BATCH) -> list[list[int]]:
    """Outputs of ``model`` for every source: beam search (``beam=1``: greedy), in batches of similar lengths, with
    :func:`max_output_len` of each batch's longest source."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        srcs = [sources[i] for i in chunk]
        max_len = max_output_len(max(map(len, srcs)))
        hyps = model.greedy(srcs, max_len) if beam == 1 else model.beam_search(srcs, beam, max_len)
        for i, h in zip(chunk, hyps, strict=True):
            out[i] = h
    return out


def _score(run: Run, lex: Lexicon, beam: int) -> dict[str, Any]:
    """Beam and greedy WER/PER and the teacher-forced loss of ``run`` on ``lex``."""
    src_vocab, tgt_vocab = _vocabs(run)
    words = [w for w in lex.entries if src_vocab.encode(w)]
    if not words:
        raise ValueError(f"{lex.source}: no source has a symbol the model knows")
    ids = [src_vocab.encode(w) for w in words]
    refs = [lex.entries[w] for w in words]
    metrics: dict[str, Any] = {}
    for name, width in (("", beam), ("greedy_", 1)):
        if name and beam == 1:  # the beam was greedy already
            metrics[f"test_{name}wer"], metrics[f"test_{name}per"] = metrics["test_wer"], metrics["test_per"]
            continue
        hyps = [tgt_vocab.decode(h).split() for h in decode(run.model, ids, width)]
        scores = g2p_scores(refs, hyps)
        metrics[f"test_{name}wer"] = round(scores["wer"], 4)
        metrics[f"test_{name}per"] = round(scores["per"], 4)
    sources, targets = _encode_pairs(lex.subset(words), src_vocab, tgt_vocab)
    metrics["test_loss"] = round(evaluate(run.model, _pair_batches(sources, targets, 256, 0).ordered())["loss"], 4)
    metrics["beam"] = beam
    return metrics


def evaluate_app(run: Run, path: str | None) -> dict[str, Any]:
    """``rnnkit evaluate RUN [--data F]``: scores on ``F`` (a pairs file or ``embedded:cmudict``), else on the
    run's own test split."""
    d = run.config["data"]
    lower = bool(d.get("lowercase"))
    if path is not None:
        lex = _read_lexicon(path, d["unit"], lower)
    elif d["test_data"]:
        lex = _read_lexicon(d["test_data"], d["unit"], lower)
    else:
        # only the test part: with --val-data, split.json's "val" lists words of that other file
        record = read_split(run.path)
        if "test" not in record:
            raise ValueError(f"{run.path / SPLIT_FILE} has no test list; it was not written by rnnkit train")
        lex = _read_lexicon(d["data"], d["unit"]).subset(record["test"])
    metrics = _score(run, lex, d["beam"])
    metrics["num_items"] = len(lex)
    return metrics


def predict_app(run: Run, items: list[str], **options: Any) -> list[str]:
    """``rnnkit predict RUN WORD... [--beam N] [--data F]``: one line ``word: S Y M B O L S`` per word.

    ``--data F`` reads one word per line (a pairs file's sources: the text before a tab). An unknown symbol is a
    ``ValueError`` naming it.
    """
    if options.get("horizon") is not None:
        raise ValueError("--horizon is for forecast runs; a seq2seq run ends its outputs itself")
    items = list(items)
    if options.get("data") is not None:
        text = Path(options["data"]).expanduser().read_text(encoding="utf-8-sig")
        items += [line.split("\t", 1)[0].strip() for line in text.splitlines() if line.strip()]
    if not items:
        raise ValueError("give words to transcribe (rnnkit predict RUN WORD...) or --data FILE")
    beam, ids = _beam_and_sources(run, items, options)
    hyps = decode(run.model, ids, beam)
    tgt_vocab = _vocabs(run)[1]
    return [f"{item}: {tgt_vocab.decode(h)}" for item, h in zip(items, hyps, strict=True)]


def _beam_and_sources(run: Run, items: list[str], options: dict[str, Any]) -> tuple[int, list[list[int]]]:
    """The beam width (the request's, else the run's) and the source ids of ``items`` (an unknown symbol or an
    empty word is a ``ValueError``)."""
    beam = options.get("beam") or run.config["data"]["beam"]
    if not isinstance(beam, int) or beam < 1:
        raise ValueError(f"--beam must be a positive integer, got {beam!r}")
    ranges.check(beam=beam)
    src_vocab = run.vocab
    lower = run.config["data"].get("lowercase", False)
    ids = []
    cap = int(ranges.RANGES["seq2seq_item"].hi)
    for item in items:
        if not item.strip():
            raise ValueError("a word to transcribe is empty")
        if len(item) > cap:
            raise ValueError(
                f"item {item[:20]!r}... has {len(item)} symbols, more than the {cap} a seq2seq run transcribes "
                "(decoding time grows with the square of the length); split it into words"
            )
        ids.append(src_vocab.encode(item.lower() if lower else item, strict=True))
    return beam, ids


def serve_predict_app(run: Run, items: list[str], **options: Any) -> dict[str, Any]:
    """``rnnkit serve``'s ``/predict`` answer for a seq2seq run: ``lines`` (what ``rnnkit predict`` prints) and,
    per item, the beam's candidates best first (``output`` and its ``score``, the summed log-probability of the
    symbols and EOS; :meth:`~rnnkit.tasks.seq2seq.Seq2Seq.beam_candidates`). The first candidate is the line's
    output (all items are decoded with one ``max_len``, as :func:`decode` does for up to ``DECODE_BATCH``)."""
    lines = predict_app(run, items, **options)
    beam, ids = _beam_and_sources(run, items, options)
    tgt_vocab = _vocabs(run)[1]
    found = run.model.beam_candidates(ids, beam, max_output_len(max(map(len, ids))))
    outputs = [
        {"item": item, "candidates": [{"output": tgt_vocab.decode(h), "score": score} for h, score in cands]}
        for item, cands in zip(items, found, strict=True)
    ]
    return {"lines": lines, "outputs": outputs}


def summary(metrics: dict[str, Any]) -> str:
    """The one line ``rnnkit train`` prints."""
    return (
        f"test WER {metrics['test_wer']:.3f}, PER {metrics['test_per']:.3f} (beam {metrics['beam']}); "
        f"greedy WER {metrics['test_greedy_wer']:.3f}, PER {metrics['test_greedy_per']:.3f}"
    )


# a run folder is rebuilt through rnnkit.tasks.build_model, which finds task models in TASKS
TASKS.setdefault(APP, Seq2Seq)


@register_kind
class Seq2SeqKind(RunKind):
    """``--task seq2seq``: an encoder-decoder with attention (word → phonemes by default)."""

    predict_flags = ("data", "beam")
    name = APP
    embedded = tuple(CMUDICT)
    app = APP
    defaults = DEFAULTS
    help = "seq2seq (encoder-decoder)"
    ignores = ("text_column", "label_column", "conditional")
    flags = (
        Flag(
            "--max-items",
            {
                "type": ranged("max_items"),
                "default": None,
                "help": "seq2seq/tag: use at most this many items (default: the task's)",
            },
        ),
        Flag(
            "--beam",
            {"type": ranged("beam"), "default": None, "help": "seq2seq: beam width at test time (default: the task's)"},
        ),
    )

    def options_from_config(self, saved: dict[str, Any], opts: RunOptions) -> RunOptions:
        return _options_from_config(saved, opts)

    def prepare(self, opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
        return _prepare(opts, saved)

    def model_config(self, opts: RunOptions, prepared: Prepared) -> ModelConfig:
        return ModelConfig(
            task=APP,
            model=opts.resolved("model", DEFAULTS),
            vocab_size=len(prepared.vocab),
            target_vocab_size=len(prepared.extra["target_vocab"]),
            embed_dim=int(opts.resolved("embed_dim", DEFAULTS)),
            hidden_size=int(opts.resolved("hidden_size", DEFAULTS)),
            num_layers=int(opts.resolved("num_layers", DEFAULTS)),
            bidirectional=bool(opts.resolved("bidirectional", DEFAULTS)),
            dropout=float(opts.resolved("dropout", DEFAULTS)),
            attention=True,
        )

    def trainer_settings(self, opts: RunOptions, prepared: Prepared) -> TrainConfig:
        embedded = prepared.extra["settings"]["data"] in CMUDICT
        return opts.train_config(
            DEFAULTS,
            max_minutes=DEFAULT_MAX_MINUTES if opts.max_minutes is None and embedded else opts.max_minutes,
            monitor="loss",
        )

    def build(self, mcfg: ModelConfig) -> Seq2Seq:
        return Seq2Seq(mcfg)  # bad settings fail here, before the run folder is touched

    def data_config(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        return {"source": prepared.extra["split"].train.source, **prepared.extra["settings"]}

    def config_extra(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        return {"vocab": prepared.vocab.to_dict(), "target_vocab": prepared.extra["target_vocab"].to_dict()}

    def score(self, run: Run, prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        split = prepared.extra["split"]
        metrics: dict[str, Any] = {"app": APP, "task": APP, "model": run.config["model"]["model"]}
        metrics.update(_score(run, split.test, prepared.extra["settings"]["beam"]))
        metrics["num_train"], metrics["num_val"], metrics["num_test"] = (
            len(split.train),
            len(split.val),
            len(split.test),
        )
        metrics["num_train_pairs"] = prepared.extra["num_train_pairs"]
        return metrics, {}

    def evaluate(self, run: Run, path: str | None, **columns: Any) -> dict[str, Any]:
        return evaluate_app(run, path)

    def predict(self, run: Run, items: list[str], **options: Any) -> list[str]:
        return predict_app(run, items, **options)

    def serve_predict(self, run: Run, items: list[str], **options: Any) -> dict[str, Any]:
        return serve_predict_app(run, items, **options)

    def summary(self, metrics: dict[str, Any]) -> str:
        return summary(metrics)

    def gradient_batch(self, run: Run, size: int) -> Batch:
        """The first ``size`` pairs of the saved test part (the flow is the encoder's: the source steps)."""
        d = run.config["data"]
        if d["test_data"]:
            lex = _read_lexicon(d["test_data"], d["unit"], bool(d.get("lowercase")))
        else:
            lex = _read_lexicon(d["data"], d["unit"]).subset(read_split(run.path)["test"] or [])
        sources, targets = _encode_pairs(lex, *_vocabs(run))
        if not sources:
            raise ValueError(f"{run.path}: its test part has no source with a symbol the model knows")
        return collate_pairs(sources[:size], targets[:size])
