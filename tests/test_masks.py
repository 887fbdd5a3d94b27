"""rnnkit.masks.length_mask against a hand-written loop."""

import torch

from rnnkit.masks import length_mask


def test_length_mask_matches_loop_both_layouts():
    lengths = torch.tensor([3, 0, 5, 1])
    T = 5
    expected = torch.tensor([[t < int(n) for t in range(T)] for n in lengths])  # (B, T)
    assert torch.equal(length_mask(lengths, T), expected)
    assert torch.equal(length_mask(lengths, T, time_major=True), expected.T)
    assert length_mask(lengths, T).dtype == torch.bool
