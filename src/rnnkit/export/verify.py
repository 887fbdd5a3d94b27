"""Check an export in onnxruntime: the graphs against the PyTorch model on random inputs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.data.vocab import BOS
from rnnkit.export.writer import _paths
from rnnkit.masks import length_mask
from rnnkit.tasks.generator import SequenceGenerator


def verify_kernels(ridge: nn.Module, output: str | Path, *, lengths: tuple[int, ...] = (1, 5, 12), seed: int = 0):
    """Max ``|ONNX − PyTorch|`` of a series run's kernel graph (``<stem>.kernels.onnx``) on random series of each
    length in ``lengths`` (in the data's units, one padded batch), against the ridge's own logits."""
    import numpy as np
    import onnxruntime as ort

    from rnnkit.tasks.kernels import padded_chunks

    gen = np.random.default_rng(seed)
    C = ridge.kernels.channels
    mean, std = ridge.channel_mean.numpy(), ridge.channel_std.numpy()
    series = [gen.standard_normal((n, C)).cumsum(0) * std + mean for n in lengths]  # (L_i, C) each
    x, lens = padded_chunks(series, C, mean, std)[0]  # standardized, as the run reads them
    raw, _ = padded_chunks(series, C)[0]  # in the data's units, as the graph reads them
    with torch.no_grad():
        ref = ridge(x, lens).numpy()  # (B, K)
    sess = ort.InferenceSession(str(_paths(output)["kernels"]), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"series": raw.numpy(), "lengths": lens.numpy()})[0]
    return float(np.abs(got - ref).max())


def verify_export(model: nn.Module, output: str | Path, *, lengths: tuple[int, ...] = (1, 5, 12), seed: int = 0):
    """Max ``|ONNX − PyTorch|`` of the graphs at ``output`` on random inputs of each length in ``lengths``.

    The sequence graph is compared with ``model(batch)`` on a padded batch (one row per length); the step graph,
    fed one element at a time, with the same (classifier: the last step's logits; generator: every step's logits,
    starting from the sequence graph's state after ``BOS``). Needs ``onnxruntime``.
    """
    import numpy as np
    import onnxruntime as ort

    from rnnkit.data.batching import Batch

    paths = _paths(output)
    model = copy.deepcopy(model).cpu().float().eval()
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    T, B = max(lengths), len(lengths)
    lens = torch.tensor(lengths)
    generator = isinstance(model, SequenceGenerator)
    tokens = cfg.vocab_size > 0
    if tokens:
        x = torch.randint(4, cfg.vocab_size, (B, T), generator=gen)
        if generator:
            x[:, 0] = BOS
        x = x.masked_fill(~length_mask(lens, T), 0)  # (B, T) padded with PAD
    else:
        x = torch.randn(B, T, cfg.input_features, generator=gen)
        x = x * length_mask(lens, T).unsqueeze(2)  # (B, T, F), zero past each end
    cond = None
    if generator and cfg.num_conditions:
        cond = torch.randint(0, cfg.num_conditions, (B,), generator=gen)
    elif generator and cfg.condition_dim:
        cond = torch.randn(B, cfg.condition_dim, generator=gen)
    with torch.no_grad():
        ref = model(Batch(x, lens, None, cond))[0]
    feeds = {"ids" if tokens else "inputs": x.numpy(), "lengths": lens.numpy()}
    if cond is not None:
        feeds["category" if cfg.num_conditions else "condition"] = cond.numpy()
    seq = ort.InferenceSession(str(paths["sequence"]), providers=["CPUExecutionProvider"])
    out = seq.run(None, feeds)
    worst = float(np.abs(out[0] - ref.numpy()).max())
    if not paths["step"].exists():
        return worst
    step = ort.InferenceSession(str(paths["step"]), providers=["CPUExecutionProvider"])
    names = [i.name for i in step.get_inputs()]
    n_state = sum(n in ("h", "c") for n in names)
    if generator:
        first = seq.run(None, {**feeds, "ids": x[:, :1].numpy(), "lengths": np.ones(B, np.int64)})  # BOS
        state = first[1:]
        for t in range(1, T):
            got = step.run(None, _step_feeds(names, x[:, t].numpy(), cond, state))
            logits, state = got[0], got[1:]
            rows = (lens > t).numpy()
            worst = max(worst, float(np.abs(logits[rows] - ref[:, t].numpy()[rows]).max()))
        return worst
    L, H = model.core.num_layers, model.core.hidden_size
    for b in range(B):
        state = [np.zeros((L, 1, H), np.float32) for _ in range(n_state)]
        for t in range(int(lens[b])):
            got = step.run(None, _step_feeds(names, x[b : b + 1, t].numpy(), None, state))
            logits, state = got[0], got[1:]
        worst = max(worst, float(np.abs(logits[0] - ref[b].numpy()).max()))
    return worst


def _step_feeds(names: list[str], x_t, cond: Tensor | None, state: list) -> dict[str, Any]:
    feeds = {names[0]: x_t}
    rest = names[1:]
    if cond is not None:
        feeds[rest[0]] = cond.numpy()
        rest = rest[1:]
    feeds.update(dict(zip(rest, state, strict=True)))
    return feeds
