"""The ``lm`` task app: a character-level language model over one long text, trained with truncated BPTT.

``rnnkit train --task lm --data BOOK.txt [--tbptt K1,K2] [--val-data F] [--test-data F]`` reads a UTF-8 text,
builds a character vocabulary from its training part and trains a :class:`LanguageModel` (an LSTM by default) on it
as ``B = --batch-size`` parallel streams (:class:`~rnnkit.data.stream.TokenStream`) with truncated BPTT
(``TrainConfig.tbptt``): an update every ``K1`` characters, gradients through the last ``K2``, the state carried
across the whole text. Training memory does not grow with the text beyond the tokens (about a byte each): the
activations are ``O(B·K2·H)`` (the counting-bigram baseline briefly needs about 8 bytes per token). Without
explicit files the text is cut in three contiguous parts: the first 90% trains, the next 5% validates, the last
5% tests (``split.json`` records the character offsets and the file's SHA-256).

No book-length text ships with the packages rnnkit depends on, so ``--data`` is required (any long UTF-8 file:
a novel, a code base concatenated, a log); :func:`rnnkit.data.stream.synthetic_text` makes English-like text of any
length for tests and benchmarks.

Metrics (``metrics.json``): ``test_nll_per_char`` (mean negative log-likelihood of each next character, nats),
``test_bits_per_char`` (the same in bits), ``test_perplexity``, ``test_char_accuracy`` and the counting-bigram
baseline ``bigram_bits_per_char`` (add-α smoothing picked on the validation part), all over the same predictions:
the text read as ``min(B, ⌊(N − 1)/256⌋)`` parallel rows, state carried, every character but each row's first
predicted.

``rnnkit evaluate RUN [--data F]`` scores the saved test part or another text; ``rnnkit predict RUN TEXT ...
[--data F] [--horizon N] [--top-k K]`` continues each TEXT (or the file's text) with ``N`` characters (default
200), sampling among the ``K`` likeliest at each step with a fixed seed, and prints one line per item (newlines in
the output shown as ``\\n``).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit import ranges
from rnnkit.data.batching import IGNORE_INDEX, Batch
from rnnkit.data.datasets import _existing, _read_text
from rnnkit.data.stream import TokenStream, char_vocab, encode_text
from rnnkit.data.vocab import BOS, EOS, PAD, UNK, Vocab
from rnnkit.runs.folder import Run, read_split
from rnnkit.runs.kind import Flag, Prepared, RunKind, register_kind
from rnnkit.runs.options import RunOptions, absolute_path, restore_options
from rnnkit.runs.schema import TextSplitFile
from rnnkit.tasks import TASKS, ModelConfig, SequenceGenerator
from rnnkit.train import TrainConfig, evaluate

__all__ = ["APP", "DEFAULTS", "LanguageModel", "continue_text", "parse_tbptt", "score_text"]

APP = "lm"
EVAL_ROW = 256
"""Evaluation reads a text as rows of at least this many characters (fewer rows for a short text)."""
EVAL_CHUNK = 512
"""Steps per evaluation batch (the state is carried, so this changes speed only, not the result)."""

DEFAULTS: dict[str, Any] = {
    "model": "lstm",
    "embed_dim": 32,
    "hidden_size": 256,
    "num_layers": 1,
    "bidirectional": False,
    "dropout": 0.1,
    "epochs": 5,
    "batch_size": 32,
    "lr": 3e-3,
    "tbptt": [64, 64],  # K1, K2
}


class LanguageModel(SequenceGenerator):
    """A :class:`~rnnkit.tasks.generator.SequenceGenerator` that reads a stream chunk by chunk, state carried.

    Same parameters (and state_dict) as the generator it extends; adds ``forward_stateful(batch, state) ->
    (logits (B, T, V), loss, state)``, the interface truncated BPTT trains through (``rnnkit.train``): ``state`` is
    the core's state after the previous chunk (None: the initial state), the returned state is the one after this
    chunk's last step. For a recurrent core it is the layers' ``hx`` (batch on axis 1); for the window model the
    context of the last ``W − 1`` inputs ``(B, W−1, E)`` (batch on axis 0), see :attr:`state_batch_dim`.
    """

    @property
    def state_batch_dim(self) -> int:
        """The batch axis of the state tensors (read by the trainer to shard and save the carried state)."""
        return 0 if getattr(self.core, "per_step_readout", False) else 1

    def forward_stateful(self, batch: Batch, state: Any = None) -> tuple[Tensor, Tensor | None, Any]:
        c = self._condition(batch.condition, len(batch))
        x = self._inputs(batch.inputs, c)  # (B, T, E)
        if getattr(self.core, "per_step_readout", False):
            # the window core's state is its context: the W − 1 inputs before the chunk
            out, _ = self.core(x, state, lengths=batch.lengths)  # (B, T, H)
            W1 = self.core.window - 1
            context = state if state is not None else x.new_zeros(x.shape[0], W1, x.shape[2])  # (B, W−1, E)
            state = torch.cat([context, x], dim=1)[:, x.shape[1] :] if W1 else context  # (B, W−1, E)
        else:
            if state is None:
                state = self._initial_state(c)
            out, state = self.core(x, state, lengths=batch.lengths)  # (B, T, H)
        logits = self.head(self.drop(out))  # (B, T, V)
        loss = None
        if batch.targets is not None:
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return logits, loss, state


# until rnnkit.tasks.TASKS lists "lm" itself, load_run's build_model needs this entry to rebuild lm runs
TASKS.setdefault(APP, LanguageModel)


def parse_tbptt(value: Any) -> tuple[int, int]:
    """``"K1,K2"``, ``"K"`` (K1 = K2), ``[K1, K2]`` or ``K`` → ``(K1, K2)`` with ``1 <= K1 <= K2``."""
    try:
        if isinstance(value, str):
            parts = [int(p) for p in value.split(",")]
        elif isinstance(value, int) and not isinstance(value, bool):
            parts = [value]
        else:
            parts = [int(p) for p in value]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] < 1 or parts[1] < parts[0]:
        raise ValueError(
            f"--tbptt takes K1,K2 with 1 <= K1 <= K2 (an update every K1 steps, gradients through the last K2), "
            f"e.g. 64,64 or 32,128; got {value!r}"
        )
    return parts[0], parts[1]


# ---------------------------------------------------------------------------------------------------------- data
def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read(path: str, what: str) -> str:
    text = _read_text(_existing(path, f"{what} file"))
    if not text:
        raise ValueError(f"{path} is empty: a language model needs text to read")
    return text


def _parts(opts: RunOptions) -> tuple[dict[str, str], dict[str, Any]]:
    """The train / val / test texts and the split record."""
    if opts.data is None:
        raise ValueError(
            "--task lm needs --data FILE: a long UTF-8 text (a book, a corpus); no book-length text ships with "
            "rnnkit's dependencies"
        )
    text = _read(opts.data, "--data")
    record: dict[str, Any] = {"data_chars": len(text), "data_sha256": _sha256(text), "seed": opts.seed}
    if opts.val_data is None and opts.test_data is None:
        n = len(text)
        a, b = int(n * 0.9), int(n * 0.95)
        parts = {"train": text[:a], "val": text[a:b], "test": text[b:]}
        record.update(train=[0, a], val=[a, b], test=[b, n], explicit=False)
    else:
        # an explicit file takes a part's place; what --data still has to give is cut contiguously
        val = _read(opts.val_data, "--val-data") if opts.val_data else None
        test = _read(opts.test_data, "--test-data") if opts.test_data else None
        n = len(text)
        cut = n if (val is not None and test is not None) else int(n * 0.95)  # the missing part: the last 5%
        rest = text[cut:]
        parts = {"train": text[:cut], "val": rest if val is None else val, "test": rest if test is None else test}
        record.update(train=[0, cut], explicit=True)
        if val is None:
            record["val"] = [cut, n]
        if test is None:
            record["test"] = [cut, n]
    for name, part in parts.items():
        if len(part) < 2:
            raise ValueError(
                f"the {name} part has {len(part)} characters: a language model needs at least 2 (give a longer "
                f"--data or an explicit file)"
            )
    return parts, record


def _eval_stream(ids: np.ndarray, max_rows: int) -> TokenStream:
    rows = max(1, min(max_rows, (len(ids) - 1) // EVAL_ROW))
    return TokenStream(ids, rows, EVAL_CHUNK)


def _bigram_counts(stream: TokenStream, V: int) -> np.ndarray:
    x, y = stream.pairs()
    counts = np.zeros((V, V), dtype=np.float64)
    np.add.at(counts, (x.numpy().astype(np.int64), y.numpy().astype(np.int64)), 1.0)
    return counts


def _bigram_nll(counts: np.ndarray, stream: TokenStream, alpha: float) -> float:
    probs = (counts + alpha) / (counts + alpha).sum(1, keepdims=True)
    x, y = stream.pairs()
    return float(-np.log(probs[x.numpy().astype(np.int64), y.numpy().astype(np.int64)]).mean())


def _bigram_baseline(train: TokenStream, val: TokenStream, test: TokenStream, V: int) -> float:
    """NLL (nats per char) on ``test`` of the counting bigram model of ``train``, α picked on ``val``."""
    counts = _bigram_counts(train, V)
    alpha = min((0.01, 0.03, 0.1, 0.3, 1.0), key=lambda a: _bigram_nll(counts, val, a))
    return _bigram_nll(counts, test, alpha)


# ---------------------------------------------------------------------------------------------------------- train
def _resumed_options(saved: dict[str, Any], opts: RunOptions) -> RunOptions:
    m, d = saved["model"], saved["data"]
    return restore_options(
        saved,
        opts,
        APP,
        fold_ascii=d["fold_ascii"],
        window=m.get("window", 5),
        embed_dim=m["embed_dim"],
        bidirectional=False,
        options={"tbptt": list(d["tbptt"])},
    )


def _prepare(opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
    """Read the three parts of the text, build (or restore) the character vocabulary, make the streams."""
    if opts.bidirectional:
        raise ValueError("a language model reads left to right: drop --bidirectional")
    k1, k2 = parse_tbptt(opts.resolved("tbptt", DEFAULTS))
    parts, record = _parts(opts)
    if saved is not None:
        vocab = Vocab.from_dict(saved["vocab"])
    else:
        vocab = char_vocab(parts["train"], fold_ascii=opts.fold_ascii)
    if len(vocab.symbols) < 2:
        raise ValueError(f"{opts.data}: the training text has {len(vocab.symbols)} distinct character(s); need 2+")
    ids = {name: encode_text(text, vocab) for name, text in parts.items()}
    bs = int(opts.resolved("batch_size", DEFAULTS))
    train_s = TokenStream(ids["train"], bs, k1)
    val_s = _eval_stream(ids["val"], bs)
    test_s = _eval_stream(ids["test"], bs)
    extra = {"parts": parts, "tbptt": (k1, k2), "test": test_s}
    return Prepared(train_s, val_s, record, vocab, [], extra=extra)


# ---------------------------------------------------------------------------------------------------------- use
def score_text(model: nn.Module, stream: TokenStream) -> dict[str, Any]:
    """Next-character metrics of ``model`` (a :class:`LanguageModel`) on ``stream``, state carried."""
    out = evaluate(model, stream, stateful=True)
    nll = out["loss"]
    return {
        "test_nll_per_char": round(nll, 4),
        "test_bits_per_char": round(nll / math.log(2), 4),
        "test_perplexity": round(math.exp(min(nll, 700.0)), 4),
        "test_char_accuracy": round(out.get("accuracy", float("nan")), 4),
        "test_loss": round(nll, 4),
        "num_predicted_chars": stream.tokens_used,
    }


def _stateful(run: Run) -> LanguageModel:
    """The run's model as a :class:`LanguageModel` (load_run may have built the plain generator)."""
    if isinstance(run.model, LanguageModel):
        return run.model.eval()
    model = LanguageModel(ModelConfig.from_dict(run.config["model"]))
    model.load_state_dict(run.model.state_dict())
    return model.eval()


