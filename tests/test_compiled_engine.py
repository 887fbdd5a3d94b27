"""The compiled (C++) engine: exact against torch.nn and the table's step functions, and its fallback.

float64 references: torch.nn after a weight copy (rnn, lstm, gru) and ``CellSpec.step`` through autograd
(``engine="loop"``, every kind, gru-before included), forward and backward, with unsorted lengths, both
directions, stacking and a carried state; gradcheck and gradgradcheck on small shapes. float32 bounds (the kernel's
polynomial exp): outputs and states within 2e-5 of torch.nn, gradients within 1e-4 (relative to their size).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import Tensor

import rnnkit
from rnnkit.engine import build, compiled
from rnnkit.engine.compiled import reference_recurrence, rnn_extension, run_compiled
from rnnkit.engine.own import run_own
from rnnkit.engine.policy import auto_engine

DT = torch.float64
KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_before"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3, "gru_before": 3}
TORCH_KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


@pytest.fixture
def ext():
    module = rnn_extension()
    if module is None:
        pytest.skip(f"compiled kernels unavailable here: {build.extension_status('rnn')}")
    return module


def make_layer(kind: str, I: int, H: int, L: int = 1, **kw) -> torch.nn.Module:
    return rnnkit.layers.layer_for(kind, I, H, L, dtype=kw.pop("dtype", DT), **kw)


def make_torch(kind: str, I: int, H: int, L: int = 1, **kw) -> torch.nn.Module:
    dtype = kw.pop("dtype", DT)
    if kind == "lstm":
        return torch.nn.LSTM(I, H, L, dtype=dtype, **kw)
    if kind == "gru":
        return torch.nn.GRU(I, H, L, dtype=dtype, **kw)
    return torch.nn.RNN(I, H, L, nonlinearity="relu" if kind == "rnn_relu" else "tanh", dtype=dtype, **kw)


def states(h) -> tuple[Tensor, ...]:
    return h if isinstance(h, tuple) else (h,)


def run_grads(layer, x: Tensor, hx, lengths=None) -> list[Tensor]:
    """Output, final states and the gradients of x, hx and every parameter under a fixed, uneven loss."""
    for p in layer.parameters():
        p.grad = None
    x = x.detach().clone().requires_grad_()
    hx_in = None if hx is None else tuple(h.detach().clone().requires_grad_() for h in states(hx))
    arg = None if hx_in is None else (hx_in if len(hx_in) == 2 else hx_in[0])
    if lengths is None:
        out, h_n = layer(x, arg)
    elif isinstance(layer, rnnkit.layers.Recurrent):
        out, h_n = layer(x, arg, lengths=lengths)
    else:  # torch.nn: pack (unsorted), run, pad back
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False)
        out, h_n = layer(packed, arg)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * w).sum() + sum((s * 1.3).sum() for s in states(h_n))
    loss.backward()
    grads = [x.grad] + ([] if hx_in is None else [h.grad for h in hx_in]) + [p.grad for p in layer.parameters()]
    return [out.detach(), *(s.detach() for s in states(h_n)), *grads]


def assert_close_all(a: list[Tensor], b: list[Tensor], rtol=1e-9, atol=1e-10) -> None:
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b, strict=True)):
        torch.testing.assert_close(u, v, rtol=rtol, atol=atol, msg=lambda m, i=i: f"item {i}: {m}")


def random_hx(kind: str, n: int, B: int, H: int, dtype=DT):
    h = torch.randn(n, B, H, dtype=dtype)
    return (h, torch.randn(n, B, H, dtype=dtype)) if kind == "lstm" else h


# --------------------------------------------------------------------------------------------- float64 exactness
@pytest.mark.parametrize("kind", TORCH_KINDS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("lengths", [None, [5, 7, 2, 6]], ids=["full", "lengths"])
@pytest.mark.parametrize("carried", [False, True], ids=["zero", "hx"])
def test_compiled_equals_torch_nn_float64(ext, kind, bidirectional, lengths, carried):
    torch.manual_seed(1)
    T, B, I, H, L = 7, 4, 3, 5, 2
    ref = make_torch(kind, I, H, L, bidirectional=bidirectional)
    ours = make_layer(kind, I, H, L, bidirectional=bidirectional, engine="compiled")
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I, dtype=DT)
    hx = random_hx(kind, L * (2 if bidirectional else 1), B, H) if carried else None
    assert_close_all(run_grads(ours, x, hx, lengths), run_grads(ref, x, hx, lengths))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_gru_many_rows_weight_gradients_transposed(ext, dtype):
    """gru from T·B ≥ 2048 rows (csrc/rnn.cpp, GRU_T_ROWS) forms dW_hh and dW_ih transposed (hᵀ·D, then a
    transpose): against torch.nn.GRU with lengths, both directions and two layers, forward and backward; float64
    to rounding, float32 within the stated bounds (outputs 2e-5, gradients 1e-4 relative to their size)."""
    torch.manual_seed(17)
    T, B, I, H, L = 40, 64, 3, 6, 2  # 2560 rows
    ref = make_torch("gru", I, H, L, bidirectional=True, dtype=torch.float64)
    ours = make_layer("gru", I, H, L, bidirectional=True, engine="compiled", dtype=dtype)
    ours.load_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()})
    x = torch.randn(T, B, I, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,)).tolist()
    hx = random_hx("gru", 2 * L, B, H)
    got = run_grads(ours, x.to(dtype), hx.to(dtype), lengths)
    want = run_grads(ref, x, hx, lengths)
    if dtype == torch.float64:
        assert_close_all(got, want)
        return
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        bound = 2e-5 if i < 2 else 1e-4 * max(1.0, b.abs().max().item())
        assert (a.double() - b).abs().max().item() <= bound, i


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_compiled_equals_autograd_loop_over_cell_step(ext, kind, bidirectional, bias):
    """Against ``CellSpec.step`` through autograd (engine="loop"): the only reference gru-before has."""
    torch.manual_seed(2)
    T, B, I, H, L = 6, 3, 4, 3, 2
    layer = make_layer(kind, I, H, L, bidirectional=bidirectional, bias=bias, engine="compiled")
    x = torch.randn(T, B, I, dtype=DT)
    hx = random_hx(kind, L * (2 if bidirectional else 1), B, H)
    lengths = [6, 2, 4]
    got = run_grads(layer, x, hx, lengths)
    layer.engine = "loop"
    assert_close_all(got, run_grads(layer, x, hx, lengths))


@pytest.mark.parametrize("kind", KINDS)
def test_auto_runs_the_compiled_kernel_on_cpu(ext, kind, monkeypatch):
    torch.manual_seed(3)
    layer = make_layer(kind, 3, 4, 2, bidirectional=True)
    calls = []
    for entry in ("layer_forward", "layer_train"):  # without grad / with grad (one C++ autograd node)
        real = getattr(ext, entry)
        monkeypatch.setattr(ext, entry, lambda *a, real=real: calls.append(a[0]) or real(*a))
    x = torch.randn(5, 2, 3, dtype=DT)
    got = run_grads(layer, x, None)
    assert len(calls) == 4  # every layer and direction
    layer.engine = "loop"
    assert_close_all(got, run_grads(layer, x, None))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_mask", [False, True], ids=["full", "mask"])
def test_gradcheck_compiled(ext, kind, with_mask):
    torch.manual_seed(4)
    T, B, I, H = 4, 3, 2, 3
    G = GATES[kind] * H
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    w = [torch.randn(G, n, dtype=DT, requires_grad=True) for n in (I, H)]
    b = [torch.randn(G, dtype=DT, requires_grad=True) for _ in range(2)]
    h0 = torch.randn(B, H, dtype=DT, requires_grad=True)
    c0 = torch.randn(B, H, dtype=DT, requires_grad=True)
    mask = None
    if with_mask:
        mask = (torch.arange(T).unsqueeze(1) < torch.tensor([4, 1, 3])).to(DT).unsqueeze(-1)  # (T, B, 1)

    def fn(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        s0 = (h0, c0) if kind == "lstm" else h0
        hs, final = run_compiled(kind, x, s0, w_ih, w_hh, b_ih, b_hh, mask)
        return (hs, *states(final))

    assert torch.autograd.gradcheck(fn, (x, *w, *b, h0, c0))


@pytest.mark.parametrize("kind", KINDS)
def test_double_backward_through_compiled(ext, kind):
    """create_graph=True differentiates the autograd reference inside the compiled backward."""
    torch.manual_seed(5)
    T, B, I, H = 3, 2, 2, 2
    G = GATES[kind] * H
    x = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    w_ih = torch.randn(G, I, dtype=DT, requires_grad=True)
    w_hh = torch.randn(G, H, dtype=DT, requires_grad=True)
    b = torch.randn(G, dtype=DT, requires_grad=True)
    h0 = torch.randn(B, H, dtype=DT, requires_grad=True)
    c0 = torch.randn(B, H, dtype=DT)
    mask = (torch.arange(T).unsqueeze(1) < torch.tensor([3, 2])).to(DT).unsqueeze(-1)

    def fn(x, w_ih, w_hh, b, h0):
        s0 = (h0, c0) if kind == "lstm" else h0
        hs, final = run_compiled(kind, x, s0, w_ih, w_hh, b, b * 0.5, mask)
        return (hs, *states(final))

    assert torch.autograd.gradgradcheck(fn, (x, w_ih, w_hh, b, h0))
    # and a gradient penalty through a layer equals the loop's
    layer = make_layer(kind, I, H, engine="compiled")
    xs = torch.randn(T, B, I, dtype=DT, requires_grad=True)
    pens = []
    for engine in ("compiled", "loop"):
        layer.engine = engine
        out, _ = layer(xs)
        (g,) = torch.autograd.grad(out.square().sum(), xs, create_graph=True)
        pen = g.square().sum()
        pens.append([pen.detach(), *torch.autograd.grad(pen, list(layer.parameters()))])
    assert_close_all(*pens)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_recurrence_equals_own_kernels(kind):
    """The autograd reference of the compiled kernel (used for create_graph) is the own kernels' recurrence."""
    torch.manual_seed(6)
    T, B, I, H = 5, 3, 2, 4
    G = GATES[kind] * H
    x = torch.randn(T, B, I, dtype=DT)
    w_ih, w_hh = torch.randn(G, I, dtype=DT), torch.randn(G, H, dtype=DT)
    b_ih, b_hh = torch.randn(G, dtype=DT), torch.randn(G, dtype=DT)
    s0 = (torch.randn(B, H, dtype=DT), torch.randn(B, H, dtype=DT)) if kind == "lstm" else torch.randn(B, H, dtype=DT)
    mask = (torch.arange(T).unsqueeze(1) < torch.tensor([5, 2, 4])).to(DT).unsqueeze(-1)
    hs_own, fin_own = run_own(kind, x, s0, w_ih, w_hh, b_ih, b_hh, mask)
    xp, b_gated = compiled.project_inputs(kind, x, w_ih, w_hh, b_ih, b_hh)
    hs_ref, fin_ref = reference_recurrence(kind, xp, s0, w_hh, b_gated, mask.squeeze(-1))
    assert_close_all([hs_ref, *states(fin_ref)], [hs_own, *states(fin_own)])


