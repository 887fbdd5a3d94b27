"""Weight layouts: rnnkit / torch.nn recurrent weights ⇄ Keras 3 ``LSTM``, ``GRU`` (both forms) and ``SimpleRNN``.

Shape symbols: I input features, H hidden size (Keras ``units``), G gates (RNN 1, GRU 3, LSTM 4).

rnnkit layers and cells hold torch.nn's parameters (``weight_ih_l0`` ``(G·H, I)``, ``weight_hh_l0`` ``(G·H, H)``,
``bias_ih_l0`` / ``bias_hh_l0`` ``(G·H,)``; cells without the ``_l0`` suffix). A Keras 3 recurrent layer holds,
in its ``get_weights()`` / ``set_weights()`` order (read from Keras 3's ``layers/rnn/{lstm,gru,simple_rnn}.py``):

=====================  ===============  ==================  ==========================================
layer                  ``kernel``       ``recurrent_kernel``  ``bias``
=====================  ===============  ==================  ==========================================
LSTM                   ``(I, 4H)``      ``(H, 4H)``           ``(4H,)``: one bias, input and recurrent
GRU, reset_after=True  ``(I, 3H)``      ``(H, 3H)``           ``(2, 3H)``: row 0 input, row 1 recurrent
GRU, reset_after=False ``(I, 3H)``      ``(H, 3H)``           ``(3H,)``: one bias
SimpleRNN              ``(I, H)``       ``(H, H)``            ``(H,)``
=====================  ===============  ==================  ==========================================

Keras multiplies ``x @ kernel`` where torch computes ``W x``, so every matrix is transposed. Gate order:

- LSTM: torch ``i, f, g, o`` and Keras ``i, f, c, o`` are the same order (Keras' ``c`` is torch's ``g``).
- GRU: torch ``r, z, n``, Keras ``z, r, h``: the first two blocks swap. Both update as
  ``h' = z ⊙ h + (1 − z) ⊙ n``.
- ``reset_after=True`` is torch.nn.GRU (and rnnkit ``GRU(reset="after")``): ``n = tanh(W_in x + b_in + r ⊙
  (W_hn h + b_hn))``. ``reset_after=False`` is the Cho et al. / lecture form, rnnkit ``GRU(reset="before")``:
  ``n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)``.

Where Keras has one bias and torch two (LSTM, SimpleRNN, GRU ``reset_after=False``), :func:`to_keras` adds
them — exact, since only their sum enters every gate (for the GRU ``reset="before"`` form, ``b_hn`` sits outside
``r ⊙ h``) — and :func:`from_keras` puts the whole bias in ``bias_ih`` and zeros in ``bias_hh``.

Keras layers hold one direction of one layer. A bidirectional torch layer maps to ``keras.layers.Bidirectional``,
whose weights are the forward layer's followed by the backward layer's; a stacked torch layer maps to one Keras
layer per ``layer`` index. :func:`keras_spec` says which Keras layer and arguments reproduce a module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit import cells as _cells
from rnnkit import layers as _layers

__all__ = ["from_keras", "keras_spec", "to_keras"]

_GATES = {"rnn": 1, "gru": 3, "lstm": 4}


# --------------------------------------------------------------------------------------------------------------
# What a module is


def _describe(module: nn.Module) -> dict[str, Any]:
    """What ``module`` is: kind (rnn|gru|lstm), GRU form, activation, cell or layer, layers, directions, bias."""
    if isinstance(module, (_layers.LSTM, nn.LSTM, _cells.LSTMCell, nn.LSTMCell)):
        kind = "lstm"
    elif isinstance(module, (_layers.GRU, nn.GRU, _cells.GRUCell, nn.GRUCell)):
        kind = "gru"
    elif isinstance(module, (_layers.RNN, nn.RNN, _cells.RNNCell, nn.RNNCell)):
        kind = "rnn"
    else:
        raise TypeError(
            f"to_keras converts rnnkit or torch.nn LSTM/GRU/RNN layers and cells, got {type(module).__name__}"
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(f"an LSTM with proj_size={module.proj_size} has no Keras counterpart: use proj_size=0")
    cell = isinstance(module, (nn.RNNCellBase, _cells._CellBase))
    bias = bool(module.bias) if isinstance(module.bias, bool) else module.bias is not None
    return {
        "kind": kind,
        # torch.nn's GRU and GRUCell have no `reset` attribute: they are the reset-after form
        "reset_after": getattr(module, "reset", "after") == "after",
        "activation": getattr(module, "nonlinearity", "tanh"),
        "cell": cell,
        "num_layers": 1 if cell else module.num_layers,
        "bidirectional": False if cell else bool(module.bidirectional),
        "bias": bias,
        "units": module.hidden_size,
    }


def keras_spec(module: nn.Module) -> dict[str, Any]:
    """The Keras 3 layer that computes what ``module`` computes, as ``{"class_name": ..., "config": {...}}``.

    ``class_name`` is ``"LSTM"``, ``"GRU"`` or ``"SimpleRNN"``; ``config`` holds the arguments that matter for
    the weights and the arithmetic (``units``, ``use_bias``, ``activation``, ``recurrent_activation``,
    ``reset_after``). A bidirectional module also has ``"bidirectional": True`` (wrap the layer in
    ``keras.layers.Bidirectional``), a stacked one ``"num_layers"`` (one Keras layer per layer).
    """
    d = _describe(module)
    config: dict[str, Any] = {"units": d["units"], "use_bias": d["bias"], "activation": d["activation"]}
    if d["kind"] != "rnn":
        config["recurrent_activation"] = "sigmoid"
    if d["kind"] == "gru":
        config["reset_after"] = d["reset_after"]
    names = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}
    return {
        "class_name": names[d["kind"]],
        "config": config,
        "bidirectional": d["bidirectional"],
        "num_layers": d["num_layers"],
    }


def _check_layer(layer: int | None, num_layers: int, cell: bool) -> int:
    if cell:
        if layer not in (None, 0):
            raise ValueError(f"a cell has one layer: leave layer=None, got layer={layer!r}")
        return 0
    if layer is None:
        if num_layers > 1:
            raise ValueError(
                f"the module stacks {num_layers} layers and a Keras layer holds one: pass layer=0..{num_layers - 1}"
            )
        return 0
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < num_layers:
        raise ValueError(f"layer must be an integer in [0, {num_layers}), got {layer!r}")
    return layer


# --------------------------------------------------------------------------------------------------------------
# torch → Keras


def _swap_rz(a: np.ndarray, H: int) -> np.ndarray:
    """Swap the first two gate blocks along axis 0: torch ``r, z, n`` ⇄ Keras ``z, r, h`` (its own inverse)."""
    return np.concatenate([a[H : 2 * H], a[:H], a[2 * H :]], axis=0)


def _direction_to_keras(
    kind: str, reset_after: bool, H: int, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None
) -> list[np.ndarray]:
    w_ih_np = w_ih.detach().cpu().numpy()  # (G·H, I)
    w_hh_np = w_hh.detach().cpu().numpy()  # (G·H, H)
    b = None if b_ih is None else (b_ih.detach().cpu().numpy(), b_hh.detach().cpu().numpy())  # 2 × (G·H,)
    if kind == "gru":
        w_ih_np, w_hh_np = _swap_rz(w_ih_np, H), _swap_rz(w_hh_np, H)
        if b is not None:
            b = (_swap_rz(b[0], H), _swap_rz(b[1], H))
    out = [np.ascontiguousarray(w_ih_np.T), np.ascontiguousarray(w_hh_np.T)]  # (I, G·H), (H, G·H)
    if b is not None:
        if kind == "gru" and reset_after:
            out.append(np.stack(b))  # (2, 3H): input bias, recurrent bias
        else:
            out.append(b[0] + b[1])  # (G·H,): only the sum enters the gates
    return out


def to_keras(module: nn.Module, *, layer: int | None = None) -> list[np.ndarray]:
    """The weights of ``module`` in Keras 3's ``set_weights`` order (float arrays on the CPU).

    Args:
        module: an rnnkit or torch.nn ``LSTM``/``GRU``/``RNN`` layer or cell (``GRU(reset="before")`` maps to
            Keras ``GRU(reset_after=False)``, every other GRU to ``reset_after=True``; see :func:`keras_spec`).
        layer: which stacked layer (one Keras layer each); may stay None for a one-layer module or a cell.
    Returns:
        ``[kernel (I, G·H), recurrent_kernel (H, G·H), bias]`` (no bias without biases); for a bidirectional
        module the forward direction's arrays then the reverse direction's, as ``keras.layers.Bidirectional``
        orders them.
    """
    d = _describe(module)
    k = _check_layer(layer, d["num_layers"], d["cell"])
    out: list[np.ndarray] = []
    for direction in range(2 if d["bidirectional"] else 1):
        if d["cell"]:
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        else:
            sfx = f"_l{k}" + ("_reverse" if direction else "")
            names = tuple(n + sfx for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        params = [getattr(module, n, None) if d["bias"] or i < 2 else None for i, n in enumerate(names)]
        out += _direction_to_keras(d["kind"], d["reset_after"], d["units"], *params)
    return out


# --------------------------------------------------------------------------------------------------------------
# Keras → torch


def _as_array(w: Any, i: int) -> np.ndarray:
    if isinstance(w, Tensor):
        w = w.detach().cpu().numpy()
    try:
        a = np.asarray(w)
    except Exception as error:  # e.g. a ragged list
        raise TypeError(f"weights[{i}] is not an array: {error}") from None
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"weights[{i}] must hold floats, got dtype {a.dtype}")
    return a


def _direction_from_keras(
    arrays: list[np.ndarray], reset_after: bool | None, offset: int
) -> tuple[str, bool, list[np.ndarray]]:
    """One direction's Keras arrays → (kind, reset_after, [w_ih, w_hh, (b_ih, b_hh)]) in torch's layout."""
    kernel, rec = arrays[0], arrays[1]
    if rec.ndim != 2 or rec.shape[0] == 0 or rec.shape[1] % rec.shape[0]:
        raise ValueError(
            f"weights[{offset + 1}] (recurrent_kernel) must have shape (H, G·H) with G in 1, 3, 4, got {rec.shape}"
        )
    H = rec.shape[0]
    G = rec.shape[1] // H
    kind = {g: name for name, g in _GATES.items()}.get(G)
    if kind is None:
        raise ValueError(
            f"weights[{offset + 1}] (recurrent_kernel) has shape {rec.shape}: {G} gates is none of SimpleRNN (1), "
            "GRU (3), LSTM (4)"
        )
    if kernel.ndim != 2 or kernel.shape[1] != G * H:
        raise ValueError(f"weights[{offset}] (kernel) must have shape (I, {G * H}), got {kernel.shape}")
    bias = arrays[2] if len(arrays) == 3 else None
    if kind == "gru":
        if bias is not None:
            form = bias.ndim == 2  # (2, 3H) is the reset-after form, (3H,) the reset-before form
            if reset_after is not None and reset_after != form:
                raise ValueError(
                    f"weights[{offset + 2}] (bias) has shape {bias.shape}, which is Keras' reset_after={form} GRU, "
                    f"but reset_after={reset_after} was asked: drop the argument or fix it"
                )
            reset_after = form
        elif reset_after is None:
            raise ValueError("a GRU without bias does not tell its form: pass reset_after=True or False")
    want = {True: (2, G * H), False: (G * H,)}[kind == "gru" and bool(reset_after)]
    if bias is not None and bias.shape != want:
        raise ValueError(f"weights[{offset + 2}] (bias) must have shape {want}, got {bias.shape}")
    w_ih, w_hh = kernel.T, rec.T  # (G·H, I), (G·H, H)
    biases: list[np.ndarray] = []
    if bias is not None:
        if kind == "gru" and reset_after:
            biases = [bias[0], bias[1]]
        else:
            biases = [bias, np.zeros_like(bias)]  # one Keras bias: all of it on the input side
    if kind == "gru":
        w_ih, w_hh = _swap_rz(w_ih, H), _swap_rz(w_hh, H)
        biases = [_swap_rz(b, H) for b in biases]
    return kind, bool(reset_after), [w_ih, w_hh, *biases]


def from_keras(
    weights: Sequence[Any],
    *,
    reset_after: bool | None = None,
    layer: int | None = 0,
    bidirectional: bool = False,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """A state dict for an rnnkit / torch.nn layer (or cell) from a Keras 3 layer's ``get_weights()``.

    The layer kind comes from the shapes (G = recurrent_kernel columns / rows: SimpleRNN 1, GRU 3, LSTM 4) and a
    GRU's form from its bias: ``(2, 3H)`` is ``reset_after=True`` (load into ``torch.nn.GRU`` or rnnkit
    ``GRU(reset="after")``), ``(3H,)`` is ``reset_after=False`` (load into rnnkit ``GRU(reset="before")``).
    ``reset_after`` is needed only for a GRU without bias, and checked otherwise.

    Args:
        weights: ``[kernel, recurrent_kernel, bias]`` or ``[kernel, recurrent_kernel]``, twice (forward then
            backward) with ``bidirectional=True`` (``keras.layers.Bidirectional.get_weights()``).
        layer: the stacked-layer index ``k`` of the names (``weight_ih_l{k}``, ...); None gives a cell's names
            (``weight_ih``, ...).
        dtype: of the returned tensors.
    Returns:
        ``{"weight_ih_l{k}": (G·H, I), "weight_hh_l{k}": (G·H, H), "bias_ih_l{k}": (G·H,), "bias_hh_l{k}":
        (G·H,)}`` plus the ``_reverse`` ones when bidirectional; load it with ``load_state_dict`` (``strict=False``
        for one layer of a stack).
    """
    if isinstance(weights, (np.ndarray, Tensor)) or not isinstance(weights, Sequence):
        raise TypeError(f"weights must be a list of arrays (Keras get_weights()), got {type(weights).__name__}")
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
        raise ValueError(f"layer must be a non-negative integer or None (a cell), got {layer!r}")
    if layer is None and bidirectional:
        raise ValueError("a cell has one direction: bidirectional=True needs a layer index, not layer=None")
    arrays = [_as_array(w, i) for i, w in enumerate(weights)]
    D = 2 if bidirectional else 1
    if len(arrays) not in (2 * D, 3 * D):
        expect = " or ".join(str(n * D) for n in (3, 2))
        raise ValueError(
            f"expected {expect} arrays (kernel, recurrent_kernel[, bias]"
            + (" for each direction" if D == 2 else "")
            + f"), got {len(arrays)}"
        )
    n = len(arrays) // D
    state: dict[str, Tensor] = {}
    kinds = set()
    for d in range(D):
        kind, form, parts = _direction_from_keras(arrays[d * n : (d + 1) * n], reset_after, d * n)
        kinds.add((kind, form, parts[0].shape, parts[1].shape))
        sfx = "" if layer is None else f"_l{layer}" + ("_reverse" if d else "")
        for name, a in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), parts, strict=False):
            state[name + sfx] = torch.tensor(np.ascontiguousarray(a), dtype=dtype)
    if len(kinds) > 1:
        raise ValueError("the two directions' weights differ in kind or shape: expected one layer's twice")
    return state
