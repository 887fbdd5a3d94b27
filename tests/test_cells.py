"""Tests of :mod:`rnnkit.cells`: one step of each cell against torch.nn's cells and the lecture's literal equations,
gradcheck on every cell, the output layer ``y = W_y h + b_y``, init, dtype/device and argument checks, and a walk
over the table of built-in cells (``rnnkit.cells.CELLS``) that tests every entry.

All in float64 with fixed seeds; references agree to 1e-10 forward and backward.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

import rnnkit
from rnnkit.cells import CELLS as TABLE
from rnnkit.cells import gru_step, lstm_step, rnn_step, spec_of
from rnnkit.layers import layer_for

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}

CELLS = {
    "rnn_tanh": (functools.partial(rnnkit.RNNCell, nonlinearity="tanh"), functools.partial(nn.RNNCell)),
    "rnn_relu": (
        functools.partial(rnnkit.RNNCell, nonlinearity="relu"),
        functools.partial(nn.RNNCell, nonlinearity="relu"),
    ),
    "lstm": (rnnkit.LSTMCell, nn.LSTMCell),
    "gru": (rnnkit.GRUCell, nn.GRUCell),
}
ALL_CELLS = {
    **{k: v[0] for k, v in CELLS.items()},
    "gru_before": functools.partial(rnnkit.GRUCell, reset="before"),
}


def close(actual, expected, msg: str = "") -> None:
    torch.testing.assert_close(actual, expected, **TOL, msg=lambda m: f"{msg}\n{m}" if msg else m)


def as_tuple(state) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def random_state(kind: str, B: int, H: int):
    s = tuple(torch.randn(B, H, dtype=DT, requires_grad=True) for _ in range(2 if kind == "lstm" else 1))
    return s if kind == "lstm" else s[0]


# ---------------------------------------------------------------------------------------------------- torch.nn parity
@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("with_state", [True, False], ids=["state", "nostate"])
def test_cell_matches_torch_nn_cell(kind, bias, with_state):
    """One step after a state_dict copy: new state, input/state grads and every parameter grad agree."""
    torch.manual_seed(1)
    B, I, H = 3, 2, 4
    ours_cls, ref_cls = CELLS[kind]
    ref = ref_cls(I, H, bias=bias, dtype=DT)
    ours = ours_cls(I, H, bias=bias, dtype=DT)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(B, I, dtype=DT, requires_grad=True)
    state = random_state(kind, B, H) if with_state else None
    ws = [torch.randn(B, H, dtype=DT) for _ in range(2 if kind == "lstm" else 1)]

    def run(cell):
        new = cell(x, state)
        loss = sum((s * w).sum() for s, w in zip(as_tuple(new), ws, strict=True))
        leaves = [x, *(as_tuple(state) if with_state else ())]
        return new, torch.autograd.grad(loss, leaves + list(cell.parameters()))

    (new, grads), (e_new, e_grads) = run(ours), run(ref)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for a, b in zip(as_tuple(new), as_tuple(e_new), strict=True):
        close(a, b, "new state")
    for i, (a, b) in enumerate(zip(grads, e_grads, strict=True)):
        close(a, b, f"grad #{i}")


@pytest.mark.parametrize("kind", CELLS)
def test_torch_nn_cell_loads_rnnkit_state_dict(kind):
    torch.manual_seed(2)
    ours_cls, ref_cls = CELLS[kind]
    ours, ref = ours_cls(3, 2, dtype=DT), ref_cls(3, 2, dtype=DT)
    ref.load_state_dict(ours.state_dict())
    x, state = torch.randn(4, 3, dtype=DT), random_state(kind, 4, 2)
    for a, b in zip(as_tuple(ours(x, state)), as_tuple(ref(x, state)), strict=True):
        close(a, b)


@pytest.mark.parametrize("kind", ALL_CELLS)
def test_step_alias_initial_state_and_functional_step(kind):
    torch.manual_seed(3)
    B, I, H = 2, 3, 4
    cell = ALL_CELLS[kind](I, H, dtype=DT)
    x = torch.randn(B, I, dtype=DT)
    zero = cell.initial_state(B)
    for z in as_tuple(zero):
        assert z.shape == (B, H) and z.dtype == DT and torch.all(z == 0)
    assert isinstance(zero, tuple) == (kind == "lstm")
    for a, b in zip(as_tuple(cell(x)), as_tuple(cell(x, zero)), strict=True):  # None means zeros
        close(a, b)
    state = random_state(kind, B, H)
    new = cell(x, state)
    for a, b in zip(as_tuple(cell.step(x, state)), as_tuple(new), strict=True):
        close(a, b)
    w = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    if kind.startswith("rnn"):
        fn = rnn_step(x, state, *w, kind[4:])
    elif kind == "lstm":
        fn = lstm_step(x, state, *w)
    else:
        fn = gru_step(x, state, *w, "after" if kind == "gru" else "before")
    for a, b in zip(as_tuple(fn), as_tuple(new), strict=True):
        close(a, b)


# ---------------------------------------------------------------------------------------------------- the lecture
def lecture_gru_step(x, h, W_z, W_r, W):
    """The lecture's GRU, literally: ``h' = [h, x]``, ``z = σ(W_z h')``, ``r = σ(W_r h')``,
    ``h̃ = tanh(W [r ⊙ h, x])``, ``h = (1 − z) ⊙ h + z ⊙ h̃``."""
    hx = torch.cat([h, x], dim=1)
    z = torch.sigmoid(hx @ W_z.T)
    r = torch.sigmoid(hx @ W_r.T)
    h_tilde = torch.tanh(torch.cat([r * h, x], dim=1) @ W.T)
    return (1 - z) * h + z * h_tilde


def test_gru_cell_reset_before_equals_lecture_equations():
    """``GRUCell(reset="before", bias=False)`` over a sequence is the lecture's GRU with its own ``W_z, W_r, W`` built
    by the docstring's mapping: ``W_r = [W_hr, W_ir]``, ``W = [W_hn, W_in]``, ``W_z = −[W_hz, W_iz]``."""
    torch.manual_seed(4)
    T, B, I, H = 7, 3, 3, 5
    cell = rnnkit.GRUCell(I, H, bias=False, reset="before", dtype=DT)
    w_ih, w_hh = cell.weight_ih.detach(), cell.weight_hh.detach()
    W_r = torch.cat([w_hh[:H], w_ih[:H]], dim=1)  # (H, H + I)
    W_z = -torch.cat([w_hh[H : 2 * H], w_ih[H : 2 * H]], dim=1)
    W = torch.cat([w_hh[2 * H :], w_ih[2 * H :]], dim=1)
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    h = h_ref = torch.randn(B, H, dtype=DT)
    ours, ref = [], []
    for x_t in x.unbind(0):
        h = cell(x_t, h)
        h_ref = lecture_gru_step(x_t, h_ref, W_z, W_r, W)
        ours.append(h)
        ref.append(h_ref)
    close(torch.stack(ours), torch.stack(ref))
    w = torch.randn(T, B, H, dtype=DT)
    g = torch.autograd.grad((torch.stack(ours) * w).sum(), x)[0]
    close(g, torch.autograd.grad((torch.stack(ref) * w).sum(), x)[0], "input grad")
    # The after-reset GRU is a different function: the test above is not vacuous.
    after = rnnkit.GRUCell(I, H, bias=False, dtype=DT)
    after.load_state_dict(cell.state_dict())
    assert not torch.allclose(after(x[0].detach(), h_ref), cell(x[0].detach(), h_ref))


