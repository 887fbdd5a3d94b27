"""One→many: generate a sequence symbol by symbol, optionally conditioned (the lecture's names-by-language demo).

Trained as next-symbol prediction (makemore's ``forward(idx, targets) -> (logits, loss)``, explicit about
lengths): inputs ``[BOS, s_1, …, s_n]``, targets ``[s_1, …, s_n, EOS]``; the loss is the mean negative
log-likelihood over non-pad target symbols, the end symbol included.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rnnkit import ranges
from rnnkit.data.batching import IGNORE_INDEX, Batch
from rnnkit.data.vocab import BOS, EOS, PAD, UNK
from rnnkit.dropout import Dropout
from rnnkit.metrics import mixture
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.counts import NgramCounts
from rnnkit.tasks.fcn import check_summary_core
from rnnkit.tasks.modes import eval_mode
from rnnkit.tasks.registry import build_core

__all__ = ["SequenceGenerator"]

_MODES = ("init", "input", "both")


class SequenceGenerator(nn.Module):
    """Embedding → unidirectional recurrent core → linear head over the vocabulary, with an optional condition.

    The condition — a category id (``num_conditions > 0``) or a real vector (``condition_dim > 0``), e.g. an image
    or series embedding as in the lecture's captioning example — is mapped to a vector ``c`` ``(B, E)`` that
    enters through the initial state (``h_0 = tanh(W c + b)`` for every layer; ``condition_mode="init"``), through
    every step's input (``[x_t, c]``; ``"input"``), or both (the PyTorch char-RNN generation tutorial feeds the
    category at every step).
    A window core (``model="window"``) has no state, so it takes the condition through the input only.

    ``forward(batch) -> (logits (B, T, V), loss)``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size <= 4:
            raise ValueError(f"a generator needs symbols beyond the 4 specials, got vocab_size={config.vocab_size}")
        if config.bidirectional:
            raise ValueError("a generator reads left to right: bidirectional must be False")
        if config.condition_mode not in _MODES:
            raise ValueError(f"condition_mode must be one of {_MODES}, got {config.condition_mode!r}")
        if config.num_conditions and config.condition_dim:
            raise ValueError("condition on categories (num_conditions) or on vectors (condition_dim), not both")
        self.config = config
        E, H, L = config.embed_dim, config.hidden_size, config.num_layers
        self.embed = nn.Embedding(config.vocab_size, E, padding_idx=PAD)
        self.cond: nn.Module | None = None
        if config.num_conditions:
            self.cond = nn.Embedding(config.num_conditions, E)
        elif config.condition_dim:
            self.cond = nn.Linear(config.condition_dim, E)
        conditioned = self.cond is not None
        self.cond_input = conditioned and config.condition_mode in ("input", "both")
        self.init = nn.Linear(E, L * H) if conditioned and config.condition_mode in ("init", "both") else None
        in_size = E * (2 if self.cond_input else 1)
        self.core = build_core(config.model, in_size, H, L, config.dropout, False, window=config.window)
        check_summary_core(self.core, "generate")
        if getattr(self.core, "per_step_readout", False) and conditioned and config.condition_mode != "input":
            raise ValueError(
                f"the {config.model!r} model has no recurrent state to start from: a conditional generator on it "
                f"needs condition_mode='input' (got {config.condition_mode!r})"
            )
        self.drop = Dropout(config.dropout)
        self.head = nn.Linear(H, config.vocab_size)

    # ------------------------------------------------------------------ pieces shared by forward and sample
    def _condition(self, condition: Tensor | None, batch_size: int) -> Tensor | None:
        """The condition vector ``c`` ``(B, E)``, or None for an unconditional model."""
        if self.cond is None:
            if condition is not None:
                raise ValueError("this generator is unconditional: pass no condition")
            return None
        if condition is None:
            raise ValueError("this generator is conditional: pass a category id or a condition vector")
        if self.config.num_conditions:
            if condition.dtype not in (torch.int32, torch.int64) or condition.dim() != 1:
                raise ValueError(f"condition must be category ids of shape (B,), got {tuple(condition.shape)}")
            if int(condition.min()) < 0 or int(condition.max()) >= self.config.num_conditions:
                raise ValueError(f"category ids must lie in [0, {self.config.num_conditions})")
        elif condition.dim() != 2 or condition.shape[1] != self.config.condition_dim:
            raise ValueError(f"condition vectors must have shape (B, {self.config.condition_dim})")
        return self.cond(condition)  # (B, E)

    def _initial_state(self, c: Tensor | None):
        if self.init is None or c is None:
            return None
        L, H = self.config.num_layers, self.config.hidden_size
        h0 = torch.tanh(self.init(c)).view(-1, L, H).transpose(0, 1).contiguous()  # (L, B, H)
        if getattr(self.core, "_state_arity", 1) == 2:
            return h0, torch.zeros_like(h0)  # LSTM: condition the hidden state, start the cell empty
        return h0

    def _inputs(self, ids: Tensor, c: Tensor | None) -> Tensor:
        x = self.drop(self.embed(ids))  # (B, T, E)
        if self.cond_input and c is not None:
            x = torch.cat([x, c.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=2)  # (B, T, 2E)
        return x

    # ------------------------------------------------------------------ training
    def forward(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        c = self._condition(batch.condition, len(batch))
        out, _ = self.core(self._inputs(batch.inputs, c), self._initial_state(c), lengths=batch.lengths)
        logits = self.head(self.drop(out))  # (B, T, V)
        loss = None
        if batch.targets is not None:
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return logits, loss

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        condition: int | Sequence[float] | Tensor | None = None,
        n: int = 1,
        temperature: float = 1.0,
        top_k: int | None = None,
        prefix: Sequence[int] = (),
        max_len: int = 30,
        generator: torch.Generator | None = None,
        counts: NgramCounts | None = None,
    ) -> list[list[int]]:
        """Draw ``n`` sequences symbol by symbol with the core's ``step``.

        Args:
            condition: a category id, a condition vector ``(condition_dim,)``, per-row ids ``(n,)`` / vectors
                ``(n, condition_dim)``, or None for an unconditional model.
            temperature: divides the logits; ``0`` takes the most likely symbol (argmax) every step.
            top_k: sample among the k most likely symbols only.
            prefix: symbol ids every sample starts with (no BOS; it is added).
            max_len: the most symbols in a sample, prefix included.
            counts: a run's count member (:class:`~rnnkit.tasks.counts.NgramCounts`): each step draws from
                ``(1 − w) · softmax(logits) + w · p_counts`` (``w = counts.weight``), temperature and ``top_k``
                applied to the mixture's log-probabilities.
        Returns:
            ``n`` lists of symbol ids: the prefix and what followed, without BOS/EOS.
        """
        if n < 1 or max_len < 1:
            raise ValueError(f"n and max_len must be ≥ 1, got n={n}, max_len={max_len}")
        if temperature < 0:
            raise ValueError(f"temperature must be ≥ 0, got {temperature}")
        ranges.check(temperature=temperature)
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be ≥ 1, got {top_k}")
        prefix = [int(i) for i in prefix]
        if len(prefix) > max_len:
            raise ValueError(f"the prefix has {len(prefix)} symbols, more than max_len={max_len}")
        if any(i < 4 or i >= self.config.vocab_size for i in prefix):
            raise ValueError("prefix ids must be ordinary symbols of the vocabulary (not PAD/BOS/EOS/UNK)")
        with eval_mode(self):
            device = self.head.weight.device
            cond = self._sample_condition(condition, n, device)
            c = self._condition(cond, n)
            state = self._initial_state(c)
            out = [list(prefix) for _ in range(n)]
            done = torch.zeros(n, dtype=torch.bool, device=device)
            feed = [BOS, *prefix]
            for tok in feed:  # read BOS and the prefix
                ids = torch.full((n, 1), tok, dtype=torch.long, device=device)
                y, state = self.core.step(self._inputs(ids, c)[:, 0], state)  # (n, H)
            for _ in range(max_len - len(prefix)):
                logits = self.head(y)  # (n, V)
                if counts is not None and counts.weight > 0:
                    logits = self._mix(logits, counts, out, cond)
                # PAD, BOS and UNK are never targets, but an undertrained model still gives them some mass
                logits[:, [PAD, BOS, UNK]] = -float("inf")
                nxt = self._choose(logits, temperature, top_k, generator)  # (n,)
                nxt = torch.where(done, torch.full_like(nxt, EOS), nxt)
                done |= nxt == EOS
                for row, tok in enumerate(nxt.tolist()):
                    if tok != EOS:
                        out[row].append(tok)
                if bool(done.all()):
                    break
                y, state = self.core.step(self._inputs(nxt.unsqueeze(1), c)[:, 0], state)
            return out

    @staticmethod
    def _mix(logits: Tensor, counts: NgramCounts, out: list[list[int]], cond: Tensor | None) -> Tensor:
        """log((1 − w) · softmax(logits) + w · p_counts) ``(n, V)`` after the histories ``[BOS, *out[i]]``."""
        if counts.vocab_size != logits.shape[-1]:
            raise ValueError(f"the count member has {counts.vocab_size} symbols, the model {logits.shape[-1]}")
        conditions = None if cond is None else cond.tolist()
        columns = counts.step_columns([[BOS, *row] for row in out], conditions if counts.num_conditions else None)
        p_counts = counts.distribution(columns).to(logits.device)  # (n, V) float64
        w = float(counts.weight)
        mixed = mixture(torch.softmax(logits.double(), dim=-1), p_counts, w)
        return mixed.log().to(logits.dtype)

    def _sample_condition(self, condition, n: int, device: torch.device) -> Tensor | None:
        if condition is None:
            return None
        cond = torch.as_tensor(condition, device=device)
        if self.config.num_conditions:
            cond = cond.to(torch.long)
            return cond.expand(n).clone() if cond.dim() == 0 else cond
        cond = cond.to(self.head.weight.dtype)
        return cond.unsqueeze(0).expand(n, -1).clone() if cond.dim() == 1 else cond

    @staticmethod
    def _choose(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
        if temperature == 0:
            return logits.argmax(dim=-1)
        logits = logits / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (n, 1)
            logits = logits.masked_fill(logits < kth, -float("inf"))
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
