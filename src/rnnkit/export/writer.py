"""Write the ONNX files of a model or a run: the graphs through ``torch.onnx.export(dynamo=True)``, and the JSON
beside them (:mod:`rnnkit.export` describes the files).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit import __version__
from rnnkit.checkpoint import write_bytes_atomic, write_json_atomic
from rnnkit.export.graphs import (
    _EnsembleGraph,
    _GeneratorGraph,
    _GeneratorStep,
    _KernelGraph,
    _ManyToOneGraph,
    _ManyToOneStep,
)
from rnnkit.export.specs import EXPORT_FORMAT, _example, _specs, kernel_spec, series_input_steps
from rnnkit.tasks.classifier import SequenceClassifier
from rnnkit.tasks.ensemble import Ensemble
from rnnkit.tasks.generator import SequenceGenerator
from rnnkit.tasks.regressor import SequenceRegressor

ONNX_NOTE = "ONNX export needs the onnx extra: pip install 'rnnkit[onnx]'"


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's warnings (deprecations, 'torchvision is not installed') for one export."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export_graph(module: nn.Module, spec: dict[str, Any], vocab_size: int) -> bytes:
    """One graph as serialized ONNX bytes, dynamic in every ``"B"``/``"T"`` dimension of ``spec``."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ValueError(f"{ONNX_NOTE} (missing module {error.name})") from None
    dims = {"B": torch.export.Dim("B", min=1), "T": torch.export.Dim("T", min=1)}
    args = tuple(_example(s, vocab_size) for s in spec["inputs"])
    dynamic = [{i: dims[s] for i, s in enumerate(x["shape"]) if isinstance(s, str)} for x in spec["inputs"]]
    # a graph module has fixed leading parameters and maybe *args, whose shapes torch.export takes as one tuple
    fixed, varargs = _signature_of(module)
    shapes = (*dynamic[:fixed], tuple(dynamic[fixed:])) if varargs and len(dynamic) > fixed else tuple(dynamic)
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                verbose=False,
                input_names=[s["name"] for s in spec["inputs"]],
                output_names=[s["name"] for s in spec["outputs"]],
                dynamic_shapes=tuple(shapes),
            )
    except Exception as error:  # the exporter's messages run to pages; the cause stays chained for RNNKIT_DEBUG=1
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ValueError(f"torch.onnx.export failed (torch {torch.__version__}): {first}") from error
    return program.model_proto.SerializeToString()


def _signature_of(module: nn.Module) -> tuple[int, bool]:
    """How many fixed positional parameters ``module.forward`` has, and whether ``*args`` follow them."""
    kinds = [p.kind for p in inspect.signature(module.forward).parameters.values()]
    return kinds.count(inspect.Parameter.POSITIONAL_OR_KEYWORD), inspect.Parameter.VAR_POSITIONAL in kinds


def _paths(output: str | Path) -> dict[str, Path]:
    out = Path(output)
    if out.suffix != ".onnx":
        raise ValueError(f"--output must name a .onnx file (the step graph and a JSON go beside it), got {output!r}")
    if out.is_dir():
        raise ValueError(f"--output {output} is a folder; name the .onnx file to write")
    stem = out.with_suffix("")
    return {
        "sequence": out,
        "step": Path(f"{stem}.step.onnx"),
        "kernels": Path(f"{stem}.kernels.onnx"),
        "ngram": Path(f"{stem}.ngram.safetensors"),
        "dtw": Path(f"{stem}.dtw.safetensors"),
        "json": Path(f"{out}.json"),
    }


