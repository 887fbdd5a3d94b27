"""Task models — one interface, ``forward(batch) -> (outputs, loss)`` — and the registries the CLI reads.

``TASKS`` maps a task name to its model class; ``MODELS`` (in :mod:`rnnkit.tasks.registry`) maps ``--model`` names
to recurrent cores. :func:`build_model` rebuilds any task model from its saved :class:`ModelConfig`.
"""

from __future__ import annotations

from torch import nn

from rnnkit.tasks.base import RecurrentTaskModel
from rnnkit.tasks.classifier import SequenceClassifier
from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.ensemble import Ensemble
from rnnkit.tasks.generator import SequenceGenerator
from rnnkit.tasks.inputs import InputEncoder
from rnnkit.tasks.registry import MODELS, build_core, register_model
from rnnkit.tasks.regressor import SequenceRegressor
from rnnkit.tasks.seq2seq import Seq2Seq, collate_pairs
from rnnkit.tasks.tagger import SequenceTagger

__all__ = [
    "MODELS",
    "TASKS",
    "Ensemble",
    "InputEncoder",
    "ModelConfig",
    "RecurrentTaskModel",
    "Seq2Seq",
    "SequenceClassifier",
    "SequenceGenerator",
    "SequenceRegressor",
    "SequenceTagger",
    "build_core",
    "build_model",
    "collate_pairs",
    "register_model",
]

TASKS: dict[str, type[nn.Module]] = {
    "classify": SequenceClassifier,
    "generate": SequenceGenerator,
    "regress": SequenceRegressor,
    "forecast": SequenceRegressor,
    "tag": SequenceTagger,
    "seq2seq": Seq2Seq,
}
"""Task name → model class; every class takes a :class:`ModelConfig`."""


def build_model(config: ModelConfig) -> nn.Module:
    """The task model that ``config`` describes (unknown task or model names raise ValueError)."""
    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; choose one of: {', '.join(sorted(TASKS))}")
    if config.ensemble != 1:
        return Ensemble(config, build_model)  # K members, each built by this function with ensemble=1
    return TASKS[config.task](config)
