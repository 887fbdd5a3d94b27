"""Run one built-in cell over a whole sequence, fast: torch's fused kernels where exact, own BPTT otherwise.

Shape symbols: T time, B batch, I input, H hidden, G gates (rnn 1, gru 3, lstm 4).

Two paths, one job (a test asserts they agree, forward and backward, in float64):

* :func:`run_fused` calls the same ATen kernels torch.nn calls (oneDNN on CPU, cuDNN on CUDA) for the
  configurations torch.nn has: ``rnn``, ``lstm`` and ``gru`` with the reset after the matrix product.
* :func:`run_own` is rnnkit's own path, used for ``gru-before`` (the lecture's GRU) and available for every
  built-in cell (a kind of :data:`rnnkit.cells.CELLS` without a kernel in :data:`OWN_KERNELS` runs the autograd
  loop over its step function, :func:`run_loop`). It follows DESIGN.md §3: the input projection is one matrix
  product over all ``T·B`` rows (autograd differentiates it), the recurrence is a
  :class:`torch.autograd.Function` whose backward is a hand-written BPTT loop that stores each step's gate
  gradients, and the recurrent weight gradient is one matrix product over all steps after the loop. Nothing
  that needs grad is indexed per step. Everything that does not depend on the incoming gradient is precomputed
  over all ``T`` at once, so each step is a handful of large ops.

Variable lengths are handled with a step mask ``m`` ``(T, B, 1)``: where ``m = 0`` the state is carried
unchanged (``h_t = h_{t−1}``), so the state after the last step is the state at each sequence's last valid
step. The layer zeroes the outputs past each end.

Which kinds exist, their gate counts and which fused kernel is exact come from :data:`rnnkit.cells.CELLS`; this
module adds only the kernels. Each hand-written backward is checked against ``CellSpec.step`` run through
autograd (tests/test_engine.py walks the table: float64, gradcheck, masks, both directions).

* :func:`run_compiled` is the same design in C++ (``csrc/rnn.cpp``, built on first use by
  :mod:`~rnnkit.engine.build`): per step one GEMM into a preallocated buffer and the gate math as one vectorised
  loop, for every built-in kind on CPU float32/float64; it falls back to :func:`run_own` (one line) where the
  kernels cannot be built.

``engine="auto"`` picks among them by :func:`auto_engine` (the policy table is in :mod:`rnnkit.engine.policy`).

Modules: :mod:`~rnnkit.engine.fused` (torch's kernels), :mod:`~rnnkit.engine.own` (the own BPTT kernels),
:mod:`~rnnkit.engine.compiled` (the C++ kernels), :mod:`~rnnkit.engine.policy` (what ``auto`` runs),
:mod:`~rnnkit.engine.loop` (the autograd loop over a step function, and the stack of layers × directions),
:mod:`~rnnkit.engine.scan` (the diagonal linear recurrence of input-gated cells: compiled loop, PyTorch loop,
log-space parallel scan), :mod:`~rnnkit.engine.build` (C++ kernels built on first use).
"""

from rnnkit.cells import CELLS
from rnnkit.engine.compiled import (
    COMPILED_KINDS,
    compiled_available,
    run_compiled,
    run_compiled_zero,
    runs_compiled,
    step_compiled,
)
from rnnkit.engine.fused import FUSED_KINDS, run_fused
from rnnkit.engine.loop import bind_step, run_loop, run_stack
from rnnkit.engine.own import OWN_KERNELS, run_own
from rnnkit.engine.policy import ENGINES, auto_engine

__all__ = [
    "CELL_KINDS",
    "COMPILED_KINDS",
    "ENGINES",
    "FUSED_KINDS",
    "OWN_KERNELS",
    "auto_engine",
    "bind_step",
    "compiled_available",
    "run_compiled",
    "run_compiled_zero",
    "run_fused",
    "run_loop",
    "run_own",
    "run_stack",
    "runs_compiled",
    "step_compiled",
]

CELL_KINDS = tuple(CELLS)
"""Built-in cell kinds the engine runs (the keys of :data:`rnnkit.cells.CELLS`); ``gru`` is reset-after
(torch.nn), ``gru_before`` the lecture's."""