def export_model(model: nn.Module, output: str | Path, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export a :class:`SequenceClassifier`, :class:`SequenceRegressor`, :class:`SequenceGenerator` or an
    :class:`~rnnkit.tasks.Ensemble` of classifiers / regressors to ONNX.

    Writes ``output`` (the whole-sequence graph), ``<stem>.step.onnx`` (one-direction recurrent cores; not for
    LSTM-FCN or ensembles) and ``<output>.json`` (the description returned; ``extra`` is merged into it, e.g. the
    vocabulary). The model is copied to the CPU in eval mode first; the caller's module is not changed. See the
    module docstring for the graphs' names and shapes.
    """
    info, blobs = _model_blobs(model, output, extra)
    _write_export(info, blobs, _paths(output), stale=("step",))
    return info


def _model_blobs(
    model: nn.Module, output: str | Path, extra: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The ONNX graphs of ``model`` (graph name → bytes) and the JSON describing them, nothing written yet."""
    if not isinstance(model, (SequenceClassifier, SequenceRegressor, SequenceGenerator, Ensemble)):
        raise TypeError(
            "export_model takes a SequenceClassifier, SequenceRegressor, SequenceGenerator or Ensemble, "
            f"got {type(model).__name__}"
        )
    paths = _paths(output)
    specs = _specs(model)
    model = copy.deepcopy(model).cpu().float().eval()
    vocab_size = model.config.vocab_size
    if isinstance(model, SequenceGenerator):
        graphs = {"sequence": _GeneratorGraph(model), "step": _GeneratorStep(model)}
    elif isinstance(model, Ensemble):
        graphs = {"sequence": _EnsembleGraph(model)}
    else:
        graphs = {"sequence": _ManyToOneGraph(model)}
        if "step" in specs:
            graphs["step"] = _ManyToOneStep(model)
    blobs = {name: _export_graph(graphs[name], spec, vocab_size) for name, spec in specs.items()}
    info: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "rnnkit_version": __version__,
        "torch_version": torch.__version__,
        "opset": _opset(blobs["sequence"]),
        "task": model.config.task,
        "model": model.config.model,
        **({"ensemble": model.config.ensemble} if isinstance(model, Ensemble) else {}),
        "graphs": {name: {"file": paths[name].name, **spec} for name, spec in specs.items()},
        **(extra or {}),
    }
    return info, blobs


def _write_export(info: dict[str, Any], blobs: dict[str, bytes], paths: dict[str, Path], stale: tuple[str, ...]):
    """Write every graph, remove the ``stale`` graphs this export does not have (an earlier export's would not
    match), then the JSON once, last."""
    for name, blob in blobs.items():
        write_bytes_atomic(paths[name], blob)
    for name in stale:
        if name not in blobs and paths[name].exists():
            paths[name].unlink()
    write_json_atomic(paths["json"], info)


def _opset(blob: bytes) -> int | None:
    import onnx

    proto = onnx.load_from_string(blob)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def export_run(run: Any, output: str | Path | None = None) -> dict[str, Any]:
    """Export a loaded run (:func:`rnnkit.runs.load_run`) to ``output`` (default ``RUN/model.onnx``).

    The JSON beside it also holds the run's vocabulary and classes, for a generator which category is which, and
    for a series classifier the steps from a raw series to the graph's inputs (:func:`series_input_steps`).
    Returns that JSON's content with ``"paths"`` (the files written) added.
    """
    from rnnkit.runs.series_kernels import load_kernels, load_nearest
    from rnnkit.runs.text_counts import load_counts

    ridge = load_kernels(run)  # a series run's kernel ridge (--kernels), or None
    nearest = load_nearest(run) if ridge is not None else None  # and its DTW member (--dtw-steps), or None
    counts = load_counts(run) if run.task in ("classify", "generate") else None  # a text run's count member
    output = Path(output) if output is not None else Path(run.path) / "model.onnx"
    extra: dict[str, Any] = {"run": str(Path(run.path).resolve())}
    if run.vocab is not None:
        extra["vocab"] = run.vocab.to_dict()  # specials (ids 0-3), then symbols from id 4 on
    if run.classes:
        extra["classes"] = list(run.classes)
    steps = series_input_steps(run.config)
    if steps:
        extra["input_steps"] = steps
    paths = _paths(output)
    info, blobs = _model_blobs(run.model, output, extra)
    if ridge is not None:
        info = _add_kernel_graph(info, blobs, ridge, paths)
    if nearest is not None:
        info = _add_nearest(info, blobs, nearest, paths)
    if counts is not None:
        info = _add_counts(info, blobs, counts, paths)
    _write_export(info, blobs, paths, stale=("step", "kernels", "ngram", "dtw"))  # every file, then the JSON once
    info["paths"] = [str(paths[g]) for g in info["graphs"]] + [str(paths["json"])]
    for member in ("dtw", "ngram"):  # the members' tables, before the JSON
        if member in info:
            info["paths"].insert(-1, str(paths[member]))
    return info