def _saved_test(run: Run) -> str:
    d = run.config["data"]
    if d["test_data"]:
        return _read(d["test_data"], "test")
    split = read_split(run.path, TextSplitFile)
    text = _read(d["data"], "training data")
    if split.get("test") is None or _sha256(text) != split.get("data_sha256"):
        raise ValueError(
            f"{d['data']} changed since this run was trained, so its test part is gone; evaluate on a file with --data"
        )
    a, b = split["test"]
    return text[a:b]


def _evaluate(run: Run, path: str | None) -> dict[str, Any]:
    text = _saved_test(run) if path is None else _read(path, "--data")
    ids = encode_text(text, run.vocab)
    if len(ids) < 2:
        raise ValueError("the text to evaluate has fewer than 2 characters")
    stream = _eval_stream(ids, int(run.config["train"]["batch_size"]))
    metrics = score_text(_stateful(run), stream)
    metrics["unknown_chars"] = int((ids == UNK).sum())
    metrics["num_chars"] = len(text)
    return metrics


@torch.no_grad()
def continue_text(
    model: LanguageModel,
    vocab: Vocab,
    prefix: str,
    length: int = 200,
    top_k: int | None = 3,
    temperature: float = 1.0,
    seed: int = 0,
) -> str:
    """``length`` characters that follow ``prefix``, drawn one at a time (top-``k`` sampling, seeded).

    The prefix is read in chunks with the state carried (streaming inference: any prefix length, flat memory);
    unknown characters in it raise ValueError naming them.
    """
    if not prefix:
        raise ValueError("a text to continue is empty; give at least one character")
    if length < 1:
        raise ValueError(f"the continuation length must be >= 1, got {length}")
    ranges.check(temperature=temperature, top_k=top_k, seed=seed)
    ids = torch.as_tensor(vocab.encode(prefix, strict=True), dtype=torch.long).unsqueeze(0)  # (1, N)
    model.eval()
    device = model.head.weight.device
    state = None
    logits = None
    for start in range(0, ids.shape[1], EVAL_CHUNK):
        piece = ids[:, start : start + EVAL_CHUNK].to(device)  # (1, k)
        batch = Batch(inputs=piece, lengths=torch.tensor([piece.shape[1]], device=device))
        logits, _, state = model.forward_stateful(batch, state)  # (1, k, V)
    gen = torch.Generator(device=device).manual_seed(seed)
    out: list[int] = []
    for _ in range(length):
        scores = logits[:, -1] / max(temperature, 1e-6)  # (1, V)
        scores[:, [PAD, BOS, EOS, UNK]] = -float("inf")  # never targets of a stream model
        if top_k is not None and top_k < scores.shape[-1]:
            kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]  # (1, 1)
            scores = scores.masked_fill(scores < kth, -float("inf"))
        nxt = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=gen)  # (1, 1)
        out.append(int(nxt))
        batch = Batch(inputs=nxt, lengths=torch.ones(1, dtype=torch.long, device=device))
        logits, _, state = model.forward_stateful(batch, state)  # (1, 1, V)
    return vocab.decode(out)


