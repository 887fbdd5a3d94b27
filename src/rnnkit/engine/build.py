"""Compiled kernels, built on first use: one loader for every C++ source that ships in the package.

rnnkit's compiled kernels are C++ files under ``rnnkit/engine/csrc/``. They are never built at install time (a
build-time ``torch`` requirement would make pip fetch a multi-GB CUDA torch into an isolated build
environment); the first call that needs one compiles it with :func:`torch.utils.cpp_extension.load` (ninja and a
C++ compiler), into a cache folder per torch version and source hash, so later processes load it in well under a
second. While it builds, one line on stderr says so, and one line gives the time it took.

Where no compiler or ninja is found, the build fails, or ``RNNKIT_COMPILED=0`` is set, :func:`load_extension`
returns None after one line on stderr naming the reason, and every caller runs its pure-PyTorch path: a missing
compiler never raises.

Environment:

* ``RNNKIT_COMPILED=0`` — never build or load compiled kernels (the pure-PyTorch paths run).
* ``RNNKIT_EXTENSIONS_DIR`` — where built kernels are cached (default ``~/.cache/rnnkit/extensions``).
* ``CXX`` — the C++ compiler (default ``c++``), as torch's own builder reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import IO

import torch

try:  # POSIX: a lock the kernel releases when its process dies
    import fcntl
except ImportError:  # pragma: no cover - Windows: torch's own lock file alone
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "compiled_enabled",
    "extension_status",
    "load_extension",
    "load_threaded_extension",
    "openmp_flags",
    "source_dir",
]

_LOCK = threading.Lock()
_LOADED: dict[str, ModuleType | None] = {}
_REASONS: dict[str, str] = {}

# -O3 and the host's vector units let the compiler vectorise the fused gate loops; -ffp-contract=off keeps
# float64 results reproducible against torch's reference (no FMA contraction changing the last bit).
_CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-std=c++17"]


def compiled_enabled() -> bool:
    """False when ``RNNKIT_COMPILED=0`` (or ``false``/``no``/``off``) turns compiled kernels off."""
    return os.environ.get("RNNKIT_COMPILED", "1").strip().lower() not in ("0", "false", "no", "off")


def source_dir() -> Path:
    """The folder of the C++ sources that ship in the package (``rnnkit/engine/csrc``)."""
    return Path(str(resources.files("rnnkit.engine") / "csrc"))


def _cache_root() -> Path:
    root = os.environ.get("RNNKIT_EXTENSIONS_DIR")
    if root:
        return Path(root).expanduser()
    return Path.home() / ".cache" / "rnnkit" / "extensions"


def _missing_tool() -> str | None:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx!r} not found)"
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available():
        return "ninja not found"
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                return line
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _say(line: str) -> None:
    print(f"rnnkit: {line}", file=sys.stderr, flush=True)


def extension_status(name: str) -> str:
    """Why ``name`` is not loaded (after :func:`load_extension` returned None), or ``"loaded"``/``"not tried"``."""
    if _LOADED.get(name) is not None:
        return "loaded"
    return _REASONS.get(name, "not tried")


def load_extension(
    name: str,
    sources: list[str],
    *,
    extra_cflags: list[str] | None = None,
    say_start: bool = True,
    say_failure: bool = True,
) -> ModuleType | None:
    """Build (first use) or load the extension ``name`` from ``sources`` (file names under :func:`source_dir`).

    Returns the loaded module, or None with one line on stderr saying why (compiled kernels turned off, no
    compiler, build failure); the result is remembered for the process, so the line appears once. The build
    folder is keyed by torch's version and a hash of the sources and flags, so a changed source or another torch
    rebuilds instead of loading a stale library. ``say_start=False`` / ``say_failure=False`` leave out the line
    that a build starts / failed (a caller that tries again says it once).
    """
    with _LOCK:
        if name in _LOADED:
            return _LOADED[name]
        module = _load(name, sources, extra_cflags or [], say_start, say_failure)
        _LOADED[name] = module
        return module


def openmp_flags() -> list[str]:
    """``-fopenmp`` where torch runs on OpenMP and the compiler is GCC-like (Linux), else nothing.

    ``at::parallel_for`` is OpenMP inside torch's headers: compiled without the flag its ``#pragma omp parallel``
    is ignored and every "parallel" loop of a kernel runs on the calling thread (the matrix products, in torch,
    still use every thread). The OpenMP runtime itself is torch's, already loaded.
    """
    if not sys.platform.startswith("linux") or not torch.backends.openmp.is_available():
        return []  # Apple's clang has no -fopenmp, MSVC spells it /openmp: the kernels run on one thread there
    return ["-fopenmp"]


def load_threaded_extension(
    name: str, sources: list[str], *, extra_cflags: list[str] | None = None
) -> ModuleType | None:
    """:func:`load_extension` with :func:`openmp_flags`, so the kernels' ``at::parallel_for`` loops use torch's threads.

    Where that build fails (a compiler without OpenMP, e.g. clang without libomp) the same sources are built
    without the flag as ``NAME_serial`` (the same kernels on the calling thread) instead of falling back to the
    PyTorch path; stderr still gets one line that the build starts and, if the second fails too, one that it
    failed. Kernels built this way must give the same results on any number of threads.
    """
    flags = openmp_flags()
    if not flags:
        return load_extension(name, sources, extra_cflags=extra_cflags)
    module = load_extension(name, sources, extra_cflags=[*(extra_cflags or []), *flags], say_failure=False)
    if module is None and extension_status(name).startswith("build failed"):
        module = load_extension(name + "_serial", sources, extra_cflags=extra_cflags, say_start=False)
    return module


def _load(
    name: str, sources: list[str], extra_cflags: list[str], say_start: bool, say_failure: bool
) -> ModuleType | None:
    if not compiled_enabled():
        _REASONS[name] = "turned off by RNNKIT_COMPILED=0"
        return None
    missing = _missing_tool()
    if missing is not None:
        _REASONS[name] = missing
        _say(f"compiled kernels unavailable ({missing}); using the PyTorch path")
        return None
    paths = [source_dir() / s for s in sources]
    cflags = _CFLAGS + list(extra_cflags)
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.read_bytes())
    digest.update(" ".join(cflags).encode())
    digest.update(_cpu_model().encode())  # -march=native: a cache folder shared between machines never mixes CPUs
    tag = f"torch{torch.__version__.replace('+', '_')}-{digest.hexdigest()[:12]}"
    build_dir = _cache_root() / name / tag
    full_name = f"rnnkit_{name}_{digest.hexdigest()[:12]}"
    fresh = not any(build_dir.glob("*.so"))
    start = time.perf_counter()
    if fresh and say_start:
        _say(f"building the compiled {name} kernels (first use, once per torch version; about a minute)...")
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        from torch.utils.cpp_extension import load

        with _build_lock(build_dir):
            module = load(
                name=full_name,
                sources=[str(p) for p in _stage_sources(paths, build_dir)],
                extra_cflags=cflags,
                build_directory=str(build_dir),
                verbose=False,
            )
    except Exception as exc:  # any build or load failure falls back; the reason is kept for extension_status
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _REASONS[name] = f"build failed: {first[:200]}"
        if say_failure:
            _say(f"compiled {name} kernels unavailable (build failed: {first[:160]}); using the PyTorch path")
        return None
    if fresh:
        _say(f"built the compiled {name} kernels in {time.perf_counter() - start:.0f} s (cached in {build_dir})")
    return module


def _stage_sources(paths: list[Path], build_dir: Path) -> list[Path]:
    """Copies of ``paths`` inside ``build_dir`` (rewritten only when their bytes differ), for torch to build from.

    torch's ``build.ninja`` names the source files by path, and ninja rebuilds when a path changes: two checkouts or
    environments with the same sources (same cache folder: the key is the sources' hash) built from their own paths
    would keep overwriting each other's build, each process paying a full compile. Built from copies that live in the
    cache folder, every checkout hands ninja the same paths, and the first build serves them all. Called under
    :func:`_build_lock`.
    """
    staged_dir = build_dir / "src"
    staged_dir.mkdir(exist_ok=True)
    staged = []
    for path in paths:
        copy = staged_dir / path.name
        data = path.read_bytes()
        if not copy.is_file() or copy.read_bytes() != data:
            partial = copy.with_name(copy.name + ".partial")
            partial.write_bytes(data)
            os.replace(partial, copy)  # atomic: a reader never sees half a source
        staged.append(copy)
    return staged


@contextlib.contextmanager
def _build_lock(build_dir: Path) -> Iterator[IO[str] | None]:
    """Hold an exclusive ``flock`` on ``build_dir``'s lock while torch builds or loads the extension there.

    torch's builder guards a build folder with a plain ``lock`` file that only its owner removes: a process killed
    while building (Ctrl-C twice, SIGKILL, an out-of-memory kill) leaves it behind, and every later process waits
    on it for ever. The kernel releases a ``flock`` when its holder dies, so whoever holds this one knows no build
    is running in the folder, and a ``lock`` file found then is stale: it is removed before torch looks.
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield None
        return
    with open(build_dir.parent / f"{build_dir.name}.flock", "a+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # waits while another process builds; released on exit or death
        try:
            with contextlib.suppress(FileNotFoundError):
                (build_dir / "lock").unlink()  # left by a build killed mid-way: nobody else is building now
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
