"""Command-line helpers shared by every ``rnnkit`` subcommand: a leaf module that imports nothing from rnnkit but
:mod:`rnnkit.ranges`, so that the modules declaring subcommands (:mod:`rnnkit.cli`, :mod:`rnnkit.export`,
:mod:`rnnkit.serve`) and the run kinds' flags (:mod:`rnnkit.runs.kind`) share them without importing
:mod:`rnnkit.cli`.

- :class:`Parser` — usage errors are one line ``rnnkit: error: ...`` on stderr, exit code 2;
- :class:`Formatter` — shows every flag's default and keeps the line breaks of descriptions;
- :func:`positive_int` — an ``argparse`` type for counts;
- :func:`ranged` — the ``argparse`` type of a number with a range in :data:`rnnkit.ranges.RANGES` (the library
  checks the same ranges with :func:`rnnkit.ranges.check`);
- :func:`counted` — ``"1 epoch"``, ``"3 epochs"`` in printed lines.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rnnkit import ranges

__all__ = ["PROG", "Formatter", "Parser", "counted", "positive_int", "ranged"]

PROG = "rnnkit"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit code 2), like rnnkit's other errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = f" (see '{self.prog} --help')"
        self.exit(2, f"{PROG}: error: {message}{hint}\n")


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every flag's default, and keeps the line breaks of descriptions and epilogs.

    A flag whose default is None says in its own help what happens without it.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def positive_int(text: str) -> int:
    """``argparse`` type: a positive integer (``--epochs 3``), else a usage error naming the value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def ranged(name: str) -> Callable[[str], float]:
    """``argparse`` type of the number ``name`` of :data:`rnnkit.ranges.RANGES`: out of its range (or not a finite
    number) is a usage error, one line, exit 2."""
    return ranges.arg(name)


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, the noun with an ``s`` unless ``n`` is 1: ``counted(1, "epoch") == "1 epoch"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
