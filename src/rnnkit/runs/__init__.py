"""A run is a folder: train a model of one run kind into it, and load, evaluate, predict and sample from it.

- :mod:`rnnkit.runs.folder` — the folder's layout, claiming ``--out``, writing, finishing and loading it;
- :mod:`rnnkit.runs.options` — the run's options (:class:`RunOptions`) and the resume rules;
- :mod:`rnnkit.runs.registry` — every kind by name; plugins register through the entry-point group
  ``rnnkit.kinds``;
- :mod:`rnnkit.runs.kind` — the run-kind base class with its one train skeleton, and the commands over kinds;
- one module per kind: :mod:`~rnnkit.runs.text` (classify, generate), :mod:`~rnnkit.runs.tag`,
  :mod:`~rnnkit.runs.seq2seq`, :mod:`~rnnkit.runs.lm`, :mod:`~rnnkit.runs.classify_series`,
  :mod:`~rnnkit.runs.forecast`.

The command line (:mod:`rnnkit.cli`) is a thin layer over :func:`train_run`, :func:`load_run`,
:func:`evaluate_path`, :func:`predict_lines` and :func:`sample`.
"""

from __future__ import annotations

from rnnkit.runs.folder import (
    CONFIG_FILE,
    FORMAT_VERSION,
    METRICS_FILE,
    RUN_FORMAT,
    SPLIT_FILE,
    Run,
    begin_run,
    claim_out,
    finish_run,
    load_run,
    run_config,
    write_run_start,
)
from rnnkit.runs.kind import (
    KINDS,
    Flag,
    Prepared,
    RunKind,
    evaluate_path,
    kind_for,
    kind_of,
    load_kinds,
    predict_lines,
    register_kind,
    sample_run,
    summary_line,
    train_run,
)
from rnnkit.runs.options import (
    DEFAULTS,
    RunOptions,
    absolute_path,
    changed_settings,
    check_resume_options,
    restore_options,
)
from rnnkit.runs.text import (
    EMBEDDED,
    accuracy_line,
    bigram_nll,
    evaluate_run,
    predict,
    prepare_split,
    sample,
    saved_test_data,
)

resume_options = restore_options  # the name of rnnkit 0.1.0

__all__ = [
    "CONFIG_FILE",
    "DEFAULTS",
    "EMBEDDED",
    "FORMAT_VERSION",
    "KINDS",
    "METRICS_FILE",
    "RUN_FORMAT",
    "SPLIT_FILE",
    "Flag",
    "Prepared",
    "Run",
    "RunKind",
    "RunOptions",
    "absolute_path",
    "accuracy_line",
    "begin_run",
    "bigram_nll",
    "changed_settings",
    "check_resume_options",
    "claim_out",
    "evaluate_path",
    "evaluate_run",
    "finish_run",
    "kind_for",
    "kind_of",
    "load_kinds",
    "load_run",
    "predict",
    "predict_lines",
    "prepare_split",
    "register_kind",
    "resume_options",
    "run_config",
    "sample",
    "sample_run",
    "saved_test_data",
    "summary_line",
    "train_run",
    "write_run_start",
]
