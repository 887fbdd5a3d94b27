"""Weight layouts: rnnkit / torch.nn recurrent weights ⇄ Keras 3 ``LSTM``, ``GRU`` (both forms) and ``SimpleRNN``.

Shape symbols: I input features, H hidden size (Keras ``units``), G gates (RNN 1, GRU 3, LSTM 4).

Every kind-specific fact used here (Keras class, Keras gate order, the Keras arguments, whether a hidden bias
sits inside a gate product) is a field of the kind's :data:`rnnkit.cells.CELLS` entry.

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

from rnnkit.cells import CELLS, CellSpec, spec_of

__all__ = ["from_keras", "keras_spec", "to_keras"]


# --------------------------------------------------------------------------------------------------------------
# What a module is


def _describe(module: nn.Module) -> dict[str, Any]:
    """What ``module`` is: its :data:`~rnnkit.cells.CELLS` entry, cell or layer, layers, directions, bias."""
    spec = spec_of(module)
    if spec is None:
        raise TypeError(
            f"to_keras converts rnnkit or torch.nn LSTM/GRU/RNN layers and cells, got {type(module).__name__}"
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(f"an LSTM with proj_size={module.proj_size} has no Keras counterpart: use proj_size=0")
    cell = isinstance(module, (nn.RNNCellBase, spec.cell))
    bias = bool(module.bias) if isinstance(module.bias, bool) else module.bias is not None
    return {
        "spec": spec,
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
    spec: CellSpec = d["spec"]
    config: dict[str, Any] = {"units": d["units"], "use_bias": d["bias"], **dict(spec.keras_config)}
    return {
        "class_name": spec.keras,
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


def _reorder(a: np.ndarray, H: int, source: tuple[str, ...], target: tuple[str, ...]) -> np.ndarray:
    """Gate blocks of ``H`` rows along axis 0 from ``source`` order to ``target`` order (e.g. GRU torch ``r, z, n``
    → Keras ``z, r, h``). Returns ``a`` itself where the orders agree."""
    if source == target:
        return a
    return np.concatenate([a[source.index(g) * H : (source.index(g) + 1) * H] for g in target], axis=0)


def _direction_to_keras(
    spec: CellSpec, H: int, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None
) -> list[np.ndarray]:
    def keras_order(t: Tensor) -> np.ndarray:
        return _reorder(t.detach().cpu().numpy(), H, spec.gates, spec.keras_gates)

    w_ih_np, w_hh_np = keras_order(w_ih), keras_order(w_hh)  # (G·H, I), (G·H, H)
    b = None if b_ih is None else (keras_order(b_ih), keras_order(b_hh))  # 2 × (G·H,)
    out = [np.ascontiguousarray(w_ih_np.T), np.ascontiguousarray(w_hh_np.T)]  # (I, G·H), (H, G·H)
    if b is not None:
        if spec.hidden_bias_gated:
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
        out += _direction_to_keras(d["spec"], d["units"], *params)
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
) -> tuple[CellSpec, list[np.ndarray]]:
    """One direction's Keras arrays → (its CELLS entry, [w_ih, w_hh, (b_ih, b_hh)] in torch's layout)."""
    kernel, rec = arrays[0], arrays[1]
    layers = {s.num_gates: s.keras for s in sorted(CELLS.values(), key=lambda s: s.num_gates)}  # G → Keras class
    if rec.ndim != 2 or rec.shape[0] == 0 or rec.shape[1] % rec.shape[0]:
        raise ValueError(
            f"weights[{offset + 1}] (recurrent_kernel) must have shape (H, G·H) with G in "
            f"{', '.join(map(str, layers))}, got {rec.shape}"
        )
    H = rec.shape[0]
    G = rec.shape[1] // H
    specs = [s for s in CELLS.values() if s.num_gates == G]
    if not specs:
        known = ", ".join(f"{name} ({g})" for g, name in layers.items())
        raise ValueError(
            f"weights[{offset + 1}] (recurrent_kernel) has shape {rec.shape}: {G} gates is none of {known}"
        )
    if kernel.ndim != 2 or kernel.shape[1] != G * H:
        raise ValueError(f"weights[{offset}] (kernel) must have shape (I, {G * H}), got {kernel.shape}")
    bias = arrays[2] if len(arrays) == 3 else None
    gated = False  # the Keras layer keeps two biases (GRU reset_after=True): CellSpec.hidden_bias_gated
    if len({s.hidden_bias_gated for s in specs}) > 1:  # the Keras class has both forms: the bias tells which
        if bias is not None:
            form = bias.ndim == 2  # (2, 3H) is the reset-after form, (3H,) the reset-before form
            if reset_after is not None and reset_after != form:
                raise ValueError(
                    f"weights[{offset + 2}] (bias) has shape {bias.shape}, which is Keras' reset_after={form} "
                    f"{specs[0].keras}, but reset_after={reset_after} was asked: drop the argument or fix it"
                )
            gated = form
        elif reset_after is None:
            raise ValueError(f"a {specs[0].keras} without bias does not tell its form: pass reset_after=True or False")
        else:
            gated = bool(reset_after)
    spec = next(s for s in specs if s.hidden_bias_gated == gated)
    want = (2, G * H) if gated else (G * H,)
    if bias is not None and bias.shape != want:
        raise ValueError(f"weights[{offset + 2}] (bias) must have shape {want}, got {bias.shape}")
    w_ih, w_hh = kernel.T, rec.T  # (G·H, I), (G·H, H)
    biases: list[np.ndarray] = []
    if bias is not None:
        if gated:
            biases = [bias[0], bias[1]]
        else:
            biases = [bias, np.zeros_like(bias)]  # one Keras bias: all of it on the input side
    w_ih, w_hh = (_reorder(w, H, spec.keras_gates, spec.gates) for w in (w_ih, w_hh))
    biases = [_reorder(b, H, spec.keras_gates, spec.gates) for b in biases]
    return spec, [w_ih, w_hh, *biases]


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
        spec, parts = _direction_from_keras(arrays[d * n : (d + 1) * n], reset_after, d * n)
        kinds.add((spec.kind, parts[0].shape, parts[1].shape))
        sfx = "" if layer is None else f"_l{layer}" + ("_reverse" if d else "")
        for name, a in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), parts, strict=False):
            state[name + sfx] = torch.tensor(np.ascontiguousarray(a), dtype=dtype)
    if len(kinds) > 1:
        raise ValueError("the two directions' weights differ in kind or shape: expected one layer's twice")
    return state
