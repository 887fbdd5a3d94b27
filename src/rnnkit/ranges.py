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
from dataclasses import dataclass

__all__ = ["RANGES", "Range", "arg", "check", "check_value"]


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

RANGES: dict[str, Range] = {
    # training
    "seed": Range(0, 2**32 - 1),
    "epochs": Range(1, 100_000),
    "batch_size": Range(1, SIZE_CAP),
    "lr": Range(0, 10, integer=False, lo_open=True),
    "dropout": Range(0, 1, integer=False, hi_open=True),
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
    # experiments
    "lengths": Range(1, 10_000),
    "steps": Range(1, 10**7),
    "repeats": Range(1, 10_000),
    "budget": Range(0, 86_400, integer=False, lo_open=True),
}
"""Name → range. Caps: sizes (hidden, embed, batch) 65,536; lengths and horizons 100,000 (10,000 for the
``memory``/``gradients`` experiment lengths, which hold every step in memory, and for ``sample --max-len``);
``--num`` 100,000 items; ``--beam`` 64; ``--max-minutes`` 10^6 (about two years)."""


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
