"""One optimizer step of the trainer: the forward (one batch, or a truncated-BPTT window, on this process's rows),
the loss, the NaN/inf guards, gradient clipping, AdamW and the schedule, and the epoch's running sums."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit import distributed as dist_
from rnnkit.data.batching import IGNORE_INDEX, Batch
from rnnkit.train.processes import Processes
from rnnkit.train.settings import TrainConfig
from rnnkit.train.tbptt import Carry, TrainingForward, step_weight

__all__ = ["Stepper", "loss_weight"]


def loss_weight(batch: Batch) -> int:
    """How many terms a batch's mean loss averages: non-ignored per-step integer targets, else items."""
    t = batch.targets
    if t is not None and t.dim() >= 2 and not t.is_floating_point():
        return int((t != IGNORE_INDEX).sum())
    return len(batch)


class Stepper:
    """Takes the optimizer steps of a fit: ``step(batch, acc)`` trains on one batch (or TBPTT chunk).

    ``diverged(quantity, value)`` builds the error raised for a non-finite loss or gradient norm. Under torchrun the
    forward is wrapped in DDP here (``processes.wrap``), after every process has loaded the same weights.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        processes: Processes,
        device: torch.device,
        diverged: Callable[[str, float], Exception],
    ) -> None:
        self.model, self.config, self.optimizer, self.scheduler = model, config, optimizer, scheduler
        self.processes, self.diverged = processes, diverged
        self.forward = processes.wrap(TrainingForward(model), device)
        self.device = device
        self.carry = Carry()  # truncated BPTT's state between chunks (a new one every epoch)
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.max_norm = config.clip_norm if config.clip_norm is not None else math.inf
        # the last step's own numbers (TensorBoard's per-step scalars): its loss, lr, gradient norm before clipping
        self.last: dict[str, float] = {}

    def step(self, batch: Batch, acc: dict[str, Any]) -> None:
        """One optimizer step on ``batch``, adding its loss, gradient norm, items and lr to ``acc``."""
        batch = batch.to(self.device)
        several = self.processes.several
        if self.config.tbptt is None and not several:
            _, loss = self.model(batch)
            if loss is None:
                raise ValueError("the model returned no loss: training batches need targets")
            value, w, items = float(loss.detach()), loss_weight(batch), len(batch)
        else:
            loss, value, w, items = self._window_loss(batch)
        if not math.isfinite(value) and not several:
            raise self.diverged("loss", value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # with DDP: the gradients are averaged over the processes here
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.max_norm))
        if several:  # agreed after the gradient collective: a loss that is non-finite on one process stops all
            if self.processes.any_non_finite(not math.isfinite(value)):
                raise self.diverged("loss", value if not math.isfinite(value) else math.nan)
        elif not math.isfinite(value):
            raise self.diverged("loss", value)
        if not math.isfinite(grad_norm):
            raise self.diverged("gradient norm", grad_norm)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        acc["loss_sum"] += value * w
        acc["weight"] += w
        acc["gn_sum"] += grad_norm
        acc["gn_max"] = max(acc["gn_max"], grad_norm)
        acc["gn_last"] = grad_norm
        acc["n"] += 1
        acc["items"] += items
        acc["lr"] = lr
        self.last = {"train_loss": value, "lr": lr, "grad_norm": grad_norm}

    def _window_loss(self, batch: Batch) -> tuple[Tensor, float, int, int]:
        """The loss to backpropagate for one step with TBPTT and/or several processes.

        Returns ``(loss, value, weight, items)``: ``value`` is this process's mean loss over its ``weight`` loss
        terms (for the curve), ``items`` its rows (:meth:`Processes.mean_loss` scales ``loss`` for DDP).
        """
        tbptt = self.config.tbptt
        if tbptt is None:
            local, has_rows = dist_.shard_batch(batch)
            pieces, start, plan = [local], None, None
            weights = [loss_weight(local) if has_rows else 0]
        else:
            if batch.targets is None:
                raise ValueError("the model returned no loss: training batches need targets")
            global_pieces, start, plan = self.carry.window(batch, *tbptt)
            shards = [dist_.shard_batch(p) for p in global_pieces]
            has_rows = shards[0][1]
            pieces = [p for p, _ in shards]
            weights = [step_weight(p) if has_rows else 0 for p in pieces]
        _, losses, states = self.forward(pieces, start, tbptt is not None)
        if plan is not None:
            self.carry.advance(states, start, plan)
        loss, value, local_w = self.processes.mean_loss(losses, weights, self.model)
        # an item is a row; with TBPTT one step of one stream (a token), so items/s reads as tokens/s
        items = len(pieces[0]) if has_rows else 0
        if tbptt is not None:
            items *= int(batch.inputs.shape[1])  # the chunk's steps
        return loss, value, local_w, items
