"""Tests of :mod:`rnnkit.layers`: drop-in parity with torch.nn, the lecture's GRU, lengths, packing, ``Recurrent``,
``step`` and ``forward_states``, and argument checks.

Everything runs in float64 with fixed seeds and compares with a reference — torch.nn after a state_dict copy, a
hand-unrolled loop written here in plain torch ops, or the same model run on each sequence alone — forward and
backward, to 1e-10. Shape symbols: T time, B batch, I input, H hidden, L layers, D directions.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}
ENGINES = ("auto", "fused", "own", "loop")
TORCH_KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")  # kinds with a torch.nn twin
ALL_KINDS = (*TORCH_KINDS, "gru_before")


# ---------------------------------------------------------------------------------------------------- helpers
def close(actual, expected, msg: str = "") -> None:
    torch.testing.assert_close(actual, expected, **TOL, msg=lambda m: f"{msg}\n{m}" if msg else m)


def make_ours(kind: str, I: int, H: int, L: int = 1, **kw) -> rnnkit.RNN | rnnkit.LSTM | rnnkit.GRU:
    kw.setdefault("dtype", DT)
    if kind.startswith("rnn_"):
        return rnnkit.RNN(I, H, L, nonlinearity=kind[4:], **kw)
    if kind == "lstm":
        return rnnkit.LSTM(I, H, L, **kw)
    return rnnkit.GRU(I, H, L, reset="after" if kind == "gru" else "before", **kw)


def make_torch(kind: str, I: int, H: int, L: int = 1, **kw) -> nn.RNNBase:
    kw.setdefault("dtype", DT)
    if kind.startswith("rnn_"):
        return nn.RNN(I, H, L, nonlinearity=kind[4:], **kw)
    return {"lstm": nn.LSTM, "gru": nn.GRU}[kind](I, H, L, **kw)


def engines_for(kind: str) -> tuple[str, ...]:
    return ENGINES if kind in TORCH_KINDS else ("auto", "own", "loop")


def states_of(h_n) -> tuple[Tensor, ...]:
    return h_n if isinstance(h_n, tuple) else (h_n,)


def random_hx(kind: str, n: int, B: int, H: int):
    """A random initial state ``(L·D, B, H)`` (a tuple ``(h0, c0)`` for LSTM) that requires grad."""
    hs = tuple(torch.randn(n, B, H, dtype=DT, requires_grad=True) for _ in range(2 if kind == "lstm" else 1))
    return hs if kind == "lstm" else hs[0]


class Loss:
    """A fixed random weighted sum of the output and every final state: touches each of them non-trivially."""

    def __init__(self, out_shape, state_shape, n_states: int) -> None:
        self.w_out = torch.randn(out_shape, dtype=DT)
        self.w_states = [torch.randn(state_shape, dtype=DT) for _ in range(n_states)]

    def __call__(self, out: Tensor, h_n) -> Tensor:
        loss = (out * self.w_out).sum()
        for s, w in zip(states_of(h_n), self.w_states, strict=True):
            loss = loss + (s * w).sum()
        return loss


def run_with_grads(module: nn.Module, x: Tensor, hx, loss_fn, **kw):
    """Forward, loss, and grads wrt the input, the initial states and every parameter (in name order)."""
    out, h_n = module(x, hx, **kw)
    leaves = [x, *([] if hx is None else states_of(hx))]
    names = sorted(n for n, _ in module.named_parameters())
    params = dict(module.named_parameters())
    grads = torch.autograd.grad(loss_fn(out, h_n), leaves + [params[n] for n in names])
    return out, h_n, list(grads[: len(leaves)]), dict(zip(names, grads[len(leaves) :], strict=True))


def assert_same_run(got, expected, label: str) -> None:
    out, h_n, g_in, g_par = got
    e_out, e_h_n, e_g_in, e_g_par = expected
    close(out, e_out, f"{label}: output")
    for a, b in zip(states_of(h_n), states_of(e_h_n), strict=True):
        close(a, b, f"{label}: final state")
    for i, (a, b) in enumerate(zip(g_in, e_g_in, strict=True)):
        close(a, b, f"{label}: grad of input/hx #{i}")
    assert g_par.keys() == e_g_par.keys()
    for name in g_par:
        close(g_par[name], e_g_par[name], f"{label}: grad of {name}")


def layer_params(layer: nn.Module, k: int, d: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    sfx = f"_l{k}" + ("_reverse" if d else "")
    return tuple(getattr(layer, n + sfx, None) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def reference_stack(step, x: Tensor, h0: list, lengths, num_layers: int, D: int) -> tuple[Tensor, list]:
    """Hand-unrolled stack: every sequence ALONE, its own length, forward then reverse, layer by layer.

    ``step(k, d, x_t (1, F), state) -> state`` where a state is ``(1, H)`` or a tuple of them; ``h0`` holds one batched
    state per (layer, direction). ``x`` ``(T, B, I)``. Returns the zero-padded output ``(T, B, D·H)`` and the final
    states, one batched state per (layer, direction).
    """
    T, B, _ = x.shape
    lengths = [T] * B if lengths is None else [int(n) for n in lengths]

    def pick(s, b):  # row b of a batched state, kept 2-D
        return tuple(p[b : b + 1] for p in s) if isinstance(s, tuple) else s[b : b + 1]

    def first(s):
        return s[0] if isinstance(s, tuple) else s

    def cat(ss):  # per-sequence states → one batched state
        return tuple(torch.cat(p) for p in zip(*ss, strict=True)) if isinstance(ss[0], tuple) else torch.cat(ss)

    outs, finals = [], [[] for _ in range(num_layers * D)]
    for b in range(B):
        n = lengths[b]
        seq = list(x[:n, b : b + 1].unbind(0))  # n × (1, I)
        for k in range(num_layers):
            per_dir = []
            for d in range(D):
                state = pick(h0[k * D + d], b)
                hs = [None] * n
                for t in range(n) if d == 0 else range(n - 1, -1, -1):
                    state = step(k, d, seq[t], state)
                    hs[t] = first(state)
                finals[k * D + d].append(state)
                per_dir.append(hs)
            seq = [torch.cat([per_dir[d][t] for d in range(D)], dim=1) for t in range(n)]  # n × (1, D·H)
        pad = [seq[0].new_zeros(seq[0].shape)] * (T - n)
        outs.append(torch.cat(seq + pad))  # (T, D·H)
    out = torch.stack(outs, dim=1)  # (T, B, D·H)
    return out, [cat(f) for f in finals]


def gru_before_step_by_hand(x, h, w_ih, w_hh, b_ih, b_hh):
    """The reset-before GRU (Cho et al. 2014) in torch.nn's packing, written out gate by gate."""
    H = h.shape[1]
    W_ir, W_iz, W_in = w_ih[:H], w_ih[H : 2 * H], w_ih[2 * H :]
    W_hr, W_hz, W_hn = w_hh[:H], w_hh[H : 2 * H], w_hh[2 * H :]
    b_ir, b_iz, b_in = b_ih[:H], b_ih[H : 2 * H], b_ih[2 * H :]
    b_hr, b_hz, b_hn = b_hh[:H], b_hh[H : 2 * H], b_hh[2 * H :]
    r = torch.sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = torch.sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    n = torch.tanh(x @ W_in.T + b_in + (r * h) @ W_hn.T + b_hn)
    return (1 - z) * n + z * h


