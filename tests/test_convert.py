"""Tests of rnnkit.convert: rnnkit / torch.nn ⇄ Keras 3 weight layouts, checked against real Keras layers.

Keras runs on its torch backend (``KERAS_BACKEND=torch``, set before keras is imported; the module is skipped
without keras). Every direction is checked by running both sides on the same random input: weights copied
torch → Keras must give Keras the rnnkit outputs and final states, and weights copied Keras → torch (from a
Keras layer with random biases, so that the bias mapping is exercised) must give rnnkit and torch.nn the Keras
outputs, at float32 1e-5. Covered: LSTM, GRU ``reset_after=True`` (torch.nn's form) and ``False`` (rnnkit
``reset="before"``), SimpleRNN, without biases, bidirectional (``keras.layers.Bidirectional``), a stack, cells.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from functools import partial

import numpy as np
import pytest
import torch

# before keras is imported: the keras extra must leave torch as it is
TORCH_VERSION = torch.__version__
TORCH_STATE = (torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_default_device())
if "keras" not in sys.modules:
    os.environ["KERAS_BACKEND"] = "torch"
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip(f"keras was imported with the {keras.backend.backend()} backend", allow_module_level=True)

from rnnkit import GRU, LSTM, RNN  # noqa: E402
from rnnkit.cells import GRUCell  # noqa: E402
from rnnkit.convert import from_keras, keras_spec, to_keras  # noqa: E402

# Keras' own code trips numpy 2's __array__ copy deprecation; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

I, H, B, T = 3, 4, 2, 6
ATOL = 1e-5

# (name, rnnkit layer factory, the torch.nn layer of the same form or None)
FORMS = [
    ("lstm", partial(LSTM, I, H, batch_first=True), partial(torch.nn.LSTM, I, H, batch_first=True)),
    ("gru-after", partial(GRU, I, H, batch_first=True), partial(torch.nn.GRU, I, H, batch_first=True)),
    ("gru-before", partial(GRU, I, H, batch_first=True, reset="before"), None),
    ("rnn-tanh", partial(RNN, I, H, batch_first=True), partial(torch.nn.RNN, I, H, batch_first=True)),
    ("rnn-relu", partial(RNN, I, H, nonlinearity="relu", batch_first=True), None),
]
VARIANTS = [{}, {"bias": False}, {"bidirectional": True}]


def keras_layer(spec: dict, seed: int = 0, random_bias: bool = False):
    """A built Keras layer as ``spec`` describes, returning sequences and states."""
    keras.utils.set_random_seed(seed)
    config = dict(spec["config"])
    if random_bias and config["use_bias"]:
        config["bias_initializer"] = keras.initializers.RandomNormal(stddev=0.5, seed=seed)
    layer = getattr(keras.layers, spec["class_name"])(return_sequences=True, return_state=True, **config)
    if spec["bidirectional"]:
        layer = keras.layers.Bidirectional(layer)
    layer.build((None, T, I))
    return layer


def run_keras(layer, x: np.ndarray) -> list[np.ndarray]:
    """Keras outputs: ``[y (B, T, D·H), then each direction's states (h[, c])]``."""
    return [keras.ops.convert_to_numpy(o) for o in layer(x)]


def run_torch(module: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    """The same list from a torch-layout layer: ``y``, then per direction ``h`` (and ``c``)."""
    with torch.no_grad():
        y, state = module(torch.from_numpy(x))
    parts = state if isinstance(state, tuple) else (state,)
    D = 2 if module.bidirectional else 1
    per_direction = [p[d].numpy() for d in range(D) for p in parts]
    return [y.numpy(), *per_direction]


def assert_all_close(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=ATOL, rtol=0)


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((B, T, I)).astype(np.float32)


@pytest.mark.parametrize("variant", VARIANTS, ids=["plain", "no-bias", "bidirectional"])
@pytest.mark.parametrize(("name", "make", "make_nn"), FORMS, ids=[f[0] for f in FORMS])
def test_torch_to_keras_and_back_match_keras_layers(name, make, make_nn, variant, x) -> None:
    torch.manual_seed(0)
    ours = make(**variant)
    spec = keras_spec(ours)
    if name == "gru-before":
        assert spec["config"]["reset_after"] is False
    if name == "gru-after":
        assert spec["config"]["reset_after"] is True

    # torch → Keras: the Keras layer now computes what rnnkit computes
    layer = keras_layer(spec)
    assert [w.shape for w in to_keras(ours)] == [w.shape for w in layer.get_weights()]
    layer.set_weights(to_keras(ours))
    assert_all_close(run_keras(layer, x), run_torch(ours, x))

    # Keras → torch: a Keras layer with its own init (random biases) into fresh rnnkit and torch.nn layers
    theirs = keras_layer(spec, seed=1, random_bias=True)
    want = run_keras(theirs, x)
    reset_after = spec["config"].get("reset_after") if not spec["config"]["use_bias"] else None
    state = from_keras(theirs.get_weights(), bidirectional=spec["bidirectional"], reset_after=reset_after)
    fresh = make(**variant)
    fresh.load_state_dict(state)
    assert_all_close(run_torch(fresh, x), want)
    if make_nn is not None:
        reference = make_nn(**variant)
        reference.load_state_dict(state)
        assert_all_close(run_torch(reference, x), want)


def test_stacked_layers_map_to_one_keras_layer_each(x) -> None:
    torch.manual_seed(0)
    ours = LSTM(I, H, num_layers=2, batch_first=True)
    first = keras_layer(keras_spec(ours))
    second = keras.layers.LSTM(H, return_sequences=True, return_state=True)
    second.build((None, T, H))
    first.set_weights(to_keras(ours, layer=0))
    second.set_weights(to_keras(ours, layer=1))
    y1, h1, c1 = run_keras(first, x)
    y2, h2, c2 = run_keras(second, y1)
    with torch.no_grad():
        y, (h, c) = ours(torch.from_numpy(x))
    assert_all_close([y2, h1, c1, h2, c2], [y.numpy(), h[0].numpy(), c[0].numpy(), h[1].numpy(), c[1].numpy()])
    # and back: both Keras layers into one two-layer rnnkit LSTM
    state = {**from_keras(first.get_weights(), layer=0), **from_keras(second.get_weights(), layer=1)}
    fresh = LSTM(I, H, num_layers=2, batch_first=True)
    fresh.load_state_dict(state)
    assert_all_close(run_torch(fresh, x)[:1], [y2])


@pytest.mark.parametrize("reset", ["after", "before"])
def test_gru_cells_match_keras_cells(reset: str, x) -> None:
    """One step from a non-zero state, so that the recurrent kernel and the reset gate's place both matter."""
    torch.manual_seed(0)
    cell = GRUCell(I, H, reset=reset) if reset == "before" else torch.nn.GRUCell(I, H)
    spec = keras_spec(cell)
    keras_cell = keras.layers.GRUCell(**spec["config"])
    keras_cell.build((None, I))
    keras_cell.set_weights(to_keras(cell))
    h0 = np.random.default_rng(1).standard_normal((B, H)).astype(np.float32)
    got, _ = keras_cell(x[:, 0], [h0])
    with torch.no_grad():
        want = cell(torch.from_numpy(x[:, 0]), torch.from_numpy(h0))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want.numpy(), atol=ATOL, rtol=0)
    # a cell's state dict has no layer suffix
    fresh = GRUCell(I, H, reset=reset)
    fresh.load_state_dict(from_keras(keras_cell.get_weights(), layer=None))
    with torch.no_grad():
        again = fresh(torch.from_numpy(x[:, 0]), torch.from_numpy(h0))
    np.testing.assert_allclose(again.numpy(), want.numpy(), atol=ATOL, rtol=0)


def test_lstm_gate_order_is_the_same_and_gru_swaps_r_and_z() -> None:
    """The layouts by hand: LSTM gates i, f, g, o stay in place; GRU r, z, n become z, r, n; matrices transpose."""
    lstm = torch.nn.LSTM(1, 1, bias=False)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.tensor([[1.0], [2.0], [3.0], [4.0]]))  # i f g o
    kernel = to_keras(lstm)[0]
    assert kernel.tolist() == [[1.0, 2.0, 3.0, 4.0]]  # (I, 4H): i f c o
    gru = torch.nn.GRU(1, 1)
    with torch.no_grad():
        gru.weight_ih_l0.copy_(torch.tensor([[1.0], [2.0], [3.0]]))  # r z n
        gru.bias_ih_l0.copy_(torch.tensor([10.0, 20.0, 30.0]))
        gru.bias_hh_l0.copy_(torch.tensor([0.1, 0.2, 0.3]))
    kernel, _, bias = to_keras(gru)
    assert kernel.tolist() == [[2.0, 1.0, 3.0]]  # z r h
    np.testing.assert_allclose(bias, [[20.0, 10.0, 30.0], [0.2, 0.1, 0.3]])  # (2, 3H): input row, recurrent row


