"""CUDA parity (skipped without a GPU): cuDNN and rnnkit's own engine on the GPU agree with the CPU reference
(which runs the compiled kernels where they build); CUDA tensors never reach the compiled CPU kernels."""

from __future__ import annotations

import pytest
import torch

import rnnkit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

KINDS = {
    "rnn": lambda **kw: rnnkit.RNN(5, 7, **kw),
    "lstm": lambda **kw: rnnkit.LSTM(5, 7, **kw),
    "gru": lambda **kw: rnnkit.GRU(5, 7, **kw),
    "gru-before": lambda **kw: rnnkit.GRU(5, 7, reset="before", **kw),
}


def _run(layer: torch.nn.Module, x: torch.Tensor, lengths):
    x = x.clone().requires_grad_()
    out, h = layer(x, lengths=lengths)
    h = h if isinstance(h, tuple) else (h,)
    (out.square().sum() + sum(t.sum() for t in h)).backward()
    return [out.detach(), *(t.detach() for t in h), x.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("engine", ["auto", "own", "compiled"])
@pytest.mark.parametrize("lengths", [None, [6, 2, 4]])
def test_cuda_matches_cpu(kind, engine, lengths, monkeypatch):
    torch.manual_seed(0)
    # CUDA tensors never reach the CPU (C++) kernels: engine="compiled" runs the own path on the GPU
    real_apply = rnnkit.engine.compiled._CompiledFn.apply

    def cpu_only(kind_, xp, *args):
        assert xp.device.type == "cpu", "a CUDA tensor reached the compiled CPU kernel"
        return real_apply(kind_, xp, *args)

    monkeypatch.setattr(rnnkit.engine.compiled._CompiledFn, "apply", cpu_only)
    cpu = KINDS[kind](num_layers=2, bidirectional=True, dtype=torch.float64)
    gpu = KINDS[kind](num_layers=2, bidirectional=True, dtype=torch.float64, device="cuda", engine=engine)
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    for a, b in zip(_run(cpu, x, lengths), _run(gpu, x.cuda(), lengths), strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-7, atol=1e-9)
