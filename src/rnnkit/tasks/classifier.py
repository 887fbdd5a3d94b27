"""Many→one: read a whole sequence, predict one label (the lecture's name → language demo)."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from rnnkit.data.batching import Batch
from rnnkit.data.vocab import BOS, EOS, PAD, UNK
from rnnkit.masks import length_mask
from rnnkit.tasks.base import RecurrentTaskModel
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.modes import eval_mode

__all__ = [
    "NGRAM_ORDERS",
    "NGRAM_WIDTHS",
    "POOLS",
    "HashedNgrams",
    "NgramConvolutions",
    "SequenceClassifier",
    "drop_tokens",
    "ngram_hash",
]

_WINDOW_LOSSES = ("sum", "aggregate")
POOLS = ("last", "mean", "max")
"""What may summarise a sequence (``ModelConfig.pool``, "+"-joined, concatenated in the order given)."""


NGRAM_WIDTHS = (2, 3, 4, 5)
"""Widths of the n-gram convolutions (``ModelConfig.ngram_filters`` filters each)."""


class NgramConvolutions(nn.Module):
    """Character n-gram detectors beside the recurrent core (a char-CNN branch, Kim 2014 / Zhang et al. 2015).

    For every width ``k`` in :data:`NGRAM_WIDTHS`: a 1-D convolution of ``F`` filters over the embedded sequence,
    zero-padded by ``k − 1`` on both sides (so the windows that overhang the first or last element see the
    name's start and end), ReLU, then the max over the ``length + k − 1`` windows of each sequence. Elements past
    a sequence's length are zeroed before the convolution, so padding never changes a result.

    ``forward(x (B, T, I), lengths (B,)) -> (B, len(NGRAM_WIDTHS)·F)``.
    """

    def __init__(self, input_size: int, filters: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(input_size, filters, k, padding=k - 1) for k in NGRAM_WIDTHS)
        self.size = len(NGRAM_WIDTHS) * filters

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        T = x.shape[1]
        valid = length_mask(lengths, T, device=x.device)  # (B, T)
        h = (x * valid.unsqueeze(2).to(x.dtype)).transpose(1, 2)  # (B, I, T), zero past each end
        parts = []
        for k, conv in zip(NGRAM_WIDTHS, self.convs, strict=True):
            y = torch.relu(conv(h))  # (B, F, T + k − 1): window j reads elements j − k + 1 … j
            windows = length_mask(lengths + (k - 1), T + k - 1, device=x.device)  # (B, T + k − 1)
            parts.append(y.masked_fill(~windows.unsqueeze(1), -float("inf")).amax(2))  # (B, F)
        return torch.cat(parts, dim=1)  # (B, 4·F)


NGRAM_ORDERS = (1, 2, 3, 4, 5)
"""Lengths of the hashed character n-grams (``ModelConfig.ngram_buckets``), as the practitioner's linear model
(TF-IDF of character 1–5-grams) reads them."""

_HASH_PRIME = 1_000_003


def ngram_hash(windows: Tensor, buckets: int) -> Tensor:
    """The bucket of every n-gram: ``windows`` ``(..., n)`` int64 token ids → ``(...)`` int64 in ``[0, buckets)``.

    A polynomial hash reduced after every element, ``h ← (h·P + id) mod buckets`` from ``h = n`` (P = 1,000,003),
    so n-grams of different orders hash apart and no intermediate exceeds 2⁶³ (buckets ≤ 2²⁴, ids < 2³¹): the
    same buckets on every platform and in an exported graph."""
    n = windows.shape[-1]
    h = torch.full(windows.shape[:-1], n, dtype=torch.int64, device=windows.device)
    for k in range(n):
        h = torch.remainder(h * _HASH_PRIME + windows[..., k], buckets)
    return h


class HashedNgrams(nn.Module):
    """A linear model over the hashed character n-grams of a token sequence, added to the classifier's logits
    (the bag of n-grams of fastText, Joulin et al. 2017, trained jointly with the recurrent core).

    Each sequence is framed as ``BOS x_1 … x_len EOS``; every n-gram of it (n in :data:`NGRAM_ORDERS`, windows
    inside the frame) is hashed to one of ``buckets`` rows by :func:`ngram_hash`, and the logits are
    ``Σ_g W[bucket(g)] / √N`` over the ``N`` n-grams of the sequence (``W`` ``(buckets, C)``, zero at the start so
    a new model begins as the recurrent classifier alone). While training each n-gram is dropped with probability
    ``dropout`` and ``N`` counts the kept ones: without it the bag memorises the training names' rare 4- and
    5-grams within an epoch and the recurrent core stops learning (docs/defaults-names.md).

    ``forward(ids (B, T) int64, lengths (B,)) -> (B, C)``; ids past a sequence's length never change a result.
    """

    def __init__(self, buckets: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        if not 1 <= buckets <= 2**24:
            raise ValueError(f"ngram_buckets must lie in [1, 2**24], got {buckets}")
        if not 0 <= dropout < 1:
            raise ValueError(f"ngram_dropout must lie in [0, 1), got {dropout}")
        self.buckets, self.dropout = buckets, dropout
        self.bag = nn.EmbeddingBag(buckets, num_classes, mode="sum")
        nn.init.zeros_(self.bag.weight)

    def grams(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The buckets ``(B, N)`` of every window of every order and whether each lies inside its sequence's
        frame ``(B, N)`` bool, ``N = Σ_n (T + 3 − n)``."""
        B, T = ids.shape
        framed = torch.cat([ids.new_full((B, 1), BOS), ids.long(), ids.new_full((B, 1), PAD)], dim=1)  # (B, T+2)
        rows = torch.arange(B, device=ids.device)
        framed = framed.index_put((rows, lengths.long() + 1), framed.new_tensor(EOS))  # EOS after each end
        last = lengths.long().unsqueeze(1) + 1  # (B, 1) the frame's last index
        hashed, inside = [], []
        for n in NGRAM_ORDERS:
            if n > T + 2:
                break
            windows = framed.unfold(1, n, 1)  # (B, T + 3 − n, n): window j reads frame j … j + n − 1
            start = torch.arange(windows.shape[1], device=ids.device).unsqueeze(0)  # (1, T + 3 − n)
            hashed.append(ngram_hash(windows, self.buckets))
            inside.append(start + (n - 1) <= last)
        return torch.cat(hashed, dim=1), torch.cat(inside, dim=1)

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        buckets, inside = self.grams(ids, lengths)
        keep = inside
        if self.training and self.dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.dropout)
        weight = keep.to(self.bag.weight.dtype)
        weight = weight / weight.sum(1, keepdim=True).clamp(min=1).sqrt()  # (B, N): 1/√N on each kept n-gram
        return self.bag(buckets, per_sample_weights=weight)  # (B, C)


