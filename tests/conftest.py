"""Suite-wide settings.

Under pytest-xdist (``-n 2``: one worker per core, see pyproject's addopts) each worker keeps torch to one
intra-op thread, so the two workers do not oversubscribe the cores; the command line still picks its own
threads in subprocesses (``rnnkit.cli.pick_threads`` sees the busy CPUs).
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def series_files(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A TRAIN and a TEST ``.ts`` file of three classes of short series (``test_series_classify.train_test_files``),
    seeded by the requesting module's ``SERIES_SEED``."""
    from test_series_classify import train_test_files

    return train_test_files(tmp_path_factory.mktemp("series"), seed=request.module.SERIES_SEED)