def lecture_gru_step(x, h, W_z, W_r, W):
    """The lecture's GRU, literally: ``h' = [h, x]``, ``z = σ(W_z h')``, ``r = σ(W_r h')``,
    ``h̃ = tanh(W [r ⊙ h, x])``, ``h = (1 − z) ⊙ h + z ⊙ h̃``."""
    hx = torch.cat([h, x], dim=1)
    z = torch.sigmoid(hx @ W_z.T)
    r = torch.sigmoid(hx @ W_r.T)
    h_tilde = torch.tanh(torch.cat([r * h, x], dim=1) @ W.T)
    return (1 - z) * h + z * h_tilde


def lecture_weights(w_ih: Tensor, w_hh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The lecture's ``W_z, W_r, W`` from rnnkit's packed weights, by GRUCell's docstring mapping."""
    H = w_hh.shape[1]
    W_r = torch.cat([w_hh[:H], w_ih[:H]], dim=1)  # (H, H + I)
    W_z = -torch.cat([w_hh[H : 2 * H], w_ih[H : 2 * H]], dim=1)  # lecture's z is torch's 1 − z
    W = torch.cat([w_hh[2 * H :], w_ih[2 * H :]], dim=1)
    return W_z, W_r, W


# ---------------------------------------------------------------------------------------------------- torch.nn parity
# Every (L, D) pair with every (batch_first, bias, hx) combination: 4 kinds × 3 × 2 × 8 = 192 configurations, each
# checked for all engines against one torch.nn run.
@pytest.mark.parametrize("kind", TORCH_KINDS)
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["nohx", "hx"])
def test_layer_matches_torch_nn_every_engine(kind, num_layers, bidirectional, batch_first, bias, with_hx):
    torch.manual_seed(1000 + 7 * num_layers + 3 * bidirectional + 2 * batch_first + bias)
    T, B, I, H = 4, 3, 2, 3
    D = 2 if bidirectional else 1
    cfg = {"bias": bias, "batch_first": batch_first, "bidirectional": bidirectional}
    ref = make_torch(kind, I, H, num_layers, **cfg)
    ours = make_ours(kind, I, H, num_layers, **cfg)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=DT, requires_grad=True)
    hx = random_hx(kind, num_layers * D, B, H) if with_hx else None
    out_shape = (B, T, D * H) if batch_first else (T, B, D * H)
    loss = Loss(out_shape, (num_layers * D, B, H), 2 if kind == "lstm" else 1)
    expected = run_with_grads(ref, x, hx, loss)
    for engine in ENGINES:
        ours.engine = engine
        assert_same_run(run_with_grads(ours, x, hx, loss), expected, f"engine={engine}")


