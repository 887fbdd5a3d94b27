"""Recurrent layers: a cell run over time, stacked and bidirectional, with variable lengths; drop-in for torch.nn.

Shape symbols: T time, B batch, I input features, H hidden size, L layers, D directions (1 or 2).

:class:`Recurrent` runs ANY cell (``forward(x_t, state) -> state``, a user's own included) with stacking,
bidirectionality, dropout between layers and ``lengths``. :class:`RNN`, :class:`LSTM` and :class:`GRU` are that
layer with torch.nn's flat parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, …), so state dicts move
between rnnkit and torch.nn unchanged, and with an engine chosen per call:

* ``engine="auto"`` (default): on CPU (float32/float64) rnnkit's compiled C++ recurrence, built on first use;
  where it is not available (CUDA, other dtypes, no compiler, ``RNNKIT_COMPILED=0``) torch's fused kernel where
  the configuration is exactly torch.nn's (``rnn``, ``lstm``, ``gru`` with ``reset="after"``), rnnkit's own BPTT
  otherwise (the policy table: :mod:`rnnkit.engine.policy`, docs/engine.md);
* ``"fused"`` / ``"compiled"`` / ``"own"``: force one of them; ``"loop"``: a plain autograd loop over the cell's
  step function (the reference the others are tested against, and what :meth:`Recurrent.forward_states` uses).

Beyond the numbers, :class:`RNN`, :class:`LSTM` and :class:`GRU` (and the cells) are torch.nn's: subclasses of
``torch.nn.RNN``/``LSTM``/``GRU`` (``isinstance`` holds), torch's argument order (``proj_size`` included), checks,
exception types, ``repr`` and helpers (``_flat_weights``, ``mode``, ``check_forward_args``, ``permute_hidden``),
unbatched input, and ``torch.load(weights_only=True)`` of a saved layer (rnnkit allowlists its own classes).
PyTorch's own ``module_db`` samples are part of the test suite. Tooling:

* ``torch.jit.script``: TorchScript cannot compile rnnkit's Python forward (``lengths=``, engines), so scripting
  swaps in the equal torch.nn module sharing the parameters (:func:`to_torch`; torch calls it through
  ``__prepare_scriptable__``, replacing the attribute in the scripted model). ``GRU(reset="before")`` has no
  torch.nn peer and is refused with a ``ValueError``.
* ``torch.compile(fullgraph=True)`` and ``torch.export``: ``auto`` and ``loop`` everywhere, ``own`` for RNN only
  (``compiled`` refuses, like ``own``).
  The own LSTM/GRU kernels write gate slices through ``out=`` views that dynamo cannot trace: under compilation
  ``auto`` runs the autograd loop instead and ``own`` refuses with a ``ValueError``. As for torch.nn's layers,
  dynamo graph-breaks on these classes unless ``torch._dynamo.config.allow_rnn = True``.
* ``torch.ao.quantization.quantize_dynamic(m, {nn.LSTM})`` matches exact types, so it leaves every subclass (rnnkit's
  too) in float; rnnkit's cells and layers say so in one line (a ``UserWarning`` when torch sets their
  ``qconfig``), and ``quantize_dynamic(to_torch(m), {nn.LSTM})`` quantizes.

Streaming: ``forward(chunk, hx)`` returns the state to pass with the next chunk, so a sequence fed in pieces gives
the same outputs as fed whole (tested), and :meth:`Recurrent.step` goes one element at a time. Between pieces,
:func:`detach_state` cuts the autograd graph (truncated BPTT) and :func:`reset_state` starts some rows afresh (a new
stream begins in those rows of the batch) while the others carry on.

Modules: :mod:`~rnnkit.layers.recurrent` (:class:`Recurrent`, any cell), :mod:`~rnnkit.layers.builtin` (the
torch-layout layers, read from :data:`rnnkit.cells.CELLS`), :mod:`~rnnkit.layers.minimal` (minGRU, minLSTM and the
diagonal linear recurrence, input-gated, run by :mod:`rnnkit.engine.scan`), :mod:`~rnnkit.layers.state`
(streaming state helpers).
"""

from rnnkit.layers.builtin import GRU, LSTM, RNN, layer_for, to_torch
from rnnkit.layers.minimal import LinearRecurrence, LinearRecurrenceCell, MinGRU, MinGRUCell, MinLSTM, MinLSTMCell
from rnnkit.layers.recurrent import Engine, Recurrent, State, StepStates
from rnnkit.layers.state import detach_state, reset_state

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Engine",
    "LinearRecurrence",
    "LinearRecurrenceCell",
    "MinGRU",
    "MinGRUCell",
    "MinLSTM",
    "MinLSTMCell",
    "Recurrent",
    "State",
    "StepStates",
    "detach_state",
    "layer_for",
    "reset_state",
    "to_torch",
]