def test_round_trip_through_keras_layout_keeps_outputs(x) -> None:
    """``from_keras(to_keras(m))`` computes what ``m`` does (biases are summed, so the tensors may differ)."""
    for _, make, _ in FORMS:
        torch.manual_seed(3)
        ours = make(num_layers=1, bidirectional=True)
        fresh = make(num_layers=1, bidirectional=True)
        fresh.load_state_dict(from_keras(to_keras(ours), bidirectional=True))
        assert_all_close(run_torch(fresh, x), run_torch(ours, x))


def test_bad_input_is_refused_with_a_clear_message() -> None:
    torch.manual_seed(0)
    gru = GRU(I, H)
    weights = to_keras(gru)
    with pytest.raises(ValueError, match=r"expected 3 or 2 arrays"):
        from_keras(weights[:1])
    with pytest.raises(ValueError, match=r"2 gates is none of"):
        from_keras([np.zeros((I, 2 * H), np.float32), np.zeros((H, 2 * H), np.float32)])
    with pytest.raises(ValueError, match=r"kernel\) must have shape \(I, 12\)"):
        from_keras([np.zeros((I, 8), np.float32), *weights[1:]])
    with pytest.raises(ValueError, match=r"reset_after=True or False"):
        from_keras(weights[:2])
    with pytest.raises(ValueError, match=r"reset_after=True GRU, but reset_after=False"):
        from_keras(weights, reset_after=False)
    with pytest.raises(TypeError, match=r"list of arrays"):
        from_keras(weights[0])
    with pytest.raises(TypeError, match=r"must hold floats"):
        from_keras([w.astype(np.int64) for w in weights])
    with pytest.raises(ValueError, match=r"bidirectional=True needs a layer index"):
        from_keras(weights, layer=None, bidirectional=True)
    with pytest.raises(ValueError, match=r"stacks 2 layers .* pass layer=0..1"):
        to_keras(GRU(I, H, num_layers=2))
    with pytest.raises(ValueError, match=r"layer must be an integer in \[0, 1\)"):
        to_keras(gru, layer=1)
    with pytest.raises(ValueError, match=r"proj_size=2"):
        to_keras(torch.nn.LSTM(I, H, proj_size=2))
    with pytest.raises(TypeError, match=r"got Linear"):
        to_keras(torch.nn.Linear(I, H))


def test_keras_extra_leaves_torch_alone() -> None:
    """Keras does not depend on torch, so installing the extra cannot change it; using it left torch's state alone."""
    requires = importlib.metadata.requires("keras") or []
    assert not any(r.split(";")[0].strip().lower().startswith("torch") for r in requires), requires
    assert torch.__version__ == TORCH_VERSION
    assert (torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_default_device()) == TORCH_STATE
    assert keras.backend.backend() == "torch"
