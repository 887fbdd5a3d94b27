"""rnnkit.dropout: PyTorch's dropout distribution with a cheaper CPU mask."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rnnkit.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_keep_mask_rate_and_independence(p: float):
    torch.manual_seed(0)
    n = 1_000_000
    keep = keep_mask((n,), p).double()
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(keep.mean().item() - (1 - p)) < 5 * sd
    # the two words of one 64-bit draw, and neighbouring draws, are uncorrelated
    for a, b in ((keep[0::2], keep[1::2]), (keep[:-2], keep[2:])):
        corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
        assert abs(corr) < 5 / math.sqrt(len(a))


def test_dropout_values_and_gradient_in_float64():
    """Each element is 0 or x / (1 − p); the gradient is the same mask times 1 / (1 − p) (F.dropout's)."""
    torch.manual_seed(1)
    p = 0.3
    x = (torch.rand(7, 5, 33, dtype=torch.float64) + 0.5).requires_grad_()
    y = dropout(x, p)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / (1 - p), rtol=1e-15, atol=0)
    assert 0 < kept.sum() < x.numel()
    g = torch.randn_like(x)
    y.backward(g)
    torch.testing.assert_close(x.grad, g * kept / (1 - p), rtol=1e-15, atol=0)
    # an odd element count: the last 64-bit draw's second word is unused
    assert dropout(torch.ones(3, 3), 0.5).shape == (3, 3)


def test_seeded_and_like_torch_at_the_edges():
    x = torch.randn(4, 6, 8)
    torch.manual_seed(3)
    a = dropout(x, 0.4)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.4))
    assert not torch.equal(a, dropout(x, 0.4))  # the generator moved on
    assert dropout(x, 0.4, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    ints = torch.ones(3, dtype=torch.int64)
    with pytest.raises(RuntimeError):  # PyTorch's own refusal for a tensor dropout cannot scale
        nn.functional.dropout(ints, 0.5, True)
    with pytest.raises(RuntimeError):
        dropout(ints, 0.5)


def test_module_is_a_torch_dropout():
    m = Dropout(0.25)
    assert isinstance(m, nn.Dropout) and repr(m) == repr(nn.Dropout(0.25)) and not m.state_dict()
    x = torch.randn(10, 20)
    torch.manual_seed(0)
    y = m(x)
    assert ((y == 0) | torch.isclose(y, x / 0.75)).all()
    assert torch.equal(m.eval()(x), x)
    inplace = Dropout(0.25, inplace=True).train()
    z = x.clone()
    assert inplace(z) is z  # in place: PyTorch's own
