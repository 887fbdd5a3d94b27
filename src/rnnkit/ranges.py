"""The allowed range of every number rnnkit takes, in one place (issue 13, "ranges for every number").

The command line checks them as ``argparse`` types (:func:`arg`, via :mod:`rnnkit.cliutil`: a usage error, one
line, exit 2) and the library with :func:`check` (``ValueError`` with the same words). A range's upper end is a
documented cap on requests that would otherwise be unbounded (``--num``, ``--horizon``, ``--beam``, lengths,
sizes): beyond it rnnkit refuses in one line instead of running for hours or until memory runs out. The table is
printed in docs/errors.md ("Ranges").

A leaf module: it imports nothing from rnnkit.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
from dataclasses import dataclass

__all__ = [
    "CONFUSION_DENSE_MAX",
    "CONFUSION_PLOT_MAX",
    "RANGES",
    "MemoryLimitError",
    "Range",
    "arg",
    "available_memory",
    "check",
    "check_memory",
    "check_value",
    "validator",
]


@dataclass(frozen=True)
class Range:
    """``lo ≤ value ≤ hi`` (strict where ``lo_open``/``hi_open``); ``integer`` values only when set; ``zero`` also
    allows exactly 0 below ``lo`` (temperature 0 means the argmax)."""

    lo: float
    hi: float
    integer: bool = True
    lo_open: bool = False
    zero: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        lo = "(" if self.lo_open else "["
        hi = ")" if self.hi_open else "]"
        text = (
            "an integer in " if self.integer else "a finite number in "
        ) + f"{lo}{_fmt(self.lo)}, {_fmt(self.hi)}{hi}"
        return f"0 or {text}" if self.zero else text

    def holds(self, value: float) -> bool:
        if isinstance(value, bool):
            return False
        if self.integer and (not isinstance(value, int) and not (isinstance(value, float) and value.is_integer())):
            return False
        if not math.isfinite(value):
            return False
        if self.zero and value == 0:
            return True
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below


def _fmt(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(float(x))


SIZE_CAP = 65_536
LENGTH_CAP = 100_000

CONFUSION_DENSE_MAX = 500
"""Up to this many classes ``confusion.json`` holds the whole ``C × C`` matrix; above it only the nonzero cells
(``[true, predicted, count]``), so 10,000 classes write at most one cell per test item, not 10^8 zeros."""
CONFUSION_PLOT_MAX = 100
"""Up to this many classes a run draws ``confusion.png``; above it the plot (unreadable, and gigabytes to draw) is
skipped with one line saying so."""

RANGES: dict[str, Range] = {
    # training
    "seed": Range(0, 2**32 - 1),
    "epochs": Range(1, 100_000),
    "batch_size": Range(1, SIZE_CAP),
    "lr": Range(0, 10, integer=False, lo_open=True),
    "dropout": Range(0, 1, integer=False, hi_open=True),
    "label_smoothing": Range(0, 1, integer=False, hi_open=True),
    "token_dropout": Range(0, 1, integer=False, hi_open=True),
    "ngram_filters": Range(0, 4096),  # classifier: filters per width of the character n-gram convolutions
    "ngram_order": Range(0, 8),  # text classify/generate: the count member's longest context of symbols (0: none)
    "ngram_buckets": Range(0, 2**24),  # classifier on tokens: rows of the hashed n-gram bag (0: none)
    "ngram_dropout": Range(0, 1, integer=False, hi_open=True),
    "ema": Range(0, 1, integer=False, hi_open=True),
    "weight_decay": Range(0, 10, integer=False),
    "val_fraction": Range(0, 1, integer=False, hi_open=True),
    "augment": Range(0, 10, integer=False),  # series classification: scale/jitter strength of training batches
    "kernels": Range(0, 1_000_000),  # series classification: random-kernel features of the ridge member (0: none)
    "hydra": Range(0, 4096),  # series classification: competing-kernel groups of the ridge member (0: none; even)
    "dtw_steps": Range(0, 10_000),  # series classification: the DTW member's mean read length (0: none)
    "downsample": Range(0, 10_000),  # series classification: steps averaged into one (0: chosen from the data)
    "max_minutes": Range(0, 10**6, integer=False, lo_open=True),
    "hidden": Range(1, SIZE_CAP),
    "embed": Range(1, SIZE_CAP),
    "layers": Range(1, 64),
    "window": Range(1, 10_000),
    "max_len": Range(1, LENGTH_CAP),
    "max_items": Range(1, 10**8),
    "context": Range(1, LENGTH_CAP),
    "season": Range(1, LENGTH_CAP),
    "tbptt": Range(1, LENGTH_CAP),
    "ensemble": Range(1, 64),
    # using a run
    "num": Range(1, 100_000),
    "temperature": Range(0.01, 100, integer=False, zero=True),
    "top_k": Range(1, 1_000_000),
    "beam": Range(1, 64),
    "horizon": Range(1, LENGTH_CAP),
    "sample_max_len": Range(1, 10_000),
    "seq2seq_item": Range(1, 1_000),  # symbols of one item a seq2seq run transcribes (decoding ~ its square)
    # experiments
    "lengths": Range(1, 10_000),
    "steps": Range(1, 10**7),
    "repeats": Range(1, 10_000),
    "budget": Range(0, 86_400, integer=False, lo_open=True),
    "threads": Range(1, 1024),
}
"""Name → range. Caps: sizes (hidden, embed, batch) 65,536; lengths and horizons 100,000 (10,000 for the
``memory``/``gradients`` experiment lengths, which hold every step in memory, and for ``sample --max-len``);
``--num`` 100,000 items; ``--beam`` 64; ``--max-minutes`` 10^6 (about two years); a seq2seq item 1,000 symbols
(attention over S source symbols for up to 2·S + 5 output steps, times the beam: the time grows with S²)."""


def check_value(name: str, value: float, flag: str | None = None) -> None:
    """``ValueError`` naming ``flag`` (default ``--name``) unless ``value`` lies in ``RANGES[name]``."""
    r = RANGES[name]
    if not r.holds(value):
        flag = flag or "--" + name.replace("_", "-")
        raise ValueError(f"{flag} must be {r.describe()}, got {value!r}")


def check(**values: float | None) -> None:
    """:func:`check_value` for each ``name=value`` given (None is skipped: the default applies)."""
    for name, value in values.items():
        if value is not None:
            check_value(name, value)


def validator(name: str):
    """A value check for schemas (a pydantic ``AfterValidator``): returns the value when it lies in
    ``RANGES[name]``, else ``ValueError("must lie in [lo, hi]")`` — the server's fields use the same ranges as the
    command line and the library."""
    r = RANGES[name]

    lo, hi = ("(" if r.lo_open else "["), (")" if r.hi_open else "]")
    words = f"must lie in {lo}{_fmt(r.lo)}, {_fmt(r.hi)}{hi}" + (" or be 0" if r.zero else "")

    def validate(value: float) -> float:
        if not r.holds(value):
            raise ValueError(words)
        return value

    validate.__name__ = f"in_range_{name}"
    return validate


def arg(name: str) -> type:
    """An ``argparse`` type for the range ``name``: parses an int (or float) and checks it, else a usage error
    (one line, exit 2)."""
    r = RANGES[name]

    def parse(text: str) -> float:
        try:
            value: float = int(text) if r.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {r.describe()}, got {text!r}") from None
        if not r.holds(value):
            raise argparse.ArgumentTypeError(f"expected {r.describe()}, got {text!r}")
        return value

    parse.__name__ = name  # argparse names the type in its messages
    return parse  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------------
# memory: resources are checked before they are spent


def _meminfo_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (Linux), else free physical pages × page size, else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _address_space_left() -> int | None:
    """What ``RLIMIT_AS`` (``ulimit -v``) still allows this process to map, or None without a limit."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, ValueError, StopIteration):
        used = 0
    return max(0, soft - used)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the smaller of the machine's available memory (``MemAvailable`` in
    /proc/meminfo, else ``os.sysconf`` free pages) and what an address-space limit (``ulimit -v``) leaves; None when
    neither can be read (then nothing is refused)."""
    known = [m for m in (_meminfo_available(), _address_space_left()) if m is not None]
    return min(known) if known else None


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**28 else f"{n / 2**20:.3g} MiB"


class MemoryLimitError(ValueError, MemoryError):
    """A request refused because its memory estimate exceeds what is available (a ``ValueError``: bad input, one
    line, exit 2; and a ``MemoryError``)."""


def check_memory(need: float, what: str, fix: str) -> None:
    """:class:`MemoryLimitError` in one line when ``need`` bytes (an estimate made from the settings, before anything is
    allocated) exceed :func:`available_memory`: ``WHAT needs about N GiB, more than the M GiB available; FIX``."""
    have = available_memory()
    if have is not None and need > have:
        raise MemoryLimitError(
            f"{what} needs about {_gib(need)}, more than the {_gib(have)} of memory available; {fix}"
        )
