"""Declared models of the files rnnkit reads back from a run folder (pydantic v2), checked before any use.

A file that does not match is refused in one line naming the file, the field and what was expected
(``RUN/config.json: field model.hidden_size: Input should be greater than or equal to 1 (got 0)``), instead of a
``KeyError`` deep inside a command. The models describe what every rnnkit since 0.1.0 writes: unknown extra keys
are kept (a kind's own sections), missing required sections and wrong types are not.

- :class:`RunConfigFile` — ``config.json`` (format tag, ``model``, ``train``, ``data``, the vocabulary, classes);
- :class:`VocabSection` — a vocabulary as :meth:`rnnkit.data.Vocab.to_dict` writes it (``vocab``, seq2seq's
  ``target_vocab``);
- :class:`ForecastSection` — a forecast run's columns, window, scaler and split;
- :class:`SplitFile` — ``split.json`` (:class:`TextSplitFile`: an ``lm`` run's).

This module imports nothing from the rest of :mod:`rnnkit.runs`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rnnkit.checkpoint import validate_model

__all__ = ["ForecastSection", "RunConfigFile", "SplitFile", "TextSplitFile", "VocabSection", "validate_file"]

SIZE = 2**20  # no saved size beyond a million: a hand-edited config cannot ask for a model of 10^11 units


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=False)


class ModelSection(_Open):
    """``config.json``'s ``model``: the task model's config (:class:`rnnkit.tasks.ModelConfig`)."""

    task: str = Field(min_length=1)
    model: str = Field(min_length=1)
    hidden_size: int = Field(ge=1, le=SIZE)
    num_layers: int = Field(ge=1, le=64)
    vocab_size: int = Field(default=0, ge=0, le=SIZE)
    input_features: int = Field(default=0, ge=0, le=SIZE)
    num_classes: int = Field(default=0, ge=0, le=SIZE)
    embed_dim: int = Field(default=0, ge=0, le=SIZE)
    bidirectional: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    window: int | None = Field(default=None, ge=1, le=SIZE)


class VocabSection(_Open):
    """A vocabulary: its unit, specials and symbols (unique), and the optional maximum item length."""

    unit: Literal["char", "word"] = "char"
    fold_ascii: bool = False
    specials: list[str] = Field(default_factory=list)
    symbols: list[str]
    max_len: int | None = Field(default=None, ge=1)

    @field_validator("symbols")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        return _unique_list(v)


class ScalerSection(_Open):
    """A forecast run's per-column standardization (``mean``, ``std > 0``, one each per column)."""

    mean: list[float] = Field(min_length=1)
    std: list[float] = Field(min_length=1)

    @model_validator(mode="after")
    def _matching(self) -> ScalerSection:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values, std {len(self.std)}; expected one each per column")
        if not all(math.isfinite(m) for m in self.mean) or not all(math.isfinite(v) and v > 0 for v in self.std):
            raise ValueError("expected finite means and finite positive standard deviations")
        return self


class SeriesSplitSection(_Open):
    """A forecast run's chronological split: ``0 < train_end ≤ val_end ≤ n``."""

    n: int = Field(ge=1)
    train_end: int = Field(ge=1)
    val_end: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> SeriesSplitSection:
        if not self.train_end <= self.val_end <= self.n:
            raise ValueError(f"expected train_end ≤ val_end ≤ n, got {self.train_end}, {self.val_end}, {self.n}")
        return self


class ForecastSection(_Open):
    """``config.json``'s ``forecast``: what a forecast run needs to read, scale and score a series."""

    columns: list[str] = Field(min_length=1)
    target: int = Field(ge=0)
    context: int = Field(ge=1, le=SIZE)
    horizon: int = Field(ge=1, le=SIZE)
    strategy: Literal["direct", "recursive"]
    relative: bool
    season: int = Field(ge=1, le=SIZE)
    scaler: ScalerSection
    split: SeriesSplitSection
    mase_scale: float = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _columns(self) -> ForecastSection:
        if self.target >= len(self.columns):
            raise ValueError(f"target {self.target} is not one of the {len(self.columns)} columns")
        if len(self.scaler.mean) != len(self.columns):
            raise ValueError(f"the scaler has {len(self.scaler.mean)} columns, the run {len(self.columns)}")
        return self


class KernelsSection(_Open):
    """A series classifier's kernel ridge (``--kernels``): its features, seed and file in the run folder."""

    features: int = Field(ge=84)
    seed: int
    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.safetensors$")  # a file name inside the run folder, no path


class DtwSection(_Open):
    """A series classifier's DTW member (``--dtw-steps``): the length it reads series at and its file."""

    steps: int = Field(ge=1)
    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.safetensors$")  # a file name inside the run folder, no path


class NgramSection(_Open):
    """A generator's count member (``--ngram-order``): the longest context of symbols and its file in the folder."""

    order: int = Field(ge=1, le=8)
    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.safetensors$")  # a file name inside the run folder, no path


class RunConfigFile(_Open):
    """``config.json`` of a run folder."""

    format: Literal["rnnkit-run"]
    format_version: int = Field(default=1, ge=1)
    rnnkit_version: str | None = None
    app: str | None = None
    model: ModelSection
    train: dict[str, Any]
    data: dict[str, Any]
    vocab: VocabSection | None = None
    target_vocab: VocabSection | None = None  # seq2seq: the outputs' symbols
    classes: list[str] | None = None
    forecast: ForecastSection | None = None  # forecast runs
    kernels: KernelsSection | None = None  # series classifiers with a kernel ridge
    dtw: DtwSection | None = None  # series classifiers with a DTW member beside the ridge
    ngram: NgramSection | None = None  # generators with a count member

    @field_validator("classes")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _unique_list(v)

    @field_validator("train")
    @classmethod
    def _finite(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"train.{key} must be a finite number")
        return v

    @model_validator(mode="after")
    def _sections_agree(self) -> RunConfigFile:
        if self.model.vocab_size and self.vocab is None:
            raise ValueError("vocab: expected the vocabulary (the model reads symbols), found none")
        if self.model.task == "classify" and self.classes is None:
            raise ValueError("classes: expected the list of class names of a classify run, found none")
        return self


class SplitFile(_Open):
    """``split.json``: which items went to train / validation / test."""

    seed: int | None = None
    train: list[Any] | None = None
    val: list[Any] | None = None
    test: list[Any] | None = None


class TextSplitFile(SplitFile):
    """``split.json`` of an ``lm`` run: the sha256 of the training text and the test part's character span."""

    data_sha256: str | None = None
    test: tuple[int, int] | None = None  # type: ignore[assignment]  # [start, end) characters

    @field_validator("test")
    @classmethod
    def _span(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 0 <= v[0] <= v[1]:
            raise ValueError(f"expected a span [start, end) with 0 <= start <= end, got {list(v)}")
        return v


def _unique_list(v: list[str]) -> list[str]:
    seen: set[str] = set()
    for item in v:
        if item in seen:
            raise ValueError(f"expected unique names, {item!r} appears twice")
        seen.add(item)
    return v


def validate_file(model: type[BaseModel], data: Any, path: Path) -> Any:
    """``data`` (a file's parsed JSON) checked against ``model``; returns it unchanged, or raises ``ValueError``:
    ``PATH: field a.b: what was expected (got ...)`` (:func:`rnnkit.checkpoint.validate_model`)."""
    return validate_model(model, data, path)
