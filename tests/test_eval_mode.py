"""rnnkit.tasks.modes.eval_mode: eval mode inside the block, the module's own mode restored after it."""

from __future__ import annotations

import pytest
from torch import nn

from rnnkit.tasks.modes import eval_mode


@pytest.mark.parametrize("training", [True, False])
def test_eval_inside_and_the_mode_restored_after_the_block_and_after_an_error(training: bool) -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    net.train(training)
    with eval_mode(net) as inside:
        assert inside is net and not net.training and not net[1].training
    assert net.training is training and net[1].training is training
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        assert not net.training
        raise RuntimeError("boom")
    assert net.training is training and net[1].training is training