@pytest.mark.parametrize("kind", KINDS)
def test_no_grad_forward_equals_training_forward(ext, kind):
    """Without grad the kernel keeps one step of its buffers; the numbers are the same."""
    torch.manual_seed(7)
    layer = make_layer(kind, 3, 4, 2, dtype=torch.float32)
    x = torch.randn(6, 2, 3)
    out, h = layer(x, lengths=[6, 3])
    with torch.no_grad():
        out2, h2 = layer(x, lengths=[6, 3])
    assert torch.equal(out.detach(), out2)
    for a, b in zip(states(h), states(h2), strict=True):
        assert torch.equal(a.detach(), b)


# ------------------------------------------------------------------------------------------------ float32 bounds
@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_float32_agreement_bounds(ext, kind):
    """float32 (polynomial exp in the gate loops): outputs within 2e-5 of torch.nn, gradients within 1e-4 relative."""
    torch.manual_seed(8)
    T, B, I, H = 30, 8, 16, 32
    ref = make_torch(kind, I, H, dtype=torch.float32)
    ours = make_layer(kind, I, H, dtype=torch.float32, engine="compiled")
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)
    got, want = run_grads(ours, x, None), run_grads(ref, x, None)
    n_out = 1 + (2 if kind == "lstm" else 1)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if i < n_out:
            assert (a - b).abs().max().item() <= 2e-5, i
        else:
            assert (a - b).abs().max().item() <= 1e-4 * max(1.0, b.abs().max().item()), i


