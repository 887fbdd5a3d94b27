"""Safe persistence: atomic writes, run weights and resumable training checkpoints.

Everything rnnkit writes to disk goes through :func:`write_bytes_atomic`: the bytes go to a temporary file in the
target's folder, are flushed and fsynced, then ``os.replace`` swaps the file in and the folder is fsynced (new
folders are fsynced into their parents). A crash at any moment leaves either the previous file or the new one,
never a mix; the hidden temporary a killed writer leaves behind is deleted by the next write of that file.

Nothing here unpickles: tensors live in safetensors files, everything else in JSON. A file that is truncated,
corrupt, a pickle, or whose tensors do not match the model is refused with :class:`CheckpointError` (a
``ValueError``) *before* anything is copied into the model or optimizer. :func:`check_weights_file` compares a
file's header with a model built on the ``meta`` device, so a config asking for a huge model is refused before
any memory is allocated for it.

Checkpoint layout (``folder`` is usually ``<run>/checkpoint``)::

    folder/
      latest.json                      {"format": "rnnkit-checkpoint", "version": 1, "current": "<name>"}
      ckpt-e0003-s000120-1a2b3c4d/     one complete checkpoint; older ones are deleted after the switch
        model.safetensors              model weights (state_dict keys)
        best_model.safetensors         best weights so far, when they differ from the current ones
        state.safetensors              optimizer + scheduler tensors, torch (and CUDA) RNG states as uint8
        state.json                     the rest: optimizer param_groups, scheduler state, python/numpy RNG,
                                       trainer state, and a sha256 of every file above

A checkpoint is written into a fresh sub-folder (its files and the folder fsynced) and becomes current only when
``latest.json`` is replaced (the commit point), so the previous checkpoint stays loadable until the new one is
complete; it is deleted after the commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import Tensor, nn

__all__ = [
    "CHECKPOINT_FORMAT",
    "WEIGHTS_FILE",
    "Checkpoint",
    "CheckpointError",
    "capture_rng_state",
    "check_weights_file",
    "has_checkpoint",
    "load_checkpoint",
    "load_run_weights",
    "load_safetensors",
    "load_state_dict_checked",
    "make_dirs",
    "read_checkpoint_state",
    "read_json",
    "read_safetensors_header",
    "restore_rng_state",
    "save_checkpoint",
    "save_run_weights",
    "save_safetensors_atomic",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

CHECKPOINT_FORMAT = "rnnkit-checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
"""Name of the final weights file inside a run folder."""

_LATEST = "latest.json"
_MODEL = "model.safetensors"
_BEST = "best_model.safetensors"
_STATE_TENSORS = "state.safetensors"
_STATE_JSON = "state.json"

WriteHook = Callable[[str, Path], None]
_write_hook: WriteHook | None = None
"""Test-only: called as ``hook(stage, path)`` at stages "written", "fsynced", "renamed" of every atomic write.

Tests set it (e.g. with ``monkeypatch.setattr(checkpoint, "_write_hook", ...)``) to simulate a crash at each
stage by raising or calling ``os._exit``.
"""


class CheckpointError(ValueError):
    """A weights or checkpoint file cannot be used: missing, truncated, corrupt, a pickle, or mismatched."""


# ----------------------------------------------------------------------------------------------------------------
# atomic writes


def _fsync_dir(folder: Path) -> None:
    """Persist a rename by fsyncing its folder (not possible on every platform; best effort there)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _hook(stage: str, path: Path) -> None:
    if _write_hook is not None:
        _write_hook(stage, path)


