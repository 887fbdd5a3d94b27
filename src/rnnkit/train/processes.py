"""The trainer over several processes (``torchrun``): what each training step and checkpoint must agree on.

The process group itself (joining it, ranks, row sharding, gathering rows) is :mod:`rnnkit.distributed`, which the
CLI and the run folders use too; this module is the trainer's side of it. Every process builds the same global
batches and trains on its rows (:func:`rnnkit.distributed.shard_batch`); :class:`Processes` then

* wraps the training forward in DDP (which averages the gradients over the processes),
* normalises the loss (:meth:`Processes.mean_loss`): rank ``r`` scales its mean over ``n_r`` terms by
  ``W·n_r / N`` (``N`` the all-reduced total), so DDP's average is the gradient of the global batch's mean loss,
* agrees on stops (a stop request or the time budget on any process stops all at the same step) and on a
  non-finite loss,
* sums the epoch's running sums over the processes for the checkpoint, which only rank 0 writes, and gathers every
  process's generator states into it (dropout on each rank's rows draws differently).

In a single process every method is the plain computation, with no collective.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit import distributed as dist_
from rnnkit.checkpoint import CheckpointError
from rnnkit.train.settings import STOP_INTERRUPTED, STOP_TIME
from rnnkit.train.state import capture_rng_state, restore_rng_state

__all__ = ["Processes"]


class Processes:
    """This process's part in training: alone, or one of several under torchrun (set by :meth:`wrap`)."""

    def __init__(self) -> None:
        self.ddp: nn.Module | None = None  # DistributedDataParallel(forward) when several processes train

    @property
    def several(self) -> bool:
        """True when this process trains with others (DDP)."""
        return self.ddp is not None

    @property
    def writes(self) -> bool:
        """True on the process that writes the run folder: rank 0, or the only process."""
        return dist_.is_main()

    def wrap(self, forward: nn.Module, device: torch.device) -> nn.Module:
        """``forward`` in DDP inside a process group (DDP broadcasts rank 0's weights here), else itself."""
        self.ddp = dist_.wrap(forward, device) if dist_.is_distributed() else None
        return self.ddp if self.ddp is not None else forward

    def agreed_stop(self, reason: str | None) -> str | None:
        """Whether to stop now, agreed by every process: ``reason`` is this process's (None, a stop request, or
        ``"time"``); any interrupted process interrupts all, else any out of time stops all."""
        if self.ddp is None:
            return reason
        interrupted, timed = dist_.all_reduce_sum(
            [float(reason is not None and reason != STOP_TIME), float(reason == STOP_TIME)]
        )
        return STOP_INTERRUPTED if interrupted else (STOP_TIME if timed else None)

    def any_non_finite(self, bad: bool) -> bool:
        """Whether ``bad`` holds on any process (collective: every process calls it)."""
        (count,) = dist_.all_reduce_sum([float(bad)])
        return bool(count)

    def mean_loss(self, losses: list[Tensor | None], weights: list[int], model: nn.Module) -> tuple[Tensor, float, int]:
        """The loss to backpropagate from this process's pieces' mean ``losses`` over ``weights`` terms each.

        Returns ``(loss, value, weight)``: ``value`` is this process's mean over its ``weight`` terms (for the curve);
        with several processes ``loss`` is that mean times ``W·weight / N``. A process with no loss term gets a zero
        that still reaches every parameter of ``model``, as DDP needs on every process.
        """
        terms = [(loss, w) for loss, w in zip(losses, weights, strict=True) if w > 0]
        if any(loss is None for loss, _ in terms):
            raise ValueError("the model returned no loss: training batches need targets")
        local_w = sum(w for _, w in terms)
        if len(terms) == 1:
            mean: Tensor | None = terms[0][0]
        elif terms:
            mean = sum(loss * w for loss, w in terms) / local_w
        else:
            mean = None
        value = float(mean.detach()) if mean is not None else 0.0
        total = dist_.all_reduce_sum([local_w])[0] if self.ddp is not None else local_w
        if mean is None or total == 0:
            loss = sum(p.sum() for p in model.parameters()) * 0.0
        elif self.ddp is not None:
            loss = mean * (dist_.world_size() * local_w / total)
        else:
            loss = mean
        return loss, value, local_w

    def acc_to_save(self, acc: dict[str, Any]) -> dict[str, Any]:
        """The epoch's running sums with every process's share (only rank 0's copy is saved)."""
        out = dict(acc)
        if self.ddp is not None:
            out["loss_sum"], out["weight"], out["items"] = dist_.all_reduce_sum(
                [acc["loss_sum"], acc["weight"], acc["items"]]
            )
            out["weight"], out["items"] = int(out["weight"]), int(out["items"])
        return out

    @staticmethod
    def gather_rng_states() -> list[dict[str, Any]]:
        """Every process's python/numpy/torch generator states, in rank order, as JSON-safe dicts (collective)."""
        json_part, tensors = capture_rng_state()
        mine = {"json": json_part, "torch": [int(b) for b in tensors["rng.torch"].tolist()]}
        gathered: list[Any] = [None] * dist_.world_size()
        torch.distributed.all_gather_object(gathered, mine)  # in memory between the processes, never from a file
        return gathered

    @staticmethod
    def restore_rng_of_this_rank(states: list[Mapping[str, Any]]) -> None:
        """Restore this process's generators from :meth:`gather_rng_states`'s list (saved in the checkpoint)."""
        r = dist_.rank()
        if len(states) != dist_.world_size():
            raise CheckpointError(
                f"the checkpoint was written by {len(states)} processes, this run has {dist_.world_size()}; "
                "resume with the same --nproc-per-node"
            )
        state = states[r]
        restore_rng_state(state["json"], {"rng.torch": torch.tensor(state["torch"], dtype=torch.uint8)})

    def barrier(self) -> None:
        """Wait for every process (nothing when alone)."""
        if self.ddp is not None:
            dist_.barrier()
