"""Tests of :mod:`rnnkit.engine`: the own BPTT path against torch's fused kernels (two code paths, one job), against a
plain autograd loop over the cells' step functions, ``gradcheck`` on every kind with and without a mask, and the
structure DESIGN.md §3 asks for (an autograd graph whose size does not grow with T).

Every kind comes from the cell table (``rnnkit.cells.CELLS``, of which ``CELL_KINDS`` is the key list), and the
reference is that entry's ``step`` run through autograd: a new table entry is checked here without editing this
file, and the hand-written backward of every kernel is proven to agree with the one step function.

Float64, fixed seeds, 1e-10.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import rnnkit
from rnnkit import engine
from rnnkit.cells import CELLS, gru_step, lstm_step, rnn_step
from rnnkit.engine import CELL_KINDS, FUSED_KINDS, run_fused, run_own
from rnnkit.layers import layer_for

DT = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}
GATES = {kind: spec.num_gates for kind, spec in CELLS.items()}


def close(actual, expected, msg: str = "") -> None:
    torch.testing.assert_close(actual, expected, **TOL, msg=lambda m: f"{msg}\n{m}" if msg else m)


def as_tuple(state) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def weights(kind: str, I: int, H: int, bias: bool) -> list[Tensor | None]:
    """Random ``w_ih (G·H, I)``, ``w_hh (G·H, H)``, ``b_ih``, ``b_hh`` ``(G·H,)`` (None without bias), needing grad."""
    G = GATES[kind] * H
    shapes = [(G, I), (G, H)] + ([(G,), (G,)] if bias else [])
    ws = [(0.6 * torch.randn(s, dtype=DT)).requires_grad_() for s in shapes]
    return ws + ([] if bias else [None, None])


def state0(kind: str, B: int, H: int):
    s = tuple(torch.randn(B, H, dtype=DT, requires_grad=True) for _ in CELLS[kind].state)
    return s if len(s) > 1 else s[0]


def mask_of(lengths: list[int], T: int) -> Tensor:
    return (torch.arange(T).unsqueeze(1) < torch.tensor(lengths)).to(DT).unsqueeze(-1)  # (T, B, 1)


def step_fn(kind: str):
    """The table's step function of ``kind`` (the one the cells, the loop path and export call)."""
    return CELLS[kind].step


def test_table_steps_are_the_cell_functions():
    """The table's steps for the original kinds are exactly rnn_step / lstm_step / gru_step with their option."""
    torch.manual_seed(0)
    x, h = torch.randn(2, 3, dtype=DT), torch.randn(2, 4, dtype=DT)
    for kind, ref in {
        "rnn_tanh": lambda x, s, *w: rnn_step(x, s, *w, "tanh"),
        "rnn_relu": lambda x, s, *w: rnn_step(x, s, *w, "relu"),
        "lstm": lstm_step,
        "gru": lambda x, s, *w: gru_step(x, s, *w, "after"),
        "gru_before": lambda x, s, *w: gru_step(x, s, *w, "before"),
    }.items():
        w = weights(kind, 3, 4, True)
        s = (h, h.clone()) if kind == "lstm" else h
        for a, b in zip(as_tuple(step_fn(kind)(x, s, *w)), as_tuple(ref(x, s, *w)), strict=True):
            assert torch.equal(a, b), kind


# ---------------------------------------------------------------------------------------------------- own vs fused
@pytest.mark.parametrize("kind", list(FUSED_KINDS))
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_own_path_equals_fused_path(kind, bias):
    """Two code paths, one job: run_own and torch's fused kernel agree on one layer, forward and backward."""
    torch.manual_seed(1)
    T, B, I, H = 6, 3, 2, 4
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    w = weights(kind, I, H, bias)
    s0 = state0(kind, B, H)
    flat = [p for p in w if p is not None]
    leaves = [x, *as_tuple(s0), *flat]
    w_hs = torch.randn(T, B, H, dtype=DT)
    w_fin = [torch.randn(B, H, dtype=DT) for _ in as_tuple(s0)]

    def loss(hs, final):
        return (hs * w_hs).sum() + sum((s * v).sum() for s, v in zip(as_tuple(final), w_fin, strict=True))

    hs, final = run_own(kind, x, s0, *w)
    hx = tuple(s.unsqueeze(0) for s in as_tuple(s0))  # (1, B, H)
    f_out, f_fin = run_fused(kind, x, hx if kind == "lstm" else hx[0], flat, bias, 1, 0.0, False, False)
    f_fin = tuple(s[0] for s in as_tuple(f_fin))
    close(hs, f_out, "hs")
    for a, b in zip(as_tuple(final), f_fin, strict=True):
        close(a, b, "final state")
    for i, (a, b) in enumerate(
        zip(
            torch.autograd.grad(loss(hs, final), leaves),
            torch.autograd.grad(loss(f_out, f_fin if kind == "lstm" else f_fin[0]), leaves),
            strict=True,
        )
    ):
        close(a, b, f"grad #{i}")