def _predict(run: Run, items: list[str], **options: Any) -> list[str]:
    texts = list(items)
    if options.get("data"):
        texts.append(_read(options["data"], "--data"))
    if not texts:
        raise ValueError("give a TEXT to continue (or --data FILE)")
    length = int(options.get("horizon") or 200)
    model = _stateful(run)
    lines = []
    for text in texts:
        more = continue_text(model, run.vocab, text, length, top_k=options.get("top_k", 3))
        lines.append((text + more).replace("\n", "\\n"))
    return lines


def _summary(metrics: dict[str, Any]) -> str:
    return (
        f"test {metrics['test_bits_per_char']:.3f} bits/char ({metrics['test_nll_per_char']:.3f} nats, perplexity "
        f"{metrics['test_perplexity']:.2f}); counting-bigram baseline {metrics['bigram_bits_per_char']:.3f} bits/char"
    )


@register_kind
class LanguageModelKind(RunKind):
    """``--task lm``: a character language model over one long text, truncated BPTT."""

    predict_flags = ("data", "top_k", "horizon")
    name = APP
    app = APP
    defaults = DEFAULTS
    help = "lm (a character language model over one long text, truncated BPTT)"
    ignores = ("text_column", "label_column", "conditional")
    flags = (
        Flag(
            "--tbptt",
            {
                "default": None,
                "metavar": "K1,K2",
                "help": "lm: truncated BPTT, an update every K1 characters with gradients through the last K2 "
                "(K1 <= K2; one number: K1 = K2) (default: the task's, 64,64)",
            },
            convert=lambda value: list(parse_tbptt(value)),
            only="--tbptt trains one long stream: use it with --task lm",
        ),
    )

    def options_from_config(self, saved: dict[str, Any], opts: RunOptions) -> RunOptions:
        return _resumed_options(saved, opts)

    def check_options(self, opts: RunOptions) -> RunOptions:
        if opts.unit != "char":
            raise ValueError("--task lm models characters: drop --unit word")
        if "tbptt" in opts.options and opts.options["tbptt"] is not None:
            opts.options["tbptt"] = list(parse_tbptt(opts.options["tbptt"]))
        return opts

    def prepare(self, opts: RunOptions, saved: dict[str, Any] | None) -> Prepared:
        return _prepare(opts, saved)

    def model_config(self, opts: RunOptions, prepared: Prepared) -> ModelConfig:
        return ModelConfig(
            task=APP,
            model=opts.resolved("model", DEFAULTS),
            vocab_size=len(prepared.vocab),
            embed_dim=int(opts.resolved("embed_dim", DEFAULTS)),
            hidden_size=int(opts.resolved("hidden_size", DEFAULTS)),
            num_layers=int(opts.resolved("num_layers", DEFAULTS)),
            bidirectional=False,
            dropout=float(opts.resolved("dropout", DEFAULTS)),
            window=5 if opts.window is None else int(opts.window),
        )

    def trainer_settings(self, opts: RunOptions, prepared: Prepared) -> TrainConfig:
        return opts.train_config(DEFAULTS, tbptt=prepared.extra["tbptt"])

    def build(self, mcfg: ModelConfig) -> LanguageModel:
        return LanguageModel(mcfg)

    def data_config(self, opts: RunOptions, prepared: Prepared) -> dict[str, Any]:
        return {
            "source": opts.data,
            # absolute, so that `evaluate RUN` and `--resume` find the data from any working directory
            "data": absolute_path(opts.data),
            "val_data": absolute_path(opts.val_data),
            "test_data": absolute_path(opts.test_data),
            "fold_ascii": opts.fold_ascii,
            "tbptt": list(prepared.extra["tbptt"]),
            "seed": opts.seed,
        }

    def score(self, run: Run, prepared: Prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        k1, k2 = prepared.extra["tbptt"]
        parts = prepared.extra["parts"]
        metrics: dict[str, Any] = {"app": APP, "task": APP, "model": run.config["model"]["model"]}
        metrics.update(score_text(run.model, prepared.extra["test"]))
        bigram = _bigram_baseline(prepared.train_batches, prepared.val_batches, prepared.extra["test"], len(run.vocab))
        metrics["bigram_nll_per_char"] = round(bigram, 4)
        metrics["bigram_bits_per_char"] = round(bigram / math.log(2), 4)
        metrics.update(
            num_train_chars=len(parts["train"]),
            num_val_chars=len(parts["val"]),
            num_test_chars=len(parts["test"]),
            vocab_size=len(run.vocab),
            tbptt=f"{k1},{k2}",
        )  # "processes" is added by RunKind.run for every kind
        return metrics, {}

    def evaluate(self, run: Run, path: str | None, **columns: Any) -> dict[str, Any]:
        return _evaluate(run, path)

    def predict(self, run: Run, items: list[str], **options: Any) -> list[str]:
        return _predict(run, items, **options)

    def summary(self, metrics: dict[str, Any]) -> str:
        return _summary(metrics)

    def gradient_batch(self, run: Run, size: int) -> Batch:
        """The first chunk of the saved test text, as ``size`` rows (fewer when the text is short)."""
        ids = encode_text(_saved_test(run), run.vocab)
        if len(ids) < 2:
            raise ValueError(f"{run.path}: its test text has fewer than 2 characters")
        return next(iter(_eval_stream(ids, size)))