def make_dirs(folder: Path) -> None:
    """``mkdir -p folder``, fsyncing the parent of every folder created so that the new entries survive a crash."""
    missing = []
    p = folder
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    for d in reversed(missing):
        _fsync_dir(d.parent)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (POSIX; elsewhere every process counts as alive, so nothing is swept)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def _temporary_name(name: str) -> str:
    return f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _remove_stale_temporaries(folder: Path, name: str) -> None:
    """Delete the temporary files of ``folder/name`` left by writers that died mid-write (SIGKILL, power loss).

    A temporary is ``.{name}.{pid}.{8 hex}.tmp``; one whose writer process no longer exists is stale. Temporaries of
    live processes (a concurrent writer) are kept.
    """
    prefix = f".{name}."
    try:
        entries = [e.name for e in os.scandir(folder) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return
    for entry in entries:
        middle = entry[len(prefix) : -len(".tmp")].split(".")
        if len(middle) != 2 or not middle[0].isdigit() or len(middle[1]) != 8:
            continue
        if not _pid_alive(int(middle[0])):
            with contextlib.suppress(OSError):
                os.unlink(folder / entry)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: the old file (if any) stays until the new one is complete.

    Steps: temporary file in the same folder → write → flush → fsync → ``os.replace`` → fsync the folder. On any
    error the temporary file is removed and the previous file is left as it was; a process killed mid-write (no
    chance to clean up) leaves a hidden ``.NAME.PID.HEX.tmp``, which the next write of the same file deletes.
    Parent folders are created (and their parents fsynced). Returns the path written.
    """
    path = Path(path)
    folder = path.parent
    make_dirs(folder)
    tmp = folder / _temporary_name(path.name)
    # os.open with 0o666 honours the umask, unlike tempfile.mkstemp's 0o600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            _hook("written", tmp)
            os.fsync(f.fileno())
        _hook("fsynced", tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _hook("renamed", path)
    _fsync_dir(folder)
    _remove_stale_temporaries(folder, path.name)
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` atomically (see :func:`write_bytes_atomic`)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (no NaN/Infinity tokens) atomically; raises ``ValueError`` on NaN/inf."""
    text = json.dumps(obj, indent=indent, allow_nan=False, ensure_ascii=False)
    return write_text_atomic(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing or malformed file raises :class:`CheckpointError` naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e})") from None
    kind = _sniff(data)
    if kind is not None:
        raise CheckpointError(f"{path}: this is {kind}, not JSON; rnnkit never loads pickles")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not UTF-8 JSON text ({e}); the file is corrupt or was replaced") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); the file is corrupt or truncated") from None


# ----------------------------------------------------------------------------------------------------------------
# safetensors


def _tensors_for_saving(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous CPU copies (copies also break storage sharing, which safetensors refuses)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}


def save_safetensors_atomic(
    path: str | os.PathLike[str], tensors: Mapping[str, Tensor], metadata: dict[str, str] | None = None
) -> str:
    """Save ``tensors`` to a safetensors file atomically; returns the sha256 hex digest of the bytes written."""
    data = _st_save(_tensors_for_saving(tensors), metadata=metadata)
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def _sniff(data: bytes) -> str | None:
    """Name a known non-safetensors format from its first bytes (for a clearer error).

    A safetensors file starts with the 8-byte little-endian length of its JSON header, and that header starts with
    ``{``; such a file is never taken for a pickle, whose first bytes (``0x80``, protocol) can equal a length's.
    """
    if len(data) > 8 and data[8:9] == b"{" and 8 + int.from_bytes(data[:8], "little") <= len(data):
        return None
    if data[:2] == b"PK":
        return "a zip archive (torch.save's format, which holds a pickle)"
    if data[:1] == b"\x80" and len(data) > 1 and data[1] <= 5:
        return "a Python pickle"
    return None