# --------------------------------------------------------------------------------------------------- fallback
def test_turned_off_gives_own_path_and_same_numbers(ext, monkeypatch):
    torch.manual_seed(9)
    layer = make_layer("gru_before", 3, 4, 2, bidirectional=True, engine="compiled")
    x = torch.randn(5, 3, 3, dtype=DT)
    with_kernels = run_grads(layer, x, None, [5, 2, 4])
    monkeypatch.setenv("RNNKIT_COMPILED", "0")
    monkeypatch.setattr(build, "_LOADED", {})
    monkeypatch.setattr(build, "_REASONS", {})
    assert rnn_extension() is None
    assert "RNNKIT_COMPILED=0" in build.extension_status("rnn")
    assert not compiled.runs_compiled("gru_before", x)
    assert_close_all(run_grads(layer, x, None, [5, 2, 4]), with_kernels)


def test_failed_build_says_one_line_and_runs_the_pytorch_path(monkeypatch, capsys, tmp_path):
    torch.manual_seed(10)
    layer = make_layer("lstm", 3, 4, engine="compiled")
    x = torch.randn(5, 2, 3, dtype=DT)
    reference = run_grads(layer, x, None)  # compiled if it builds here, else already the fallback

    def broken(*a, **k):
        raise RuntimeError("Error building extension 'rnn'\nmany lines of compiler output")

    import torch.utils.cpp_extension as cpp

    monkeypatch.setattr(build, "_LOADED", {})
    monkeypatch.setattr(build, "_REASONS", {})
    monkeypatch.setattr(build, "_missing_tool", lambda: None)
    monkeypatch.setattr(build, "_cache_root", lambda: tmp_path)
    monkeypatch.setattr(cpp, "load", broken)
    capsys.readouterr()
    got = run_grads(layer, x, None)
    err = capsys.readouterr().err.strip().splitlines()
    # the notice that a build starts, then one line saying it failed and the PyTorch path runs; no traceback
    assert len(err) <= 2 and sum("unavailable" in line for line in err) == 1, err
    assert "Traceback" not in "\n".join(err)
    assert_close_all(got, reference)
    assert auto_engine("lstm", x) == "fused" and auto_engine("gru_before", x) == "own"


