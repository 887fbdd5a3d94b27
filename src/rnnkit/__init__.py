"""rnnkit: recurrent neural networks from the lecture's equations, drop-in for torch.nn.

Cells (one step, :mod:`rnnkit.cells`), layers that run them over time (:mod:`rnnkit.layers`) on a fast engine
(:mod:`rnnkit.engine`), task models (:mod:`rnnkit.tasks`), data (:mod:`rnnkit.data`), the trainer
(:mod:`rnnkit.train`), run folders (:mod:`rnnkit.runs`) and the ``rnnkit`` command line (:mod:`rnnkit.cli`).
"""

from rnnkit.cells import GRUCell, LSTMCell, OutputLayer, RNNCell
from rnnkit.layers import GRU, LSTM, RNN, Recurrent, StepStates
from rnnkit.tasks import ModelConfig, SequenceClassifier, SequenceGenerator, build_model
from rnnkit.train import TrainConfig, fit

__version__ = "0.1.0"
__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
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
