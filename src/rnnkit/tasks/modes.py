"""Running a model in eval mode for a block, its own mode restored afterwards (also when the block raises)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["eval_mode"]


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model): ...`` — ``model.eval()`` for the block (dropout off, batch-norm running
    statistics), then ``model.train(was)`` with the mode it had before, whatever happens in the block."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)
