"""Cost per training step of name-model candidates as a ratio to rnnkit 0.1.0's defaults (docs/defaults-names.md).

Forward, backward and an AdamW step over 8 batches of 64 names of embedded:country, every candidate interleaved in
one process with one torch thread, median of 4 repeats after a warm-up. Ratios only: run it under
``taskset -c 0``; absolute times on a shared machine mean nothing.

    taskset -c 0 python benchmarks/names_cost.py
    taskset -c 0 python benchmarks/names_cost.py "classify ngram" "generate 2 layers H=384"  # these (and the bases)
"""

import statistics
import sys
import time

import torch

from rnnkit.data import Vocab, collate_classification, collate_generation, default_names
from rnnkit.tasks import ModelConfig, build_model
from rnnkit.train import WeightAverage

torch.set_num_threads(1)
data = default_names("country")
vocab = Vocab.build(data.items)
ids = [vocab.encode(s) for s in data.items[: 64 * 8]]
labels = data.label_ids()[: 64 * 8]
V, C = len(vocab), len(data.classes)


def cfg(task, **kw):
    base = dict(task=task, vocab_size=V, embed_dim=64, hidden_size=256)
    if task == "classify":
        base.update(model="gru", num_classes=C, bidirectional=True, dropout=0.4)
    else:
        base.update(model="lstm", num_conditions=C, dropout=0.1)
    base.update(kw)
    return ModelConfig(**base)


cands = {
    "classify base": cfg("classify"),
    "classify last+max": cfg("classify", pool="last+max"),
    "classify lstm": cfg("classify", model="lstm"),
    "classify 2 layers": cfg("classify", num_layers=2),
    "generate base": cfg("generate"),
    "generate 2 layers": cfg("generate", num_layers=2),
    "generate 2 layers H=384": cfg("generate", num_layers=2, hidden_size=384),
    "generate 2 layers H=448": cfg("generate", num_layers=2, hidden_size=448),
    "generate 2 layers H=512": cfg("generate", num_layers=2, hidden_size=512),
    "classify base + ema": cfg("classify"),
    "generate 2 layers H=384 + ema": cfg("generate", num_layers=2, hidden_size=384),
    "classify ngram 64": cfg("classify", ngram_filters=64),  # fourth session: the n-gram branch beside the GRU
    "generate 2 layers H=384 E=128": cfg("generate", num_layers=2, hidden_size=384, embed_dim=128),
}
if sys.argv[1:]:  # names starting with one of the arguments, and the two references
    cands = {k: c for k, c in cands.items() if k.endswith(" base") or k.startswith(tuple(sys.argv[1:]))}
models = {k: build_model(c) for k, c in cands.items()}
opts = {k: torch.optim.AdamW(m.parameters(), 1e-3) for k, m in models.items()}
# --ema: the weight average's update after every optimizer step (rnnkit.train.WeightAverage)
averages = {k: WeightAverage(m, 0.999) for k, m in models.items() if k.endswith("+ ema")}
batches = []
for j in range(0, len(ids), 64):
    batches.append(
        (
            collate_classification(ids[j : j + 64], labels[j : j + 64]),
            collate_generation(ids[j : j + 64], labels[j : j + 64]),
        )
    )
times = {k: [] for k in models}
for _rep in range(5):
    for k, m in models.items():
        t0 = time.perf_counter()
        for bc, bg in batches:
            _, loss = m(bc if k.startswith("classify") else bg)
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            if k in averages:
                averages[k].update()
        times[k].append(time.perf_counter() - t0)
med = {k: statistics.median(v[1:]) for k, v in times.items()}
for k in med:
    ref = med["classify base"] if k.startswith("classify") else med["generate base"]
    print(f"{k}: {med[k] * 1000 / len(batches):.1f} ms/step, ratio {med[k] / ref:.2f}")