@pytest.mark.parametrize("kind", TORCH_KINDS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_torch_nn_loads_rnnkit_state_dict(kind, bias):
    torch.manual_seed(11)
    T, B, I, H, L = 5, 2, 3, 4, 2
    ours = make_ours(kind, I, H, L, bias=bias, bidirectional=True, engine="own")
    ref = make_torch(kind, I, H, L, bias=bias, bidirectional=True)
    assert list(ours.state_dict()) == list(ref.state_dict())  # same names, same order
    for name, p in ours.state_dict().items():
        assert p.shape == ref.state_dict()[name].shape, name
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    hx = random_hx(kind, 2 * L, B, H)
    loss = Loss((T, B, 2 * H), (2 * L, B, H), 2 if kind == "lstm" else 1)
    assert_same_run(run_with_grads(ref, x, hx, loss), run_with_grads(ours, x, hx, loss), "torch.nn after load")


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_auto_engine_is_torch_fused_kernel(kind, monkeypatch):
    """Without compiled kernels (RNNKIT_COMPILED=0, no compiler) ``auto`` runs the very kernel torch.nn runs:
    outputs are bitwise equal, and the own path is never called. (With them it runs the compiled kernel:
    tests/test_compiled_engine.py.)"""
    monkeypatch.setattr(rnnkit.engine.compiled, "rnn_extension", lambda: None)
    torch.manual_seed(12)
    ref = make_torch(kind, 3, 4, 2, bidirectional=True)
    ours = make_ours(kind, 3, 4, 2, bidirectional=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 3, dtype=DT)
    mp = pytest.MonkeyPatch()
    mp.setattr(rnnkit.engine, "run_own", lambda *a, **k: pytest.fail("own path used"))
    try:
        out, h_n = ours(x)
    finally:
        mp.undo()
    e_out, e_h_n = ref(x)
    assert torch.equal(out, e_out)
    for a, b in zip(states_of(h_n), states_of(e_h_n), strict=True):
        assert torch.equal(a, b)


def test_gru_before_never_uses_fused_kernel(monkeypatch):
    torch.manual_seed(13)
    gru = rnnkit.GRU(2, 3, 2, reset="before", bidirectional=True, dtype=DT)
    monkeypatch.setattr(rnnkit.engine, "run_fused", lambda *a, **k: pytest.fail("fused path used"))
    out, h_n = gru(torch.randn(4, 2, 2, dtype=DT))
    assert out.shape == (4, 2, 6) and h_n.shape == (4, 2, 3)


@pytest.mark.parametrize("kind", TORCH_KINDS)
@pytest.mark.parametrize("engine", ["auto", "own", "loop"])
def test_unbatched_input_matches_torch_nn(kind, engine):
    torch.manual_seed(14)
    T, I, H, L = 4, 2, 3, 2
    ref = make_torch(kind, I, H, L, bidirectional=True)
    ours = make_ours(kind, I, H, L, bidirectional=True, engine=engine)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, I, dtype=DT, requires_grad=True)
    hs = tuple(torch.randn(2 * L, H, dtype=DT, requires_grad=True) for _ in range(2 if kind == "lstm" else 1))
    hx = hs if kind == "lstm" else hs[0]
    loss = Loss((T, 2 * H), (2 * L, H), len(hs))
    assert_same_run(run_with_grads(ours, x, hx, loss), run_with_grads(ref, x, hx, loss), engine)


# ---------------------------------------------------------------------------------------------------- reset-before GRU
def test_gru_layer_reset_before_equals_lecture_equations():
    """``GRU(reset="before", bias=False)`` is the lecture's GRU with ``W_z, W_r, W`` mapped per GRUCell's docstring."""
    torch.manual_seed(20)
    T, B, I, H = 7, 3, 3, 4
    gru = rnnkit.GRU(I, H, reset="before", bias=False, dtype=DT)
    x = torch.randn(T, B, I, dtype=DT)
    h0 = torch.randn(1, B, H, dtype=DT)
    W_z, W_r, W = lecture_weights(gru.weight_ih_l0, gru.weight_hh_l0)
    h, expected = h0[0], []
    for x_t in x.unbind(0):
        h = lecture_gru_step(x_t, h, W_z, W_r, W)
        expected.append(h)
    for engine in ("auto", "own", "loop"):
        gru.engine = engine
        out, h_n = gru(x, h0)
        close(out, torch.stack(expected), engine)
        close(h_n[0], h, engine)


