"""minGRU, minLSTM and the diagonal linear recurrence (rnnkit.layers.minimal, rnnkit.engine.scan): exactness.

References: the papers' equations written out here (Feng et al. 2024), and the cell stepped one step at a time
through autograd (``method="loop"``). Every path (compiled C++ loop, PyTorch loop, log-space parallel scan)
equals that reference in float64, forward and backward, with lengths, both directions, stacking and a carried
state. float32 bounds at T = 10⁴ (stated in the README): the sequential paths within 2e-6·max|h| of float64,
the log-space scan within 2e-4·max|h| (measured 1.7e-5 .. 5e-5); gradients likewise.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import rnnkit
from rnnkit.engine.scan import compiled_scan_available, linear_scan, resolve_method
from rnnkit.layers import LinearRecurrence, MinGRU, MinGRUCell, MinLSTM, MinLSTMCell
from rnnkit.layers.minimal import g

F64 = torch.float64
PATHS = ["compiled", "sequential", "scan"]
EXACT = {"rtol": 0, "atol": 1e-10}


def _need(path: str) -> None:
    if path == "compiled" and not compiled_scan_available():
        pytest.skip("the compiled linear_scan kernels are unavailable here (no compiler or RNNKIT_COMPILED=0)")


# ---------------------------------------------------------------------------------------------------- the cells
def test_mingru_cell_is_the_papers_equation() -> None:
    torch.manual_seed(0)
    cell = MinGRUCell(3, 5, dtype=F64)
    x, h = torch.randn(4, 3, dtype=F64), torch.randn(4, 5, dtype=F64)
    W, b = cell.weight_ih, cell.bias_ih
    z = torch.sigmoid(x @ W[:5].T + b[:5])
    pre = x @ W[5:].T + b[5:]
    h_tilde = torch.where(pre >= 0, pre + 0.5, torch.sigmoid(pre))  # g
    torch.testing.assert_close(cell(x, h), (1 - z) * h + z * h_tilde, **EXACT)
    torch.testing.assert_close(cell(x), z * h_tilde, **EXACT)  # from the zero state
    log_a, _ = cell.coefficients(x, log_space=True)
    torch.testing.assert_close(log_a, torch.log(1 - z), **EXACT)


def test_minlstm_cell_is_the_papers_equation_with_normalised_gates() -> None:
    torch.manual_seed(1)
    cell = MinLSTMCell(3, 5, dtype=F64)
    x, h = torch.randn(4, 3, dtype=F64) * 3, torch.randn(4, 5, dtype=F64)
    W, b = cell.weight_ih, cell.bias_ih
    f = torch.sigmoid(x @ W[:5].T + b[:5])
    i = torch.sigmoid(x @ W[5:10].T + b[5:10])
    h_tilde = g(x @ W[10:].T + b[10:])
    want = f / (f + i) * h + i / (f + i) * h_tilde
    torch.testing.assert_close(cell(x, h), want, **EXACT)
    log_a, _ = cell.coefficients(x, log_space=True)
    torch.testing.assert_close(log_a, torch.log(f / (f + i)), **EXACT)


def test_g_is_continuous_positive_and_matches_its_two_pieces() -> None:
    x = torch.linspace(-30, 30, 601, dtype=F64)
    y = g(x)
    assert bool((y > 0).all())
    torch.testing.assert_close(g(torch.zeros(1, dtype=F64)), torch.full((1,), 0.5, dtype=F64))
    torch.testing.assert_close(y[x < 0], torch.sigmoid(x[x < 0]), **EXACT)
    torch.testing.assert_close(y[x >= 0], x[x >= 0] + 0.5, **EXACT)


# ------------------------------------------------------------------------------------------------ engine.scan
def _coeffs(T: int, S: tuple[int, ...], seed: int, signed: bool = True):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(T, *S, generator=gen, dtype=F64) * 0.98 + 0.01
    b = torch.randn(T, *S, generator=gen, dtype=F64) if signed else torch.rand(T, *S, generator=gen, dtype=F64)
    h0 = torch.randn(*S, generator=gen, dtype=F64)
    return a, b, h0


def _unrolled(a, b, h0):
    hs, h = [], h0
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        hs.append(h)
    return torch.stack(hs)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("T", [1, 7, 16, 50, 300])
def test_every_scan_path_equals_the_unrolled_recurrence_forward_and_backward(path: str, T: int) -> None:
    _need(path)
    a, b, h0 = _coeffs(T, (3, 4), seed=T)  # signed b and h0: the scan splits b's signs, carries h0 linearly
    want_in = [t.clone().requires_grad_() for t in (a, b, h0)]
    want = _unrolled(*want_in)
    got_in = [t.clone().requires_grad_() for t in (a, b, h0)]
    got = linear_scan(*got_in, method=path, chunk=4)  # chunk 4: the scan recurses over levels at T ≥ 16
    torch.testing.assert_close(got, want, rtol=0, atol=1e-11)
    w = torch.randn_like(want)
    grads = zip(
        torch.autograd.grad((want * w).sum(), want_in), torch.autograd.grad((got * w).sum(), got_in), strict=True
    )
    for gw, gg in grads:
        torch.testing.assert_close(gg, gw, rtol=0, atol=1e-11)


@pytest.mark.parametrize("path", PATHS)
def test_scan_paths_pass_gradcheck(path: str) -> None:
    _need(path)
    a, b, h0 = _coeffs(9, (2, 3), seed=3)
    ins = tuple(t.clone().requires_grad_() for t in (a, b, h0))
    assert torch.autograd.gradcheck(lambda a, b, h: linear_scan(a, b, h, method=path, chunk=4), ins)


def test_the_scan_takes_log_a_directly() -> None:
    a, b, h0 = _coeffs(40, (5,), seed=4)
    torch.testing.assert_close(linear_scan(a.log(), b, h0, "scan", log_a=True), _unrolled(a, b, h0), **EXACT)
    torch.testing.assert_close(linear_scan(a.log(), b, h0, "sequential", log_a=True), _unrolled(a, b, h0), **EXACT)


def test_resolve_method_policy_and_bad_values() -> None:
    cpu = torch.device("cpu")
    auto = resolve_method("auto", cpu, torch.float32)
    assert auto == ("compiled" if compiled_scan_available() else "sequential")
    assert resolve_method("auto", cpu, torch.float16) == "sequential"  # the C++ loop has float32/float64 only
    assert resolve_method("auto", torch.device("meta"), torch.float32) == "scan"  # accelerators: the parallel scan
    with pytest.raises(ValueError, match="method must be one of"):
        resolve_method("fast", cpu, torch.float32)
    with pytest.raises(ValueError, match="float32/float64"):
        resolve_method("compiled", cpu, torch.float16)
    with pytest.raises(ValueError, match="disagree"):
        linear_scan(torch.ones(3, 2), torch.ones(3, 2), torch.ones(3))


def test_without_compiled_kernels_auto_runs_the_pytorch_loop_with_the_same_numbers(tmp_path) -> None:
    code = (
        "import torch, rnnkit\n"
        "from rnnkit.engine.scan import resolve_method\n"
        "assert resolve_method('auto', torch.device('cpu'), torch.float64) == 'sequential'\n"
        "torch.manual_seed(0)\n"
        "m = rnnkit.MinGRU(3, 4, num_layers=2, dtype=torch.float64)\n"
        "x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)\n"
        "out, h = m(x, lengths=[6, 4])\n"
        "out.sum().backward()\n"
        "torch.save([out.detach(), h.detach(), x.grad], r'" + str(tmp_path / "fallback.pt") + "')\n"
    )
    env = {**os.environ, "RNNKIT_COMPILED": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out, h, grad = torch.load(tmp_path / "fallback.pt")
    torch.manual_seed(0)
    m = MinGRU(3, 4, num_layers=2, dtype=F64, method="loop")
    x = torch.randn(6, 2, 3, dtype=F64, requires_grad=True)
    want, want_h = m(x, lengths=[6, 4])
    want.sum().backward()
    for got, ref in ((out, want), (h, want_h), (grad, x.grad)):
        torch.testing.assert_close(got, ref.detach(), **EXACT)


# ------------------------------------------------------------------------------------------------ the layers
LAYERS = {"mingru": MinGRU, "minlstm": MinLSTM}


def _run(layer, x, hx, lengths):
    """Output, state and every gradient (input, initial state, parameters) of a fixed random loss."""
    x = x.clone().requires_grad_()
    hx = hx.clone().requires_grad_()
    out, h_n = layer(x, hx, lengths=lengths)
    gen = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum() + (h_n**2).sum()
    grads = torch.autograd.grad(loss, [x, hx, *layer.parameters()])
    return [out.detach(), h_n.detach(), *grads]


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_every_path_equals_the_cell_stepped_one_step_at_a_time(name: str, path: str, bidirectional: bool) -> None:
    _need(path)
    torch.manual_seed(0)
    layer = LAYERS[name](3, 5, num_layers=2, bidirectional=bidirectional, batch_first=True, dtype=F64)
    D = 2 if bidirectional else 1
    x = torch.randn(4, 9, 3, dtype=F64) * 2
    hx = torch.randn(2 * D, 4, 5, dtype=F64)  # a carried state of any sign
    lengths = [6, 9, 1, 4]  # unsorted
    layer.method = "loop"
    want = _run(layer, x, hx, lengths)
    layer.method = path
    got = _run(layer, x, hx, lengths)
    for gw, gg in zip(want, got, strict=True):
        torch.testing.assert_close(gg, gw, rtol=0, atol=1e-10)
    assert bool((want[0][2, 1:] == 0).all())  # output past a sequence's end is zero


@pytest.mark.parametrize("name", list(LAYERS))
def test_fused_compiled_kernel_equals_the_compiled_scan_of_autograd_coefficients(name: str) -> None:
    """Two compiled paths: gates fused into the C++ loop (the built-in cells) and the plain scan fed ``a``, ``b``
    from PyTorch ops (any cell; a subclass never takes the fused kernel, since it may change the gate math)."""
    _need("compiled")
    torch.manual_seed(11)
    fused = LAYERS[name](3, 5, num_layers=2, bidirectional=True, dtype=F64, method="compiled")
    base = type(fused.cells[0])

    class Plain(base):  # same math, not the exact built-in class
        pass

    plain = LinearRecurrence(3, 5, Plain, num_layers=2, bidirectional=True, dtype=F64, method="compiled")
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(8, 3, 3, dtype=F64) * 4  # large pre-activations: both branches of g, saturated gates
    hx = torch.randn(4, 3, 5, dtype=F64)
    for gw, gg in zip(_run(plain, x, hx, [8, 2, 5]), _run(fused, x, hx, [8, 2, 5]), strict=True):
        torch.testing.assert_close(gg, gw, rtol=0, atol=1e-10)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_passes_gradcheck(name: str, path: str) -> None:
    _need(path)
    torch.manual_seed(2)
    layer = LAYERS[name](2, 3, bidirectional=True, dtype=F64, method=path)
    x = torch.randn(5, 2, 2, dtype=F64, requires_grad=True)
    h = torch.randn(2, 2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h: layer(x, h, lengths=[5, 3])[0], (x, h))


@pytest.mark.parametrize("name", list(LAYERS))
def test_padding_never_changes_a_result(name: str) -> None:
    torch.manual_seed(3)
    layer = LAYERS[name](3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=F64)
    lengths = [3, 7, 5]
    x = torch.randn(3, 7, 3, dtype=F64)
    x_padded = x.clone()
    for b, n in enumerate(lengths):
        x_padded[b, n:] = 1e3  # garbage in the padding
    out, h_n = layer(x_padded, lengths=lengths)
    for b, n in enumerate(lengths):
        alone, h_alone = layer(x[b : b + 1, :n])
        torch.testing.assert_close(out[b : b + 1, :n], alone, **EXACT)
        torch.testing.assert_close(h_n[:, b : b + 1], h_alone, **EXACT)


@pytest.mark.parametrize("name", list(LAYERS))
def test_streaming_chunks_and_steps_equal_the_whole_sequence(name: str) -> None:
    torch.manual_seed(4)
    layer = LAYERS[name](3, 4, num_layers=3, batch_first=True, dtype=F64)
    x = torch.randn(2, 12, 3, dtype=F64)
    whole, h_whole = layer(x)
    state, pieces = None, []
    for chunk in x.split([5, 1, 6], dim=1):  # TBPTT-style chunks with the state carried
        out, state = layer(chunk, state)
        pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces, 1), whole, **EXACT)
    torch.testing.assert_close(state, h_whole, **EXACT)
    state, ys = None, []
    for t in range(12):  # the step form (sampling, streaming)
        y, state = layer.step(x[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), whole, **EXACT)
    torch.testing.assert_close(state, h_whole, **EXACT)


def test_forward_states_packed_unbatched_and_dropout() -> None:
    torch.manual_seed(5)
    layer = MinLSTM(3, 4, num_layers=2, bidirectional=True, dtype=F64)
    x = torch.randn(6, 3, 3, dtype=F64)
    lengths = torch.tensor([6, 2, 4])
    out, h_n = layer(x, lengths=lengths)
    states = layer.forward_states(x, lengths=lengths)
    torch.testing.assert_close(states.output, out, **EXACT)
    torch.testing.assert_close(states.h_n, h_n, **EXACT)
    assert len(states.h) == 2 and len(states.h[0]) == 2 and len(states.h[0][0]) == 6 and states.c is None
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out_p, h_p = layer(packed)
    torch.testing.assert_close(nn.utils.rnn.pad_packed_sequence(out_p)[0], out, **EXACT)
    torch.testing.assert_close(h_p, h_n, **EXACT)
    single, h1 = layer(x[:, 0])  # unbatched (T, I)
    torch.testing.assert_close(single, out[:, 0], **EXACT)
    torch.testing.assert_close(h1, h_n[:, 0], **EXACT)
    drop = MinGRU(3, 4, num_layers=2, dropout=0.5, dtype=F64)
    drop.train()
    torch.manual_seed(9)
    a = drop(x)[0]
    drop.method = "loop"
    torch.manual_seed(9)
    torch.testing.assert_close(drop(x)[0], a, **EXACT)  # the same dropout mask between layers on both paths
    drop.eval()
    assert not torch.equal(drop(x)[0], a)


def test_generic_linear_recurrence_with_a_users_coefficients() -> None:
    class Coeffs(nn.Module):  # a_t = σ(W x_t) in (0, 1), b_t = tanh(U x_t) of any sign
        def __init__(self, i: int, h: int, device=None, dtype=None) -> None:
            super().__init__()
            self.w = nn.Linear(i, h, device=device, dtype=dtype)
            self.u = nn.Linear(i, h, device=device, dtype=dtype)

        def forward(self, x):
            return torch.sigmoid(self.w(x)), torch.tanh(self.u(x))

    torch.manual_seed(6)
    layer = LinearRecurrence(3, 4, Coeffs, num_layers=2, bidirectional=True, dtype=F64)
    x = torch.randn(8, 2, 3, dtype=F64)
    hx = torch.randn(4, 2, 4, dtype=F64)
    layer.method = "loop"
    want = _run(layer, x, hx, [8, 5])
    c = layer.cells[0].coefficient_net
    h, hs = hx[0], []  # layer 0, forward direction, unrolled by hand
    for t in range(8):
        h = torch.sigmoid(c.w(x[t])) * h + torch.tanh(c.u(x[t]))
        hs.append(h)
    layer0 = torch.stack(layer.forward_states(x, hx, lengths=[8, 5]).h[0][0])  # (T, B, H) of layer 0, forward
    torch.testing.assert_close(layer0[:, 0], torch.stack(hs)[:, 0], **EXACT)
    for path in PATHS:
        if path == "compiled" and not compiled_scan_available():
            continue
        layer.method = path
        for gw, gg in zip(want, _run(layer, x, hx, [8, 5]), strict=True):
            torch.testing.assert_close(gg, gw, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="method must be one of"):
        layer.method = "parallel"


@pytest.mark.parametrize("name", list(LAYERS))
def test_float32_bounds_at_ten_thousand_steps(name: str) -> None:
    torch.manual_seed(8)
    ref = LAYERS[name](4, 8, dtype=F64)
    x = torch.randn(10_000, 2, 4, dtype=F64) * 2
    xr = x.clone().requires_grad_()
    want, _ = ref(xr)
    want.sum().backward()
    want = want.detach()
    scale, gscale = want.abs().max(), xr.grad.abs().max()
    layer = LAYERS[name](4, 8)
    layer.load_state_dict(ref.state_dict())
    for path, bound in (("compiled", 2e-6), ("sequential", 2e-6), ("scan", 2e-4)):
        if path == "compiled" and not compiled_scan_available():
            continue
        layer.method = path
        x32 = x.float().requires_grad_()
        got, _ = layer(x32)
        got.sum().backward()
        assert float((got.detach().double() - want).abs().max()) <= bound * float(scale), path
        assert float((x32.grad.double() - xr.grad).abs().max()) <= bound * float(gscale), path


def test_saved_state_dicts_load_with_weights_only() -> None:
    layer = MinLSTM(3, 4, num_layers=2)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    loaded = MinLSTM(3, 4, num_layers=2)
    loaded.load_state_dict(torch.load(buf, weights_only=True))
    assert list(layer.state_dict()) == [f"cells.{k}.{p}" for k in range(2) for p in ("weight_ih", "bias_ih")]
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(loaded(x)[0], layer(x)[0], rtol=0, atol=0)
    assert rnnkit.MinGRU is MinGRU and "MinLSTMCell" in rnnkit.__all__


def test_equals_mingru_pytorch_after_a_weight_copy() -> None:
    mg = pytest.importorskip("minGRU_pytorch.minGRU", reason="mingru-pytorch is not installed (the test extra)")
    torch.manual_seed(10)
    theirs = mg.minGRU(6).double()  # log-space minGRU, no bias, weight rows [hidden, gate]
    ours = MinGRU(6, 6, bias=False, batch_first=True, dtype=F64)
    hidden, gate = theirs.to_hidden_and_gate.weight.chunk(2, dim=0)
    with torch.no_grad():
        ours.cells[0].weight_ih.copy_(torch.cat([gate, hidden]))  # ours: [z, h̃]
    x = torch.randn(3, 20, 6, dtype=F64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = theirs(x1)
    got, _ = ours(x2)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    want.sum().backward()
    got.sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=1e-10)
    prev = F.softplus(torch.randn(3, 1, 6, dtype=F64))  # theirs takes a positive previous state (log space)
    want2, _ = theirs(x, prev, return_next_prev_hidden=True)
    got2, _ = ours(x, prev.transpose(0, 1))
    torch.testing.assert_close(got2, want2, rtol=0, atol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("name", list(LAYERS))
def test_cuda_runs_the_scan_and_equals_the_cpu(name: str) -> None:
    torch.manual_seed(12)
    cpu = LAYERS[name](3, 5, num_layers=2, bidirectional=True, dtype=F64)
    gpu = LAYERS[name](3, 5, num_layers=2, bidirectional=True, dtype=F64, device="cuda")
    gpu.load_state_dict(cpu.state_dict())
    assert resolve_method("auto", torch.device("cuda"), F64) == "scan"
    x, hx = torch.randn(40, 3, 3, dtype=F64), torch.randn(4, 3, 5, dtype=F64)
    for want, got in zip(_run(cpu, x, hx, [40, 9, 23]), _run(gpu, x.cuda(), hx.cuda(), [40, 9, 23]), strict=True):
        torch.testing.assert_close(got.cpu(), want, rtol=0, atol=1e-10)


def test_engine_loop_also_selects_the_reference() -> None:
    torch.manual_seed(13)
    layer = MinGRU(3, 4, dtype=F64)
    x = torch.randn(6, 2, 3, dtype=F64)
    layer.engine = "loop"
    states = []
    layer.cells[0].register_forward_hook(lambda m, i, o: states.append(o))
    out, _ = layer(x)
    assert len(states) == 6  # the cell was stepped once per time step
    layer.engine = "auto"
    torch.testing.assert_close(layer(x)[0], out, **EXACT)
