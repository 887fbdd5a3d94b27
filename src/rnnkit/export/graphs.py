"""The graphs of each task model, as ``nn.Module``s that ``torch.onnx.export`` turns into ONNX.

Whole-sequence graphs (:class:`_ManyToOneGraph`, :class:`_EnsembleGraph`, :class:`_GeneratorGraph`) and step
graphs with explicit state (:class:`_ManyToOneStep`, :class:`_GeneratorStep`), all over
:class:`~rnnkit.export.recurrence._Recurrence`. Shapes as in :mod:`rnnkit.export`.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from rnnkit.export.recurrence import State, _Recurrence
from rnnkit.masks import length_mask
from rnnkit.tasks.ensemble import Ensemble
from rnnkit.tasks.generator import SequenceGenerator
from rnnkit.tasks.kernels import KernelRidge


def _input_stage(model: nn.Module) -> tuple[nn.Embedding | None, int]:
    """The token embedding (None for real-valued inputs) and ``F`` (0 for tokens) of a classifier/regressor."""
    enc = model.inputs
    if getattr(enc, "frames", None) is not None or model.config.frame_encoder:
        raise ValueError(
            "ONNX export does not cover per-step frame encoders (frame_encoder); export a token or real-valued model"
        )
    embed = getattr(enc, "embed", None)
    return embed, 0 if embed is not None else model.config.input_features


def _recurrent_core(model: nn.Module) -> nn.Module:
    """The layer whose recurrence is exported: the task model's core, or a summary core's (LSTM-FCN) LSTM branch."""
    return model.core.lstm if getattr(model, "summarizes", False) else model.core


def _no_step_reason(model: nn.Module) -> str | None:
    """Why ``model`` has no step graph (None when it has one)."""
    if isinstance(model, Ensemble):
        return "an ensemble's graph averages its members over whole sequences"
    if getattr(model, "summarizes", False):
        return "the LSTM-FCN's convolutional branch reads the whole sequence"
    if getattr(model, "ngrams", None) is not None:
        return "the n-gram convolutions (--ngram-filters) read the whole sequence"
    if getattr(model, "bag", None) is not None:
        return "the n-gram bag (--ngram-buckets) reads the whole sequence"
    if getattr(_recurrent_core(model), "bidirectional", False):
        return "a bidirectional model reads the whole sequence"
    return None


class _ManyToOneGraph(nn.Module):
    """Classifier / regressor over whole sequences: ``(inputs, lengths) -> (B, C | K)``.

    A summary core (LSTM-FCN, :mod:`rnnkit.tasks.fcn`): its LSTM branch runs as :class:`_Recurrence`, its
    convolutional branch as it is (eval mode: batch norm from the running statistics, padded steps masked), and
    the head reads both, ``(B, D·H + 128)``, as :meth:`~rnnkit.tasks.fcn.LSTMFCN.summary` gives them.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embed, _ = _input_stage(model)
        self.rec = _Recurrence(_recurrent_core(model))
        self.summary = model.core if getattr(model, "summarizes", False) else None
        self.pools = list(getattr(model, "pools", ["last"]))  # a classifier's ``pool`` parts, in their order

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        x = inputs if self.embed is None else self.embed(inputs)  # (B, T, I)
        out, finals = self.rec(x.transpose(0, 1), lengths, self.rec.zeros(x[:, 0]))  # out (T, B, D·H)
        top = finals[-self.rec.D :]  # the top layer's directions
        last = torch.cat([s[0] if isinstance(s, tuple) else s for s in top], dim=1)  # (B, D·H)
        parts = []
        for name in self.pools:  # as SequenceClassifier.encode: last states, masked mean, masked max over T
            if name == "last":
                parts.append(last)
            elif name == "mean":
                parts.append(out.sum(0) / lengths.unsqueeze(1).to(out.dtype))  # (B, D·H): out is 0 past each end
            else:
                valid = length_mask(lengths, out.shape[0], time_major=True, device=out.device).unsqueeze(2)
                parts.append(out.masked_fill(~valid, -float("inf")).amax(0))  # (B, D·H)
        h = torch.cat(parts, dim=1)  # (B, P·D·H)
        if getattr(self.model, "ngrams", None) is not None:  # --ngram-filters: the n-gram features after the pools
            h = torch.cat([h, self.model.ngrams(x, lengths)], dim=1)  # (B, P·D·H + 4·F)
        if self.summary is not None:  # LSTM-FCN: the pooled convolutional features beside the LSTM's state
            mask = length_mask(lengths, x.shape[1], device=x.device)  # (B, T)
            h = torch.cat([h, self.summary.conv_features(x, mask)], dim=1)  # (B, D·H + 128)
        logits = self.model.head(h)  # (B, C | K)
        if getattr(self.model, "bag", None) is not None:  # --ngram-buckets: the hashed n-gram bag's logits
            logits = logits + self.model.bag(inputs, lengths)
        return logits