def test_gru_cell_reset_before_with_biases_equals_hand_step():
    torch.manual_seed(5)
    B, I, H = 3, 2, 4
    cell = rnnkit.GRUCell(I, H, reset="before", dtype=DT)
    x = torch.randn(B, I, dtype=DT, requires_grad=True)
    h = torch.randn(B, H, dtype=DT, requires_grad=True)
    W_ir, W_iz, W_in = cell.weight_ih.split(H)
    W_hr, W_hz, W_hn = cell.weight_hh.split(H)
    b_ir, b_iz, b_in = cell.bias_ih.split(H)
    b_hr, b_hz, b_hn = cell.bias_hh.split(H)
    r = torch.sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = torch.sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    n = torch.tanh(x @ W_in.T + b_in + (r * h) @ W_hn.T + b_hn)
    expected = (1 - z) * n + z * h
    got = cell(x, h)
    close(got, expected)
    w = torch.randn(B, H, dtype=DT)
    leaves = [x, h, *cell.parameters()]
    for a, b in zip(
        torch.autograd.grad((got * w).sum(), leaves), torch.autograd.grad((expected * w).sum(), leaves), strict=True
    ):
        close(a, b)


def test_lstm_cell_equals_lecture_equations():
    """The lecture's LSTM on ``h' = [h, x]`` with ``W_f [h, x] + b_f`` = ``W_hf h + W_if x + (b_if + b_hf)``."""
    torch.manual_seed(6)
    B, I, H = 3, 2, 4
    cell = rnnkit.LSTMCell(I, H, dtype=DT)
    x, h, C = torch.randn(B, I, dtype=DT), torch.randn(B, H, dtype=DT), torch.randn(B, H, dtype=DT)
    W = torch.cat([cell.weight_hh, cell.weight_ih], dim=1).detach()  # (4H, H + I), rows i, f, g, o
    b = (cell.bias_ih + cell.bias_hh).detach()
    W_i, W_f, W_c, W_o = W.split(H)
    b_i, b_f, b_c, b_o = b.split(H)
    hp = torch.cat([h, x], dim=1)  # h'_{t−1} = [h_{t−1}, x_t]
    C_tilde = torch.tanh(hp @ W_c.T + b_c)
    f = torch.sigmoid(hp @ W_f.T + b_f)
    i = torch.sigmoid(hp @ W_i.T + b_i)
    C_t = f * C + i * C_tilde
    o = torch.sigmoid(hp @ W_o.T + b_o)
    h_t = o * torch.tanh(C_t)
    h_new, C_new = cell(x, (h, C))
    close(C_new, C_t)
    close(h_new, h_t)


