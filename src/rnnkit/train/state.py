"""(De)serialisation of the trainer's state, without pickle: nested state_dicts as JSON plus tensors, exact JSON of
tensors (the carried TBPTT state), the python / numpy / torch generator states, and the checks a loaded state must
pass before anything is copied into a model, optimizer or scheduler.

JSON with tensors (:func:`encode` / :func:`decode`): a tensor or ndarray becomes ``{"__tensor__": KEY}`` /
``{"__ndarray__": KEY}`` and goes into a side table of tensors (saved as safetensors); a tuple, a dict with
non-string keys and a non-finite float are tagged (``__tuple__``, ``__dict__``, ``__float__``) so they come back
as they were. :func:`tensor_json` instead writes a tensor's values into the JSON itself (exact: floats keep every
bit), for the small recurrent state that truncated BPTT carries.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from torch import Tensor

from rnnkit.checkpoint import CheckpointError, validate_model
from rnnkit.ranges import RANGES
from rnnkit.train.settings import TrainConfig

__all__ = [
    "EpochSums",
    "TrainerState",
    "capture_rng_state",
    "check_optimizer_state",
    "check_scheduler_state",
    "check_trainer_state",
    "copy_state",
    "decode",
    "encode",
    "fresh_state",
    "map_state",
    "new_epoch_acc",
    "restore_rng_state",
    "rng_ok",
    "state_from_json",
    "state_json",
    "tensor_from_json",
    "tensor_json",
]


# ----------------------------------------------------------------------------------------------------------------
# JSON + tensors encoding of nested state (optimizer/scheduler state_dicts)


def _unique(key: str, tensors: Mapping[str, Tensor]) -> str:
    n, out = 1, key
    while out in tensors:
        out, n = f"{key}~{n}", n + 1
    return out


def encode(obj: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    """Turn a nested state into JSON, moving tensors into ``tensors`` under ``key``-derived names."""
    if isinstance(obj, Tensor):
        key = _unique(key, tensors)
        tensors[key] = obj
        return {"__tensor__": key}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if isinstance(obj, np.ndarray):
        key = _unique(key, tensors)
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": key}
    if isinstance(obj, list):
        return [encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        return {
            "__dict__": [
                [encode(k, f"{key}.key{i}", tensors), encode(v, f"{key}.{k}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    raise TypeError(
        f"cannot store a {type(obj).__name__} at {key!r} in a checkpoint: only tensors, numbers, strings, "
        "lists, tuples and dicts are stored (no pickle)"
    )


def decode(obj: Any, tensors: Mapping[str, Tensor], source: str) -> Any:
    """The nested state :func:`encode` turned into ``obj``, its tensors taken from ``tensors``."""
    if isinstance(obj, list):
        return [decode(v, tensors, source) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1:
            ((tag, value),) = obj.items()
            if tag in ("__tensor__", "__ndarray__"):
                if value not in tensors:
                    raise CheckpointError(f"{source}: tensor {value!r} is missing from the checkpoint")
                t = tensors[value]
                return t.numpy() if tag == "__ndarray__" else t
            if tag == "__float__":
                return float(value)
            if tag == "__tuple__":
                return tuple(decode(v, tensors, source) for v in value)
            if tag == "__dict__":
                return {decode(k, tensors, source): decode(v, tensors, source) for k, v in value}
        return {k: decode(v, tensors, source) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------------------------------------------------
# exact JSON of tensors and of a recurrent state (tensors, tuples, lists, None)


def tensor_json(t: Tensor) -> dict[str, Any]:
    """A CPU tensor as JSON: dtype, shape and its values in row-major order."""
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "values": t.flatten().tolist()}


def tensor_from_json(d: Mapping[str, Any]) -> Tensor:
    """The tensor :func:`tensor_json` wrote (on the CPU)."""
    dtype = getattr(torch, str(d["dtype"]), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"checkpoint: unknown dtype {d['dtype']!r} in the carried TBPTT state")
    return torch.tensor(d["values"], dtype=dtype).reshape(d["shape"])


def state_json(state: Any) -> Any:
    """A nested state (tensors, tuples, lists, None) as plain JSON (exact: floats keep every bit)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return {"tensor": tensor_json(state.detach().cpu())}
    if isinstance(state, (tuple, list)):
        return {"kind": type(state).__name__, "items": [state_json(s) for s in state]}
    raise TypeError(f"cannot save a {type(state).__name__} as a recurrent state")


def state_from_json(obj: Any, device: torch.device) -> Any:
    """The nested state :func:`state_json` wrote, its tensors on ``device``."""
    if obj is None:
        return None
    if "tensor" in obj:
        return tensor_from_json(obj["tensor"]).to(device)
    items = [state_from_json(s, device) for s in obj["items"]]
    return tuple(items) if obj["kind"] == "tuple" else items