@pytest.mark.parametrize("kind", list(FUSED_KINDS))
def test_own_path_equals_fused_path_in_layers_with_lengths(kind):
    """The same through a 2-layer bidirectional layer with unsorted lengths and an initial state."""
    torch.manual_seed(2)
    T, B, I, H, L = 7, 4, 3, 3, 2
    kw = {"bidirectional": True, "dtype": DT}
    if kind.startswith("rnn_"):
        layer = rnnkit.RNN(I, H, L, nonlinearity=kind[4:], **kw)
    else:
        layer = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU}[kind](I, H, L, **kw)
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    hx = tuple(torch.randn(2 * L, B, H, dtype=DT, requires_grad=True) for _ in range(2 if kind == "lstm" else 1))
    lengths = torch.tensor([5, 2, 7, 1])
    w_out = torch.randn(T, B, 2 * H, dtype=DT)
    w_st = [torch.randn(2 * L, B, H, dtype=DT) for _ in hx]
    leaves = [x, *hx, *layer.parameters()]

    def run(engine):
        layer.engine = engine
        out, h_n = layer(x, hx if kind == "lstm" else hx[0], lengths=lengths)
        loss = (out * w_out).sum() + sum((s * w).sum() for s, w in zip(as_tuple(h_n), w_st, strict=True))
        return out, as_tuple(h_n), torch.autograd.grad(loss, leaves)

    (out, h_n, g), (e_out, e_h_n, e_g) = run("own"), run("fused")
    close(out, e_out, "output")
    for a, b in zip(h_n, e_h_n, strict=True):
        close(a, b, "final state")
    for i, (a, b) in enumerate(zip(g, e_g, strict=True)):
        close(a, b, f"grad #{i}")


# ---------------------------------------------------------------------------------------------------- own vs loop
@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "mask"])
def test_own_path_equals_autograd_loop_over_cell_step(kind, with_mask):
    """run_own's ``hs`` carries the state past each end (mask 0) and equals a plain loop over the step function."""
    torch.manual_seed(3)
    T, B, I, H = 6, 3, 2, 4
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    w = weights(kind, I, H, True)
    s0 = state0(kind, B, H)
    lengths = [4, 6, 1]
    mask = mask_of(lengths, T) if with_mask else None
    step = step_fn(kind)
    state, ref = s0, []
    for t, x_t in enumerate(x.unbind(0)):
        new = step(x_t, state, *w)
        if mask is not None:
            keep = mask[t] > 0
            new = tuple(torch.where(keep, a, b) for a, b in zip(as_tuple(new), as_tuple(state), strict=True))
            new = new if kind == "lstm" else new[0]
        state = new
        ref.append(as_tuple(state)[0])
    ref_hs = torch.stack(ref)
    hs, final = run_own(kind, x, s0, *w, mask)
    close(hs, ref_hs, "hs")
    for a, b in zip(as_tuple(final), as_tuple(state), strict=True):
        close(a, b, "final")
    if with_mask:
        for b, n in enumerate(lengths):
            assert torch.equal(hs[n - 1 :, b], hs[n - 1, b].expand(T - n + 1, H)), "state not carried past the end"
    w_hs = torch.randn(T, B, H, dtype=DT)
    w_fin = [torch.randn(B, H, dtype=DT) for _ in as_tuple(s0)]
    leaves = [x, *as_tuple(s0), *w]

    def loss(hs, final):
        return (hs * w_hs).sum() + sum((s * v).sum() for s, v in zip(as_tuple(final), w_fin, strict=True))

    for i, (a, b) in enumerate(
        zip(
            torch.autograd.grad(loss(hs, final), leaves),
            torch.autograd.grad(loss(ref_hs, state), leaves),
            strict=True,
        )
    ):
        close(a, b, f"grad #{i}")


# ---------------------------------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "mask"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradcheck_own_engine(kind, with_mask, bias):
    torch.manual_seed(4)
    T, B, I, H = 4, 3, 2, 2
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    w = weights(kind, I, H, bias)
    s0 = as_tuple(state0(kind, B, H))
    mask = mask_of([3, 4, 1], T) if with_mask else None
    n_w = 4 if bias else 2

    def f(x, *rest):
        st, ws = rest[: len(s0)], list(rest[len(s0) :]) + [None] * (4 - n_w)
        hs, final = run_own(kind, x, st if kind == "lstm" else st[0], *ws, mask)
        return (hs, *as_tuple(final))

    assert torch.autograd.gradcheck(f, (x, *s0, *w[:n_w]))