def test_vanilla_rnn_with_output_layer_is_the_lecture_recursion():
    """``(y_l, h_l) = f_θ(x_l, h_{l−1})`` with ``h_l = tanh(W_x x_l + W_h h_{l−1} + b_h)``, ``y_l = W_y h_l + b_y``."""
    torch.manual_seed(7)
    T, B, I, H, O = 5, 2, 3, 4, 2
    model = rnnkit.OutputLayer(rnnkit.RNNCell(I, H, dtype=DT), O, dtype=DT)
    cell, head = model.core, model.head
    W_x, W_h, b_h = cell.weight_ih.detach(), cell.weight_hh.detach(), (cell.bias_ih + cell.bias_hh).detach()
    W_y, b_y = head.weight.detach(), head.bias.detach()
    x = torch.randn(T, B, I, dtype=DT)
    h = h_ref = torch.zeros(B, H, dtype=DT)
    for x_t in x.unbind(0):
        y, h = model(x_t, h)
        h_ref = torch.tanh(x_t @ W_x.T + h_ref @ W_h.T + b_h)
        close(h, h_ref)
        close(y, h_ref @ W_y.T + b_y)


# ---------------------------------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("kind", ALL_CELLS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradcheck_cell(kind, bias):
    torch.manual_seed(8)
    B, I, H = 2, 2, 3
    cell = ALL_CELLS[kind](I, H, bias=bias, dtype=DT)
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    x = torch.randn(B, I, dtype=DT, requires_grad=True)
    state = random_state(kind, B, H)
    n_state = len(as_tuple(state))

    def f(x, *rest):
        st = rest[:n_state]
        new = functional_call(cell, dict(zip(names, rest[n_state:], strict=True)), (x, st if n_state == 2 else st[0]))
        return new

    assert torch.autograd.gradcheck(f, (x, *as_tuple(state), *params))


# ---------------------------------------------------------------------------------------------------- OutputLayer
def _head(model: rnnkit.OutputLayer, h: Tensor) -> Tensor:
    """``y = W_y h + b_y`` by hand from the wrapper's Linear weights."""
    W_y = model.head.weight
    return h @ W_y.T + (0 if model.head.bias is None else model.head.bias)