def load_safetensors(path: str | os.PathLike[str], *, sha256: str | None = None) -> dict[str, Tensor]:
    """Load every tensor of a safetensors file into memory, validating it completely first.

    Never executes code from the file. Raises :class:`CheckpointError` when the file is missing, empty,
    truncated, corrupt, a pickle / ``torch.save`` archive, or (when ``sha256`` is given) does not match it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e})") from None
    if not data:
        raise CheckpointError(f"{path}: the file is empty")
    kind = _sniff(data)
    if kind is not None:
        raise CheckpointError(
            f"{path}: this is {kind}, not a safetensors file; rnnkit never loads pickles "
            "(re-save the weights with safetensors)"
        )
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(f"{path}: checksum mismatch; the file was modified or is corrupt")
    try:
        return _st_load(data)
    except Exception as e:  # safetensors raises its own SafetensorError (an Exception subclass)
        raise CheckpointError(f"{path}: not a valid safetensors file, truncated or corrupt ({e})") from None


def _check_against(
    expected: Mapping[str, Tensor], tensors: Mapping[str, Tensor], source: str, *, strict: bool = True
) -> None:
    """Raise :class:`CheckpointError` if ``tensors`` does not fit ``expected`` by keys and shapes."""
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    problems = []
    if strict and missing:
        problems.append(f"missing {_few(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    for k, v in tensors.items():
        if k in expected and tuple(v.shape) != tuple(expected[k].shape):
            problems.append(f"{k} has shape {tuple(v.shape)}, the model expects {tuple(expected[k].shape)}")
            if len(problems) > 4:
                break
    for k, v in tensors.items():
        if k in expected and v.is_floating_point() != expected[k].is_floating_point():
            problems.append(f"{k} has dtype {v.dtype}, the model expects {expected[k].dtype}")
            break
    if problems:
        raise CheckpointError(
            f"{source}: the weights do not fit this model ({'; '.join(problems)}); "
            "was it saved from a different configuration?"
        )


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_state_dict_checked(
    model: nn.Module, tensors: Mapping[str, Tensor], source: str = "weights", *, strict: bool = True
) -> None:
    """Copy ``tensors`` into ``model`` after checking keys and shapes; on a mismatch the model is untouched."""
    _check_against(model.state_dict(), tensors, source, strict=strict)
    model.load_state_dict(dict(tensors), strict=strict)


_HEADER_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_MAX_HEADER = 100_000_000  # bytes; safetensors' own limit


def read_safetensors_header(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The tensors a safetensors file declares, as empty ``meta`` tensors of their dtype and shape.

    Reads only the file's header (8 bytes of length, then JSON), so it costs nothing for any file size, and
    nothing is executed. Raises :class:`CheckpointError` for a missing, empty, truncated, pickled or malformed file.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(8)
            size = os.fstat(f.fileno()).st_size
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < n <= min(size - 8, _MAX_HEADER):
                data = head + f.read(64)
                kind = _sniff(data) if data else None
                if not data:
                    raise CheckpointError(f"{path}: the file is empty")
                if kind is not None:
                    raise CheckpointError(
                        f"{path}: this is {kind}, not a safetensors file; rnnkit never loads pickles "
                        "(re-save the weights with safetensors)"
                    )
                raise CheckpointError(f"{path}: not a valid safetensors file, truncated or corrupt (bad header size)")
            header = json.loads(f.read(n).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a valid safetensors file, truncated or corrupt (bad header)") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a valid safetensors file (bad header)")
    out = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _HEADER_DTYPES[info["dtype"]]
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
            if min(shape, default=0) < 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has an unsupported or malformed entry {info!r}") from None
        tensor = torch.empty(shape, dtype=dtype, device="meta")
        # the header must describe the bytes that are there: a header-only file cannot pass for huge weights
        if end - begin != tensor.numel() * tensor.element_size():
            raise CheckpointError(f"{path}: tensor {name!r} declares {end - begin} bytes for shape {shape}; corrupt")
        spans.append((begin, end))
        out[name] = tensor
    spans.sort()
    expected = 0
    for begin, end in spans:
        if begin != expected:
            raise CheckpointError(f"{path}: the tensors' byte ranges overlap or leave gaps; corrupt")
        expected = end
    if 8 + n + expected != size:
        raise CheckpointError(
            f"{path}: the header declares {expected} bytes of tensors but the file holds {size - 8 - n}; "
            "truncated or corrupt"
        )
    return out


def check_weights_file(path: str | os.PathLike[str], model: nn.Module, *, strict: bool = True) -> None:
    """Raise :class:`CheckpointError` unless the safetensors file at ``path`` fits ``model`` by keys and shapes.

    Only the header is read, and ``model`` may live on the ``meta`` device (built with ``with
    torch.device("meta"):``, which allocates no weights): so a config that asks for an absurdly large model is
    refused before any memory is spent on it.
    """
    _check_against(model.state_dict(), read_safetensors_header(path), str(path), strict=strict)


def save_run_weights(folder: str | os.PathLike[str], model: nn.Module) -> Path:
    """Write ``model``'s state_dict to ``folder/model.safetensors`` atomically; returns the file's path."""
    path = Path(folder) / WEIGHTS_FILE
    save_safetensors_atomic(path, model.state_dict(), metadata={"format": "rnnkit-weights"})
    return path


def load_run_weights(folder: str | os.PathLike[str], model: nn.Module, *, strict: bool = True) -> None:
    """Load ``folder/model.safetensors`` (or ``folder`` itself if it is a file) into ``model``.

    Raises :class:`CheckpointError` (a ``ValueError``) for a missing, corrupt or pickled file or mismatched
    keys/shapes, leaving the model untouched.
    """
    path = Path(folder)
    if path.is_dir() or not path.suffix:
        path = path / WEIGHTS_FILE
    if not path.exists():
        raise CheckpointError(f"{path}: no weights file; is this a finished run folder?")
    tensors = load_safetensors(path)
    load_state_dict_checked(model, tensors, str(path), strict=strict)


# ----------------------------------------------------------------------------------------------------------------
# JSON + tensors encoding of nested state (optimizer/scheduler state_dicts), without pickle


def _unique(key: str, tensors: Mapping[str, Tensor]) -> str:
    n, out = 1, key
    while out in tensors:
        out, n = f"{key}~{n}", n + 1
    return out


def _encode(obj: Any, key: str, tensors: dict[str, Tensor]) -> Any:
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
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        return {
            "__dict__": [
                [_encode(k, f"{key}.key{i}", tensors), _encode(v, f"{key}.{k}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    raise TypeError(
        f"cannot store a {type(obj).__name__} at {key!r} in a checkpoint: only tensors, numbers, strings, "
        "lists, tuples and dicts are stored (no pickle)"
    )


def _decode(obj: Any, tensors: Mapping[str, Tensor], source: str) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, source) for v in obj]
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
                return tuple(_decode(v, tensors, source) for v in value)
            if tag == "__dict__":
                return {_decode(k, tensors, source): _decode(v, tensors, source) for k, v in value}
        return {k: _decode(v, tensors, source) for k, v in obj.items()}
    return obj


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


# ----------------------------------------------------------------------------------------------------------------
# checkpoints


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns besides filling the model, optimizer and scheduler.

    Attributes:
        state: the JSON ``state`` dict given to :func:`save_checkpoint` (trainer state: epoch, step, ...).
        best_weights: the best weights saved with the checkpoint (``None`` if none were given).
        path: the checkpoint's sub-folder.
        rng_json, rng_tensors: the saved generator states (``None`` / empty if not saved); see
            :meth:`restore_rng`.
    """

    state: dict[str, Any]
    best_weights: dict[str, Tensor] | None = None
    path: Path = field(default_factory=Path)
    rng_json: dict[str, Any] | None = None
    rng_tensors: dict[str, Tensor] = field(default_factory=dict)

    def restore_rng(self) -> None:
        """Restore the python, numpy and torch generator states saved with this checkpoint (if any)."""
        if self.rng_json is not None:
            restore_rng_state(self.rng_json, self.rng_tensors)


