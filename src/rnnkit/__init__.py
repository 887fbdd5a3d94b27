"""rnnkit: recurrent neural networks from the lecture's equations, drop-in for torch.nn.

Cells (one step, :mod:`rnnkit.cells`), layers that run them over time (:mod:`rnnkit.layers`) on a fast engine
(:mod:`rnnkit.engine`), and the task models, trainer and command line built on them.
"""

from rnnkit.cells import GRUCell, LSTMCell, OutputLayer, RNNCell
from rnnkit.layers import GRU, LSTM, RNN, Recurrent, StepStates

__version__ = "0.1.0"
__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "OutputLayer",
    "RNNCell",
    "Recurrent",
    "StepStates",
    "__version__",
]