def _add_nearest(info: dict[str, Any], blobs: dict[str, bytes], nearest: Any, paths: dict[str, Path]) -> dict:
    """A series run's DTW member as ``<stem>.dtw.safetensors`` (added to ``blobs``) and ``info`` with how the run
    averages it with the kernel ridge described (:mod:`rnnkit.tasks.elastic`)."""
    from safetensors.torch import save

    blobs["dtw"] = save(nearest.state_dict(), metadata={"format": "rnnkit-dtw"})
    kernels = dict(info["kernels"])
    kernels["combine"] = (
        "probabilities = (1 - weight) * softmax(sequence logits) + weight * ((1 - dtw.weight) * "
        "softmax(kernels logits) + dtw.weight * p_dtw)"
    )
    return {
        **info,
        "kernels": kernels,
        "dtw": {
            "file": paths["dtw"].name,
            "weight": float(nearest.weight),
            "reads": "each series alone at its own length (L, C), in its own units, unpadded (padding would change "
            "its distances); the last window of `factor` steps averages the steps it has",
            "p_dtw": "p_dtw = softmax(temperature * (-d_k / scale)), d_k the DTW distance (squared differences "
            "summed over channels per cell, no window) from the series - standardized as (x - channel_mean) / "
            "channel_std, then every `factor` steps averaged into one - to the nearest reference[i, :lengths[i]] "
            "of class k (labels[i] == k); -inf for a class without one (rnnkit.tasks.elastic)",
        },
    }


def _add_counts(info: dict[str, Any], blobs: dict[str, bytes], counts: Any, paths: dict[str, Path]) -> dict:
    """A text run's count member as ``<stem>.ngram.safetensors`` (added to ``blobs``) and ``info`` with the
    mixture described (:mod:`rnnkit.export`, :mod:`rnnkit.tasks.counts`)."""
    from safetensors.torch import save

    blobs["ngram"] = save(counts.state_dict(), metadata={"format": "rnnkit-ngram"})
    classify = hasattr(counts, "temperature")  # a CountClassifier
    model = counts.counts if classify else counts
    described = {
        "file": paths["ngram"].name,
        "order": model.order,
        "weight": float(counts.weight),
        "p_counts": "p_counts(x | context): interpolated Witten-Bell over the trie of contexts (category or class, "
        "x[t-1], x[t-2], ...): p_k = (count_k + types_k * p_(k-1)) / (total_k + types_k) from a uniform p over "
        "the vocabulary, down to the longest context seen; level k's rows are the sorted level{k}.keys = "
        "parent_row * width + column (width = max(vocab size, categories)), its counts the CSR table "
        "level{k}.indptr / .symbols / .counts (rnnkit.tasks.counts)",
    }
    if classify:
        described.update(
            temperature=float(counts.temperature),
            combine="probabilities = (1 - weight) * softmax(logits) + weight * softmax_c(temperature * "
            "(log((class_counts[c] + 1) / (sum(class_counts) + C)) + sum_t log p_counts(x[t] | c, x[<t]))), "
            "the targets x of [BOS, symbols..., EOS]; a class with class_counts 0 scores -inf",
        )
    else:
        described["combine"] = "probabilities = (1 - weight) * softmax(logits) + weight * p_counts"
    return {**info, "ngram": described}


def _add_kernel_graph(info: dict[str, Any], blobs: dict[str, bytes], ridge: Any, paths: dict[str, Path]) -> dict:
    """A series run's kernel ridge as the graph ``kernels`` (added to ``blobs``, written as
    ``<stem>.kernels.onnx``) and ``info`` with it described, and how the run averages it with the networks
    (:mod:`rnnkit.export`)."""
    spec = kernel_spec(ridge)
    blobs["kernels"] = _export_graph(_KernelGraph(ridge), spec, 0)
    weight = float(ridge.weight)
    return {
        **info,
        "graphs": {**info["graphs"], "kernels": {"file": paths["kernels"].name, **spec}},
        "kernels": {
            "weight": weight,
            "reads": "each series as it is, (L, C) in its own units, zero-padded to T; not input_steps",
            "combine": "probabilities = (1 - weight) * softmax(sequence logits) + weight * softmax(kernels logits)",
        },
    }
