"""What ``model.onnx.json`` says: each graph's input and output names, dtypes and shapes, and the steps from a raw
series to a series classifier's graph (``input_steps``). Shapes as in :mod:`rnnkit.export`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.export.graphs import _input_stage, _no_step_reason, _recurrent_core
from rnnkit.export.recurrence import _cell_spec
from rnnkit.tasks.classifier import SequenceClassifier
from rnnkit.tasks.ensemble import Ensemble
from rnnkit.tasks.generator import SequenceGenerator

EXPORT_FORMAT = "rnnkit-onnx"


def _io(name: str, dtype: str, shape: list[int | str]) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def _specs(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per graph (``sequence``, ``step``): inputs and outputs as ``{"name", "dtype", "shape"}`` lists."""
    if isinstance(model, Ensemble):  # the members' inputs and outputs, one sequence graph
        return {"sequence": _specs(model.members[0])["sequence"]}
    cfg = model.config
    core = _recurrent_core(model)
    spec = _cell_spec(core)  # refuses cores that cannot be exported, with the reason
    L, H = core.num_layers, core.hidden_size
    state_in = [_io(name, "float32", [L, "B", H]) for name in spec.state]  # h (and c for an LSTM)
    state_out = [_io(s["name"] + "_out", "float32", s["shape"]) for s in state_in]
    if isinstance(model, SequenceGenerator):
        ids_seq, ids_step = _io("ids", "int64", ["B", "T"]), _io("ids", "int64", ["B"])
        cond: list[dict[str, Any]] = []
        if cfg.num_conditions:
            cond = [_io("category", "int64", ["B"])]
        elif cfg.condition_dim:
            cond = [_io("condition", "float32", ["B", cfg.condition_dim])]
        V = cfg.vocab_size
        return {
            "sequence": {
                "inputs": [ids_seq, _io("lengths", "int64", ["B"]), *cond],
                "outputs": [
                    _io("logits", "float32", ["B", "T", V]),
                    *[_io(s["name"] + "_n", "float32", s["shape"]) for s in state_in],
                ],
            },
            "step": {
                "inputs": [ids_step, *cond, *state_in],
                "outputs": [_io("logits", "float32", ["B", V]), *state_out],
            },
        }
    embed, F = _input_stage(model)
    name, size = ("logits", cfg.num_classes) if isinstance(model, SequenceClassifier) else ("outputs", cfg.num_outputs)
    if embed is not None:
        seq_in, step_in = _io("ids", "int64", ["B", "T"]), _io("ids", "int64", ["B"])
    else:
        seq_in, step_in = _io("inputs", "float32", ["B", "T", F]), _io("inputs", "float32", ["B", F])
    specs = {
        "sequence": {
            "inputs": [seq_in, _io("lengths", "int64", ["B"])],
            "outputs": [_io(name, "float32", ["B", size])],
        }
    }
    if _no_step_reason(model) is None:
        specs["step"] = {"inputs": [step_in, *state_in], "outputs": [_io(name, "float32", ["B", size]), *state_out]}
    return specs


def _example(spec: dict[str, Any], vocab_size: int) -> Tensor:
    """An example input for tracing: B = 2, T = 3 (neither 0 nor 1, so neither is specialised)."""
    shape = [{"B": 2, "T": 3}.get(s, s) if isinstance(s, str) else s for s in spec["shape"]]
    if spec["name"] == "lengths":
        return torch.tensor([3, 2])
    if spec["dtype"] == "int64":
        return torch.full(shape, 4 if spec["name"] == "ids" else 0, dtype=torch.long).clamp(max=max(vocab_size - 1, 0))
    return torch.zeros(shape)


def kernel_spec(ridge: Any) -> dict[str, Any]:
    """The kernel graph of a series run with a ridge (``--kernels``): raw series and lengths in, logits out."""
    C, K = ridge.kernels.channels, int(ridge.coef.shape[1])
    return {
        "inputs": [_io("series", "float32", ["B", "T", C]), _io("lengths", "int64", ["B"])],
        "outputs": [_io("logits", "float32", ["B", K])],
    }


def series_input_steps(config: dict[str, Any]) -> list[dict[str, Any]]:
    """What a series classification run does to a raw series ``(L, C)`` before its graph reads it, in order — the
    ``input_steps`` of ``model.onnx.json`` (an empty list for other runs), so the graph can be fed without rnnkit:

    1. ``{"downsample": f}``: every ``f`` consecutive steps averaged into one (the last over the steps it has),
       ``L' = ⌈L / f⌉`` (left out when ``f = 1``);
    2. ``{"series_norm": "zscore" | "both"}``: each series z-normalised per channel over its own steps (population
       std; a constant channel only centred); ``"both"`` puts those ``C`` channels first and the raw ones after
       (left out for ``"none"``);
    3. ``{"standardize": {"mean": [...], "std": [...]}}``: ``(x − mean_c) / std_c`` per channel of the result.
    """
    scaler = config.get("scaler")
    if config.get("app") != "classify-series" or not isinstance(scaler, dict):
        return []
    steps: list[dict[str, Any]] = []
    if int(config.get("downsample", 1)) > 1:
        steps.append({"downsample": int(config["downsample"])})
    if config.get("series_norm", "none") != "none":  # runs saved before --series-norm: none
        steps.append({"series_norm": config["series_norm"]})
    steps.append({"standardize": {"mean": list(scaler["mean"]), "std": list(scaler["std"])}})
    return steps