class _EnsembleGraph(nn.Module):
    """An ensemble's K members in one graph, ``(inputs, lengths) -> (B, C | K)``, as :class:`Ensemble` averages:
    classify ``log(mean_k softmax(logits_k))`` (its softmax is the mean of the members' probabilities), regress /
    forecast the mean of the members' outputs."""

    def __init__(self, model: Ensemble) -> None:
        super().__init__()
        self.members = nn.ModuleList(_ManyToOneGraph(m) for m in model.members)
        self.classify = model.config.task == "classify"

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        outs = [g(inputs, lengths) for g in self.members]  # K × (B, C | K)
        if self.classify:
            logp = torch.stack([torch.log_softmax(o, dim=-1) for o in outs])  # (K, B, C)
            return torch.logsumexp(logp, dim=0) - math.log(len(outs))  # (B, C)
        return torch.stack(outs).mean(0)  # (B, K)


class _KernelGraph(nn.Module):
    """A series run's kernel ridge (``--kernels``), ``(series (B, T, C), lengths (B,)) -> logits (B, K)``: the raw
    series standardized per channel, MiniRocket's features (and Hydra's, for a member with them) over each one's
    valid steps in float32, then, as :class:`~rnnkit.tasks.kernels.KernelRidge` computes them, the standardized
    features, the ridge's scores and its temperature in float64 (cast to float32 at the end): a feature whose
    training spread is tiny multiplies a float32 rounding of the standardization by thousands, which on 20,000
    features moved the logits by 1e-4 (ACSF1)."""

    def __init__(self, ridge: KernelRidge) -> None:
        super().__init__()
        self.ridge = copy.deepcopy(ridge).cpu().eval()  # the run's own module keeps its device and dtypes
        self.ridge.kernels.float()
        if self.ridge.competing is not None:
            self.ridge.competing.float()
        self.plans = ridge.plans()  # Python ints: the dilation loops are fixed in the graph

    def forward(self, series: Tensor, lengths: Tensor) -> Tensor:
        r = self.ridge
        x = (series - r.channel_mean.float()) / r.channel_std.float()  # (B, T, C)
        z = (r.transform_features(x, lengths, self.plans).double() - r.mean) / r.scale  # (B, F) float64
        return (r.temperature * (z @ r.coef + r.intercept)).float()  # (B, K)


class _ManyToOneStep(nn.Module):
    """Classifier / regressor, one element: ``(inputs_t, h[, c]) -> (B, C | K), h_out[, c_out]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embed, _ = _input_stage(model)
        self.rec = _Recurrence(model.core)

    def forward(self, inputs: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        x = inputs if self.embed is None else self.embed(inputs)  # (B, I)
        y, new = self.rec.step(x, self.rec.split(state))
        return (self.model.head(y), *self.rec.stack(new))  # (B, C | K), (L, B, H)...


class _GeneratorParts(nn.Module):
    """What the generator's sequence and step graphs share: the condition, the initial state, the inputs."""

    def __init__(self, model: SequenceGenerator) -> None:
        super().__init__()
        self.model = model
        self.rec = _Recurrence(model.core)
        self.conditional = model.cond is not None

    def condition(self, cond: Tensor | None) -> Tensor | None:
        return None if cond is None else self.model.cond(cond)  # (B, E)

    def initial(self, c: Tensor | None, ref: Tensor) -> list[State]:
        if self.model.init is None or c is None:
            return self.rec.zeros(ref)
        L, H = self.rec.L, self.rec.H
        # contiguous: scan needs the initial carry laid out like the step's result
        h0 = torch.tanh(self.model.init(c)).reshape(-1, L, H).transpose(0, 1).contiguous()  # (L, B, H)
        if self.rec.arity == 2:
            return [(h, torch.zeros_like(h)) for h in h0.unbind(0)]  # the cell starts empty
        return list(h0.unbind(0))

    def inputs(self, ids: Tensor, c: Tensor | None) -> Tensor:
        """``ids`` ``(B, T)`` → ``(B, T, I)``: embeddings, and the condition at every step where it enters there."""
        x = self.model.embed(ids)  # (B, T, E)
        if self.model.cond_input and c is not None:
            x = torch.cat([x, c.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=2)  # (B, T, 2E)
        return x


class _GeneratorGraph(_GeneratorParts):
    """``(ids, lengths[, category]) -> logits (B, T, V), h_n[, c_n]``."""

    def forward(self, ids: Tensor, lengths: Tensor, *cond: Tensor) -> tuple[Tensor, ...]:
        c = self.condition(cond[0] if cond else None)
        x = self.inputs(ids, c).transpose(0, 1)  # (T, B, I)
        out, finals = self.rec(x, lengths, self.initial(c, x[0]))  # (T, B, H)
        logits = self.model.head(out).transpose(0, 1)  # (B, T, V)
        return (logits, *self.rec.stack(finals))


class _GeneratorStep(_GeneratorParts):
    """``(ids_t[, category], h[, c]) -> logits (B, V), h_out[, c_out]``."""

    def forward(self, ids: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        cond, state = (rest[0], rest[1:]) if self.conditional else (None, rest)
        c = self.condition(cond)
        x = self.inputs(ids.unsqueeze(1), c)[:, 0]  # (B, I)
        y, new = self.rec.step(x, self.rec.split(state))
        return (self.model.head(y), *self.rec.stack(new))  # (B, V), (L, B, H)...
