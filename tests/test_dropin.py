"""Drop-in for torch.nn beyond the numbers: ``proj_size``, unbatched input, argument checks, exception types,
``repr``, torch.nn's private attributes and helpers, class identity, safe loading, scripting and compiling.

Numeric checks run in float64 with fixed seeds against torch.nn after a state_dict copy, forward and backward.
Shape symbols: T time, B batch, I input, H hidden, P projection, L layers, D directions.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.cells import ArgTypeError, ShapeError

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}


def _grads(module: nn.Module, outs, inputs):
    g = torch.Generator().manual_seed(1)
    flat = [t for o in outs for t in (o if isinstance(o, tuple) else (o,))]
    loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in flat)
    return flat, torch.autograd.grad(loss, [*inputs, *module.parameters()])


# ---------------------------------------------------------------------------------------------------- proj_size
@pytest.mark.parametrize("engine", ["auto", "fused", "loop"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_lstm_proj_size_matches_torch(engine, bidirectional, with_lengths):
    torch.manual_seed(0)
    T, B, I, H, P, L = 5, 3, 4, 6, 3, 2
    theirs = nn.LSTM(I, H, L, bidirectional=bidirectional, proj_size=P, dtype=DT)
    ours = rnnkit.LSTM(I, H, L, bidirectional=bidirectional, proj_size=P, dtype=DT, engine=engine)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    D = 2 if bidirectional else 1
    assert ours.weight_hr_l1.shape == (P, H) and ours.weight_hh_l0.shape == (4 * H, P)
    assert ours.weight_ih_l1.shape == (4 * H, P * D)
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    h0 = torch.randn(L * D, B, P, dtype=DT, requires_grad=True)
    c0 = torch.randn(L * D, B, H, dtype=DT, requires_grad=True)
    lengths = [5, 2, 4] if with_lengths else None
    if with_lengths:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, (h, c) = theirs(packed, (h0, c0))
        want_out = (pad_packed_sequence(out, total_length=T)[0], (h, c))
    else:
        want_out = theirs(x, (h0, c0))
    want, want_g = _grads(theirs, want_out, [x, h0, c0])
    got, got_g = _grads(ours, ours(x, (h0, c0), lengths=lengths), [x, h0, c0])
    assert got[0].shape == (T, B, D * P) and got[1].shape == (L * D, B, P) and got[2].shape == (L * D, B, H)
    for a, b in zip([*got, *got_g], [*want, *want_g], strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_lstm_proj_size_positional_order_is_torchs():
    args = (4, 8, 2, False, True, 0.0, True, 3)  # input, hidden, layers, bias, batch_first, dropout, bidir, proj
    ours, theirs = rnnkit.LSTM(*args), nn.LSTM(*args)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert (ours.proj_size, ours.bias, ours.batch_first, ours.bidirectional) == (3, False, True, True)
    assert repr(ours) == repr(theirs)


def test_lstm_proj_size_own_engine_refuses_and_auto_routes():
    with pytest.raises(ValueError, match=r"engine='own'.*proj_size"):
        rnnkit.LSTM(3, 5, proj_size=2, engine="own")
    lstm = rnnkit.LSTM(3, 5, proj_size=2)
    with pytest.raises(ValueError, match=r"engine='own'.*proj_size"):
        lstm.engine = "own"
    assert lstm.engine == "auto"
    for bad, err in [(-1, ValueError), (5, ValueError), (7, ValueError), (1.0, TypeError)]:
        with pytest.raises(err):
            rnnkit.LSTM(3, 5, proj_size=bad)
        with pytest.raises(err):
            nn.LSTM(3, 5, proj_size=bad)


def test_lstm_proj_size_step_and_forward_states_agree_with_forward():
    torch.manual_seed(0)
    lstm = rnnkit.LSTM(3, 5, 2, proj_size=2, dtype=DT)
    x = torch.randn(4, 2, 3, dtype=DT)
    out, (h, c) = lstm(x)
    states = lstm.forward_states(x)
    torch.testing.assert_close(states.output, out, **TOL)
    state = None
    for t in range(4):
        y, state = lstm.step(x[t], state)
        torch.testing.assert_close(y, out[t], **TOL)
    torch.testing.assert_close(state[0], h, **TOL)
    torch.testing.assert_close(state[1], c, **TOL)


# ---------------------------------------------------------------------------------------------------- unbatched
@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_take_unbatched_input_as_torch(name):
    torch.manual_seed(0)
    I, H = 5, 4
    theirs = getattr(nn, name)(I, H, dtype=DT)
    ours = getattr(rnnkit, name)(I, H, dtype=DT)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(I, dtype=DT, requires_grad=True)
    h = torch.randn(H, dtype=DT, requires_grad=True)
    state = (h, torch.randn(H, dtype=DT, requires_grad=True)) if name == "LSTMCell" else h
    ins = [x, *(state if isinstance(state, tuple) else (state,))]
    for s in (state, None):
        want, want_g = _grads(theirs, [theirs(x, s)], ins if s is not None else [x])
        got, got_g = _grads(ours, [ours(x, s)], ins if s is not None else [x])
        assert all(t.shape == (H,) for t in got)
        for a, b in zip([*got, *got_g], [*want, *want_g], strict=True):
            torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("engine", ["auto", "own", "loop"])
def test_layers_take_unbatched_input_as_torch(name, engine):
    torch.manual_seed(0)
    T, I, H, L = 4, 3, 5, 2
    theirs = getattr(nn, name)(I, H, L, bidirectional=True, dtype=DT)
    ours = getattr(rnnkit, name)(I, H, L, bidirectional=True, dtype=DT, engine=engine)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(T, I, dtype=DT, requires_grad=True)
    h0 = torch.randn(L * 2, H, dtype=DT, requires_grad=True)
    hx = (h0, torch.randn(L * 2, H, dtype=DT, requires_grad=True)) if name == "LSTM" else h0
    ins = [x, *(hx if isinstance(hx, tuple) else (hx,))]
    want, want_g = _grads(theirs, theirs(x, hx), ins)
    got, got_g = _grads(ours, ours(x, hx), ins)
    assert got[0].shape == (T, 2 * H) and got[1].shape == (L * 2, H)
    for a, b in zip([*got, *got_g], [*want, *want_g], strict=True):
        torch.testing.assert_close(a, b, **TOL)


# ---------------------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((3, 5), {"batch_first": "False"}),
        ((3, 5), {"batch_first": 1}),
        ((3, 5), {"bias": 0}),
        ((3, 5), {"bias": 1}),
        ((3, 5), {"bias": "True"}),
        ((3.0, 5), {}),
        (("10", 5), {}),
        ((3, 5.0), {}),
        ((0, 5), {}),
        ((3, 0), {}),
        ((3, 5, 0), {}),
        ((3, 5), {"dropout": 1.5}),
    ],
)
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_constructor_errors_have_torchs_type(name, args, kwargs):
    with pytest.raises(Exception) as want:
        getattr(nn, name)(*args, **kwargs)
    with pytest.raises(want.type):
        getattr(rnnkit, name)(*args, **kwargs)


def test_forward_errors_have_torchs_type():
    ours, theirs = rnnkit.GRU(3, 5), nn.GRU(3, 5)
    with pytest.raises(ValueError, match="dtype"):
        ours(torch.randn(2, 4, 3, dtype=DT))
    with pytest.raises(TypeError):  # rnnkit's earlier type stays valid
        ours(torch.randn(2, 4, 3, dtype=DT))
    for call in (lambda m: m(torch.randn(2, 4, 7)), lambda m: m(torch.randn(2, 4, 3), torch.zeros(1, 3, 5))):
        with pytest.raises(RuntimeError):
            call(theirs)
        with pytest.raises(RuntimeError):
            call(ours)
    cell = rnnkit.LSTMCell(3, 5)
    with pytest.raises(RuntimeError):
        cell(torch.randn(2, 4))
    with pytest.raises(ShapeError):
        cell(torch.randn(2, 3), (torch.zeros(3, 5), torch.zeros(3, 5)))
    assert issubclass(ShapeError, ValueError) and issubclass(ArgTypeError, ValueError)


@pytest.mark.parametrize(
    "make",
    [
        lambda m: m.RNN(3, 5),
        lambda m: m.RNN(3, 5, 2, nonlinearity="relu", bias=False, batch_first=True, dropout=0.5, bidirectional=True),
        lambda m: m.LSTM(3, 5, 2, proj_size=2, dropout=0.25),
        lambda m: m.GRU(3, 5, bias=False, bidirectional=True),
        lambda m: m.RNNCell(3, 5, nonlinearity="relu"),
        lambda m: m.RNNCell(3, 5, bias=False),
        lambda m: m.LSTMCell(3, 5),
        lambda m: m.GRUCell(3, 5, bias=False),
    ],
)
def test_repr_equals_torchs(make):
    assert repr(make(rnnkit)) == repr(make(nn))


@pytest.mark.parametrize("name,kw", [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {})])
def test_torch_private_attributes_and_helpers(name, kw):
    torch.manual_seed(0)
    theirs = getattr(nn, name)(3, 5, 2, bidirectional=True, **kw)
    ours = getattr(rnnkit, name)(3, 5, 2, bidirectional=True, **kw)
    ours.load_state_dict(theirs.state_dict())
    assert ours.mode == theirs.mode
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert all(a is getattr(ours, n) for a, n in zip(ours._flat_weights, ours._flat_weights_names, strict=True))
    pairs = zip(ours.all_weights, theirs.all_weights, strict=True)
    assert all(torch.equal(a, b) for x, y in pairs for a, b in zip(x, y, strict=True))
    assert [len(g) for g in ours.all_weights] == [len(g) for g in theirs.all_weights]
    x = torch.randn(4, 2, 3)
    h = torch.zeros(4, 2, 5)
    hx = (h, h) if name == "LSTM" else h
    ours.check_forward_args(x, hx, None)
    theirs.check_forward_args(x, hx, None)
    bad = torch.zeros(4, 3, 5)
    for m in (ours, theirs):
        with pytest.raises(RuntimeError, match="Expected hidden"):
            m.check_forward_args(x, (bad, bad) if name == "LSTM" else bad, None)
    perm = torch.tensor([1, 0])
    got, want = ours.permute_hidden(hx, perm), theirs.permute_hidden(hx, perm)
    for a, b in zip(
        got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,), strict=True
    ):
        assert torch.equal(a, b)
    assert ours.permute_hidden(hx, None) is hx
    ours.flatten_parameters()


# ---------------------------------------------------------------------------------------------------- class identity
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_classes_are_torch_nn_subclasses(name):
    assert issubclass(getattr(rnnkit, name), getattr(nn, name))
    assert isinstance(getattr(rnnkit, name)(3, 4), getattr(nn, name))


def test_subclassing_keeps_rnnkit_engine_selection():
    gru = rnnkit.GRU(3, 4, 2, reset="before")
    assert isinstance(gru, nn.GRU) and gru.cell_spec.kind == "gru_before" and gru._fused_kind() is None
    lstm = rnnkit.LSTM(3, 4, engine="own").double()  # .double() goes through nn.Module._apply, not RNNBase's cache
    assert lstm.engine == "own" and lstm.weight_ih_l0.dtype == DT
    assert all(a is b for a, b in zip(lstm._flat_weights, lstm.parameters(), strict=True))


@pytest.mark.parametrize("make", [lambda: rnnkit.LSTM(3, 5, 2, proj_size=2), lambda: rnnkit.GRU(3, 5, reset="before")])
def test_saved_layer_loads_with_weights_only(tmp_path, make):
    torch.manual_seed(0)
    model = nn.Sequential(make())
    path = tmp_path / "model.pt"
    torch.save(model, path)
    with torch.serialization.safe_globals([nn.Sequential]):  # the user's allowlist: torch.nn's own container only
        loaded = torch.load(path, weights_only=True)  # rnnkit allowlists its own classes at import
    x = torch.randn(4, 2, 3)
    assert type(loaded[0]) is type(model[0])
    for a, b in zip(loaded[0](x), model[0](x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class _ForeignCell(nn.Module):
    def __init__(self, input_size, hidden_size, device=None, dtype=None):
        super().__init__()
        self.hidden_size = hidden_size
        self.lin = nn.Linear(input_size + hidden_size, hidden_size, device=device, dtype=dtype)

    def forward(self, x, h):
        return torch.tanh(self.lin(torch.cat([x, h], -1)))


def test_weights_only_still_refuses_classes_rnnkit_did_not_allowlist(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(rnnkit.Recurrent(_ForeignCell, 3, 4), path)
    allow = torch.serialization.safe_globals([nn.ModuleList, nn.Linear])  # all but the foreign cell allowlisted
    with allow, pytest.raises(Exception, match="_ForeignCell"):
        torch.load(path, weights_only=True)
    assert _ForeignCell not in torch.serialization.get_safe_globals()


# ---------------------------------------------------------------------------------------------------- script, compile
class _Net(nn.Module):
    """A small model holding a recurrent layer, as user code would."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn
        width = getattr(rnn, "proj_size", 0) or rnn.hidden_size
        self.head = nn.Linear(width * (2 if rnn.bidirectional else 1), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnkit.LSTM(3, 5, 2, proj_size=2, bidirectional=True),
        lambda: rnnkit.GRU(3, 5, batch_first=True),
        lambda: rnnkit.RNN(3, 5, nonlinearity="relu"),
    ],
)
def test_jit_script_of_a_model_holding_layers(make, monkeypatch):
    # bitwise against torch's kernel: the eager model runs it too (auto's choice without the compiled kernels; with
    # them it runs rnnkit's C++ kernel, equal to rounding: tests/test_compiled_engine.py)
    monkeypatch.setattr(rnnkit.engine.compiled, "rnn_extension", lambda: None)
    torch.manual_seed(0)
    net = _Net(make())
    x = torch.randn(4, 2, 3)
    want = net(x)
    scripted = torch.jit.script(net)  # rnnkit's __prepare_scriptable__ hands TorchScript the equal torch.nn layer
    torch.testing.assert_close(scripted(x), want, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_jit_script_of_cells(name):
    torch.manual_seed(0)
    cell = getattr(rnnkit, name)(3, 5)
    x = torch.randn(2, 3)
    scripted = torch.jit.script(cell)
    for a, b in zip(_as_tuple(scripted(x)), _as_tuple(cell(x)), strict=True):
        torch.testing.assert_close(a, b)


def _as_tuple(t):
    return t if isinstance(t, tuple) else (t,)


def test_jit_script_refuses_the_lectures_gru_clearly():
    with pytest.raises(ValueError, match=r"no torch\.nn counterpart"):
        torch.jit.script(rnnkit.GRUCell(3, 4, reset="before"))


@pytest.mark.parametrize(
    "make,engine",
    [
        (lambda e: rnnkit.LSTM(3, 4, 2, engine=e), "auto"),
        (lambda e: rnnkit.LSTM(3, 4, 2, engine=e), "loop"),
        (lambda e: rnnkit.GRU(3, 4, bidirectional=True, reset="before", engine=e), "auto"),
        (lambda e: rnnkit.RNN(3, 4, engine=e), "own"),
        (lambda e: rnnkit.LSTM(3, 4, proj_size=2, engine=e), "loop"),
    ],
)
def test_torch_compile_fullgraph(make, engine):
    # torch.compile graph-breaks on every nn.RNN/GRU/LSTM subclass unless allow_rnn is set: torch.nn's own too
    import torch._dynamo

    torch.manual_seed(0)
    layer = make(engine).double()
    x = torch.randn(5, 2, 3, dtype=DT)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(allow_rnn=True):
        out = torch.compile(layer, fullgraph=True, backend="eager")(x)
    for a, b in zip(
        _as_tuple(out[0]) + _as_tuple(out[1]), _as_tuple(layer(x)[0]) + _as_tuple(layer(x)[1]), strict=True
    ):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_torch_compile_fullgraph_cells(name):
    import torch._dynamo

    torch._dynamo.reset()
    cell = getattr(rnnkit, name)(3, 4).double()
    x = torch.randn(2, 3, dtype=DT)
    out = torch.compile(cell, fullgraph=True, backend="eager")(x)
    for a, b in zip(_as_tuple(out), _as_tuple(cell(x)), strict=True):
        torch.testing.assert_close(a, b, **TOL)


def test_torch_compile_refuses_own_lstm_clearly():
    import torch._dynamo

    torch._dynamo.reset()
    layer = rnnkit.LSTM(3, 4, engine="own")
    with torch._dynamo.config.patch(allow_rnn=True), pytest.raises(Exception, match=r"engine='own' cannot run under"):
        torch.compile(layer, fullgraph=True, backend="eager")(torch.randn(5, 2, 3))


@pytest.mark.parametrize("engine", ["auto", "loop"])
def test_torch_export_of_a_model_holding_a_layer(engine):
    torch.manual_seed(0)
    net = _Net(rnnkit.LSTM(3, 5, engine=engine))
    x = torch.randn(4, 2, 3)
    program = torch.export.export(net, (x,))
    torch.testing.assert_close(program.module()(x), net(x))


def test_torch_export_refuses_own_lstm_clearly():
    net = _Net(rnnkit.LSTM(3, 5, engine="own"))  # torch.export traces with dynamo, as torch.compile does
    with pytest.raises(Exception, match=r"engine='own' cannot run under"):
        torch.export.export(net, (torch.randn(4, 2, 3),))


def test_dynamic_quantization_through_to_torch():
    torch.manual_seed(0)
    net = _Net(rnnkit.LSTM(3, 5))
    x = torch.randn(4, 2, 3)
    want = net(x)
    # torch's from_float accepts only type(m) is nn.LSTM: quantize_dynamic(net, {nn.LSTM}) leaves any subclass in
    # float, rnnkit's included — rnnkit says so in one line (a warning naming the way out) rather than silently
    with pytest.warns(UserWarning, match=r"rnnkit\.LSTM stays in float .* rnnkit\.layers\.to_torch") as said:
        float_net = torch.ao.quantization.quantize_dynamic(net, {nn.LSTM})
    ours = [str(w.message) for w in said if "stays in float" in str(w.message)]
    assert len(ours) == 1 and "\n" not in ours[0]
    assert type(float_net.rnn) is rnnkit.LSTM
    with pytest.warns(UserWarning, match=r"rnnkit\.GRUCell stays in float"):
        torch.ao.quantization.quantize_dynamic(nn.Sequential(rnnkit.GRUCell(3, 4)), {nn.GRUCell})
    # to_torch swaps in the equal torch.nn layer first, and then it quantizes
    q = torch.ao.quantization.quantize_dynamic(rnnkit.layers.to_torch(net), {nn.LSTM})
    assert type(q.rnn).__module__.startswith("torch.ao.nn.quantized.dynamic")
    torch.testing.assert_close(q(x), want, rtol=0.05, atol=0.05)
