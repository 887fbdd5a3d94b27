"""The task-level model config: everything needed to rebuild a task model, saved as ``config.json`` in a run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["ModelConfig"]

_ORIGINAL = {
    "ensemble": 1,
    "pool": "last",
    "label_smoothing": 0.0,
    "token_dropout": 0.0,
    "ngram_filters": 0,
    "ngram_buckets": 0,
    "ngram_dropout": 0.5,
}
"""Settings added after rnnkit 0.1.0 and the value every earlier model had: written to config.json only when
another value is set, so an older rnnkit still reads the runs that do not use them."""


@dataclass
class ModelConfig:
    """What a task model is made of (nanoGPT's ``GPTConfig`` idea): saved with the weights, rebuilt on load."""

    task: str = "classify"  # registered task: classify | generate | tag | seq2seq | regress | forecast
    model: str = "gru"  # recurrent core from rnnkit.tasks.registry.MODELS
    vocab_size: int = 0  # V: token inputs when > 0 (ids 0..3 are PAD, BOS, EOS, UNK)
    input_features: int = 0  # F: real-valued inputs (B, T, F) when vocab_size == 0
    num_classes: int = 0  # C: classes of a classifier
    embed_dim: int = 64  # E: token embedding size
    hidden_size: int = 128  # H: recurrent state size
    num_layers: int = 1  # L: stacked recurrent layers
    bidirectional: bool = False  # D = 2 (classifiers only: a generator reads left to right)
    dropout: float = 0.1  # on embeddings, between layers and before the head
    num_conditions: int = 0  # generator: number of categories it can be conditioned on (0 = none)
    condition_dim: int = 0  # generator: size of a real conditioning vector (0 = none)
    condition_mode: str = "both"  # generator: condition through the "init"ial state, every step's "input", or "both"
    window: int = 5  # W: inputs per window of the "window" model (ignored by recurrent cores)
    window_loss: str = "aggregate"  # classifier on "window": "sum" of per-window losses or loss of the "aggregate"
    num_outputs: int = 0  # K: real values predicted per sequence (regress, forecast: the horizon × targets)
    target_vocab_size: int = 0  # seq2seq: output symbols (ids 0..3 are PAD, BOS, EOS, UNK)
    attention: bool = False  # seq2seq: the decoder attends over the encoder's outputs at every step
    frame_encoder: str = ""  # per-step encoder applied to every element before the core ("" = none, "cnn")
    frame_shape: list[int] = field(default_factory=list)  # per-step tensor shape it reads, e.g. [C, H, W]
    ensemble: int = 1  # K members averaged (rnnkit.tasks.ensemble); 1 = one model, and no key in config.json
    pool: str = "last"  # classifier: what summarises the sequence, "last" state or "+"-joined last/mean/max
    label_smoothing: float = 0.0  # classifier: label smoothing of the training loss (evaluation is plain NLL)
    token_dropout: float = 0.0  # token inputs: each symbol becomes UNK with this probability while training
    ngram_filters: int = 0  # classifier: filters per width of the n-gram convolutions beside the core (0 = none)
    ngram_buckets: int = 0  # classifier on tokens: rows of the hashed n-gram bag added to the logits (0 = none)
    ngram_dropout: float = 0.5  # classifier: probability of dropping each n-gram of the bag while training

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # a setting at its original value has no key, so config.json stays as before the setting existed
        for key, original in _ORIGINAL.items():
            if d[key] == original:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from JSON; unknown keys are an error (a config from a newer or different tool)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"model config has unknown keys {unknown}; it was not written by this rnnkit version")
        return cls(**data)
