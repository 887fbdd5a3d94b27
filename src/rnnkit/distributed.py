"""Data-parallel training over several processes: PyTorch's DistributedDataParallel, set up from ``torchrun``.

Launch one process per CPU socket or GPU with ``torchrun``; each reads the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)::

    torchrun --nproc-per-node 2 -m rnnkit train --task lm --data book.txt --tbptt 64,64 --out runs/lm
    # two machines (run on each, --node-rank 0 and 1; the endpoint is a host:port of node 0):
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint node0:29500 \\
        -m rnnkit train ...

How the work is split (:func:`shard_batch`): every process builds the same global batches (``--batch-size`` is the
global batch, the data order is a function of the seed), and rank ``r`` of ``W`` trains on rows ``r, r + W,
r + 2W, …`` of each. The shards are disjoint and together cover the batch, every process takes the same number of
optimizer steps, and the learning-rate schedule is the single-process one.

Loss normalisation: a task model's loss is a mean over its loss terms (non-ignored per-step targets, else rows).
Rank ``r`` scales its mean by ``W·n_r / N`` (``n_r`` its terms, ``N`` the all-reduced total), and DDP averages
gradients over the ``W`` ranks, so the gradient is exactly that of the global batch's mean loss — equal to a
single-process step on the same global batch up to float rounding, even when the shards differ in size.

Only rank 0 writes files (the trainer's checkpoints, curve and weights; apps call :func:`is_main`); the weights
are saved from the unwrapped model, so they carry no ``module.`` prefix and every command loads them. Backends:
``gloo`` for CPU tensors, ``nccl`` for CUDA tensors when GPUs are present (``"cpu:gloo,cuda:nccl"``).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from rnnkit.data.batching import Batch

__all__ = [
    "World",
    "all_reduce_sum",
    "barrier",
    "env_world",
    "gather_rows",
    "init_from_env",
    "is_distributed",
    "is_main",
    "rank",
    "shard_batch",
    "shard_rows",
    "shutdown",
    "unwrap",
    "world_size",
    "wrap",
]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int  # 0 .. size − 1; rank 0 writes the run folder
    size: int  # W, the number of processes
    local_rank: int  # index on this machine (the GPU it uses)
    backend: str  # torch.distributed backend, e.g. "gloo"


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer (is torchrun setting it?)") from None


def env_world() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's environment, or None when not launched by it (or W = 1)."""
    size = _env_int("WORLD_SIZE")
    if size is None or size <= 1:
        return None
    rank_ = _env_int("RANK")
    if rank_ is None or not 0 <= rank_ < size:
        raise ValueError(f"WORLD_SIZE={size} but RANK={os.environ.get('RANK')!r}: launch with torchrun")
    local = _env_int("LOCAL_RANK")
    return rank_, size, 0 if local is None else local


def init_from_env(timeout_minutes: float = 30.0) -> World | None:
    """Join the process group torchrun describes; None (and nothing done) in a plain single process.

    Uses ``gloo`` on a machine without CUDA and ``"cpu:gloo,cuda:nccl"`` with GPUs (CPU tensors over gloo, CUDA
    tensors over NCCL), after pinning this process to GPU ``LOCAL_RANK``. Calling it again returns the same world.
    """
    found = env_world()
    if found is None:
        return None
    local = found[2]
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; install a build with it to use torchrun")
    cuda = torch.cuda.is_available() and dist.is_nccl_available()
    if not dist.is_initialized():
        if cuda and local < torch.cuda.device_count():
            torch.cuda.set_device(local)
        dist.init_process_group(
            backend="cpu:gloo,cuda:nccl" if cuda else "gloo",
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local, backend=str(dist.get_backend()))


def shutdown(finished: bool = True) -> None:
    """Leave the process group (if one was joined).

    ``finished`` (the run ended normally on this process): first wait at a barrier until every process has ended
    its work, so that none tears its connections down while a peer still sends — with gloo a process whose peer
    left mid-exchange could abort at exit (``terminate called without an active exception``, SIGABRT). After an
    error (``finished=False``) there is no barrier: the peers may never reach it, and the group is left at once.
    """
    if dist.is_available() and dist.is_initialized():
        if finished and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """W, the number of training processes (1 outside a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files: rank 0, or the only process."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (nothing outside a process group)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """The element-wise sums of ``values`` over all processes (float64; unchanged outside a process group)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)  # (n,) on CPU: gloo reduces it
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def device_for(device: torch.device | str) -> torch.device:
    """The device this process trains on: ``cuda`` becomes ``cuda:LOCAL_RANK`` inside a process group."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and is_distributed():
        found = env_world()
        return torch.device("cuda", found[2] if found else 0)
    return device


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` (which broadcasts rank 0's weights)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return DistributedDataParallel(module, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (the model itself otherwise); save and load its ``state_dict``."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


# ---------------------------------------------------------------------------------------------------------- sharding
def shard_rows(batch_size: int, rank_: int, world: int) -> Tensor:
    """The row indices rank ``rank_`` of ``world`` takes from a batch of ``batch_size`` rows: ``rank_::world``.

    Over all ranks the shards are disjoint and cover ``0 .. batch_size − 1``; their sizes differ by at most one.
    """
    if not 0 <= rank_ < world:
        raise ValueError(f"rank must lie in [0, {world}), got {rank_}")
    return torch.arange(rank_, max(rank_, batch_size), world)  # empty when rank_ >= batch_size


def _take_rows(batch: Batch, rows: Tensor) -> Batch:
    """The rows ``rows`` of every batch-first tensor field of ``batch`` (a Batch subclass's extra fields too)."""
    B = len(batch)
    changes: dict[str, Any] = {}
    for f in fields(batch):
        v = getattr(batch, f.name)
        if isinstance(v, Tensor) and v.dim() >= 1 and v.shape[0] == B:
            changes[f.name] = v.index_select(0, rows.to(v.device))  # (B_r, ...)
    return replace(batch, **changes)


def shard_batch(batch: Batch, rank_: int | None = None, world: int | None = None) -> tuple[Batch, bool]:
    """This rank's rows of a global ``batch`` (see :func:`shard_rows`), and whether it holds any.

    A rank whose shard is empty (a batch with fewer rows than processes) gets row 0 and ``False``: it must still
    run forward and backward with DDP, with its loss scaled by 0.
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if world == 1:
        return batch, True
    rows = shard_rows(len(batch), rank_, world)
    if rows.numel() == 0:
        return _take_rows(batch, torch.zeros(1, dtype=torch.long)), False
    return _take_rows(batch, rows), True


def gather_rows(local: Tensor, batch_size: int, batch_dim: int = 1) -> Tensor:
    """Reassemble a tensor sharded by rows (:func:`shard_rows`) on every rank: the inverse of the sharding.

    ``local`` holds this rank's rows on ``batch_dim``; every rank gets the full tensor with ``batch_size`` rows in
    the original order. Outside a process group it returns ``local``.
    """
    if not is_distributed():
        return local
    W = world_size()
    per = -(-batch_size // W)  # the largest shard
    x = local.movedim(batch_dim, 0).contiguous()  # (B_r, ...)
    padded = x.new_zeros((per, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(W)]
    dist.all_gather(parts, padded)
    full = x.new_zeros((batch_size, *x.shape[1:]))  # (B, ...)
    for q in range(W):
        rows = shard_rows(batch_size, q, W)
        full[rows] = parts[q][: rows.numel()]
    return full.movedim(0, batch_dim)
