"""The trainer: AdamW, gradient clipping, a warm-up LR schedule, early stopping, progress and resumable runs.

Any task model works: an ``nn.Module`` whose ``forward(batch) -> (outputs, loss)`` takes a
:class:`~rnnkit.data.batching.Batch`. Training data is a function ``epoch -> Iterable[Batch]`` (or a re-iterable
such as a list or a ``DataLoader``, whose sampler gets ``set_epoch(epoch)``), so the data order is a function of
``(seed, epoch)`` and a resumed run sees exactly the batches the uninterrupted run would have seen.

With ``out_dir`` set, :func:`fit` writes into that run folder::

    out_dir/
      checkpoint/          resumable state after every epoch (and at a mid-epoch stop); see train.checkpoints
      curve.csv            one row per completed epoch (rewritten atomically after each epoch)
      model.safetensors    the best weights (by the monitored validation metric), written when fit returns;
                           with TrainConfig.ema > 0 the weight average's (train.averaging), which is also what
                           every validation scores

Reproducibility: at the start of epoch ``e`` (0-based) the trainer reseeds python ``random``, numpy and torch from
``(seed, e)``; a mid-epoch resume restores the saved generator states instead. With the same seed on CPU, a run
that is interrupted and resumed ends with bitwise the same weights as an uninterrupted one.

Truncated BPTT (``TrainConfig.tbptt = (K1, K2)``, Sutskever's TBPTT(k1, k2)): the batches of an epoch are
consecutive pieces of ``B`` parallel streams (row ``b`` of each batch continues row ``b`` of the previous one, as
:class:`rnnkit.data.stream.TokenStream` yields them; no padding). The trainer cuts every batch into chunks of ``K1``
steps and takes one optimizer step per chunk. Each update

* uses the loss terms of the chunk's ``K1`` steps only (their mean, like an ordinary batch), and
* backpropagates through the last ``K2`` steps: the chunk and the ``K2 − K1`` steps before it, which are re-run with
  the current weights (and fresh dropout masks) from the detached state at their start; gradients stop there.

So the loss at the chunk's last step reaches ``K2`` steps back and its first ``K2 − K1 + 1``. The state (detached)
and the last ``K2 − K1`` steps' inputs are carried to the next chunk; an epoch starts from the model's initial state
(every pass over the streams restarts them), and a mid-epoch checkpoint saves the carried state, so a resumed run
continues exactly. ``K1 = K2 ≥ T`` is plain BPTT over each batch. The model needs
``forward_stateful(batch, state) -> (outputs, loss, state)`` (``state=None``: its initial state) and
``state_batch_dim`` (the batch axis of its state tensors; 1 for the layers' ``hx`` layout, the default).

Several processes (``torchrun``; see :mod:`rnnkit.distributed`): every process builds the same global batches and
trains on its rows, DDP averages the gradients, and only rank 0 writes the run folder.

The parts, one concept per module (imports point down this list, then to :mod:`rnnkit.checkpoint` for file I/O):

* :mod:`~rnnkit.train.loop` — :class:`Trainer` (epochs, validation, early stopping, best weights), :func:`fit`,
  :func:`evaluate`;
* :mod:`~rnnkit.train.averaging` — the exponential moving average of the weights (``TrainConfig.ema``), which
  validation, the best epoch and the saved weights use;
* :mod:`~rnnkit.train.step` — one optimizer step (forward, loss, NaN/inf guards, clipping, AdamW);
* :mod:`~rnnkit.train.checkpoints` — training checkpoints and the trainer's run folder (resume checks, curve.csv);
* :mod:`~rnnkit.train.progress` — the progress bar or log lines, epoch summaries, Ctrl-C as a stop request;
* :mod:`~rnnkit.train.tensorboard` — TensorBoard event files of curve.csv's numbers per step and epoch (callbacks);
* :mod:`~rnnkit.train.processes` — the trainer under torchrun (DDP, loss normalisation, agreed stops, RNG gathering);
* :mod:`~rnnkit.train.tbptt` — truncated BPTT: chunks of streams and the carried state;
* :mod:`~rnnkit.train.state` — (de)serialisation of trainer state: JSON with tensors, RNG states, their checks;
* :mod:`~rnnkit.train.settings` — :class:`TrainConfig`, :class:`TrainResult`, the lr schedule, seeding.
"""

from rnnkit.train.averaging import WeightAverage, ema_decay
from rnnkit.train.checkpoints import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    has_checkpoint,
    history_to_csv,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
)
from rnnkit.train.loop import Trainer, evaluate, fit
from rnnkit.train.settings import (
    CHECKPOINT_DIR,
    CURVE_FILE,
    RESUME_FIELDS,
    NonFiniteLossError,
    TrainConfig,
    TrainResult,
    lr_factor,
    seed_everything,
)
from rnnkit.train.state import capture_rng_state, restore_rng_state
from rnnkit.train.tensorboard import TensorBoardLogger, require_tensorboard

__all__ = [
    "CHECKPOINT_DIR",
    "CHECKPOINT_FORMAT",
    "CURVE_FILE",
    "RESUME_FIELDS",
    "Checkpoint",
    "NonFiniteLossError",
    "TensorBoardLogger",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "WeightAverage",
    "capture_rng_state",
    "ema_decay",
    "evaluate",
    "fit",
    "has_checkpoint",
    "history_to_csv",
    "load_checkpoint",
    "lr_factor",
    "read_checkpoint_state",
    "require_tensorboard",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
]