# ---------------------------------------------------------------------------------------------------- structure
def _graph_size(t: Tensor) -> int:
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return len(seen)


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_own_path_graph_does_not_grow_with_time(kind):
    """DESIGN.md §3: no per-step autograd nodes (no ``xp[t]`` indexing of grad-requiring tensors in the loop)."""
    torch.manual_seed(5)
    sizes = []
    for T in (2, 9):
        x = torch.randn(T, 2, 3, dtype=DT, requires_grad=True)
        hs, final = run_own(kind, x, state0(kind, 2, 3), *weights(kind, 3, 3, True), mask_of([T, 1], T))
        sizes.append(_graph_size(hs.sum() + sum(s.sum() for s in as_tuple(final))))
    assert sizes[0] == sizes[1], f"graph has {sizes[0]} nodes at T=2 but {sizes[1]} at T=9"


def test_own_path_without_grad_and_unknown_kind():
    torch.manual_seed(6)
    x = torch.randn(3, 2, 2, dtype=DT)
    with torch.no_grad():
        hs, final = run_own("gru_before", x, torch.zeros(2, 3, dtype=DT), *weights("gru_before", 2, 3, True))
    assert hs.shape == (3, 2, 3) and not hs.requires_grad
    close(final, hs[-1])
    with pytest.raises(ValueError, match="'lstmx'"):
        run_own("lstmx", x, torch.zeros(2, 3, dtype=DT), *weights("rnn_tanh", 2, 3, True))


# ---------------------------------------------------------------------------------------------------- the table, whole
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_own_path_equals_loop_in_bidirectional_layers_with_lengths(kind):
    """Every table entry through a 2-layer bidirectional layer with unsorted lengths and an initial state: the own
    path (its kernel) equals the autograd loop over the entry's step, outputs, final states and every grad."""
    torch.manual_seed(7)
    T, B, I, H, L = 6, 4, 3, 3, 2
    layer = layer_for(kind, I, H, L, bidirectional=True, dtype=DT)
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    hx = tuple(torch.randn(2 * L, B, H, dtype=DT, requires_grad=True) for _ in CELLS[kind].state)
    lengths = torch.tensor([4, 6, 1, 3])
    w_out = torch.randn(T, B, 2 * H, dtype=DT)
    w_st = [torch.randn(2 * L, B, H, dtype=DT) for _ in hx]
    leaves = [x, *hx, *layer.parameters()]

    def run(which):
        layer.engine = which
        out, h_n = layer(x, hx if len(hx) > 1 else hx[0], lengths=lengths)
        loss = (out * w_out).sum() + sum((s * w).sum() for s, w in zip(as_tuple(h_n), w_st, strict=True))
        return out, as_tuple(h_n), torch.autograd.grad(loss, leaves)

    (out, h_n, g), (e_out, e_h_n, e_g) = run("own"), run("loop")
    close(out, e_out, "output")
    for a, b in zip(h_n, e_h_n, strict=True):
        close(a, b, "final state")
    for i, (a, b) in enumerate(zip(g, e_g, strict=True)):
        close(a, b, f"grad #{i}")


def test_kind_without_own_kernel_runs_the_loop_over_its_step(monkeypatch):
    """A table entry without an OWN_KERNELS entry still runs on the own path: the autograd loop over its step."""
    torch.manual_seed(8)
    x = torch.randn(5, 2, 3, dtype=DT, requires_grad=True)
    w = weights("gru_before", 3, 4, True)
    s0 = state0("gru_before", 2, 4)
    mask = mask_of([5, 2], 5)
    hs, final = run_own("gru_before", x, s0, *w, mask)
    monkeypatch.delitem(engine.OWN_KERNELS, "gru_before")
    l_hs, l_final = run_own("gru_before", x, s0, *w, mask)
    close(l_hs, hs)
    close(l_final, final)
    ga = torch.autograd.grad(hs.sum(), [x, s0, *w])
    gb = torch.autograd.grad(l_hs.sum(), [x, s0, *w])
    for a, b in zip(ga, gb, strict=True):
        close(a, b)


@pytest.mark.parametrize("kind", CELL_KINDS)
@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "mask"])
def test_compiled_path_equals_own_path(kind, with_mask):
    """Two code paths, one job: the compiled kernel (or, where it cannot be built, its fallback) equals own BPTT."""
    torch.manual_seed(31)
    T, B, I, H = 6, 3, 4, 5
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    params = weights(kind, I, H, bias=True)
    s0 = state0(kind, B, H)
    mask = mask_of([6, 2, 4], T) if with_mask else None
    runs = []
    for fn in (engine.run_compiled, run_own):
        hs, final = fn(kind, x, s0, *params, mask)
        outs = [hs, *as_tuple(final)]
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=DT).view_as(o)).sum() for o in outs)
        runs.append([*outs, *torch.autograd.grad(loss, [x, *params, *as_tuple(s0)])])
    for a, b in zip(*runs, strict=True):
        close(a, b)


def test_every_kind_with_an_own_kernel_has_a_compiled_one():
    assert set(engine.COMPILED_KINDS) == set(engine.OWN_KERNELS)