def test_a_lock_left_by_a_killed_build_is_cleared_and_builds_are_serialised(monkeypatch, tmp_path):
    """torch's builder waits for ever on a ``lock`` file its owner never removed (a process killed while it built):
    rnnkit holds a kernel ``flock`` (released when a process dies) while torch builds, so a ``lock`` found under
    it is stale and goes; and while one process holds it, another cannot take it (builds never overlap)."""
    import fcntl
    import subprocess
    import sys

    import torch.utils.cpp_extension as cpp

    seen = {}

    def fake_load(*, build_directory, **kwargs):
        folder = Path(build_directory)
        seen["stale lock left"] = (folder / "lock").exists()  # torch's FileBaton would wait for ever here
        # another process cannot take the lock now: the build is ours alone
        code = "import fcntl, sys; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)"
        probe = [sys.executable, "-c", code, str(lock_file(folder))]
        seen["other process got it"] = subprocess.run(probe, capture_output=True).returncode == 0
        return object()

    def lock_file(folder: Path) -> Path:
        return folder.parent / f"{folder.name}.flock"

    monkeypatch.setattr(build, "_LOADED", {})
    monkeypatch.setattr(build, "_REASONS", {})
    monkeypatch.setattr(build, "_missing_tool", lambda: None)
    monkeypatch.setattr(build, "_cache_root", lambda: tmp_path)
    monkeypatch.setattr(cpp, "load", fake_load)
    # a killed build: its folder holds torch's lock file
    digest_probe = build.load_extension("rnn", ["rnn.cpp"])  # learn the folder (a first fake build)
    assert digest_probe is not None
    (folder,) = [p for p in (tmp_path / "rnn").iterdir() if p.is_dir()]
    (folder / "lock").write_text("")
    monkeypatch.setattr(build, "_LOADED", {})
    assert build.load_extension("rnn", ["rnn.cpp"]) is not None
    assert seen == {"stale lock left": False, "other process got it": False}
    with open(lock_file(folder)) as f:  # released afterwards
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