@pytest.mark.parametrize("kind", ALL_CELLS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_output_layer_around_cell(kind, bias):
    torch.manual_seed(9)
    B, I, H, O = 3, 2, 4, 5
    model = rnnkit.OutputLayer(ALL_CELLS[kind](I, H, dtype=DT), O, bias=bias, dtype=DT)
    assert (model.head.bias is None) == (not bias) and model.head.weight.shape == (O, H)
    x, state = torch.randn(B, I, dtype=DT), random_state(kind, B, H)
    y, new = model(x, state)
    expected = model.core(x, state)
    for a, b in zip(as_tuple(new), as_tuple(expected), strict=True):
        close(a, b)
    close(y, _head(model, as_tuple(expected)[0]))
    assert y.shape == (B, O)


@pytest.mark.parametrize(
    "core",
    [
        lambda: rnnkit.RNN(2, 4, 2, dtype=DT),
        lambda: rnnkit.LSTM(2, 4, bidirectional=True, batch_first=True, dtype=DT),
        lambda: rnnkit.GRU(2, 4, reset="before", bidirectional=True, dtype=DT),
        lambda: nn.GRU(2, 4, dtype=DT),
    ],
    ids=["rnn", "lstm-bi-bf", "gru-before-bi", "torch-gru"],
)
def test_output_layer_around_layer(core):
    torch.manual_seed(10)
    T, B, I, O = 5, 3, 2, 3
    layer = core()
    model = rnnkit.OutputLayer(layer, O, dtype=DT)
    D = 2 if layer.bidirectional else 1
    assert model.head.in_features == D * 4
    x = torch.randn(B, T, I, dtype=DT) if layer.batch_first else torch.randn(T, B, I, dtype=DT)
    y, final = model(x)
    out, h_n = layer(x)
    close(y, _head(model, out))
    assert y.shape[:2] == out.shape[:2] and y.shape[2] == O
    for a, b in zip(as_tuple(final), as_tuple(h_n), strict=True):
        close(a, b)
    if isinstance(layer, rnnkit.Recurrent):  # keyword arguments reach the layer
        lengths = [5, 2, 4]
        y, final = model(x, None, lengths=lengths)
        out, h_n = layer(x, lengths=lengths)
        close(y, _head(model, out))
        close(as_tuple(final)[0], as_tuple(h_n)[0])


def test_output_layer_bad_arguments():
    with pytest.raises(ValueError, match=r"out_features.*\b0\b"):
        rnnkit.OutputLayer(rnnkit.RNNCell(2, 3), 0)
    with pytest.raises(TypeError, match="hidden_size"):
        rnnkit.OutputLayer(nn.Linear(2, 3), 2)


# ---------------------------------------------------------------------------------------------------- init, dtype, args
@pytest.mark.parametrize("kind", ALL_CELLS)
def test_cell_init_dtype_and_device(kind):
    torch.manual_seed(11)
    make = ALL_CELLS[kind]
    H = 9
    cell = make(3, H)
    assert all(p.dtype == torch.get_default_dtype() for p in cell.parameters())
    G = {"lstm": 4, "gru": 3, "gru_before": 3}.get(kind, 1)
    assert cell.weight_ih.shape == (G * H, 3) and cell.weight_hh.shape == (G * H, H)
    assert cell.bias_ih.shape == cell.bias_hh.shape == (G * H,)
    bound = 1 / math.sqrt(H)
    for p in cell.parameters():  # U(−1/√H, 1/√H)
        assert p.abs().max() <= bound and p.abs().max() > 0.5 * bound
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert all(p.dtype == torch.float64 for p in make(3, 2).parameters())
    finally:
        torch.set_default_dtype(old)
    cell = make(3, 2, dtype=torch.float64, device=torch.device("cpu"))
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in cell.parameters())
    assert all(p.device.type == "meta" for p in make(3, 2, device="meta").parameters())
    nobias = make(3, 2, bias=False)
    assert nobias.bias_ih is None and nobias.bias_hh is None and len(list(nobias.parameters())) == 2


@pytest.mark.parametrize(
    "ctor,match",
    [
        (lambda: rnnkit.RNNCell(0, 3), r"input_size.*\b0\b"),
        (lambda: rnnkit.LSTMCell(2, -4), r"hidden_size.*-4"),
        (lambda: rnnkit.GRUCell(2.0, 3), r"input_size.*2\.0"),
        (lambda: rnnkit.GRUCell(2, None), r"hidden_size.*None"),
        (lambda: rnnkit.RNNCell(2, 3, nonlinearity="gelu"), r"nonlinearity.*'gelu'"),
        (lambda: rnnkit.GRUCell(2, 3, reset="never"), r"reset.*'never'"),
    ],
)
def test_cell_bad_constructor_arguments(ctor, match):
    with pytest.raises(ValueError, match=match):
        ctor()


@pytest.mark.parametrize("kind", ALL_CELLS)
def test_cell_rejects_wrong_input_shape(kind):
    cell = ALL_CELLS[kind](3, 2)
    with pytest.raises(ValueError, match=r"\(B, 3\).*\(4, 2\)"):
        cell(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"\(B, 3\).*\(5, 4, 3\)"):
        cell(torch.randn(5, 4, 3))


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_cell_rejects_wrong_state_shape(kind):
    cell = ALL_CELLS[kind](3, 2)
    bad = torch.zeros(4, 5)
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        cell(torch.randn(4, 3), (bad, bad) if kind == "lstm" else bad)