def drop_tokens(ids: Tensor, p: float) -> Tensor:
    """``ids`` ``(B, T)`` with each non-pad symbol replaced by UNK with probability ``p`` (torch's global RNG):
    character dropout, so a model cannot lean on one symbol of a name."""
    if p <= 0:
        return ids
    hit = (torch.rand(ids.shape, device=ids.device) < p) & (ids != PAD)
    return ids.masked_fill(hit, UNK)


def pool_names(pool: str) -> list[str]:
    """The parts of a ``pool`` setting ("last+max" → ["last", "max"]); an unknown or repeated part is an error."""
    parts = pool.split("+")
    if not parts or any(p not in POOLS for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"pool must be {', '.join(POOLS)} or several of them joined by '+', got {pool!r}")
    return parts


class SequenceClassifier(RecurrentTaskModel):
    """Embedding (tokens) → recurrent core → last valid state of every direction → linear head over C classes.

    ``forward(batch) -> (logits (B, C), loss)``; ``loss`` is the mean cross-entropy over the batch, None when
    ``batch.targets`` is None. Padding never changes a result: the core runs with ``batch.lengths`` and the state
    taken is each sequence's last valid one (the reverse direction's after it has read the first element).

    Inputs are token ids, real vectors or per-step tensors such as video frames (``config.frame_encoder="cnn"``
    or any ``(N, *S) → (N, E)`` module passed as ``frame_module``; see :class:`~rnnkit.tasks.inputs.InputEncoder`).

    With a window core (``model="window"``, a core with ``per_step_readout``) every valid window ``j`` gets its
    own logits ``ŷ_j = head(f(w_j))`` (:meth:`window_logits`) and the lecture's losses apply
    (``config.window_loss``):

    - ``"aggregate"`` (default): ``l(Σ_j ŷ_j, y)``, cross-entropy of the summed logits of the valid windows,
      mean over the batch.
    - ``"sum"``: ``Σ_j l(ŷ_j, y)`` divided by the sequence's number of windows (so every sequence weighs the
      same, whatever its length), mean over the batch.

    ``config.pool`` other than ``"last"`` summarises the sequence by the masked ``mean`` and/or ``max`` over the
    top layer's valid outputs ``(B, T, D·H)`` (beside or instead of the last states), concatenated: the head
    reads ``(B, P·D·H)`` for ``P`` parts. ``config.label_smoothing`` smooths the training targets (the loss
    in eval mode is the plain cross-entropy); ``config.token_dropout`` replaces training symbols by UNK.

    At test time the windows' probabilities are averaged: the returned logits are ``log(mean_j softmax(ŷ_j))``
    (whatever the loss), so ``predict_proba`` gives the mean probabilities and accuracy is their argmax. For the
    argmax of the summed logits (the ``"aggregate"`` training objective), sum :meth:`window_logits` over the
    valid windows.
    """

    def __init__(self, config: ModelConfig, frame_module: nn.Module | None = None) -> None:
        if config.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got num_classes={config.num_classes}")
        super().__init__(config, config.num_classes, frame_module)
        self.per_window = bool(getattr(self.core, "per_step_readout", False))
        if self.per_window and config.window_loss not in _WINDOW_LOSSES:
            raise ValueError(f"window_loss must be one of {_WINDOW_LOSSES}, got {config.window_loss!r}")
        self.pools = pool_names(config.pool)
        if not 0 <= config.label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {config.label_smoothing}")
        if not 0 <= config.token_dropout < 1:
            raise ValueError(f"token_dropout must lie in [0, 1), got {config.token_dropout}")
        if self.pools != ["last"]:
            if self.per_window or self.summarizes:
                raise ValueError(
                    f"pool={config.pool!r} needs a recurrent core with per-step outputs, not {config.model!r}"
                )
            # the head reads every part (built after the default head, so a "last" model's weights are unchanged)
            self.head = nn.Linear(len(self.pools) * self.directions * config.hidden_size, config.num_classes)
        self.ngrams: NgramConvolutions | None = None
        if config.ngram_filters < 0:
            raise ValueError(f"ngram_filters must be >= 0, got {config.ngram_filters}")
        if config.ngram_filters > 0:
            if self.per_window or self.summarizes:
                raise ValueError(f"ngram_filters needs a recurrent core, not {config.model!r}")
            self.ngrams = NgramConvolutions(self.inputs.size, config.ngram_filters)
            self.head = nn.Linear(self.head.in_features + self.ngrams.size, config.num_classes)
        self.bag: HashedNgrams | None = None
        if config.ngram_buckets:
            if self.per_window or not self.inputs.tokens:
                raise ValueError(
                    f"ngram_buckets needs token inputs and a recurrent core (model {config.model!r}"
                    f"{', real-valued inputs' if not self.inputs.tokens else ''})"
                )
            self.bag = HashedNgrams(config.ngram_buckets, config.num_classes, config.ngram_dropout)

    def _batch(self, batch: Batch) -> Batch:
        """The batch the model reads: with character dropout while training on tokens."""
        p = self.config.token_dropout
        if self.training and p > 0 and self.inputs.tokens:
            return replace(batch, inputs=drop_tokens(batch.inputs, p))
        return batch

    def encode(self, batch: Batch) -> Tensor:
        """The sequence summary fed to the head: ``(B, P·D·H)`` (``(B, D·H)`` for the last states), and with
        ``ngram_filters`` the n-gram features after it, ``(B, P·D·H + 4·F)``."""
        batch = self._batch(batch)
        if self.pools == ["last"] and self.ngrams is None:
            return self.last_states(batch)
        x = self.inputs(batch.inputs, batch.lengths)  # (B, T, I)
        pooled = self._pool(x, batch.lengths)  # (B, P·D·H)
        if self.ngrams is None:
            return pooled
        return torch.cat([pooled, self.ngrams(x, batch.lengths)], dim=1)  # (B, P·D·H + 4·F)

    def _pool(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The core's summary of the inputs ``x`` ``(B, T, I)``: the ``pool`` parts concatenated, ``(B, P·D·H)``."""
        out, h_n = self.core(x, lengths=lengths)  # (B, T, D·H)
        mask = length_mask(lengths, out.shape[1], device=out.device).unsqueeze(2)  # (B, T, 1)
        parts = []
        for name in self.pools:
            if name == "last":
                h = h_n[0] if isinstance(h_n, tuple) else h_n  # (L·D, B, H)
                last = h[-self.directions :]  # (D, B, H)
                parts.append(last.transpose(0, 1).reshape(last.shape[1], -1))
            elif name == "mean":
                n = mask.sum(1).clamp(min=1).to(out.dtype)  # (B, 1)
                parts.append((out * mask.to(out.dtype)).sum(1) / n)
            else:
                parts.append(out.masked_fill(~mask, -float("inf")).amax(1))
        return torch.cat(parts, dim=1)  # (B, P·D·H)

    def window_logits(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Window cores only: every window's logits ``(B, T, C)`` and the mask of valid windows ``(B, T)``."""
        if not self.per_window:
            raise ValueError(f"window_logits needs a window core, not {self.config.model!r}")
        out, _ = self.core(self.inputs(batch.inputs, batch.lengths), lengths=batch.lengths)  # (B, T, H)
        T = out.shape[1]
        mask = length_mask(batch.lengths, T, device=out.device)  # (B, T)
        return self.head(self.drop(out)), mask

    def _forward_windows(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        logits_j, mask = self.window_logits(batch)  # (B, T, C), (B, T)
        n = mask.sum(1).clamp(min=1)  # (B,) windows per sequence
        logp = torch.log_softmax(logits_j, dim=-1)  # (B, T, C)
        # log of the mean probability over the valid windows: softmax of it is that mean
        logits = torch.logsumexp(logp.masked_fill(~mask.unsqueeze(2), -float("inf")), dim=1)
        logits = logits - torch.log(n.to(logits.dtype)).unsqueeze(1)  # (B, C)
        loss = None
        if batch.targets is not None:
            if self.config.window_loss == "sum":
                idx = batch.targets.view(-1, 1, 1).expand(-1, logp.shape[1], 1)
                nll = -logp.gather(2, idx).squeeze(2)  # (B, T)
                nll = torch.where(mask, nll, torch.zeros_like(nll))
                loss = (nll.sum(1) / n).mean()
            else:
                summed = (logits_j * mask.unsqueeze(2).to(logits_j.dtype)).sum(1)  # (B, C): Σ_j ŷ_j
                loss = nn.functional.cross_entropy(summed, batch.targets)
        return logits, loss

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        if self.per_window:
            return self._forward_windows(batch)
        logits = self.head(self.drop(self.encode(batch)))  # (B, C)
        if self.bag is not None:  # the n-grams of the batch as given (character dropout is the core's)
            logits = logits + self.bag(batch.inputs, batch.lengths)
        loss = None
        if batch.targets is not None:
            smooth = self.config.label_smoothing if self.training else 0.0
            loss = nn.functional.cross_entropy(logits, batch.targets, label_smoothing=smooth)
        return logits, loss

    @torch.no_grad()
    def predict_proba(self, batch: Batch) -> Tensor:
        """Class probabilities ``(B, C)`` in eval mode (the module's mode is restored)."""
        with eval_mode(self):
            return torch.softmax(self(batch)[0], dim=-1)
