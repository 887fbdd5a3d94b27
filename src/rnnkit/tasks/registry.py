"""The one registry of recurrent model choices (``--model``): name → a function that builds the sequence core.

Every task model asks this registry for its core, and the CLI lists its names, so adding an entry (the lecture
issue adds ``window``) makes it available everywhere at once. A builder takes keyword arguments
``input_size, hidden_size, num_layers, dropout, bidirectional`` and returns a batch-first module with
``forward(x (B, T, I), hx=None, lengths=None) -> (output (B, T, D·H), h_n)``, ``h_n`` ``(L·D, B, H)`` or a tuple
whose first item is that, and ``step`` for unidirectional sampling (the rnnkit layers' contract). A builder may
also name model-specific keyword options (``window`` for the ``window`` core); :func:`build_core` passes each
builder only the options it names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from rnnkit.layers import GRU, LSTM, RNN, MinGRU, MinLSTM
from rnnkit.windowing import WindowCore

__all__ = ["MODELS", "build_core", "register_model"]

Builder = Callable[..., nn.Module]

MODELS: dict[str, Builder] = {}
"""Registered model names and their builders."""


def register_model(name: str, builder: Builder, *, replace: bool = False) -> None:
    """Add ``name`` to the registry (``replace=True`` to overwrite an existing entry)."""
    if name in MODELS and not replace:
        raise ValueError(f"model {name!r} is already registered")
    MODELS[name] = builder


def build_core(
    name: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    bidirectional: bool = False,
    **options,
) -> nn.Module:
    """Build the registered core ``name``; an unknown name raises ValueError listing the choices.

    ``options`` are model-specific settings such as ``window=W``; each reaches only the builders that name it as
    a keyword parameter (a GRU ignores ``window``).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    params = inspect.signature(MODELS[name]).parameters
    named = {k: v for k, v in options.items() if k in params and params[k].kind is not inspect.Parameter.VAR_KEYWORD}
    # torch warns that dropout does nothing for one layer; task models pass their one dropout everywhere
    layer_dropout = dropout if num_layers > 1 else 0.0
    return MODELS[name](
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        dropout=layer_dropout,
        bidirectional=bidirectional,
        **named,
    )


def _layer(cls: type[nn.Module], **fixed) -> Builder:
    def build(**kw) -> nn.Module:
        return cls(batch_first=True, **fixed, **kw)

    build.__doc__ = f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in fixed.items())}), batch-first"
    return build


register_model("rnn", _layer(RNN, nonlinearity="tanh"))
register_model("lstm", _layer(LSTM))
register_model("gru", _layer(GRU, reset="after"))
register_model("gru-before", _layer(GRU, reset="before"))
# input-gated recurrences (Feng et al. 2024): trained on rnnkit.engine.scan, sampled with the step form
register_model("mingru", _layer(MinGRU))
register_model("minlstm", _layer(MinLSTM))


def _window(
    input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool, window: int = 5
) -> nn.Module:
    """WindowCore: the MLP ``f`` on the last ``window`` inputs at every step (``num_layers`` hidden layers)."""
    return WindowCore(input_size, hidden_size, window, num_layers, dropout, bidirectional)


register_model("window", _window)


# ---- LSTM-FCN family (issue 16): summary cores for series classification, in rnnkit.tasks.fcn ----
def _lstm_fcn(input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool) -> nn.Module:
    """LSTM-FCN (Karim et al. 2017): an LSTM beside three conv blocks 128/256/128 (kernels 8/5/3)."""
    from rnnkit.tasks.fcn import LSTMFCN

    return LSTMFCN(input_size, hidden_size, num_layers, dropout, bidirectional, squeeze_excite=False)


def _mlstm_fcn(input_size: int, hidden_size: int, num_layers: int, dropout: float, bidirectional: bool) -> nn.Module:
    """MLSTM-FCN (Karim et al. 2019): LSTM-FCN with squeeze-and-excitation after the first two conv blocks."""
    from rnnkit.tasks.fcn import LSTMFCN

    return LSTMFCN(input_size, hidden_size, num_layers, dropout, bidirectional, squeeze_excite=True)


register_model("lstm-fcn", _lstm_fcn)
register_model("mlstm-fcn", _mlstm_fcn)
