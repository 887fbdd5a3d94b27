"""PyTorch's own module tests as rnnkit's acceptance suite: every ``module_db`` sample of the recurrent modules.

``torch.testing._internal.common_modules.module_db`` (shipped in the torch wheel) holds the samples torch's
``test/test_modules.py`` runs on ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` and the cells. For every sample (CPU, float32
and float64, train and eval) we build torch's module and rnnkit's with the same constructor arguments, copy the
state dict (strict), and compare outputs, final states and every gradient (inputs and parameters). The error
samples (``module_error_inputs_func``) must raise an exception of torch's type (rnnkit's :class:`ShapeError` and
:class:`ArgTypeError` are both torch's type and rnnkit's documented ``ValueError``/``TypeError``).

rnnkit's layers run torch's fused kernel on ``engine="auto"``, so there outputs and gradients are bit-identical; the
cells and the ``loop``/``own`` engines compute the same math with other kernels and are compared to a tolerance.
"""

from __future__ import annotations

import sys
import types
import unittest

import pytest
import torch
from torch import nn

import rnnkit

# torch's internal testing helpers import `expecttest` (a torch *dev* dependency, not shipped with the wheel) only
# to subclass its TestCase; module_db itself never uses it, so a stand-in keeps this test dependency-free.
if "expecttest" not in sys.modules:
    try:
        import expecttest  # noqa: F401
    except ImportError:
        _stub = types.ModuleType("expecttest")
        _stub.TestCase = unittest.TestCase  # type: ignore[attr-defined]
        sys.modules["expecttest"] = _stub

from torch.testing._internal.common_modules import module_db

PEERS = {
    nn.RNN: rnnkit.RNN,
    nn.GRU: rnnkit.GRU,
    nn.LSTM: rnnkit.LSTM,
    nn.RNNCell: rnnkit.RNNCell,
    nn.GRUCell: rnnkit.GRUCell,
    nn.LSTMCell: rnnkit.LSTMCell,
}
INFOS = [m for m in module_db if m.module_cls in PEERS]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    return []