@pytest.mark.parametrize("engine", ["auto", "own", "loop"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_gru_before_with_biases_equals_hand_unrolled_loop(engine, with_lengths):
    torch.manual_seed(21)
    T, B, I, H, L = 5, 3, 2, 3, 2
    gru = rnnkit.GRU(I, H, L, reset="before", bidirectional=True, dtype=DT, engine=engine)
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    h0 = torch.randn(2 * L, B, H, dtype=DT, requires_grad=True)
    lengths = [3, 5, 1] if with_lengths else None
    loss = Loss((T, B, 2 * H), (2 * L, B, H), 1)
    names = sorted(n for n, _ in gru.named_parameters())
    params = [getattr(gru, n) for n in names]

    def step(k, d, x_t, h):
        return gru_before_step_by_hand(x_t, h, *layer_params(gru, k, d))

    e_out, e_fin = reference_stack(step, x, list(h0.unbind(0)), lengths, L, 2)
    e_h_n = torch.stack(e_fin)
    expected = (e_out, e_h_n, *_split(torch.autograd.grad(loss(e_out, e_h_n), [x, h0, *params]), 2, names))
    assert_same_run(run_with_grads(gru, x, h0, loss, lengths=lengths), expected, engine)


def _split(grads, n_leaves: int, names: list[str]):
    return list(grads[:n_leaves]), dict(zip(names, grads[n_leaves:], strict=True))


def test_gru_fused_engine_rejects_reset_before():
    with pytest.raises(ValueError, match="fused"):
        rnnkit.GRU(2, 3, reset="before", engine="fused")
    gru = rnnkit.GRU(2, 3, reset="before")
    with pytest.raises(ValueError, match="fused"):
        gru.engine = "fused"


# ---------------------------------------------------------------------------------------------------- lengths
LENGTHS = [5, 2, 7, 1]  # unsorted, with a full-length and a length-1 sequence


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_padded_batch_equals_each_sequence_alone(kind, batch_first):
    """Unsorted lengths: outputs at valid steps, final states, input and parameter grads equal each sequence run
    alone; outputs and input grads in the padding are exactly zero (every engine, both directions)."""
    torch.manual_seed(30)
    T, B, I, H, L = 7, 4, 2, 3, 2
    n_states = 2 if kind == "lstm" else 1
    layer = make_ours(kind, I, H, L, bidirectional=True, batch_first=batch_first)
    x_tm = torch.randn(T, B, I, dtype=DT)
    hx = random_hx(kind, 2 * L, B, H)
    w_out = torch.randn(T, B, 2 * H, dtype=DT)
    w_st = [torch.randn(2 * L, B, H, dtype=DT) for _ in range(n_states)]
    lengths = torch.tensor(LENGTHS) if batch_first else LENGTHS  # a tensor or a list
    bf = (lambda t: t.transpose(0, 1)) if batch_first else (lambda t: t)
    names = sorted(n for n, _ in layer.named_parameters())
    params = [getattr(layer, n) for n in names]
    valid = torch.arange(T).unsqueeze(1) < torch.tensor(LENGTHS)  # (T, B)
    for engine in engines_for(kind):
        layer.engine = engine
        x = bf(x_tm).detach().requires_grad_()
        out, h_n = layer(x, hx, lengths=lengths)
        out = bf(out)  # (T, B, 2H)
        assert torch.all(out[~valid] == 0), f"{engine}: output in the padding is not zero"
        loss = (out * w_out).sum() + sum((s * w).sum() for s, w in zip(states_of(h_n), w_st, strict=True))
        g_x, *g_p = torch.autograd.grad(loss, [x, *params])
        g_x = bf(g_x)  # (T, B, I)
        assert torch.all(g_x[~valid] == 0), f"{engine}: input grad in the padding is not zero"
        sum_g_p = [torch.zeros_like(p) for p in params]
        for b, n in enumerate(LENGTHS):
            xb = bf(x_tm[:n, b : b + 1]).detach().requires_grad_()
            hb = tuple(s[:, b : b + 1].detach() for s in states_of(hx))
            out_b, h_n_b = layer(xb, hb if kind == "lstm" else hb[0])
            out_b = bf(out_b)  # (n, 1, 2H)
            label = f"{engine}, sequence {b} (length {n})"
            close(out[:n, b : b + 1], out_b, label + ": output")
            for s, s_b in zip(states_of(h_n), states_of(h_n_b), strict=True):
                close(s[:, b : b + 1], s_b, label + ": final state")
            loss_b = (out_b * w_out[:n, b : b + 1]).sum()
            loss_b = loss_b + sum((s * w[:, b : b + 1]).sum() for s, w in zip(states_of(h_n_b), w_st, strict=True))
            g_xb, *g_pb = torch.autograd.grad(loss_b, [xb, *params])
            close(g_x[:n, b : b + 1], bf(g_xb), label + ": input grad")
            sum_g_p = [a + g for a, g in zip(sum_g_p, g_pb, strict=True)]
        for name, a, e in zip(names, g_p, sum_g_p, strict=True):
            close(a, e, f"{engine}: grad of {name} vs the sum over sequences alone")


@pytest.mark.parametrize("kind", TORCH_KINDS)
@pytest.mark.parametrize("engine", ["fused", "own", "loop"])
def test_packed_sequence_matches_torch_nn(kind, engine):
    torch.manual_seed(31)
    T, B, I, H, L = 7, 4, 2, 3, 2
    ref = make_torch(kind, I, H, L, bidirectional=True, batch_first=True)  # batch_first is ignored for packed input
    ours = make_ours(kind, I, H, L, bidirectional=True, batch_first=True, engine=engine)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    hx = random_hx(kind, 2 * L, B, H)
    loss = Loss((sum(LENGTHS), 2 * H), (2 * L, B, H), 2 if kind == "lstm" else 1)

    def run(module):
        packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
        out, h_n = module(packed, hx)
        assert torch.equal(out.batch_sizes, packed.batch_sizes)
        assert torch.equal(out.sorted_indices, packed.sorted_indices)
        assert torch.equal(out.unsorted_indices, packed.unsorted_indices)
        leaves = [x, *states_of(hx)]
        names = sorted(n for n, _ in module.named_parameters())
        grads = torch.autograd.grad(loss(out.data, h_n), leaves + [module.get_parameter(n) for n in names])
        return out.data, h_n, *_split(grads, len(leaves), names)

    assert_same_run(run(ours), run(ref), f"packed, engine={engine}")


@pytest.mark.parametrize("engine", ["auto", "own", "loop"])
def test_packed_gru_before_equals_padded_with_lengths(engine):
    torch.manual_seed(32)
    gru = rnnkit.GRU(2, 3, 2, reset="before", bidirectional=True, dtype=DT, engine=engine)
    x = torch.randn(7, 4, 2, dtype=DT)
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    out_p, h_p = gru(packed)
    out, h_n = gru(x, lengths=LENGTHS)
    expected = pack_padded_sequence(out, torch.tensor(LENGTHS), enforce_sorted=False)
    close(out_p.data, expected.data)
    close(h_p, h_n)


# ---------------------------------------------------------------------------------------------------- Recurrent
class GatedTanhCell(nn.Module):
    """A minimal user cell: ``h' = tanh(W x + U h) ⊙ σ(v)``; no ``initial_state`` (the layer uses zeros)."""

    def __init__(self, input_size, hidden_size, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.hidden_size = hidden_size
        self.W = nn.Parameter(torch.randn(hidden_size, input_size, **kw) / math.sqrt(input_size))
        self.U = nn.Parameter(torch.randn(hidden_size, hidden_size, **kw) / math.sqrt(hidden_size))
        self.v = nn.Parameter(torch.randn(hidden_size, **kw))

    def forward(self, x, h):
        return torch.tanh(x @ self.W.T + h @ self.U.T) * torch.sigmoid(self.v)


class MemoryCell(nn.Module):
    """A user cell with a tuple state ``(h, m)``: ``h' = tanh(W x + U h + m)``, ``m' = a ⊙ m + h'``."""

    def __init__(self, input_size, hidden_size, device=None, dtype=None):
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.hidden_size = hidden_size
        self.W = nn.Parameter(torch.randn(hidden_size, input_size, **kw) / math.sqrt(input_size))
        self.U = nn.Parameter(torch.randn(hidden_size, hidden_size, **kw) / math.sqrt(hidden_size))
        self.a = nn.Parameter(torch.rand(hidden_size, **kw))

    def initial_state(self, batch_size):
        z = self.W.new_zeros(batch_size, self.hidden_size)
        return z, z.clone()

    def forward(self, x, state):
        h, m = state
        h = torch.tanh(x @ self.W.T + h @ self.U.T + m)
        return h, self.a * m + h


@pytest.mark.parametrize("cell_cls", [GatedTanhCell, MemoryCell])
@pytest.mark.parametrize("with_hx", [False, True], ids=["nohx", "hx"])
def test_recurrent_user_cell_equals_hand_unrolled_loop(cell_cls, with_hx):
    torch.manual_seed(40)
    T, B, I, H, L = 7, 4, 3, 3, 2
    n_states = 2 if cell_cls is MemoryCell else 1
    layer = rnnkit.Recurrent(cell_cls, I, H, num_layers=L, bidirectional=True, dtype=DT)
    assert len(layer.cells) == 2 * L and all(type(c) is cell_cls for c in layer.cells)
    assert layer.cells[2].W.shape == (H, 2 * H)  # layer 1 reads both directions
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    if with_hx:
        hs = tuple(torch.randn(2 * L, B, H, dtype=DT, requires_grad=True) for _ in range(n_states))
    else:
        hs = tuple(torch.zeros(2 * L, B, H, dtype=DT) for _ in range(n_states))
    hx = (hs if n_states == 2 else hs[0]) if with_hx else None
    loss = Loss((T, B, 2 * H), (2 * L, B, H), n_states)
    names = sorted(n for n, _ in layer.named_parameters())
    params = [layer.get_parameter(n) for n in names]

    def step(k, d, x_t, state):
        return layer.cells[k * 2 + d](x_t, state)

    h0 = [tuple(s[i] for s in hs) if n_states == 2 else hs[0][i] for i in range(2 * L)]
    e_out, e_fin = reference_stack(step, x, h0, LENGTHS, L, 2)
    e_h_n = tuple(torch.stack([f[j] for f in e_fin]) for j in range(2)) if n_states == 2 else torch.stack(e_fin)
    leaves = [x, *(hs if with_hx else ())]
    grads = torch.autograd.grad(loss(e_out, e_h_n), leaves + params)
    expected = (e_out, e_h_n, *_split(grads, len(leaves), names))
    for engine in ("auto", "own", "loop"):  # a user cell runs on the autograd loop whatever is asked
        layer.engine = engine
        assert_same_run(run_with_grads(layer, x, hx, loss, lengths=LENGTHS), expected, engine)


def test_recurrent_user_cell_rejects_fused_engine():
    with pytest.raises(ValueError, match="fused"):
        rnnkit.Recurrent(GatedTanhCell, 2, 3, engine="fused")


class MyGRUCell(rnnkit.GRUCell):
    """A subclass that changes the step: the layer must not run it on the built-in engine."""

    def forward(self, x, h=None):
        return 0.5 * super().forward(x, h)


def test_recurrent_subclassed_builtin_cell_runs_its_own_forward(monkeypatch):
    torch.manual_seed(42)
    rec = rnnkit.Recurrent(MyGRUCell, 2, 3, bidirectional=True, dtype=DT)
    monkeypatch.setattr(rnnkit.engine, "run_own", lambda *a, **k: pytest.fail("own engine used for a user cell"))
    x = torch.randn(5, 2, 2, dtype=DT)
    out, h_n = rec(x, lengths=[5, 3])
    e_out, e_fin = reference_stack(lambda k, d, x_t, h: rec.cells[d](x_t, h), x, [x.new_zeros(2, 3)] * 2, [5, 3], 1, 2)
    close(out, e_out)
    close(h_n, torch.stack(e_fin))


def test_recurrent_user_cell_step_and_packed_input():
    torch.manual_seed(43)
    T, B, I, H = 5, 3, 2, 3
    uni = rnnkit.Recurrent(MemoryCell, I, H, num_layers=2, dtype=DT)
    x = torch.randn(T, B, I, dtype=DT)
    out, (h_n, m_n) = uni(x)
    state = None
    for t in range(T):
        y, state = uni.step(x[t], state)
        close(y, out[t])
    close(state[0], h_n)
    close(state[1], m_n)
    bi = rnnkit.Recurrent(MemoryCell, I, H, num_layers=2, bidirectional=True, dtype=DT)
    lengths = [2, 5, 4]
    out_p, h_p = bi(pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False))
    out, h = bi(x, lengths=lengths)
    close(out_p.data, pack_padded_sequence(out, torch.tensor(lengths), enforce_sorted=False).data)
    for a, b in zip(h_p, h, strict=True):
        close(a, b)


def test_recurrent_rejects_cell_of_wrong_hidden_size():
    with pytest.raises(ValueError, match=r"hidden_size=4, expected 3"):
        rnnkit.Recurrent(lambda i, h, **kw: rnnkit.GRUCell(i, h + 1, **kw), 2, 3)


def _copy_cells_to_layer(rec: rnnkit.Recurrent, layer: nn.Module) -> None:
    D = rec.num_directions
    with torch.no_grad():
        for k in range(rec.num_layers):
            for d in range(D):
                cell = rec.cells[k * D + d]
                for p, name in zip(
                    layer_params(layer, k, d), ("weight_ih", "weight_hh", "bias_ih", "bias_hh"), strict=True
                ):
                    p.copy_(getattr(cell, name))


@pytest.mark.parametrize(
    "kind,factory",
    [
        ("lstm", rnnkit.LSTMCell),
        ("rnn_relu", functools.partial(rnnkit.RNNCell, nonlinearity="relu")),
        ("gru", rnnkit.GRUCell),
        ("gru_before", functools.partial(rnnkit.GRUCell, reset="before")),
    ],
)
def test_recurrent_builtin_cell_own_engine_equals_loop_and_layer(kind, factory, monkeypatch):
    # without compiled kernels, auto runs the own engine (with them, the compiled one: test_compiled_engine.py)
    monkeypatch.setattr(rnnkit.engine.compiled, "rnn_extension", lambda: None)
    torch.manual_seed(41)
    T, B, I, H, L = 7, 4, 3, 4, 2
    rec = rnnkit.Recurrent(factory, I, H, num_layers=L, bidirectional=True, dtype=DT)
    assert [rec._builtin_kind(k, d) for k in range(L) for d in range(2)] == [kind] * 4  # built-in cells detected
    layer = make_ours(kind, I, H, L, bidirectional=True)
    _copy_cells_to_layer(rec, layer)
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    hx = random_hx(kind, 2 * L, B, H)
    lengths = [*LENGTHS[:3], 6]
    loss = Loss((T, B, 2 * H), (2 * L, B, H), 2 if kind == "lstm" else 1)

    calls = []
    real_run_own = rnnkit.engine.run_own
    monkeypatch.setattr(rnnkit.engine, "run_own", lambda *a, **k: calls.append(a[0]) or real_run_own(*a, **k))
    own = run_with_grads(rec, x, hx, loss, lengths=lengths)
    assert calls == [kind] * 4, "Recurrent over a built-in cell must use the own engine"
    rec.engine = "loop"
    loop = run_with_grads(rec, x, hx, loss, lengths=lengths)
    assert len(calls) == 4, "engine='loop' must not use the own engine"
    assert_same_run(own, loop, "own vs loop")
    out, h_n, g_in, _ = run_with_grads(layer, x, hx, loss, lengths=lengths)
    assert_same_run((out, h_n, g_in, {}), (*loop[:3], {}), "Recurrent vs layer")


# ---------------------------------------------------------------------------------------------------- step / states
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_step_repeated_equals_forward(kind):
    torch.manual_seed(50)
    T, B, I, H, L = 5, 2, 3, 4, 3
    layer = make_ours(kind, I, H, L, batch_first=True)  # step takes (B, I) whatever batch_first is
    x = torch.randn(B, T, I, dtype=DT)
    hx = random_hx(kind, L, B, H)
    out, h_n = layer(x, hx)
    state = hx
    for t in range(T):
        y, state = layer.step(x[:, t], state)
        close(y, out[:, t], f"step {t}")
    for a, b in zip(states_of(state), states_of(h_n), strict=True):
        close(a, b, "final state")
    y0, s0 = layer.step(x[:, 0])  # state None: zeros
    out0, h0 = layer(x[:, :1])
    close(y0, out0[:, 0])
    for a, b in zip(states_of(s0), states_of(h0), strict=True):
        close(a, b)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_forward_states_match_forward(kind):
    """``h[l][d][s]``: step ``s`` of direction ``d`` (reverse: time ``lengths[b]−1−s``), carried past the end."""
    torch.manual_seed(51)
    T, B, I, H, L = 7, 4, 2, 3, 2
    layer = make_ours(kind, I, H, L, bidirectional=True)
    x = torch.randn(T, B, I, dtype=DT)
    hx = random_hx(kind, 2 * L, B, H)
    out, h_n = layer(x, hx, lengths=LENGTHS)
    st = layer.forward_states(x, hx, lengths=LENGTHS)
    assert isinstance(st, rnnkit.StepStates)
    close(st.output, out)
    for a, b in zip(states_of(st.h_n), states_of(h_n), strict=True):
        close(a, b)
    assert len(st.h) == L and all(len(hl) == 2 and all(len(s) == T for s in hl) for hl in st.h)
    assert (st.c is not None) == (kind == "lstm")
    finals = [st.h] if st.c is None else [st.h, st.c]
    for k in range(L):
        for d in range(2):
            for per_step, final in zip(finals, states_of(h_n), strict=True):
                close(per_step[k][d][-1], final[2 * k + d], f"layer {k} dir {d}: last step vs h_n")
    # The top layer's output, step by step, both directions.
    for b, n in enumerate(LENGTHS):
        for s in range(T):
            fwd, rev = st.h[L - 1][0][s][b], st.h[L - 1][1][s][b]
            if s < n:
                close(fwd, out[s, b, :H])
                close(rev, out[n - 1 - s, b, H:])
            else:  # carried unchanged past the end
                close(fwd, st.h[L - 1][0][n - 1][b])
                close(rev, st.h[L - 1][1][n - 1][b])
    # The first layer's states are a one-layer model's output with the same weights.
    one = make_ours(kind, I, H, 1, bidirectional=True)
    with torch.no_grad():
        for d in range(2):
            for p, q in zip(layer_params(one, 0, d), layer_params(layer, 0, d), strict=True):
                p.copy_(q)
    h0_first = tuple(s[:2] for s in states_of(hx))
    out1, _ = one(x, h0_first if kind == "lstm" else h0_first[0], lengths=LENGTHS)
    for b, n in enumerate(LENGTHS):
        for s in range(n):
            close(st.h[0][0][s][b], out1[s, b, :H])
            close(st.h[0][1][s][b], out1[n - 1 - s, b, H:])


def test_forward_states_grad_equals_chain_rule_rnn():
    """``∂L/∂h_t`` from ``forward_states`` equals the hand-written BPTT recursion of a tanh RNN."""
    torch.manual_seed(52)
    T, B, I, H = 5, 2, 3, 4
    rnn = rnnkit.RNN(I, H, dtype=DT)
    x = torch.randn(T, B, I, dtype=DT)
    w = torch.randn(T, B, H, dtype=DT)
    st = rnn.forward_states(x)
    hs = st.h[0][0]
    g = torch.autograd.grad((st.output * w).sum(), hs)
    # δ_t = w_t + (δ_{t+1} ⊙ (1 − h_{t+1}²)) W_hh
    delta = [None] * T
    delta[T - 1] = w[T - 1]
    for t in range(T - 2, -1, -1):
        delta[t] = w[t] + (delta[t + 1] * (1 - hs[t + 1] ** 2)) @ rnn.weight_hh_l0.detach()
    for t in range(T):
        close(g[t], delta[t], f"∂L/∂h_{t}")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_forward_states_grad_equals_restarted_run(kind):
    """``∂L/∂h_t`` (total, through time) equals the grad of the loss of a run restarted from the state at step t."""
    torch.manual_seed(53)
    T, B, I, H = 5, 2, 3, 3
    layer = make_ours(kind, I, H, 1)
    x = torch.randn(T, B, I, dtype=DT)
    loss = Loss((T, B, H), (1, B, H), 2 if kind == "lstm" else 1)
    st = layer.forward_states(x)
    g = torch.autograd.grad(loss(st.output, st.h_n), st.h[0][0])
    for t in range(T):
        h_t = st.h[0][0][t].detach().requires_grad_()
        rest = (h_t[None], st.c[0][0][t].detach()[None]) if kind == "lstm" else h_t[None]
        loss_t = (h_t * loss.w_out[t]).sum()
        if t < T - 1:
            out, h_n = layer(x[t + 1 :], rest)
        else:
            h_n = rest
            out = x.new_zeros(0, B, H)
        loss_t = loss_t + (out * loss.w_out[t + 1 :]).sum()
        loss_t = loss_t + sum((s * w).sum() for s, w in zip(states_of(h_n), loss.w_states, strict=True))
        close(g[t], torch.autograd.grad(loss_t, h_t)[0], f"∂L/∂h_{t}")


# ---------------------------------------------------------------------------------------------------- dropout, dtype
@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_dropout_between_layers(kind):
    torch.manual_seed(60)
    ref = make_torch(kind, 3, 4, 3, dropout=0.5)
    ours = make_ours(kind, 3, 4, 3, dropout=0.5)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 3, dtype=DT)
    ref.eval()
    e_out, e_h_n = ref(x)
    for engine in ("auto", "own", "loop"):
        ours.engine = engine
        ours.eval()
        out, h_n = ours(x)
        close(out, e_out, f"{engine}: eval")
        for a, b in zip(states_of(h_n), states_of(e_h_n), strict=True):
            close(a, b)
        ours.train()
        out_train, _ = ours(x)
        assert not torch.allclose(out_train, out), f"{engine}: dropout inactive in training"
    # The fused path consumes the RNG exactly as torch.nn does.
    ours.engine = "auto"
    ref.train()
    torch.manual_seed(61)
    e_out, _ = ref(x)
    torch.manual_seed(61)
    close(ours(x)[0], e_out)


def test_dropout_in_step_and_own_path_is_between_layers_only():
    """With one layer dropout has nothing to act on (warned), so training output equals eval output."""
    with pytest.warns(UserWarning, match="dropout"):
        gru = rnnkit.GRU(2, 3, 1, dropout=0.5, reset="before", dtype=DT)
    x = torch.randn(4, 2, 2, dtype=DT)
    close(gru.train()(x)[0], gru.eval()(x)[0])


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_parameters_follow_default_dtype_and_accept_device_dtype(kind):
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert all(p.dtype == torch.float64 for p in make_ours(kind, 2, 3, 2, dtype=None).parameters())
    finally:
        torch.set_default_dtype(old)
    assert all(p.dtype == torch.float32 for p in make_ours(kind, 2, 3, 2, dtype=None).parameters())
    layer = make_ours(kind, 2, 3, 2, dtype=torch.float64, device=torch.device("cpu"))
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in layer.parameters())
    meta = make_ours(kind, 2, 3, 2, device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    bound = 1 / math.sqrt(3)
    assert all(p.abs().max() <= bound for p in layer.parameters())  # torch.nn's U(−1/√H, 1/√H) init


def test_recurrent_cells_accept_device_dtype():
    rec = rnnkit.Recurrent(MemoryCell, 2, 3, num_layers=2, dtype=DT, device="cpu")
    assert all(p.dtype == DT for p in rec.parameters())


# ---------------------------------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "ctor,match",
    [
        (lambda: rnnkit.LSTM(0, 3), r"input_size.*\b0\b"),
        (lambda: rnnkit.LSTM(2, -1), r"hidden_size.*-1"),
        (lambda: rnnkit.GRU(2, 3, 0), r"num_layers.*\b0\b"),
        (lambda: rnnkit.RNN(2, 3, -2), r"num_layers.*-2"),
        (lambda: rnnkit.RNN(2.5, 3), r"input_size.*2\.5"),
        (lambda: rnnkit.RNN(2, True), r"hidden_size.*True"),
        (lambda: rnnkit.LSTM(2, 3, 2, dropout=-0.1), r"dropout.*-0\.1"),
        (lambda: rnnkit.LSTM(2, 3, 2, dropout=1.5), r"dropout.*1\.5"),
        (lambda: rnnkit.GRU(2, 3, 2, dropout="0.5"), r"dropout.*'0\.5'"),
        (lambda: rnnkit.GRU(2, 3, 2, dropout=None), r"dropout.*None"),
        (lambda: rnnkit.RNN(2, 3, 2, dropout=float("nan")), r"dropout.*nan"),
        (lambda: rnnkit.RNN(2, 3, nonlinearity="sigmoid"), r"nonlinearity.*'sigmoid'"),
        (lambda: rnnkit.GRU(2, 3, reset="middle"), r"reset.*'middle'"),
        (lambda: rnnkit.LSTM(2, 3, engine="cuda"), r"engine.*'cuda'"),
        (lambda: rnnkit.GRU(2, 3, reset="before", engine="fused"), r"engine='fused'"),
        (lambda: rnnkit.Recurrent(GatedTanhCell, 2, 3, engine="jit"), r"engine.*'jit'"),
        (lambda: rnnkit.Recurrent(GatedTanhCell, 2, -3), r"hidden_size.*-3"),
        (lambda: rnnkit.Recurrent(GatedTanhCell, 2, 3, dropout=2), r"dropout.*\b2\b"),
    ],
)
def test_bad_constructor_arguments(ctor, match):
    with pytest.raises(ValueError, match=match):
        ctor()