# ------------------------------------------------------------------------------------------------------ policy
def test_policy_table(ext):
    x32 = torch.randn(4, 2, 3)
    for kind in KINDS:
        assert auto_engine(kind, x32) == "compiled"
        assert auto_engine(kind, x32.double()) == "compiled"
        assert auto_engine(kind, x32, proj_size=2) == "fused"
    assert auto_engine(None, x32) == "loop"
    half = x32.to(torch.bfloat16)  # a dtype the kernels do not take: torch's kernel where exact, else own
    assert auto_engine("lstm", half) == "fused" and auto_engine("gru_before", half) == "own"
    meta = torch.empty(4, 2, 3, device="meta")  # any non-CPU device never reaches the C++ kernels
    assert auto_engine("gru", meta) == "fused" and auto_engine("gru_before", meta) == "own"
    assert not compiled.runs_compiled("gru", meta)


def test_projection_refuses_compiled_and_auto_runs_fused(ext, monkeypatch):
    with pytest.raises(ValueError, match="proj_size"):
        rnnkit.LSTM(3, 4, proj_size=2, engine="compiled")
    lstm = rnnkit.LSTM(3, 4, proj_size=2, dtype=DT)
    monkeypatch.setattr(compiled._CompiledFn, "apply", functools.partial(pytest.fail, "compiled kernel used"))
    out, _ = lstm(torch.randn(5, 2, 3, dtype=DT))
    assert out.shape == (5, 2, 2)


# ------------------------------------------------------------------------- the per-step product paths of the kernel
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B", [1, 3, 6], ids=["B1", "B3", "B6"])
def test_small_batch_and_packed_products_float64(ext, kind, B):
    """B ≤ 4 takes the register-blocked product over W_hhᵀ, larger B BLAS; H = 70 spans the full column blocks and
    every remainder width. Forward and backward against the autograd loop over the cell's step, with lengths."""
    torch.manual_seed(11)
    T, I, H = 6, 5, 70
    layer = make_layer(kind, I, H, 2, engine="compiled")
    x = torch.randn(T, B, I, dtype=DT)
    lengths = [6, 3, 5, 1, 6, 2][:B]
    hx = random_hx(kind, 2, B, H)
    got = run_grads(layer, x, hx, lengths)
    layer.engine = "loop"
    assert_close_all(got, run_grads(layer, x, hx, lengths))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B", [1, 3, 9], ids=["B1", "B3", "B9"])
