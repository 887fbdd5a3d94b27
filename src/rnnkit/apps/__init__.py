"""Task apps: how the command line trains, evaluates and predicts for each task family beyond text
classify/generate (see :class:`rnnkit.runs.TaskApp`). Importing this package registers every app."""

from __future__ import annotations

from rnnkit.apps import forecast, lm, seq2seq, series, tag

__all__ = ["forecast", "lm", "seq2seq", "series", "tag"]
