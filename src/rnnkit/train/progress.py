"""What the trainer shows while it trains: a tqdm bar on a terminal, plain log lines otherwise (or nothing), one
summary line per epoch, and Ctrl-C turned into a stop request (:func:`sigint_requests_stop`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["Progress", "epoch_line", "fmt", "fmt_time", "sigint_requests_stop", "stderr_log"]


def fmt_time(seconds: float) -> str:
    """``H:MM:SS`` of a duration (whole seconds, never negative)."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def fmt(x: Any) -> str:
    """A metric for a log line: four decimals, or four significant digits for very small or large floats."""
    if isinstance(x, float):
        return f"{x:.4g}" if (abs(x) < 1e-3 or abs(x) >= 1e4) and x != 0 else f"{x:.4f}"
    return str(x)


def epoch_line(row: Mapping[str, Any], epochs: int, best: bool) -> str:
    """One log line summing up an epoch's curve row."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"train_loss {fmt(row['train_loss'])}"]
    parts += [f"{k} {fmt(v)}" for k, v in row.items() if k.startswith("val_") and v is not None]
    parts += [
        f"lr {row['lr']:.3g}",
        f"grad_norm {row['grad_norm']:.3g} (max {row['grad_norm_max']:.3g})",
        f"{row['items_per_second']:.0f} items/s",
        f"{row['seconds']:.1f}s",
    ]
    return "  ".join(parts) + ("  * best" if best else "")


def stderr_log(line: str) -> None:
    """The default log: one line on stderr, flushed."""
    print(line, file=sys.stderr, flush=True)


class Progress:
    """A tqdm bar on a terminal, plain log lines otherwise (or nothing).

    ``mode``: "auto" (a bar when stderr is a terminal, else "log"), "bar", "log" or "none"; ``total`` optimizer
    steps of the run, ``initial`` those already taken (a resume), ``log_every`` steps between log lines.
    """

    def __init__(self, mode: str, total: int, initial: int, log: Callable[[str], None], log_every: int):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode, self.total, self.log, self.log_every = mode, total, log, log_every
        self.t0, self.step0 = time.monotonic(), initial
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            try:
                width_known = os.get_terminal_size(sys.stderr.fileno()).columns > 0
            except (OSError, ValueError, AttributeError):
                width_known = False
            # some ptys report 0 columns, which makes tqdm draw an empty bar: fall back to a fixed width
            cols, rows = shutil.get_terminal_size((100, 24))
            size = {"dynamic_ncols": True} if width_known else {"ncols": cols, "nrows": rows}
            self.bar = tqdm(total=total, initial=initial, unit="step", file=sys.stderr, **size)

    def eta(self, step: int) -> str:
        """Estimated time left after global step ``step``, from the pace of this call so far."""
        done = step - self.step0
        if done <= 0:
            return "?"
        return fmt_time((time.monotonic() - self.t0) / done * (self.total - step))

    def on_step(self, epoch: str, step: int, in_epoch: str, loss: float, items_per_s: float, extra: str) -> None:
        """Advance the bar, or log a line every ``log_every`` steps."""
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch}", refresh=False)
            self.bar.set_postfix_str(f"loss={loss:.4f} {items_per_s:.0f} items/s", refresh=False)
            self.bar.update(1)
        elif self.mode == "log" and self.log_every and step % self.log_every == 0:
            self.log(
                f"epoch {epoch} step {in_epoch} loss {loss:.4f} {extra} {items_per_s:.0f} items/s eta {self.eta(step)}"
            )

    def line(self, text: str) -> None:
        """A message line (above the bar), unless the mode is "none"."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.mode != "none":
            self.log(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def sigint_requests_stop(enabled: bool, request_stop: Callable[[], None]) -> Iterator[None]:
    """While inside, Ctrl-C calls ``request_stop()`` instead of interrupting; a second Ctrl-C interrupts at once.

    Does nothing unless ``enabled`` and on the main thread (only it receives signals); the previous handler is
    restored on leaving.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    prev = signal.getsignal(signal.SIGINT)
    if prev is None:
        prev = signal.default_int_handler

    def handler(signum: int, frame: Any) -> None:
        request_stop()
        signal.signal(signal.SIGINT, prev)  # a second Ctrl-C interrupts at once

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, prev)