def test_float32_paths_against_float64(ext, kind, B):
    """float32 on every product path (B ≤ 4 register-blocked, else MKL's packed W_hh or BLAS): within float32
    bounds of the same layer run in float64 (outputs 2e-5, gradients 1e-4 relative to their size)."""
    torch.manual_seed(13)
    T, I, H = 12, 7, 80
    layer = make_layer(kind, I, H, 2, dtype=torch.float32, engine="compiled")
    x = torch.randn(T, B, I)
    lengths = [12, 5, 9, 1, 12, 3, 7, 12, 2][:B]
    got = run_grads(layer, x, None, lengths)
    layer64 = make_layer(kind, I, H, 2, engine="loop")
    layer64.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
    want = run_grads(layer64, x.double(), None, lengths)
    n_out = 1 + (2 if kind == "lstm" else 1)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        bound = 2e-5 if i < n_out else 1e-4 * max(1.0, b.abs().max().item())
        assert (a.double() - b).abs().max().item() <= bound, i


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("B", [1, 5], ids=["B1", "B5"])
def test_step_without_grad_equals_forward(ext, kind, B):
    """step() under no_grad (the compiled single-step path sampling runs) and the no-grad forward give the autograd
    loop's outputs and states, also after an in-place weight update (the cached W_hhᵀ layout is keyed by the
    weight's version)."""
    torch.manual_seed(14)
    T, I, H = 5, 4, 40
    layer = make_layer(kind, I, H, 2)
    x = torch.randn(T, B, I, dtype=DT)
    for _ in range(2):
        with torch.no_grad():
            layer.engine = "loop"  # the reference: no cached layout
            out, h_n = layer(x)
            layer.engine = "auto"
            torch.testing.assert_close(layer(x)[0], out, rtol=1e-12, atol=1e-12)
            state, ys = None, []
            for t in range(T):
                y, state = layer.step(x[t], state)
                ys.append(y)
        torch.testing.assert_close(torch.stack(ys), out, rtol=1e-12, atol=1e-12)
        for a, b in zip(states(state), states(h_n), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        with torch.no_grad():
            for p in layer.parameters():
                p.mul_(0.5)  # in place: same tensor, new _version


# ------------------------------------------------------------------------------- B = 1 LSTM panels (float32)
def test_lstm_panels_are_w_hh_regrouped(ext):
    """``step_layout`` for a float32 LSTM at B = 1: panel q, row k holds W_hh[g·H + 16q + u, k] at g·16 + u; other
    kinds, batches and dtypes get W_hhᵀ (H, G); H not a multiple of 16 gets W_hhᵀ too."""
    H = 48
    w = torch.randn(4 * H, H)
    panels = ext.step_layout(2, w, 1)
    assert panels.shape == (H // 16, H, 64)
    for q in range(H // 16):
        for k in (0, 17, H - 1):
            for g in range(4):
                for u in (0, 5, 15):
                    assert panels[q, k, g * 16 + u] == w[g * H + 16 * q + u, k]
    assert torch.equal(ext.step_layout(2, w, 2), w.t())
    assert ext.step_layout(3, torch.randn(3 * H, H), 1).shape == (H, 3 * H)
    assert ext.step_layout(2, w.double(), 1).shape == (H, 4 * H)
    assert ext.step_layout(2, torch.randn(4 * 40, 40), 1).shape == (40, 160)


@pytest.mark.parametrize("lengths", [None, [9]], ids=["full", "lengths"])
def test_lstm_panels_equal_the_row_path_bitwise(ext, lengths):
    """A float32 sequence alone (B = 1: W_hh in panels, gate math after each panel) gives bitwise the outputs and
    final states it gets as a row of a batch of two (the row path: the product into a (2, 4H) row, then the gate
    loop) — the same sums in the same order and the same gate function. (Its gradients: the float32 test above,
    B1 with H = 80, runs the panels against float64.)"""
    torch.manual_seed(21)
    T, I, H = 12, 5, 48
    layer = make_layer("lstm", I, H, 2, dtype=torch.float32, engine="compiled")
    x = torch.randn(T, 1, I)
    pair = torch.cat([x, torch.randn(T, 1, I)], 1)
    alone = run_grads(layer, x, None, lengths)
    both = run_grads(layer, pair, None, None if lengths is None else [*lengths, T])
    for i in range(3):  # output, h_n, c_n
        assert torch.equal(alone[i], both[i][:, :1]), i
    with torch.no_grad():
        assert torch.equal(layer(x, lengths=lengths)[0], alone[0])  # no grad: panels from the step cache


def test_lstm_panels_step_equals_forward_and_follows_weight_updates(ext):
    """Sampling at B = 1 in float32 (one kernel call per step, the panels cached per weight tensor) gives the
    whole-sequence forward to float32 rounding (the input projection is a GEMM of one row per call instead of one
    over all steps), also after an in-place weight update (the cache is keyed by the weight's version)."""
    torch.manual_seed(22)
    T, I, H = 7, 6, 32
    layer = make_layer("lstm", I, H, 2, dtype=torch.float32)
    x = torch.randn(T, 1, I)
    for _ in range(2):
        with torch.no_grad():
            out, (h_n, c_n) = layer(x)
            state, ys = None, []
            for t in range(T):
                y, state = layer.step(x[t], state)
                ys.append(y)
            torch.testing.assert_close(torch.stack(ys), out, rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(state, (h_n, c_n), rtol=1e-6, atol=1e-7)
            layer.engine = "loop"
            torch.testing.assert_close(layer(x)[0], out, rtol=1e-5, atol=2e-6)
            layer.engine = "auto"
            for p in layer.parameters():
                p.mul_(0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_pooled_buffers_are_reused_without_stale_data(ext, kind):
    """The kernel's large buffers come from a pool (csrc/rnn.cpp, "buffer pool"): a call after another call of a
    different shape and data gives bitwise the same results as before, its outputs are ordinary resizable
    tensors, and warm calls stop faulting fresh pages in (glibc trimmed the freed heap top at every call)."""
    import resource

    torch.manual_seed(0)
    layer = make_layer(kind, 16, 64, dtype=torch.float32)
    x = torch.randn(40, 24, 16)  # (T, B, I): buffers well above the pool's 32 KB minimum
    lengths = torch.randint(1, 41, (24,))
    first = run_grads(layer, x, None, lengths)
    other = make_layer(kind, 16, 64, dtype=torch.float32)
    run_grads(other, torch.randn(30, 24, 16) * 3, None)  # frees blocks holding other data into the pool
    again = run_grads(layer, x, None, lengths)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        out, _ = layer(x)
    out.resize_(2 * out.numel())  # a pooled storage grows like at::empty's
    assert out.shape == (2 * 40 * 24 * 64,)
    for _ in range(5):
        run_grads(layer, x, None, lengths)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        run_grads(layer, x, None, lengths)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
    assert faults < 60, f"{faults} page faults per warm call"  # before the pool: hundreds at this shape


@pytest.mark.parametrize("kind", KINDS)
def test_rows_split_over_two_threads_match_the_loop_float64(ext, kind):
    """B·H > 8192 splits a step's gate math over torch's threads (csrc/rnn.cpp, for_rows): with two threads,
    lengths and both directions it still agrees with the autograd loop in float64, forward and backward."""
    torch.manual_seed(3)
    T, B, I, H = 4, 40, 3, 256  # B·H = 10240: rows in blocks of 32
    layer = make_layer(kind, I, H, bidirectional=True, engine="compiled")
    x = torch.randn(T, B, I, dtype=DT)
    lengths = torch.randint(1, T + 1, (B,)).tolist()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = run_grads(layer, x, None, lengths)
    finally:
        torch.set_num_threads(threads)
    layer.engine = "loop"
    assert_close_all(got, run_grads(layer, x, None, lengths))


@pytest.mark.parametrize("kind", KINDS)
def test_rows_split_over_two_threads_really_run_and_match_one_thread_float32(ext, kind):
    """The kernels are built with -fopenmp where torch runs on OpenMP (engine/build.py, ``load_threaded_extension``):
    without the flag ``at::parallel_for`` ran on the calling thread. Two threads really run a row loop, and the
    float32 results agree with one thread's (MKL may sum a product in another order with two threads)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        if build.openmp_flags() and ext.row_threads() != 2:
            pytest.fail(f"a row loop ran on {ext.row_threads()} thread(s) with 2 set: built without -fopenmp?")
        torch.manual_seed(4)
        T, B, I, H = 6, 40, 3, 256  # B·H = 10240 > 8192: rows split over the threads
        layer = make_layer(kind, I, H, bidirectional=True, engine="compiled").float()
        x = torch.randn(T, B, I)
        lengths = torch.randint(1, T + 1, (B,)).tolist()
        two = run_grads(layer, x, None, lengths)
        torch.set_num_threads(1)
        assert ext.row_threads() == 1
        one = run_grads(layer, x, None, lengths)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_engine_is_built_with_openmp_where_torch_runs_on_it(monkeypatch):
    """``load_threaded_extension`` adds -fopenmp where torch uses OpenMP (Linux) and, where that build fails,
    builds the same sources without it as NAME_serial; compiled kernels turned off means no second try."""
    calls = []

    def fake_load(name, sources, *, extra_cflags=None, say_start=True, say_failure=True):
        calls.append((name, list(extra_cflags or [])))
        assert say_failure == (name == "rnn_serial") and say_start == (name == "rnn")  # one line each, not two
        return None if "-fopenmp" in (extra_cflags or []) else "serial kernels"

    monkeypatch.setattr(build, "openmp_flags", lambda: ["-fopenmp"])
    monkeypatch.setattr(build, "load_extension", fake_load)
    monkeypatch.setattr(build, "extension_status", lambda name: "build failed: no omp.h")
    assert build.load_threaded_extension("rnn", ["rnn.cpp"], extra_cflags=["-O2"]) == "serial kernels"
    assert calls == [("rnn", ["-O2", "-fopenmp"]), ("rnn_serial", ["-O2"])]
    monkeypatch.setattr(build, "extension_status", lambda name: "turned off by RNNKIT_COMPILED=0")
    calls.clear()
    assert build.load_threaded_extension("rnn", ["rnn.cpp"]) is None and calls == [("rnn", ["-fopenmp"])]


def test_two_checkouts_with_the_same_sources_build_from_the_same_paths(monkeypatch, tmp_path):
    """torch's ``build.ninja`` names sources by path: two checkouts (or environments) of the same sources share one
    cache folder, and built from their own paths they rebuilt each other's kernels on every switch. The build reads
    copies inside the cache folder, so both hand torch the same paths, holding the same bytes as the shipped files."""
    import torch.utils.cpp_extension as cpp

    calls = []

    def fake_load(*, sources, build_directory, **kwargs):
        calls.append((list(sources), build_directory))
        return object()

    shipped = (build.source_dir() / "rnn.cpp").read_bytes()
    checkouts = [tmp_path / "checkout-a", tmp_path / "checkout-b"]
    for folder in checkouts:
        folder.mkdir()
        (folder / "rnn.cpp").write_bytes(shipped)
    monkeypatch.setattr(build, "_REASONS", {})
    monkeypatch.setattr(build, "_missing_tool", lambda: None)
    monkeypatch.setattr(build, "_cache_root", lambda: tmp_path / "cache")
    monkeypatch.setattr(cpp, "load", fake_load)
    for folder in checkouts:
        monkeypatch.setattr(build, "_LOADED", {})
        monkeypatch.setattr(build, "source_dir", lambda folder=folder: folder)
        assert build.load_extension("rnn", ["rnn.cpp"]) is not None
    (first, first_dir), (second, second_dir) = calls
    assert first == second and first_dir == second_dir
    (staged,) = first
    assert Path(staged).parent.parent == Path(first_dir)
    assert Path(staged).read_bytes() == shipped
    # a changed source is another cache folder, with its own copy
    (checkouts[1] / "rnn.cpp").write_bytes(shipped + b"\n// changed\n")
    monkeypatch.setattr(build, "_LOADED", {})
    assert build.load_extension("rnn", ["rnn.cpp"]) is not None
    (third,), third_dir = calls[-1]
    assert third_dir != first_dir and Path(third).read_bytes().endswith(b"// changed\n")
    assert Path(staged).read_bytes() == shipped


# ------------------------------------------------------------------------------------------- the layers' fast path
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
def test_fast_path_equals_the_general_path_bitwise(ext, kind, L, batch_first, monkeypatch):
    """forward(x) with no hx and no lengths takes the fast path (fewer Python steps, same kernel): its outputs,
    states and gradients are bitwise those of the general path (hx of zeros given), with grad and without."""
    import rnnkit.engine as engine_mod

    torch.manual_seed(11)
    layer = make_layer(kind, 3, 5, L, dtype=torch.float32, batch_first=batch_first)
    x = torch.randn(4, 6, 3)
    calls = []
    real = engine_mod.run_compiled_zero
    monkeypatch.setattr(engine_mod, "run_compiled_zero", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    fast = run_grads(layer, x, None)
    assert len(calls) == L  # the fast path ran, once per layer
    zeros = random_hx(kind, L, 4 if batch_first else 6, 5, dtype=torch.float32)
    zeros = tuple(torch.zeros_like(z) for z in zeros) if isinstance(zeros, tuple) else torch.zeros_like(zeros)
    general = run_grads(layer, x, zeros)
    n_states = 2 if kind == "lstm" else 1
    general = general[: 1 + n_states + 1] + general[1 + n_states + 1 + n_states :]  # drop hx's gradients
    assert len(calls) == L  # hx given: the general path
    for a, b in zip(fast, general, strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        out, h = layer(x)
        out2, h2 = layer(x, zeros)
    assert torch.equal(out, out2)
    for a, b in zip(states(h), states(h2), strict=True):
        assert torch.equal(a, b)
        assert a.data_ptr() != out.data_ptr()  # a state of its own, as torch.nn returns it


def test_fast_path_leaves_other_calls_to_the_general_path(ext, monkeypatch):
    import rnnkit.engine as engine_mod

    calls = []
    monkeypatch.setattr(engine_mod, "run_compiled_zero", lambda *a: calls.append(a[0]))
    x = torch.randn(4, 2, 3, dtype=DT)
    make_layer("gru", 3, 5, bidirectional=True)(x)  # two directions
    make_layer("gru", 3, 5, engine="own")(x)  # another engine
    make_layer("gru", 3, 5)(x[:, 0])  # unbatched
    make_layer("gru", 3, 5)(x, lengths=[4, 2])
    make_layer("gru", 3, 5, 2, dropout=0.5)(x)  # dropout between layers, training
    rnnkit.layers.MinGRU(3, 5, dtype=DT)(x)  # a subclass with its own dispatch
    with pytest.raises(ValueError):
        make_layer("gru", 3, 5)(x.float())  # dtype mismatch: the general path's error
    assert calls == []