def map_state(state: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``fn`` applied to every tensor of a nested state, keeping its structure."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return fn(state)
    return type(state)(map_state(s, fn) for s in state)


# ----------------------------------------------------------------------------------------------------------------
# RNG states


def capture_rng_state() -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Return ``(json_part, tensors)`` holding the python, numpy, torch CPU (and CUDA) generator states."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    json_part = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss},
        "numpy": {
            "name": np_name,
            "keys": [int(k) for k in np_keys],
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return json_part, tensors


def restore_rng_state(json_part: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> None:
    """Restore the generator states captured by :func:`capture_rng_state`."""
    py = json_part["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    n = json_part["numpy"]
    np.random.set_state(
        (n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k].to(torch.uint8) for k in cuda]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def rng_ok(rng_json: Any, tensors: Mapping[str, Tensor]) -> bool:
    """Whether the saved generator states can be restored: tried on fresh generators, the global ones untouched."""
    try:
        py, n = rng_json["python"], rng_json["numpy"]
        random.Random().setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
        np.random.RandomState().set_state(
            (n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        )
        state = tensors["rng.torch"]
        if state.dtype != torch.uint8:
            return False
        torch.Generator().set_state(state)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, RuntimeError):
        return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# checks of a loaded optimizer / scheduler state, and rollback copies


def _kind(value: Any) -> str:
    """A coarse type of a setting, to compare a saved value with the live one."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, Tensor):
        return "tensor"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}[{','.join(_kind(v) for v in value)}]"
    return type(value).__name__


def _same_kind(saved: Any, live: Any) -> bool:
    # torch keeps some flags (foreach, fused, ...) as None until they are decided: a saved bool fits them
    return _kind(saved) == _kind(live) or (live is None and isinstance(saved, bool))


def check_optimizer_state(optimizer: torch.optim.Optimizer, sd: Any, source: str) -> None:
    """Validate an optimizer state_dict against ``optimizer`` (structure, settings, shapes) without modifying it."""
    if (
        not isinstance(sd, dict)
        or not isinstance(sd.get("param_groups"), list)
        or not isinstance(sd.get("state"), dict)
    ):
        raise CheckpointError(f"{source}: optimizer state is malformed")
    groups = optimizer.param_groups
    saved = sd["param_groups"]
    if (
        len(saved) != len(groups)
        or not all(isinstance(s, dict) and isinstance(s.get("params"), list) for s in saved)
        or any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved, strict=True))
    ):
        raise CheckpointError(f"{source}: the optimizer's parameter groups do not match the model's parameters")
    for g, s in zip(groups, saved, strict=True):
        if set(s) != set(g):
            raise CheckpointError(
                f"{source}: the saved optimizer settings {sorted(map(str, s))} are not those of "
                f"{type(optimizer).__name__} ({sorted(g)})"
            )
        for k, v in s.items():
            if k != "params" and not _same_kind(v, g[k]):
                raise CheckpointError(f"{source}: optimizer setting {k!r} is {v!r}, expected a value like {g[k]!r}")
    params = [p for g in groups for p in g["params"]]
    ids = [i for s in saved for i in s["params"]]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids) or len(set(ids)) != len(ids):
        raise CheckpointError(f"{source}: the optimizer's parameter ids are malformed")
    shape_of = dict(zip(ids, (p.shape for p in params), strict=True))
    for idx, st in sd["state"].items():
        if idx not in shape_of or not isinstance(st, dict):
            raise CheckpointError(f"{source}: optimizer state for unknown parameter {idx!r}")
        for k, v in st.items():
            if not isinstance(v, Tensor):
                if _kind(v) != "number":
                    raise CheckpointError(f"{source}: optimizer state {k!r} of parameter {idx} is {v!r}")
                continue
            if not v.is_floating_point():
                raise CheckpointError(f"{source}: optimizer state {k!r} of parameter {idx} has dtype {v.dtype}")
            if v.dim() > 0 and v.shape != shape_of[idx]:
                raise CheckpointError(
                    f"{source}: optimizer state {k!r} of parameter {idx} has shape {tuple(v.shape)}, "
                    f"the parameter has {tuple(shape_of[idx])}"
                )


def check_scheduler_state(scheduler: Any, sd: Any, source: str) -> None:
    """Validate a scheduler state_dict: its keys are the live scheduler's (``load_state_dict`` sets each one as an
    attribute) and every value has the live one's kind."""
    if not isinstance(sd, dict):
        raise CheckpointError(f"{source}: the scheduler state is malformed")
    live = scheduler.state_dict()
    unknown = sorted(str(k) for k in sd if k not in live)
    if unknown:
        raise CheckpointError(f"{source}: the scheduler state has unknown entries {unknown}")
    for k, v in sd.items():
        if not _same_kind(v, live[k]):
            raise CheckpointError(f"{source}: scheduler entry {k!r} is {v!r}, expected a value like {live[k]!r}")


def copy_state(obj: Any) -> Any:
    """A deep copy of a state_dict (tensors cloned), to roll back a failed load."""
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: copy_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(copy_state(v) for v in obj)
    return obj


# ----------------------------------------------------------------------------------------------------------------
# the trainer's own state (saved as the checkpoint's JSON "state")


def fresh_state(config: TrainConfig, steps_per_epoch: int) -> dict[str, Any]:
    """The trainer state of a run that has not trained yet (plain JSON; saved in every checkpoint)."""
    return {
        "config": asdict(config),
        "epoch": 0,  # completed epochs
        "batch_in_epoch": 0,  # batches of the current epoch already trained (mid-epoch checkpoint)
        "step": 0,  # optimizer steps taken
        "steps_per_epoch": steps_per_epoch,
        "data_order": {"seed": config.seed, "rule": "epoch e uses batches(e) after reseeding (seed, e)"},
        "best_metric": None,
        "best_epoch": None,
        "best_is_current": False,
        "bad_epochs": 0,  # epochs since the last improvement (early stopping counter)
        "history": [],
        "epoch_acc": None,  # running sums of a partly trained epoch
        "stopped_reason": None,
    }


def new_epoch_acc() -> dict[str, Any]:
    """The running sums of an epoch before its first step (saved as ``epoch_acc`` at a mid-epoch stop)."""
    return {
        "loss_sum": 0.0, "weight": 0, "gn_sum": 0.0, "gn_max": 0.0, "n": 0, "items": 0,
        "gn_last": 0.0, "seconds": 0.0, "lr": None,
    }  # fmt: skip


class _Strict(BaseModel):
    """Fields of the declared type (an int is not a float's stand-in, nor a bool an int's); extra keys kept."""

    model_config = ConfigDict(extra="allow", strict=True)


class EpochSums(_Strict):
    """``epoch_acc``: the running sums of a partly trained epoch (:func:`new_epoch_acc`)."""

    loss_sum: float = Field(allow_inf_nan=False)
    weight: int = Field(ge=0)
    gn_sum: float = Field(ge=0, allow_inf_nan=False)
    gn_max: float = Field(ge=0, allow_inf_nan=False)
    n: int = Field(ge=0)
    items: int = Field(ge=0)
    gn_last: float = Field(ge=0, allow_inf_nan=False)
    seconds: float = Field(ge=0, allow_inf_nan=False)
    lr: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("loss_sum", "gn_sum", "gn_max", "gn_last", "seconds", "lr", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v  # JSON writes 0.0 as 0 at times


class TrainerState(_Strict):
    """The trainer state a checkpoint's ``state.json`` holds under ``"state"`` (:func:`fresh_state`), checked
    before a resume uses any of it: every field present, of its type and within its range (an epoch is never
    negative, ``batch_in_epoch`` lies within the epoch's ``steps_per_epoch`` batches, ``best_epoch`` is an epoch
    already trained)."""

    config: dict[str, Any]
    epoch: int = Field(ge=0, le=RANGES["epochs"].hi)
    steps_per_epoch: int = Field(ge=1)
    batch_in_epoch: int = Field(ge=0)
    step: int = Field(ge=0)
    best_metric: float | None = None
    best_epoch: int | None = Field(default=..., ge=1)
    best_is_current: bool
    bad_epochs: int = Field(ge=0)
    history: list[dict[str, Any]]
    epoch_acc: EpochSums | None
    stopped_reason: str | None

    @field_validator("best_metric", mode="before")
    @classmethod
    def _metric(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    # the fields checked against those before them (pydantic validates in the order declared)
    @field_validator("batch_in_epoch")
    @classmethod
    def _within_epoch(cls, v: int, info: ValidationInfo) -> int:
        steps = info.data.get("steps_per_epoch")
        if steps is not None and v >= steps:
            raise ValueError(f"expected fewer than steps_per_epoch={steps} batches (a finished epoch counts in epoch)")
        return v

    @field_validator("best_epoch")
    @classmethod
    def _trained(cls, v: int | None, info: ValidationInfo) -> int | None:
        epoch = info.data.get("epoch")
        if v is not None and epoch is not None and v > epoch:
            raise ValueError(f"expected an epoch already trained (1 to {epoch})")
        return v

    @field_validator("history")
    @classmethod
    def _one_row_per_epoch(cls, v: list[dict[str, Any]], info: ValidationInfo) -> list[dict[str, Any]]:
        epoch = info.data.get("epoch")
        if epoch is not None and len(v) != epoch:
            raise ValueError(f"expected one row per epoch trained ({epoch}), found {len(v)}")
        return v


def check_trainer_state(state: Mapping[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose trainer state (in ``state.json``) lacks a field, has one of the wrong type or out
    of its range (:class:`TrainerState`), before anything is loaded: a hand-edited or foreign file must not end in a
    KeyError, an IndexError or a silently skipped epoch halfway through a resume. One line naming the file and the
    field (:func:`rnnkit.checkpoint.validate_model`); ``path`` is the checkpoint's ``state.json``."""
    validate_model(
        TrainerState,
        state,
        path,
        prefix="state.",
        fix="the checkpoint is damaged or was not written by rnnkit: start the run again with --overwrite",
        error=CheckpointError,
    )
