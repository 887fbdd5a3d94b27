"""The one registry of recurrent model choices (``--model``): name → a function that builds the sequence core.

Every task model asks this registry for its core, and the CLI lists its names, so adding an entry (the lecture
issue adds ``window``) makes it available everywhere at once. A builder takes keyword arguments
``input_size, hidden_size, num_layers, dropout, bidirectional`` and returns a batch-first module with
``forward(x (B, T, I), hx=None, lengths=None) -> (output (B, T, D·H), h_n)``, ``h_n`` ``(L·D, B, H)`` or a tuple
whose first item is that, and ``step`` for unidirectional sampling (the rnnkit layers' contract).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rnnkit.layers import GRU, LSTM, RNN

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
) -> nn.Module:
    """Build the registered core ``name``; an unknown name raises ValueError listing the choices."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    # torch warns that dropout does nothing for one layer; task models pass their one dropout everywhere
    layer_dropout = dropout if num_layers > 1 else 0.0
    return MODELS[name](
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        dropout=layer_dropout,
        bidirectional=bidirectional,
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