def test_engine_setter_rejects_unknown_engine():
    lstm = rnnkit.LSTM(2, 3)
    with pytest.raises(ValueError, match=r"engine.*'fast'"):
        lstm.engine = "fast"
    assert lstm.engine == "auto"


@pytest.mark.parametrize("kind", ["lstm", "gru_before"])
def test_bad_call_arguments(kind):
    T, B, I, H = 4, 3, 2, 3
    layer = make_ours(kind, I, H, 2)
    x = torch.randn(T, B, I, dtype=DT)

    def raises(match, *args, **kw):
        with pytest.raises(ValueError, match=match):
            layer(*args, **kw)

    raises(r"3-D.*\(5,\)", torch.randn(5, dtype=DT))  # wrong rank
    raises(r"3-D.*\(1, 4, 3, 2\)", torch.randn(1, T, B, I, dtype=DT))
    raises(r"input_size=2.*got 5", torch.randn(T, B, 5, dtype=DT))  # wrong feature size
    raises(r"lengths.*\[1, T=4\].*to 5", x, lengths=[1, 5, 2])  # longer than the sequence
    raises(r"lengths.*\[1, T=4\].*from 0", x, lengths=[0, 4, 2])  # below 1
    raises(r"lengths.*from -1", x, lengths=torch.tensor([3, -1, 2]))
    raises(r"lengths.*B=3.*\(2,\)", x, lengths=[4, 2])  # one per sequence
    raises(r"lengths.*B=3.*\(1, 3\)", x, lengths=[[4, 2, 1]])
    raises(r"lengths.*integers.*float", x, lengths=torch.tensor([4.0, 2.0, 1.0]))
    hx = random_hx(kind, 2, B, H)
    bad = tuple(s[:, :2] for s in states_of(hx))  # batch 2, not 3
    raises(r"hx.*\(2, 3, 3\).*\(2, 2, 3\)", x, bad if kind == "lstm" else bad[0])
    raises(r"hx.*\(2, 3, 3\).*\(1, 3, 3\)", x, tuple(s[:1] for s in states_of(hx)) if kind == "lstm" else hx[:1])
    if kind == "lstm":
        raises(r"hx must hold 2 tensor", x, hx[0])  # a bare h for an LSTM
    with pytest.raises(TypeError, match="dtype"):
        layer(x.float())


