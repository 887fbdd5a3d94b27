"""Truncated BPTT (Sutskever's TBPTT(k1, k2)): stream batches cut into chunks, and the state carried between them.

The batches of an epoch are consecutive pieces of ``B`` parallel streams (row ``b`` of each batch continues row
``b`` of the previous one, as :class:`rnnkit.data.stream.TokenStream` yields them; no padding). The trainer cuts
every batch into chunks of ``K1`` steps (:func:`time_chunks`) and takes one optimizer step per chunk. Each update

* uses the loss terms of the chunk's ``K1`` steps only (their mean, like an ordinary batch), and
* backpropagates through the last ``K2`` steps: the chunk and the ``K2 − K1`` steps before it, which are re-run with
  the current weights (and fresh dropout masks) from the detached state at their start; gradients stop there.

:class:`Carry` holds what goes from one chunk to the next (the detached state and the last ``K2 − K1`` steps'
inputs) and its JSON form for a mid-epoch checkpoint; :class:`TrainingForward` is the one forward call of an
update (what DDP wraps). The model needs ``forward_stateful(batch, state) -> (outputs, loss, state)``
(``state=None``: its initial state) and ``state_batch_dim`` (the batch axis of its state tensors; default 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit import distributed as dist_
from rnnkit.data.batching import IGNORE_INDEX, Batch
from rnnkit.layers import detach_state
from rnnkit.train.state import map_state, state_from_json, state_json, tensor_from_json, tensor_json

__all__ = ["Carry", "TrainingForward", "require_stateful", "step_weight", "time_chunks"]


def require_stateful(model: nn.Module) -> None:
    """ValueError unless ``model`` has ``forward_stateful`` (what truncated BPTT and stateful evaluation need)."""
    if not callable(getattr(model, "forward_stateful", None)):
        raise ValueError(
            f"truncated BPTT needs a model with forward_stateful(batch, state) -> (outputs, loss, state); "
            f"{type(model).__name__} has none (rnnkit.runs.lm.LanguageModel has one); drop tbptt to train it"
        )


def check_stream_batch(batch: Batch) -> int:
    """The number of steps ``T`` of a truncated-BPTT batch; ValueError for padding or targets not per step."""
    T = int(batch.inputs.shape[1]) if batch.inputs.dim() >= 2 else 0
    if batch.inputs.dim() < 2 or T == 0:
        raise ValueError(f"truncated BPTT needs batches of steps (B, T) or (B, T, F), got {tuple(batch.inputs.shape)}")
    if bool((batch.lengths != T).any()):
        raise ValueError(
            "truncated BPTT needs batches without padding (every row continues its stream through all T steps); "
            "cut one long sequence into parallel streams with rnnkit.data.stream.TokenStream"
        )
    t = batch.targets
    if t is not None and (t.dim() < 2 or tuple(t.shape[:2]) != tuple(batch.inputs.shape[:2])):
        raise ValueError(
            f"truncated BPTT needs one target per step (B, T), got targets of shape {tuple(t.shape)} for inputs "
            f"{tuple(batch.inputs.shape)}"
        )
    return T


def slice_time(batch: Batch, start: int, end: int) -> Batch:
    """Steps ``start .. end − 1`` of an unpadded batch (inputs and per-step targets; condition unchanged)."""
    return replace(
        batch,
        inputs=batch.inputs[:, start:end],  # (B, k) or (B, k, F)
        lengths=torch.full_like(batch.lengths, end - start),  # (B,)
        targets=None if batch.targets is None else batch.targets[:, start:end],  # (B, k, ...)
    )


def cat_time(a: Batch, b: Batch) -> Batch:
    """``a`` followed by ``b`` in time (same rows)."""
    return replace(
        b,
        inputs=torch.cat([a.inputs, b.inputs], dim=1),  # (B, Ta + Tb, ...)
        lengths=a.lengths + b.lengths,  # (B,)
        targets=None if b.targets is None else torch.cat([a.targets, b.targets], dim=1),  # (B, Ta + Tb, ...)
    )


def time_chunks(batches: Iterable[Batch], k1: int) -> Iterator[Batch]:
    """Every batch cut into chunks of ``k1`` steps (the last chunk of a batch may be shorter)."""
    for batch in batches:
        T = check_stream_batch(batch)
        for start in range(0, T, k1):
            yield batch if k1 >= T else slice_time(batch, start, min(start + k1, T))


def step_weight(batch: Batch) -> int:
    """How many terms a per-step mean loss averages: non-ignored integer targets, else every target value."""
    t = batch.targets
    if t is None:
        return 0
    if not t.is_floating_point():
        return int((t != IGNORE_INDEX).sum())
    return int(t.numel())


def without_targets(batch: Batch) -> Batch:
    """``batch`` with every target ignored (the history steps of a TBPTT window: their loss was used before)."""
    if batch.targets is None:
        return batch
    if batch.targets.is_floating_point():
        raise ValueError(
            "truncated BPTT with K2 > K1 needs integer per-step targets (the re-run history steps' targets are "
            "ignored through IGNORE_INDEX); use K2 = K1 for real-valued targets"
        )
    return replace(batch, targets=torch.full_like(batch.targets, IGNORE_INDEX))


Plan = tuple[Batch, int, int]  # (the window, where the next history starts, its length K2 − K1 or less)


@dataclass
class Carry:
    """What truncated BPTT carries from one chunk to the next within an epoch (a new epoch starts a new one)."""

    rows: int | None = None  # B of the streams (global rows); None before the epoch's first chunk
    state: Any = None  # the model's state after the last chunk, detached (this rank's rows); None: initial
    hist: Batch | None = None  # the last K2 − K1 steps before the next chunk (global rows)
    hist_state: Any = None  # the state at hist's first step, detached (this rank's rows)

    def window(self, chunk: Batch, k1: int, k2: int) -> tuple[list[Batch], Any, Plan]:
        """The pieces of this update's window (global rows), the detached state it starts from, and its plan.

        The window is the carried ``K2 − K1`` history steps (targets ignored) followed by the chunk. It is run as
        two pieces split where the next history starts, so that the state there (the next window's start) is at
        hand.
        """
        if self.rows is not None and self.rows != len(chunk):
            raise ValueError(
                f"truncated BPTT: a batch has {len(chunk)} rows but the previous one had {self.rows}; every batch of "
                "an epoch must hold the same B parallel streams (row b continuing row b)"
            )
        if self.hist is not None:
            window, start = cat_time(without_targets(self.hist), chunk), self.hist_state
        else:
            window, start = chunk, self.state
        n = int(window.inputs.shape[1])
        keep = min(k2 - k1, n)  # steps of the next history
        split = n - keep
        pieces = [slice_time(window, a, b) for a, b in ((0, split), (split, n)) if b > a]
        return pieces, start, (window, split, keep)

    def advance(self, states: list[Any], start: Any, plan: Plan) -> None:
        """Carry on after the window of ``plan`` ran from ``start`` and ended its pieces in ``states``."""
        window, split, keep = plan
        self.rows = len(window)
        self.state = detach_state(states[-1])
        if keep > 0:
            n = int(window.inputs.shape[1])
            self.hist = slice_time(window, split, n)
            self.hist_state = detach_state(states[0] if split > 0 else start)

    def to_json(self, batch_dim: int) -> dict[str, Any] | None:
        """The carried state as JSON with every row (gathered from all processes), or None before any chunk.

        ``batch_dim``: the batch axis of the model's state tensors. Collective under torchrun: every process calls it.
        """
        if self.rows is None:
            return None
        rows = self.rows

        def full(state: Any) -> Any:
            return state_json(map_state(state, lambda t: dist_.gather_rows(t, rows, batch_dim)))

        hist = None
        if self.hist is not None:
            hist = {
                f.name: None if getattr(self.hist, f.name) is None else tensor_json(getattr(self.hist, f.name).cpu())
                for f in fields(Batch)
            }
        return {"rows": rows, "state": full(self.state), "hist": hist, "hist_state": full(self.hist_state)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None, device: torch.device, batch_dim: int) -> Carry:
        """The carry :meth:`to_json` saved, with this process's rows of the states, on ``device``."""
        if obj is None:
            return cls()
        rows = int(obj["rows"])
        index = dist_.shard_rows(rows, dist_.rank(), dist_.world_size()) if dist_.is_distributed() else None

        def local(obj_state: Any) -> Any:
            state = state_from_json(obj_state, device)
            return state if index is None else map_state(state, lambda t: t.index_select(batch_dim, index.to(t.device)))

        hist = None
        if obj.get("hist") is not None:
            parts = {k: None if v is None else tensor_from_json(v).to(device) for k, v in obj["hist"].items()}
            hist = Batch(**parts)
        return cls(rows=rows, state=local(obj["state"]), hist=hist, hist_state=local(obj["hist_state"]))


class TrainingForward(nn.Module):
    """One training forward: what DDP wraps, so that it sees one forward call per backward.

    ``forward(pieces, state, stateful)`` runs the pieces of a truncated-BPTT window one after the other, each from
    the state the previous one ended in, and returns ``(outputs of the last piece, losses, states after each)``;
    with ``stateful=False`` it is ``model(batch)`` for one batch.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pieces: list[Batch], state: Any, stateful: bool) -> tuple[Any, list[Tensor | None], list[Any]]:
        if not stateful:
            outputs, loss = self.model(pieces[0])
            return outputs, [loss], [None]
        losses, states = [], []
        outputs = None
        for piece in pieces:
            outputs, loss, state = self.model.forward_stateful(piece, state)
            losses.append(loss)
            states.append(state)
        return outputs, losses, states