def _current_dir(folder: Path) -> Path:
    latest = folder / _LATEST
    if not latest.exists():
        raise CheckpointError(f"{folder}: no complete checkpoint (no {_LATEST})")
    info = read_json(latest)
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT or "current" not in info:
        raise CheckpointError(f"{latest}: not an rnnkit checkpoint index")
    if info.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{latest}: checkpoint version {info.get('version')} is not supported")
    name = str(info["current"])
    if "/" in name or "\\" in name or name.startswith("."):
        raise CheckpointError(f"{latest}: invalid checkpoint name {name!r}")
    return folder / name


def read_checkpoint_state(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The trainer ``state`` of the current checkpoint in ``folder``, read from JSON only (nothing is loaded)."""
    sub = _current_dir(Path(folder))
    doc = read_json(sub / _STATE_JSON)
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT or not isinstance(doc.get("state"), dict):
        raise CheckpointError(f"{sub / _STATE_JSON}: not an rnnkit checkpoint state")
    try:
        return _decode(doc["state"], {}, str(sub))
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{sub}: malformed checkpoint state ({e})") from None


def has_checkpoint(folder: str | os.PathLike[str]) -> bool:
    """True if ``folder`` holds a committed checkpoint (its ``latest.json`` exists)."""
    return (Path(folder) / _LATEST).exists()


def save_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    state: Mapping[str, Any],
    *,
    best_weights: Mapping[str, Tensor] | None = None,
    rng: bool = True,
) -> Path:
    """Write a complete checkpoint into ``folder`` atomically and make it the current one.

    Args:
        folder: the checkpoint folder (created if needed), e.g. ``<run>/checkpoint``.
        model: its ``state_dict`` goes to ``model.safetensors``.
        optimizer: its state tensors (AdamW: ``exp_avg``, ``exp_avg_sq``, ``step``) go to ``state.safetensors``,
            its ``param_groups`` to ``state.json``.
        scheduler: any object with ``state_dict()`` / ``load_state_dict()`` (a torch LR scheduler); tensors and
            JSON parts are split the same way.
        state: JSON-serialisable trainer state (epoch, step, best metric, data order, ...).
        best_weights: optional best weights so far, kept beside the current ones.
        rng: also store the python, numpy and torch generator states (restored by :func:`load_checkpoint`).

    Returns:
        The new checkpoint's sub-folder. The previous checkpoint is deleted only after the new one is committed.
    """
    folder = Path(folder)
    make_dirs(folder)
    step = int(state.get("step", 0)) if isinstance(state.get("step", 0), (int, float)) else 0
    epoch = int(state.get("epoch", 0)) if isinstance(state.get("epoch", 0), (int, float)) else 0
    name = f"ckpt-e{epoch:04d}-s{step:09d}-{secrets.token_hex(4)}"
    sub = folder / name
    sub.mkdir()

    tensors: dict[str, Tensor] = {}
    doc: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}
    doc["optimizer"] = None if optimizer is None else _encode(optimizer.state_dict(), "optimizer", tensors)
    doc["scheduler"] = None if scheduler is None else _encode(scheduler.state_dict(), "scheduler", tensors)
    if rng:
        rng_json, rng_tensors = capture_rng_state()
        doc["rng"] = rng_json
        tensors.update(rng_tensors)
    else:
        doc["rng"] = None
    # the trainer state must be plain JSON; _encode only guards against NaN/inf floats here
    doc["state"] = _encode(dict(state), "state", tensors)

    try:
        files = {_MODEL: save_safetensors_atomic(sub / _MODEL, model.state_dict())}
        if best_weights is not None:
            files[_BEST] = save_safetensors_atomic(sub / _BEST, best_weights)
        files[_STATE_TENSORS] = save_safetensors_atomic(sub / _STATE_TENSORS, tensors)
        doc["files"] = files
        write_json_atomic(sub / _STATE_JSON, doc)
        _fsync_dir(sub)
        _fsync_dir(folder)  # the new sub-folder's entry is on disk before the index names it
        # commit point: after this replace, the new checkpoint is the current one
        index = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "current": name}
        write_json_atomic(folder / _LATEST, index)
    except BaseException:
        # the previous checkpoint is still current, unless the index was already replaced
        committed = False
        with contextlib.suppress(Exception):
            committed = _current_dir(folder).name == name
        if not committed:
            shutil.rmtree(sub, ignore_errors=True)
        raise
    _cleanup(folder, keep=name)
    return sub


def _cleanup(folder: Path, keep: str) -> None:
    """Delete older checkpoints and stray temporary files (left by a crash mid-write)."""
    for p in folder.iterdir():
        if p.name in (keep, _LATEST):
            continue
        if p.is_dir() and p.name.startswith("ckpt-"):
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file() and p.name.startswith(".") and p.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                p.unlink()


def _rng_ok(rng_json: Any, tensors: Mapping[str, Tensor]) -> bool:
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


def _check_optimizer(optimizer: torch.optim.Optimizer, sd: Any, source: str) -> None:
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


def _check_scheduler(scheduler: Any, sd: Any, source: str) -> None:
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


def _check_files(files: Any, source: str) -> dict[str, str]:
    """The ``files`` record of ``state.json``: a sha256 for the model and state tensors (and best weights)."""
    ok = (
        isinstance(files, dict)
        and _MODEL in files
        and _STATE_TENSORS in files
        and set(files) <= {_MODEL, _BEST, _STATE_TENSORS}
        and all(isinstance(v, str) and len(v) == 64 for v in files.values())
    )
    if not ok:
        raise CheckpointError(f"{source}: the checkpoint's file list is missing or malformed")
    return files


def _copy_state(obj: Any) -> Any:
    """A deep copy of a state_dict (tensors cloned), to roll back a failed load."""
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copy_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy_state(v) for v in obj)
    return obj


def load_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    *,
    restore_rng: bool = True,
) -> Checkpoint:
    """Load the current checkpoint of ``folder`` into ``model`` (and ``optimizer``, ``scheduler``, RNGs).

    Every file is read and validated (format, checksums, keys, shapes, dtypes, optimizer and scheduler settings,
    generator states) before anything is modified, and should applying still fail, the model, optimizer and
    scheduler are rolled back; so on a :class:`CheckpointError` nothing was changed. Never executes code.
    With ``restore_rng=False`` the generators are left alone; call :meth:`Checkpoint.restore_rng` later (the
    trainer does so after re-creating the epoch's data iterator, which may itself draw random numbers).

    Returns:
        A :class:`Checkpoint` with the saved trainer ``state`` and ``best_weights``.
    """
    folder = Path(folder)
    sub = _current_dir(folder)
    source = str(sub)
    doc = read_json(sub / _STATE_JSON)
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{sub / _STATE_JSON}: not an rnnkit checkpoint state")
    if doc.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{sub / _STATE_JSON}: checkpoint version {doc.get('version')!r} is not supported")
    files = _check_files(doc.get("files"), source)
    weights = load_safetensors(sub / _MODEL, sha256=files[_MODEL])
    _check_against(model.state_dict(), weights, str(sub / _MODEL))
    best = None
    if _BEST in files:
        best = load_safetensors(sub / _BEST, sha256=files[_BEST])
        _check_against(model.state_dict(), best, str(sub / _BEST))
    tensors = load_safetensors(sub / _STATE_TENSORS, sha256=files[_STATE_TENSORS])
    try:
        opt_sd = _decode(doc.get("optimizer"), tensors, source)
        sched_sd = _decode(doc.get("scheduler"), tensors, source)
        state = _decode(doc.get("state"), tensors, source)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{source}: malformed checkpoint state ({e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: the trainer state is malformed")
    if optimizer is not None:
        if opt_sd is None:
            raise CheckpointError(f"{source}: the checkpoint holds no optimizer state")
        _check_optimizer(optimizer, opt_sd, source)
    if scheduler is not None:
        if sched_sd is None:
            raise CheckpointError(f"{source}: the checkpoint holds no scheduler state")
        _check_scheduler(scheduler, sched_sd, source)
    rng_json = doc.get("rng")
    if rng_json is not None and not _rng_ok(rng_json, tensors):
        raise CheckpointError(f"{source}: the checkpoint's RNG state is incomplete or malformed")

    # everything validated: apply, rolling back if torch still refuses something
    before = (
        _copy_state(model.state_dict()),
        None if optimizer is None else _copy_state(optimizer.state_dict()),
        None if scheduler is None else _copy_state(scheduler.state_dict()),
    )
    try:
        model.load_state_dict(weights)
        if optimizer is not None:
            optimizer.load_state_dict(opt_sd)
        if scheduler is not None:
            scheduler.load_state_dict(sched_sd)
    except Exception as e:
        model.load_state_dict(before[0])
        if optimizer is not None:
            optimizer.load_state_dict(before[1])
        if scheduler is not None:
            scheduler.load_state_dict(before[2])
        raise CheckpointError(f"{source}: the checkpoint cannot be applied ({e}); nothing was changed") from None
    rng_tensors = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    ck = Checkpoint(state=state, best_weights=best, path=sub, rng_json=rng_json, rng_tensors=rng_tensors)
    if restore_rng:
        ck.restore_rng()
    return ck
