"""Many→many, unsynced: an encoder–decoder (sequence-to-sequence) model with greedy and beam-search decoding.

The lecture's mode (4), "sequence input and sequence output": an encoder RNN reads the source (a word's letters),
a decoder RNN writes the target (its phonemes) symbol by symbol, of a length of its own. Shape symbols: B batch,
S source length, T target length (EOS included), E embedding size, H hidden size, L layers, D encoder
directions, V source vocabulary, V' target vocabulary (ids 0..3 are PAD, BOS, EOS, UNK in both).

- Training is teacher-forced: the decoder reads ``[BOS, y_1, …, y_n]`` and predicts ``[y_1, …, y_n, EOS]``;
  the loss is the mean cross-entropy over non-padded target positions (EOS included).
- Padding is masked on both sides: the encoder runs with the source lengths (padded steps never change a
  state), attention gives padded source positions weight 0, and padded target positions are ignored by the loss
  (the decoder reads left to right, so they never reach a valid position either).
- Decoding (:meth:`Seq2Seq.greedy`, :meth:`Seq2Seq.beam_search`) runs the decoder's ``step`` on batches of items;
  :meth:`Seq2Seq.score` gives the teacher-forced log-probability of given outputs, an independent path to check it.

:func:`collate_pairs` turns ``(source ids, target ids)`` pairs into the one batch format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.data.batching import IGNORE_INDEX, Batch, collate_classification, collate_generation
from rnnkit.data.vocab import BOS, EOS, PAD, UNK
from rnnkit.dropout import Dropout
from rnnkit.masks import length_mask
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.fcn import check_summary_core
from rnnkit.tasks.inputs import InputEncoder
from rnnkit.tasks.modes import eval_mode
from rnnkit.tasks.registry import build_core

__all__ = ["Seq2Seq", "collate_pairs"]

State = Tensor | tuple[Tensor, ...]
_NEVER_EMITTED = (PAD, BOS, UNK)  # ids a decoder never writes: only ordinary symbols and EOS


def collate_pairs(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]] | None = None) -> Batch:
    """Pad ``(source ids, target ids)`` pairs into a seq2seq batch.

    Args:
        sources: ``B`` source id lists, each non-empty (no BOS/EOS).
        targets: ``B`` target id lists without BOS/EOS (may be empty), or None at inference.

    Returns:
        ``Batch(inputs (B, S) long padded with PAD, lengths (B,) source lengths, targets (B, T) long)`` where a
        row of ``targets`` is the target ids followed by EOS, padded with :data:`IGNORE_INDEX`
        (``T = max len + 1``); ``targets`` is None when not given.
    """
    batch = collate_classification(sources)  # inputs (B, S), lengths (B,)
    if targets is not None:
        if len(targets) != len(batch):
            raise ValueError(f"{len(batch)} sources but {len(targets)} targets: give one target per source")
        batch.targets = collate_generation(targets).targets  # (B, T): ids + EOS, IGNORE_INDEX after
    return batch


class _Memory(NamedTuple):
    """What the decoder attends over: encoder outputs ``(B, S, D·H)``, their keys ``(B, S, H)``, the padding mask
    ``(B, S)`` (True at padded source positions). A model without attention reads none of it."""

    outputs: Tensor
    keys: Tensor | None
    mask: Tensor

    def select(self, index: Tensor) -> _Memory:
        """The rows ``index`` ``(N,)`` of every tensor (beam expansion)."""
        keys = None if self.keys is None else self.keys.index_select(0, index)
        return _Memory(self.outputs.index_select(0, index), keys, self.mask.index_select(0, index))


class Seq2Seq(nn.Module):
    """Encoder (source embedding → core, may be bidirectional) → bridge → decoder (target embedding →
    unidirectional core) → optional Luong attention → linear head over the target vocabulary.

    - Bridge: the decoder's initial state of layer ``l`` is ``tanh(W_l [h_l^fwd; h_l^bwd] + b_l)`` from the
      encoder's final states of layer ``l`` (its ``D`` directions concatenated, ``(B, D·H)``). An LSTM's cell
      state gets its own linear map, without tanh (a cell state is not bounded).
    - Attention (``config.attention``), Luong et al. 2015, "general" score without input feeding: with the
      decoder output ``h_t`` ``(B, H)`` and the encoder outputs ``e_s`` ``(B, S, D·H)``,
      ``score(t, s) = h_t · (W_a e_s)``, ``−inf`` at padded source positions, ``α_t = softmax_s(score)``,
      ``c_t = Σ_s α_ts e_s`` and ``h̃_t = tanh(W_c [c_t; h_t] + b_c)``; the head reads ``h̃_t``. Without input
      feeding the decoder's input at step ``t`` is only the previous symbol, so training runs the decoder over
      all ``T`` steps in one call (the fused kernel where exact) and attention as two batched matrix products.
    - Without attention the head reads ``h_t``.

    ``forward(batch) -> (logits (B, T, V'), loss)``: ``batch.inputs`` source ids ``(B, S)``, ``batch.lengths``
    source lengths, ``batch.targets`` ``(B, T)`` target ids then EOS, :data:`IGNORE_INDEX` at padding (see
    :func:`collate_pairs`); the decoder reads BOS and the targets shifted right (teacher forcing); ``loss`` is
    the mean cross-entropy over non-ignored positions.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size <= 4:
            raise ValueError(
                f"a seq2seq model reads source tokens: set vocab_size beyond the 4 specials, got {config.vocab_size}"
            )
        if config.target_vocab_size <= 4:
            raise ValueError(
                "a seq2seq model writes target tokens: set target_vocab_size beyond the 4 specials, got "
                f"{config.target_vocab_size}"
            )
        self.config = config
        E, H, L = config.embed_dim, config.hidden_size, config.num_layers
        D = 2 if config.bidirectional else 1
        self.decoder = build_core(config.model, E, H, L, config.dropout, False)
        check_summary_core(self.decoder, "seq2seq")
        if getattr(self.decoder, "per_step_readout", False):
            raise ValueError(
                f"the {config.model!r} model has no recurrent state to hand from encoder to decoder; "
                "use --model rnn, lstm, gru or gru-before for seq2seq"
            )
        self.target_embed = nn.Embedding(config.target_vocab_size, E, padding_idx=PAD)
        self.inputs = InputEncoder(config)
        self.encoder = build_core(config.model, self.inputs.size, H, L, config.dropout, config.bidirectional)
        self.arity = int(getattr(self.decoder, "_state_arity", 1))  # 2 for LSTM's (h, c)
        # bridge[j][l]: part j of the state (h, then c for LSTM) of decoder layer l from encoder layer l
        self.bridge = nn.ModuleList(nn.ModuleList(nn.Linear(D * H, H) for _ in range(L)) for _ in range(self.arity))
        if config.attention:
            self.attn_key = nn.Linear(D * H, H, bias=False)  # W_a
            self.attn_out = nn.Linear(D * H + H, H)  # W_c
        self.drop = Dropout(config.dropout)
        self.head = nn.Linear(H, config.target_vocab_size)
        self.directions = D

    # ------------------------------------------------------------------ pieces shared by forward and decoding
    def encode(self, inputs: Tensor, lengths: Tensor) -> tuple[_Memory, State]:
        """Run the encoder on source ids ``(B, S)``; returns the attention memory and the decoder's first state."""
        outputs, h_n = self.encoder(self.inputs(inputs), lengths=lengths)  # (B, S, D·H), (L·D, B, H)
        S = outputs.shape[1]
        mask = ~length_mask(lengths, S, device=outputs.device)  # (B, S) True at padding
        keys = self.attn_key(outputs) if self.config.attention else None  # (B, S, H)
        return _Memory(outputs, keys, mask), self._bridge(h_n)

    def _bridge(self, h_n: State) -> State:
        parts = h_n if isinstance(h_n, tuple) else (h_n,)
        L, D, H = self.config.num_layers, self.directions, self.config.hidden_size
        out = []
        for j, part in enumerate(parts):
            B = part.shape[1]
            per_layer = part.view(L, D, B, H).permute(0, 2, 1, 3).reshape(L, B, D * H)  # (L, B, D·H)
            s = torch.stack([lin(per_layer[k]) for k, lin in enumerate(self.bridge[j])])  # (L, B, H)
            out.append(torch.tanh(s) if j == 0 else s)
        return out[0] if self.arity == 1 else tuple(out)

    def _readout(self, y: Tensor, memory: _Memory) -> Tensor:
        """Decoder outputs ``(B, T, H)`` → logits ``(B, T, V')``, through attention when configured."""
        if self.config.attention:
            scores = y @ memory.keys.transpose(1, 2)  # (B, T, S)
            scores = scores.masked_fill(memory.mask.unsqueeze(1), -float("inf"))
            alpha = torch.softmax(scores, dim=-1)  # (B, T, S)
            context = alpha @ memory.outputs  # (B, T, D·H)
            y = torch.tanh(self.attn_out(torch.cat([context, y], dim=-1)))  # (B, T, H): h̃_t
        return self.head(self.drop(y))  # (B, T, V')

    # ------------------------------------------------------------------ training
    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        if batch.targets is None:
            raise ValueError(
                "Seq2Seq.forward is teacher-forced and needs batch.targets; decode without targets with "
                "greedy() or beam_search()"
            )
        targets = batch.targets
        if targets.dim() != 2 or targets.shape[0] != batch.inputs.shape[0] or targets.is_floating_point():
            raise ValueError(
                f"seq2seq targets must be ids of shape (B, T) with B={batch.inputs.shape[0]}, "
                f"got {tuple(targets.shape)}; build batches with collate_pairs"
            )
        memory, state = self.encode(batch.inputs, batch.lengths)
        bos = torch.full_like(targets[:, :1], BOS)  # (B, 1)
        dec_in = torch.cat([bos, targets[:, :-1]], dim=1)  # (B, T): teacher forcing
        dec_in = dec_in.masked_fill(dec_in == IGNORE_INDEX, PAD)
        y, _ = self.decoder(self.drop(self.target_embed(dec_in)), state)  # (B, T, H)
        logits = self._readout(y, memory)  # (B, T, V')
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return logits, loss

    # ------------------------------------------------------------------ decoding
    def _start(self, sources: Sequence[Sequence[int]]) -> tuple[_Memory, State]:
        if isinstance(sources, Tensor) or not len(sources):
            raise ValueError("sources must be a non-empty list of source id lists")
        batch = collate_pairs(sources).to(self.head.weight.device)
        bad = batch.inputs[(batch.inputs < 0) | (batch.inputs >= self.config.vocab_size)]
        if bad.numel():
            raise ValueError(f"source ids must lie in [0, {self.config.vocab_size}), got {int(bad[0])}")
        return self.encode(batch.inputs, batch.lengths)

    def _step(self, tokens: Tensor, state: State, memory: _Memory) -> tuple[Tensor, State]:
        """Feed the previous symbols ``(N,)``; returns log-probabilities ``(N, V')`` of the next and the state."""
        y, state = self.decoder.step(self.target_embed(tokens), state)  # (N, H)
        logits = self._readout(y.unsqueeze(1), memory).squeeze(1)  # (N, V')
        return torch.log_softmax(logits, dim=-1), state

    @staticmethod
    def _allowed(logp: Tensor, last: bool) -> Tensor:
        """Scores of the symbols that may come next: PAD/BOS/UNK never, and only EOS after max_len symbols."""
        logp = logp.clone()
        if last:
            eos = logp[:, EOS].clone()
            logp.fill_(-float("inf"))
            logp[:, EOS] = eos
        else:
            logp[:, list(_NEVER_EMITTED)] = -float("inf")
        return logp

    @staticmethod
    def _check_decode(name: str, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")

    @torch.no_grad()
    def greedy(self, sources: Sequence[Sequence[int]], max_len: int) -> list[list[int]]:
        """The most likely next symbol at every step, for every source at once (eval mode, restored after).

        Args:
            sources: ``N`` source id lists. max_len: the most symbols an output has (EOS follows).
        Returns:
            ``N`` lists of target ids without BOS/EOS: the argmax chain over ordinary symbols and EOS, stopping
            at EOS; after ``max_len`` symbols EOS is the only choice.
        """
        self._check_decode("max_len", max_len)
        with eval_mode(self):
            memory, state = self._start(sources)
            N = memory.mask.shape[0]
            tokens = torch.full((N,), BOS, dtype=torch.long, device=memory.mask.device)  # (N,)
            done = torch.zeros(N, dtype=torch.bool, device=tokens.device)
            out: list[list[int]] = [[] for _ in range(N)]
            for t in range(max_len + 1):
                logp, state = self._step(tokens, state, memory)  # (N, V')
                tokens = self._allowed(logp, last=t == max_len).argmax(dim=-1)  # (N,)
                for i in (~done & (tokens != EOS)).nonzero().flatten().tolist():
                    out[i].append(int(tokens[i]))
                done |= tokens == EOS
                if bool(done.all()):
                    break
            return out

    @torch.no_grad()
    def beam_search(self, sources: Sequence[Sequence[int]], beam: int, max_len: int) -> list[list[int]]:
        """The best output found by a beam of ``beam`` hypotheses per source, all sources at once (eval mode).

        Scoring: an output ``y_1 … y_n`` (``0 ≤ n ≤ max_len`` ordinary symbols, never PAD/BOS/UNK) scores
        ``Σ_t log p(y_t | y_<t, x) + log p(EOS | y, x)``, the log-probabilities being the model's softmax over all
        ``V'`` ids (no length normalisation). The candidates are exactly these outputs: a hypothesis that has not
        ended after ``max_len`` symbols can only be extended by EOS, so every hypothesis ends within ``max_len``
        symbols and none is dropped for its length.

        Search: at each step every live hypothesis is extended by every allowed symbol; the ``beam`` best
        extensions are kept; those ending in EOS are finished (the best finished one per source is remembered,
        the first found winning ties) and leave the beam, the rest live on. A source is done when its best
        finished score is ≥ its best live score (scores only fall as symbols are added, so nothing could beat
        it). ``beam=1`` is :meth:`greedy`; a beam of at least ``Σ_{n=0}^{max_len} A^n`` (``A`` ordinary symbols)
        keeps every candidate, so the search is exhaustive.

        Returns:
            ``N`` lists of target ids without BOS/EOS.
        """
        self._check_decode("beam", beam)
        self._check_decode("max_len", max_len)
        with eval_mode(self):
            return self._beam_search(sources, beam, max_len)

    @torch.no_grad()
    def beam_candidates(
        self, sources: Sequence[Sequence[int]], beam: int, max_len: int
    ) -> list[list[tuple[list[int], float]]]:
        """The candidates of :meth:`beam_search`: per source, every hypothesis that ended (took EOS) during the
        search, best first (ties: the first found first), at most ``beam`` of them, as ``(target ids, score)``
        with the search's score ``Σ log p(y_t | y_<t, x) + log p(EOS | y, x)``. The first is
        :meth:`beam_search`'s output; ``beam=1`` gives :meth:`greedy`'s one output with its score."""
        self._check_decode("beam", beam)
        self._check_decode("max_len", max_len)
        finished: list[list[tuple[list[int], float]]] = [[] for _ in sources]
        with eval_mode(self):
            self._beam_search(sources, beam, max_len, finished)
        return [sorted(found, key=lambda c: -c[1])[:beam] for found in finished]

    def _beam_search(
        self,
        sources: Sequence[Sequence[int]],
        k: int,
        max_len: int,
        finished: list[list[tuple[list[int], float]]] | None = None,
    ) -> list[list[int]]:
        memory, state = self._start(sources)
        N, device = memory.mask.shape[0], memory.mask.device
        V = self.config.target_vocab_size
        rows = torch.arange(N, device=device).repeat_interleave(k)  # (N·k,): item of each beam row
        memory, state = memory.select(rows), _select(state, rows)
        scores = torch.full((N, k), -float("inf"), dtype=memory.outputs.dtype, device=device)  # (N, k)
        scores[:, 0] = 0.0  # one live hypothesis (empty) per item to start
        history = torch.zeros(N, k, 0, dtype=torch.long, device=device)  # (N, k, t)
        best = torch.full((N,), -float("inf"), dtype=scores.dtype, device=device)  # (N,)
        best_seq: list[list[int]] = [[] for _ in range(N)]
        tokens = torch.full((N * k,), BOS, dtype=torch.long, device=device)  # (N·k,)
        base = torch.arange(N, device=device).unsqueeze(1) * k  # (N, 1): first row of each item
        for t in range(max_len + 1):
            logp, state = self._step(tokens, state, memory)  # (N·k, V')
            logp = self._allowed(logp, last=t == max_len)
            cand = (scores.unsqueeze(2) + logp.view(N, k, V)).view(N, k * V)  # (N, k·V')
            top, idx = cand.topk(k, dim=1)  # (N, k)
            origin, sym = idx // V, idx % V  # (N, k) each
            history = torch.cat(
                [history.gather(1, origin.unsqueeze(2).expand(-1, -1, t)), sym.unsqueeze(2)], dim=2
            )  # (N, k, t + 1)
            ended = (sym == EOS) & torch.isfinite(top)  # (N, k)
            ended_score = top.masked_fill(~ended, -float("inf"))
            top_end, j = ended_score.max(dim=1)  # (N,): the best hypothesis finishing now
            if finished is not None:  # beam_candidates: every hypothesis that ends, with its score
                for i, b in ended.nonzero().tolist():
                    finished[i].append((history[i, b, :t].tolist(), float(top[i, b])))
            for i in (top_end > best).nonzero().flatten().tolist():
                best[i] = top_end[i]
                best_seq[i] = history[i, int(j[i]), :t].tolist()
            scores = top.masked_fill(sym == EOS, -float("inf"))  # finished hypotheses leave the beam
            if bool((best >= scores.max(dim=1).values).all()):
                break
            order = (base + origin).view(-1)  # (N·k,): the row each surviving hypothesis came from
            state = _select(state, order)
            tokens = sym.view(-1)  # (N·k,)
        return best_seq

    @torch.no_grad()
    def score(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> Tensor:
        """Teacher-forced ``log p(y_1 … y_n, EOS | x)`` ``(N,)`` of each target (ids without BOS/EOS), eval mode.

        Uses :meth:`forward`, not the decoding loop, so it checks :meth:`beam_search`'s scores independently.
        """
        with eval_mode(self):
            batch = collate_pairs(sources, targets).to(self.head.weight.device)
            logits, _ = self(batch)  # (N, T, V')
            logp = torch.log_softmax(logits, dim=-1)
            mask = batch.targets != IGNORE_INDEX  # (N, T)
            picked = logp.gather(2, batch.targets.clamp(min=0).unsqueeze(2)).squeeze(2)  # (N, T)
            return (picked * mask).sum(dim=1)


def _select(state: State, index: Tensor) -> State:
    """Rows ``index`` of a recurrent state ``(L, B, H)`` (or each tensor of a tuple) along the batch axis."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)
