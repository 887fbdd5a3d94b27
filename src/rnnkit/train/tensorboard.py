"""TensorBoard logging of a fit (``rnnkit train ... --tensorboard DIR``): the numbers of ``curve.csv``, per
optimizer step and per epoch, through :func:`~rnnkit.train.fit`'s ``on_step`` and ``on_epoch_end`` callbacks.

Tags (the x axis is the global optimizer step, 1-based, as curve.csv's ``step`` column):

* every step: ``step/train_loss`` (that step's mean batch loss), ``step/lr`` (the learning rate the step used) and
  ``step/grad_norm`` (the global L2 norm of all gradients, before clipping);
* every epoch, at its last step: ``epoch/COLUMN`` for each numeric column of its curve.csv row (``epoch``,
  ``train_loss``, ``val_loss``, ``val_<metric>``, ``lr``, ``grad_norm`` (the epoch's mean of ``step/grad_norm``),
  ``grad_norm_max``, ``items_per_second``, ``seconds``); an empty cell (no validation) is not logged.

Values are written as TensorBoard's ordinary scalars (``add_scalar``: float32, as Keras, Lightning and Hugging Face
write them), so an event holds curve.csv's float64 number rounded to float32, the precision TensorBoard keeps for
every scalar. (Double-precision scalars would keep every digit, but TensorBoard's default fast loader does not show
them.)
A resumed fit appends to the same folder and continues the step numbers; events at or after the step it resumes
from (logged by the interrupted process after its last checkpoint) are purged (``SummaryWriter(purge_step=...)``).
Under torchrun only rank 0 writes (``step/train_loss`` is then the loss over rank 0's rows).

``torch.utils.tensorboard`` needs the ``tensorboard`` package (the ``tensorboard`` extra); without it
:func:`require_tensorboard` refuses in one line.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnkit import distributed as dist_

if TYPE_CHECKING:
    from rnnkit.train.loop import Trainer

__all__ = ["TensorBoardLogger", "require_tensorboard"]

INSTALL_HINT = "pip install 'rnnkit[tensorboard]'"


def require_tensorboard() -> None:
    """Raise ``ValueError`` (one line naming the extra) unless the ``tensorboard`` package can be imported."""
    try:
        importlib.import_module("tensorboard")
    except ImportError:
        raise ValueError(f"--tensorboard needs the tensorboard package: {INSTALL_HINT}") from None


class TensorBoardLogger:
    """Writes a fit's step and epoch scalars to the TensorBoard folder ``log_dir`` (see the module docstring).

    Use it as a context manager around :func:`~rnnkit.train.fit` and pass :meth:`callbacks` to it::

        with TensorBoardLogger("runs/tb/clf") as tb:
            fit(model, train, val, config, out_dir, **tb.callbacks())

    Raises ``ValueError`` when the tensorboard package is missing and ``OSError`` when ``log_dir`` cannot be made,
    both before anything is trained.
    """

    def __init__(self, log_dir: str | Path) -> None:
        require_tensorboard()
        self.log_dir = Path(log_dir)
        if dist_.is_main():
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer: Any = None

    def callbacks(self) -> dict[str, Callable[..., None]]:
        """The keyword arguments of :func:`~rnnkit.train.fit` that log: ``on_step`` and ``on_epoch_end``."""
        return {"on_step": self.on_step, "on_epoch_end": self.on_epoch_end}

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        self._writer.add_scalar(tag, float(value), step)

    def _open(self, step: int) -> bool:
        """Open the writer on the first step of this fit (``step``: that step's number); False on ranks > 0."""
        if not dist_.is_main():
            return False
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # a resume continues at `step`: anything logged there or later by the interrupted process goes
            self._writer = SummaryWriter(str(self.log_dir), purge_step=step)
        return True

    def on_step(self, trainer: Trainer) -> None:
        """After an optimizer step: ``step/train_loss``, ``step/lr``, ``step/grad_norm`` at the global step."""
        step = int(trainer.state["step"])
        if not self._open(step):
            return
        for key, value in trainer.last_step.items():
            self._scalar(f"step/{key}", value, step)

    def on_epoch_end(self, trainer: Trainer, row: Mapping[str, Any]) -> None:
        """After an epoch: ``epoch/COLUMN`` for each numeric value of its curve.csv ``row``, at its last step."""
        step = int(row["step"])
        if not self._open(step):
            return
        for key, value in row.items():
            if key != "step":
                self._scalar(f"epoch/{key}", value, step)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file (if one was opened)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
