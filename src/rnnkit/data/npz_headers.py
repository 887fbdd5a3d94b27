"""An ``.npz`` file's arrays checked from their ``.npy`` headers before NumPy allocates them (issue 13).

``np.load`` allocates the shape a header declares before it reads a byte of data: a header claiming
(10^6, 10^6, 3) float32 ends in an allocator error, a zip bomb in gigabytes. :func:`check_npz_headers` reads each
member's header (``np.lib.format.read_array_header_1_0`` / ``_2_0``) and refuses in one line an array over
:data:`NPZ_ARRAY_LIMIT`, one declaring more bytes than the archive holds for it, or one that would not fit in the
memory available (:func:`rnnkit.ranges.check_memory`).
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.ranges import check_memory

__all__ = ["NPZ_ARRAY_LIMIT", "check_npz_headers"]

NPZ_ARRAY_LIMIT = 2**32
"""The most bytes one array of an ``.npz`` file may declare (4 GiB); its header is read before anything is
allocated, and a larger array, or one declaring more bytes than the file holds, is refused in one line."""


def _npz_header(f: Any, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an ``.npy`` member declares, read from its header alone (no allocation)."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:  # (3, 0): a UTF-8 header, read the same way
        shape, _, dtype = fmt._read_array_header(f, version)
    return tuple(int(d) for d in shape), np.dtype(dtype)


def check_npz_headers(path: str | Path, where: str | None = None) -> None:
    """Refuse an ``.npz`` file whose ``X`` or ``y`` declares more than :data:`NPZ_ARRAY_LIMIT` bytes, more bytes than
    the archive holds for it, or more than the memory available, from the ``.npy`` headers alone (NumPy would
    otherwise allocate the declared array first: a header claiming (10^6, 10^6, 3) ends in an allocator error)."""
    where = where or str(path)
    with open(path, "rb") as head:
        if head.read(6) == b"\x93NUMPY":  # one .npy array, never loaded (its header could ask for any size)
            raise ValueError(
                f"{where} holds a single array, not an .npz archive; save one with np.savez(path, X=X, y=y)"
            )
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{where} is not a NumPy .npz file ({e}); save one with np.savez(path, X=X, y=y)") from None
    with zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in ("X", "y") or not info.filename.endswith(".npy"):
                continue
            try:
                with zf.open(info) as f:
                    shape, dtype = _npz_header(f, name)
                    header = f.tell()
            except (OSError, ValueError, EOFError, SyntaxError, TypeError, zipfile.BadZipFile) as e:
                raise ValueError(f"{where}: array {name!r} has no valid .npy header ({e}); corrupt file") from None
            if dtype.hasobject:
                continue  # refused by np.load(allow_pickle=False), with the message that says what to save instead
            if any(d < 0 for d in shape):
                raise ValueError(f"{where}: array {name!r} declares the shape {shape}; the file is corrupt")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > NPZ_ARRAY_LIMIT:
                raise ValueError(
                    f"{where}: array {name!r} declares shape {shape} of {dtype} ({nbytes:.3g} bytes), more than the "
                    f"{NPZ_ARRAY_LIMIT // 2**30} GiB rnnkit reads per array; use a smaller file"
                )
            if nbytes > info.file_size - header:
                raise ValueError(
                    f"{where}: array {name!r} declares shape {shape} of {dtype} ({nbytes} bytes) but the archive "
                    f"holds {max(0, info.file_size - header)} bytes for it; the file is truncated or corrupt"
                )
            # read, then converted to float64 and filled: about three copies at most
            check_memory(3 * nbytes, f"{where}: array {name!r} of shape {shape}", "use a smaller file")
