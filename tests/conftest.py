"""Suite-wide settings.

Under pytest-xdist (``-n 2``: one worker per core, see pyproject's addopts) each worker keeps torch to one
intra-op thread, so the two workers do not oversubscribe the cores; the command line still picks its own
threads in subprocesses (``rnnkit.cli.pick_threads`` sees the busy CPUs).
"""

from __future__ import annotations

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
