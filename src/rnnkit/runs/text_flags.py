"""The command-line flags of the text kinds (``rnnkit train --task classify|generate``), beside the common ones.

Each flag's range comes from :mod:`rnnkit.ranges`; a bad value is a usage error (one line, exit 2). A flag left out
is ``None`` in ``RunOptions.options`` and the kind's default (``rnnkit.runs.text.DEFAULTS``) applies.
"""

from __future__ import annotations

import argparse

from rnnkit.cliutil import ranged
from rnnkit.runs.kind import Flag
from rnnkit.tasks.classifier import pool_names

__all__ = ["TEXT_FLAGS"]


def _pool_arg(text: str) -> str:
    """``argparse`` type of ``--pool``: an unknown part is a usage error, one line, exit 2."""
    try:
        pool_names(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


TEXT_FLAGS: tuple[Flag, ...] = (
    Flag(
        "--max-items",
        {
            "type": ranged("max_items"),
            "default": None,
            "help": "classify/generate: train on a sample of this many items of --data (seeded; default: all); "
            "seq2seq/tag: use at most this many items (default: the task's)",
        },
    ),
    Flag(
        "--pool",
        {
            "type": _pool_arg,
            "default": None,
            "metavar": "P",
            "help": "classify: what summarises a name for the head: last (the last state of each direction), "
            "mean, max, or several joined by '+' (e.g. last+max; default: the task's)",
        },
    ),
    Flag(
        "--label-smoothing",
        {
            "type": ranged("label_smoothing"),
            "default": None,
            "help": "classify: label smoothing of the training loss (default: the task's)",
        },
    ),
    Flag(
        "--ngram-filters",
        {
            "type": ranged("ngram_filters"),
            "default": None,
            "metavar": "F",
            "help": "classify: F filters for each width 2-5 of character n-gram convolutions beside the "
            "recurrent core, max-pooled over the name (0 = none; default: the task's)",
        },
    ),
    Flag(
        "--ngram-buckets",
        {
            "type": ranged("ngram_buckets"),
            "default": None,
            "metavar": "N",
            "help": "classify on text: a linear model over the name's character 1-5-grams hashed into N rows, "
            "trained with the recurrent core and added to its logits (0 = none; default: the task's, 32768)",
        },
    ),
    Flag(
        "--ngram-dropout",
        {
            "type": ranged("ngram_dropout"),
            "default": None,
            "metavar": "P",
            "help": "classify: probability of dropping each n-gram of --ngram-buckets while training "
            "(default: the task's)",
        },
    ),
    Flag(
        "--ngram-order",
        {
            "type": ranged("ngram_order"),
            "default": None,
            "metavar": "N",
            "help": "classify/generate: a count model of the next symbol given the class or category and the "
            "last N symbols (interpolated Witten-Bell; classify: per class, by Bayes' rule), mixed with the "
            "network's probabilities with a share chosen on the validation part (0 = none; default: the task's, 4)",
        },
    ),
    Flag(
        "--token-dropout",
        {
            "type": ranged("token_dropout"),
            "default": None,
            "help": "character dropout: each training symbol becomes the unknown symbol with this probability "
            "(default: the task's)",
        },
    ),
    Flag(
        "--max-len",
        {
            "type": ranged("max_len"),
            "default": None,
            "help": "the most symbols an item may have; longer items are refused when training, evaluating and "
            "predicting (default: no limit)",
        },
    ),
)
"""The flags the text kinds add to ``rnnkit train`` (``RunKind.flags``)."""