def test_step_rejects_bidirectional_and_bad_input():
    with pytest.raises(ValueError, match=r"step.*unidirectional"):
        rnnkit.LSTM(2, 3, bidirectional=True).step(torch.randn(1, 2))
    with pytest.raises(ValueError, match=r"x_t.*\(B, 2\).*\(1, 3\)"):
        rnnkit.GRU(2, 3).step(torch.randn(1, 3))


def test_lengths_rejected_with_packed_input():
    packed = pack_padded_sequence(torch.randn(3, 2, 2), [3, 1])
    with pytest.raises(ValueError, match="lengths"):
        rnnkit.GRU(2, 3)(packed, lengths=[3, 1])


@pytest.mark.parametrize("kind", ["lstm", "gru_before"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_empty_sequence_is_rejected(kind, batch_first):
    layer = make_ours(kind, 2, 3, batch_first=batch_first)
    for engine in engines_for(kind):
        layer.engine = engine
        x = torch.randn((3, 0, 2) if batch_first else (0, 3, 2), dtype=DT)
        with pytest.raises(ValueError, match=r"at least one time step.*\((3, )?0, (3, )?2\)"):
            layer(x)
        with pytest.raises(ValueError, match="at least one time step"):
            layer(torch.randn(0, 2, dtype=DT))


def test_lstm_accepts_list_hx_like_torch_nn():
    torch.manual_seed(70)
    ref = nn.LSTM(2, 3, dtype=DT)
    ours = rnnkit.LSTM(2, 3, dtype=DT)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 2, 2, dtype=DT)
    hx = [torch.randn(1, 2, 3, dtype=DT), torch.randn(1, 2, 3, dtype=DT)]
    for engine in ("auto", "own", "loop"):
        ours.engine = engine
        close(ours(x, hx)[0], ref(x, hx)[0])
