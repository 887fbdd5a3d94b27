"""Recurrent layers: a cell run over time, stacked and bidirectional, with variable lengths; drop-in for torch.nn.

Shape symbols: T time, B batch, I input features, H hidden size, L layers, D directions (1 or 2).

:class:`Recurrent` runs ANY cell (``forward(x_t, state) -> state``, a user's own included) with stacking,
bidirectionality, dropout between layers and ``lengths``. :class:`RNN`, :class:`LSTM` and :class:`GRU` are that
layer with torch.nn's flat parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, …), so state dicts move
between rnnkit and torch.nn unchanged, and with an engine chosen per call:

* ``engine="auto"`` (default): torch's fused kernel where the configuration is exactly torch.nn's (``rnn``,
  ``lstm``, ``gru`` with ``reset="after"``), rnnkit's own BPTT (:mod:`rnnkit.engine`) otherwise;
* ``"fused"`` / ``"own"``: force one of them; ``"loop"``: a plain autograd loop over the cell's step function
  (the reference the others are tested against, and what :meth:`Recurrent.forward_states` uses).

Streaming: ``forward(chunk, hx)`` returns the state to pass with the next chunk, so a sequence fed in pieces gives
the same outputs as fed whole (tested), and :meth:`Recurrent.step` goes one element at a time. Between pieces,
:func:`detach_state` cuts the autograd graph (truncated BPTT) and :func:`reset_state` starts some rows afresh (a new
stream begins in those rows of the batch) while the others carry on.

Modules: :mod:`~rnnkit.layers.recurrent` (:class:`Recurrent`, any cell), :mod:`~rnnkit.layers.builtin` (the
torch-layout layers, read from :data:`rnnkit.cells.CELLS`), :mod:`~rnnkit.layers.state` (streaming state helpers).
"""

from rnnkit.layers.builtin import GRU, LSTM, RNN, layer_for
from rnnkit.layers.recurrent import Engine, Recurrent, State, StepStates
from rnnkit.layers.state import detach_state, reset_state

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Engine",
    "Recurrent",
    "State",
    "StepStates",
    "detach_state",
    "layer_for",
    "reset_state",
]
