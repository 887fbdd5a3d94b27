"""Safe file I/O: atomic writes, JSON, and safetensors weights that are checked before they are used.

Everything rnnkit writes to disk goes through :func:`write_bytes_atomic`: the bytes go to a temporary file in the
target's folder, are flushed and fsynced, then ``os.replace`` swaps the file in and the folder is fsynced (new
folders are fsynced into their parents). A crash at any moment leaves either the previous file or the new one,
never a mix; the hidden temporary a killed writer leaves behind is deleted by the next write of that file.

Nothing here unpickles: tensors live in safetensors files, everything else in JSON. A file that is truncated,
corrupt, a pickle, or whose tensors do not match the model is refused with :class:`CheckpointError` (a
``ValueError``) *before* anything is copied into the model. :func:`check_weights_file` compares a file's header with
a model built on the ``meta`` device, so a config asking for a huge model is refused before any memory is allocated
for it. Files carry a sha256 where a reader must detect a change (:func:`save_safetensors_atomic` returns it,
:func:`load_safetensors` checks it).

Training checkpoints (a resumable folder of these files) are built on this module in
:mod:`rnnkit.train.checkpoints`; this module imports nothing from the trainer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import Tensor, nn

__all__ = [
    "WEIGHTS_FILE",
    "CheckpointError",
    "check_tensors_fit",
    "check_weights_file",
    "fsync_dir",
    "load_run_weights",
    "load_safetensors",
    "load_state_dict_checked",
    "make_dirs",
    "read_json",
    "read_regular_file",
    "read_safetensors_header",
    "save_run_weights",
    "save_safetensors_atomic",
    "validate_model",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

WEIGHTS_FILE = "model.safetensors"
"""Name of the final weights file inside a run folder."""

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


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Persist the entries of ``folder`` (a rename or a new file in it) by fsyncing it; best effort where the
    platform cannot."""
    _fsync_dir(Path(folder))  # through the module global, so that a test's replacement sees every call


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


JSON_LIMIT = 256 * 2**20
"""The largest JSON file rnnkit reads back (config.json, split.json, a checkpoint's state.json): 256 MiB."""
WEIGHTS_LIMIT = 64 * 2**30
"""The largest safetensors file rnnkit reads whole: 64 GiB."""


def open_regular(path: str | os.PathLike[str], limit: int) -> int:
    """A read-only descriptor of ``path`` after checking that it is a regular file of at most ``limit`` bytes.

    Opened without blocking, so a FIFO or a device (``/dev/zero``) is refused in one line instead of hanging or
    reading until memory runs out. Raises :class:`CheckpointError` naming the file."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise CheckpointError(f"{path} is not a regular file (a device, pipe or socket); rnnkit reads only files")
    if info.st_size > limit:
        os.close(fd)
        raise CheckpointError(f"{path} has {info.st_size} bytes, more than the {limit} rnnkit reads for it; corrupt?")
    return fd


def read_regular_file(path: str | os.PathLike[str], limit: int = JSON_LIMIT) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (see :func:`open_regular`)."""
    fd = open_regular(path, limit)
    try:
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(size + 1)  # one byte more: a file that grows while it is read is noticed
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > size:
        raise CheckpointError(f"{path} grew while it was read; is another process writing it?")
    return data


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing or malformed file raises :class:`CheckpointError` naming it.

    Only a regular file of at most :data:`JSON_LIMIT` bytes is read (:func:`read_regular_file`)."""
    path = Path(path)
    data = read_regular_file(path, JSON_LIMIT)
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


def validate_model(
    model: type[BaseModel],
    data: Any,
    path: str | os.PathLike[str],
    *,
    prefix: str = "",
    fix: str = "the file was edited or damaged",
    error: type[ValueError] = ValueError,
) -> Any:
    """``data`` (a file's parsed JSON) checked against the pydantic ``model``; returns it unchanged, or raises
    ``error`` in one line: ``PATH: field PREFIXa.b: what was expected (got ...); FIX`` for the first problem."""
    try:
        model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = prefix + ".".join(str(p) for p in first["loc"]) if first["loc"] else prefix.rstrip(".")
        field = model.model_fields.get(str(first["loc"][0])) if first["loc"] else None
        if field is not None and field.description:  # the words a reader knows the field by
            where += f" ({field.description})"
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            msg = f"has no {str(first['loc'][-1])!r} ({msg.lower()})"
        got = first.get("input")
        shown = "" if isinstance(got, (dict, list)) or first["type"] == "missing" else f" (got {got!r:.60})"
        more = f"; {e.error_count() - 1} more problem(s)" if e.error_count() > 1 else ""
        raise error(f"{path}: field {where or '(the whole file)'}: {msg}{shown}{more}; {fix}") from None
    return data


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
    data = read_regular_file(path, WEIGHTS_LIMIT)
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


def check_tensors_fit(
    expected: Mapping[str, Tensor], tensors: Mapping[str, Tensor], source: str, *, strict: bool = True
) -> None:
    """Raise :class:`CheckpointError` if ``tensors`` does not fit ``expected`` (a state_dict) by keys, shapes and
    float-ness; ``source`` names the file in the message; ``strict=False`` allows missing and extra keys."""
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
    check_tensors_fit(model.state_dict(), tensors, source, strict=strict)
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
        with os.fdopen(open_regular(path, WEIGHTS_LIMIT), "rb") as f:
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
    check_tensors_fit(model.state_dict(), read_safetensors_header(path), str(path), strict=strict)


def save_run_weights(folder: str | os.PathLike[str], model: nn.Module) -> Path:
    """Write ``model``'s state_dict to ``folder/model.safetensors`` atomically; returns the file's path."""
    path = Path(folder) / WEIGHTS_FILE
    save_safetensors_atomic(path, model.state_dict(), metadata={"format": "rnnkit-weights"})
    return path


def load_run_weights(folder: str | os.PathLike[str], model: nn.Module, *, strict: bool = True) -> None:
    """Load ``folder/model.safetensors`` (or ``folder`` itself if it is a file) into ``model``.

    Raises :class:`CheckpointError` (a ``ValueError``) for a missing, corrupt or pickled file, NaN or infinite
    weights or mismatched keys/shapes, leaving the model untouched.
    """
    path = Path(folder)
    if path.is_dir() or not path.suffix:
        path = path / WEIGHTS_FILE
    if not path.exists():
        raise CheckpointError(f"{path}: no weights file; is this a finished run folder?")
    tensors = load_safetensors(path)
    for name, tensor in tensors.items():  # a trained model's weights are finite: NaN/inf would print nan everywhere
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{path}: tensor {name!r} holds {bad} NaN or infinite value(s); the weights are damaged: "
                "retrain the run, or resume it from its checkpoint"
            )
    load_state_dict_checked(model, tensors, str(path), strict=strict)
