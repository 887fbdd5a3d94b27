"""rnnkit: recurrent neural networks from the lecture's equations, drop-in for torch.nn.

Cells (one step, :mod:`rnnkit.cells`), layers that run them over time (:mod:`rnnkit.layers`) on a fast engine
(:mod:`rnnkit.engine`), task models (:mod:`rnnkit.tasks`), data (:mod:`rnnkit.data`), the trainer
(:mod:`rnnkit.train`), run folders (:mod:`rnnkit.runs`) and the ``rnnkit`` command line (:mod:`rnnkit.cli`).
"""

import torch

from rnnkit.cells import GRUCell, LSTMCell, OutputLayer, RNNCell
from rnnkit.layers import (
    GRU,
    LSTM,
    RNN,
    LinearRecurrence,
    MinGRU,
    MinGRUCell,
    MinLSTM,
    MinLSTMCell,
    Recurrent,
    StepStates,
)
from rnnkit.tasks import ModelConfig, SequenceClassifier, SequenceGenerator, build_model
from rnnkit.train import TrainConfig, fit

# A whole saved layer (``torch.save(model)``, as PyTorch's examples save their best model) loads with
# ``torch.load(path, weights_only=True)`` only if every class in the pickle is on torch's allowlist. Code written for
# torch.nn allowlists nn.LSTM/GRU/RNN; rnnkit allowlists its own module classes here, at import, and nothing else
# (they hold only parameters, ints, bools, floats and strings, so unpickling them runs no foreign code). A pickle
# naming any other class (a user's cell inside a Recurrent, say) is still refused unless the user allowlists it.
torch.serialization.add_safe_globals([RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell, Recurrent, OutputLayer])

__version__ = "0.1.0"
__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "LinearRecurrence",
    "MinGRU",
    "MinGRUCell",
    "MinLSTM",
    "MinLSTMCell",
    "ModelConfig",
    "OutputLayer",
    "RNNCell",
    "Recurrent",
    "SequenceClassifier",
    "SequenceGenerator",
    "StepStates",
    "TrainConfig",
    "__version__",
    "build_model",
    "fit",
]