def _clone(obj):
    """A fresh leaf copy of the sample's inputs (each module gets its own, so gradients can be compared)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone().requires_grad_(obj.requires_grad)
    if isinstance(obj, tuple):
        return tuple(_clone(o) for o in obj)
    if isinstance(obj, list):
        return [_clone(o) for o in obj]
    return obj


def _samples(info, dtype, training):
    return info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True, training=training)


def _run(module: nn.Module, args, kwargs, seed: int):
    """Forward (seeded: dropout draws the same mask), then backward of a fixed random weighting of every output."""
    args, kwargs = _clone(args), _clone(kwargs)
    torch.manual_seed(seed)
    out = module(*args, **kwargs)
    outs = _tensors(out)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    ins = [t for t in _tensors((args, kwargs)) if t.requires_grad]
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, ins + params, allow_unused=True)
    return outs, list(grads)


def _pairs(info, ctor, dtype):
    torch.manual_seed(0)
    ours = PEERS[info.module_cls](*ctor.args, **ctor.kwargs)
    theirs = info.module_cls(*ctor.args, **ctor.kwargs)
    theirs = theirs.to(dtype)
    ours = ours.to(dtype)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


CASES = [
    pytest.param(info, dt, training, id=f"{info.module_cls.__name__}-{dt}-{('eval', 'train')[training]}")
    for info in INFOS
    for dt in DTYPES
    for training in (True, False)
]


def test_module_db_has_every_recurrent_module():
    assert {m.module_cls for m in INFOS} == set(PEERS)


@pytest.mark.parametrize("info,dtype_name,training", CASES)
def test_module_db_samples_match_torch(info, dtype_name, training, monkeypatch):
    # bitwise: auto on torch's kernel, i.e. without rnnkit's compiled kernels (with them, auto runs rnnkit's C++
    # kernel on CPU, checked against these samples to rounding in test_module_db_samples_on_rnnkit_engines)
    monkeypatch.setattr(rnnkit.engine.compiled, "rnn_extension", lambda: None)
    dtype = DTYPES[dtype_name]
    samples = _samples(info, dtype, training)
    assert samples, "module_db gave no samples"
    layer = info.module_cls in (nn.RNN, nn.GRU, nn.LSTM)
    for n, sample in enumerate(samples):
        ctor, fwd = sample.constructor_input, sample.forward_input
        theirs, ours = _pairs(info, ctor, dtype)
        theirs.train(training)
        ours.train(training)
        want_out, want_grads = _run(theirs, fwd.args, fwd.kwargs, seed=n)
        got_out, got_grads = _run(ours, fwd.args, fwd.kwargs, seed=n)
        assert len(got_out) == len(want_out), f"sample {n}: {sample.desc!r}"
        # layers on engine="auto" call torch's very kernel: bit-identical; cells: the same math, other kernels
        tol = {"rtol": 0, "atol": 0} if layer else {}
        for a, b in zip(got_out, want_out, strict=True):
            torch.testing.assert_close(a, b, **tol, msg=lambda m, n=n: f"sample {n} output: {m}")
        for a, b in zip(got_grads, want_grads, strict=True):
            assert (a is None) == (b is None), f"sample {n}: gradient presence differs"
            if a is not None:
                torch.testing.assert_close(a, b, **tol, msg=lambda m, n=n: f"sample {n} gradient: {m}")


@pytest.mark.parametrize("engine", ["own", "compiled", "loop"])
@pytest.mark.parametrize("info", [i for i in INFOS if i.module_cls in (nn.RNN, nn.GRU, nn.LSTM)], ids=lambda i: i.name)
def test_module_db_samples_on_rnnkit_engines(info, engine):
    """rnnkit's own BPTT, the compiled kernel and the autograd loop against torch on the same samples (float64,
    eval: no dropout)."""
    dtype = torch.float64
    checked = 0
    for n, sample in enumerate(_samples(info, dtype, training=False)):
        ctor, fwd = sample.constructor_input, sample.forward_input
        if engine in ("own", "compiled") and ctor.kwargs.get("proj_size", 0):
            # the own BPTT has no projection: it refuses in one ValueError (test_layers tests that), and
            # engine="auto" sends proj_size to torch's kernel; the loop engine covers the projection here
            continue
        theirs, ours = _pairs(info, ctor, dtype)
        ours.engine = engine
        theirs.eval()
        ours.eval()
        want_out, want_grads = _run(theirs, fwd.args, fwd.kwargs, seed=n)
        got_out, got_grads = _run(ours, fwd.args, fwd.kwargs, seed=n)
        for a, b in zip(got_out + got_grads, want_out + want_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        checked += 1
    assert checked


ERROR_CASES = [
    pytest.param(info, id=info.module_cls.__name__) for info in INFOS if info.module_error_inputs_func is not None
]


@pytest.mark.parametrize("info", ERROR_CASES)
def test_module_db_error_samples_raise_torchs_exception_type(info):
    errors = info.module_error_inputs_func(info, device="cpu", dtype=torch.float32, requires_grad=True, training=True)
    assert errors
    for err in errors:
        sample = err.module_error_input
        ctor, fwd = sample.constructor_input, sample.forward_input
        kind = err.error_on.name
        with pytest.raises(err.error_type, match=err.error_regex):  # torch does raise what module_db says
            m = info.module_cls(*ctor.args, **ctor.kwargs)
            m(*fwd.args, **fwd.kwargs)
        with pytest.raises(err.error_type) as caught:
            m = PEERS[info.module_cls](*ctor.args, **ctor.kwargs)
            assert kind != "CONSTRUCTION_ERROR", f"rnnkit accepted {ctor.args} {ctor.kwargs}"
            m(*fwd.args, **fwd.kwargs)
        assert isinstance(caught.value, err.error_type), (ctor.args, ctor.kwargs, caught.value)