def test_output_layer_around_layer_with_packed_input():
    torch.manual_seed(12)
    model = rnnkit.OutputLayer(rnnkit.GRU(2, 3, dtype=DT), 4, dtype=DT)
    x = torch.randn(5, 2, 2, dtype=DT)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, [5, 3])
    y, _ = model(packed)
    out, _ = model.core(packed)
    close(y.data, _head(model, out.data))


# ---------------------------------------------------------------------------------------------------- the cell table
# These walk rnnkit.cells.CELLS (TABLE here), so a new entry is tested without touching this file.


def test_table_holds_the_built_in_kinds():
    """The kinds the code has always had, with torch's gate packing; a new entry adds to these."""
    expected = {
        "rnn_tanh": ("rnn", ("h",), ("h",)),
        "rnn_relu": ("rnn", ("h",), ("h",)),
        "lstm": ("lstm", ("i", "f", "g", "o"), ("h", "c")),
        "gru": ("gru", ("r", "z", "n"), ("h",)),
        "gru_before": ("gru", ("r", "z", "n"), ("h",)),
    }
    for kind, (family, gates, state) in expected.items():
        spec = TABLE[kind]
        assert (spec.kind, spec.family, spec.gates, spec.state) == (kind, family, gates, state)
    assert [s.model for s in TABLE.values() if s.model] == ["rnn", "lstm", "gru", "gru-before"]


@pytest.mark.parametrize("kind", list(TABLE))
def test_table_entry_is_what_its_cell_and_layer_compute(kind):
    """Each entry: its cell and layer name it, shapes follow its gates, its step IS the cell's forward, and where it
    names torch.nn classes and a fused kernel they compute the same (float64, forward and backward)."""
    torch.manual_seed(13)
    spec = TABLE[kind]
    B, I, H, T = 3, 2, 4, 5
    opts = dict(spec.options)
    cell = spec.cell(I, H, dtype=DT, **opts)
    assert cell.cell_spec is spec and spec_of(cell) is spec and cell.num_gates == spec.num_gates
    assert cell.weight_ih.shape == (spec.num_gates * H, I) and cell.weight_hh.shape == (spec.num_gates * H, H)
    assert len(as_tuple(cell.initial_state(B))) == spec.state_arity
    x = torch.randn(B, I, dtype=DT)
    state = tuple(torch.randn(B, H, dtype=DT) for _ in spec.state)
    state = state if spec.state_arity > 1 else state[0]
    w = (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    for a, b in zip(as_tuple(spec.step(x, state, *w)), as_tuple(cell(x, state)), strict=True):
        assert torch.equal(a, b)  # one function, not two copies
    layer = layer_for(kind, I, H, dtype=DT)
    assert layer.cell_spec is spec and spec_of(layer) is spec
    assert layer.weight_hh_l0.shape == (spec.num_gates * H, H)
    assert sorted(spec.keras_gates) == sorted(spec.gates)
    assert spec.fused is None or spec.torch_layer is not None, "a fused kernel only where torch.nn has the math"
    if spec.torch_cell is not None:
        ref = spec.torch_cell(I, H, dtype=DT, **dict(spec.torch_options))
        assert spec_of(ref) is spec
        ref.load_state_dict(cell.state_dict())
        for a, b in zip(as_tuple(cell(x, state)), as_tuple(ref(x, state)), strict=True):
            close(a, b)
    if spec.torch_layer is not None:
        ref = spec.torch_layer(I, H, dtype=DT, **dict(spec.torch_options))
        assert spec_of(ref) is spec
        layer.load_state_dict(ref.state_dict())
        xs = torch.randn(T, B, I, dtype=DT, requires_grad=True)
        for engine in ("fused", "own", "loop") if spec.fused else ("own", "loop"):
            layer.engine = engine
            out, h_n = layer(xs)
            e_out, e_h_n = ref(xs)
            close(out, e_out, engine)
            for a, b in zip(as_tuple(h_n), as_tuple(e_h_n), strict=True):
                close(a, b, engine)
            g = torch.autograd.grad(out.sum() + sum(s.sum() for s in as_tuple(h_n)), [xs, *layer.parameters()])
            e_g = torch.autograd.grad(e_out.sum() + sum(s.sum() for s in as_tuple(e_h_n)), [xs, *ref.parameters()])
            for a, b in zip(g, e_g, strict=True):
                close(a, b, f"{engine} grad")


def test_spec_of_other_modules_is_none():
    assert spec_of(nn.Linear(2, 3)) is None
    assert spec_of(rnnkit.Recurrent(rnnkit.LSTMCell, 2, 3)) is None  # any cell: the table does not describe it
