"""ONNX export of a run's model: a whole-sequence graph and, for one-direction cores, a step graph with explicit state.

Shape symbols: B batch, T time, F real input features, L layers, D directions, H hidden size, C classes,
K regression outputs, V vocabulary, E condition features. ``B`` and ``T`` are dynamic in every graph; the others
are fixed by the run. All floats are float32, ids and lengths int64.

``rnnkit export RUN`` (or :func:`export_run`) writes three files, ``model.onnx`` by default (``--output`` names it):

``model.onnx`` — the whole-sequence graph. Inputs: ``ids`` ``(B, T)`` (token runs; ``inputs`` ``(B, T, F)`` for
real-valued ones), ``lengths`` ``(B,)`` (each in ``[1, T]``, padding on the right), and for a conditional
generator ``category`` ``(B,)`` (or ``condition`` ``(B, E)``). Outputs:

- classifier: ``logits`` ``(B, C)`` (regressor: ``outputs`` ``(B, K)``), from each sequence's last valid state
  of every top-layer direction (or the masked mean / max of its outputs, as the classifier's ``pool`` says) —
  exactly ``model(batch)``; for an LSTM-FCN / MLSTM-FCN (the series default) from
  that state beside the convolutional branch's pooled features; for an ensemble (``train --ensemble K``) the
  average of its K members in one graph: ``logits = log(mean_k softmax(logits_k))`` (their softmax is the mean
  of the members' probabilities, as ``rnnkit predict`` gives), ``outputs`` the mean of the members' outputs;
- generator: ``logits`` ``(B, T, V)`` for the next symbol after every position, and the state after each
  sequence's last valid step, ``h_n`` ``(L, B, H)`` (LSTM: also ``c_n``). Read ``[BOS, prefix...]`` with it, then
  continue with the step graph; as ``SequenceGenerator.sample`` does, never pick PAD, BOS or UNK (ids 0, 1, 3)
  and stop at EOS (2).

``model.step.onnx`` — one time step (not written for bidirectional cores, LSTM-FCN or ensembles: a reverse
direction, a convolution over time and K members' average read the whole sequence). Inputs: ``ids`` ``(B,)`` (or
``inputs`` ``(B, F)``), a generator's ``category`` / ``condition`` as above, ``h`` ``(L, B, H)`` (LSTM: and ``c``).
Outputs: ``logits`` ``(B, V)`` of the next symbol (generator) or ``(B, C)`` of the sequence read so far (classifier;
``outputs`` ``(B, K)`` for a regressor), and the new state ``h_out`` (LSTM: and ``c_out``). A classifier starts from
zero states; after the last element its logits equal the whole-sequence graph's.

``model.kernels.onnx`` — only for a series classifier with a kernel ridge (``train --kernels``, the default):
inputs ``series`` ``(B, T, C)`` (each series as it is, in its own units, zero-padded; not ``input_steps``) and
``lengths`` ``(B,)``; output ``logits`` ``(B, K)`` of the ridge. The run's probabilities are
``(1 − w) · softmax(model.onnx logits) + w · softmax(kernels logits)``, ``w`` the JSON's ``kernels.weight``.

``model.dtw.safetensors`` — only for a series classifier with a DTW member beside its ridge (``train --dtw-steps
N``): its reference series, labels, scaling and temperature (:mod:`rnnkit.tasks.elastic`; the formula
in the JSON's ``dtw``). The ridge's part of the run's probabilities above is then
``(1 − v) · softmax(kernels logits) + v · p_dtw``, ``v`` the JSON's ``dtw.weight``.

``model.ngram.safetensors`` — only for a text classify or generate run with a count member (``train
--ngram-order N``, the default): its counts (:mod:`rnnkit.tasks.counts`; the tensors and the formula described in
the JSON's ``ngram``). A generator's next-symbol probabilities are ``(1 − w) · softmax(logits) + w · p_counts``,
``p_counts`` from the category and the symbols read so far (``BOS`` first); a classifier's class probabilities
``(1 − w) · softmax(logits) + w · softmax_c(τ · (log p(c) + Σ_t log p_counts(x_t | c, x_<t)))``; ``w`` and ``τ``
the JSON's ``ngram.weight`` and ``ngram.temperature``.

``model.onnx.json`` — these names, dtypes and shapes per graph, the ONNX opset, the run's vocabulary (``specials``
are ids 0–3: PAD, BOS, EOS, UNK; ``symbols`` take ids 4, 5, ...) and classes, so the graphs can be used without
rnnkit. The graphs take the model's own inputs and give its raw outputs: standardisation that a task app applies
to real-valued data around the model is not part of them; for a series classifier the JSON's ``input_steps`` say
what to do to a raw series first (downsampling, per-series normalisation, per-channel standardisation).

How: the recurrence is written as ``torch._higher_order_ops.scan`` over the layers' one-step functions
(:mod:`rnnkit.cells`) and exported with ``torch.onnx.export(dynamo=True)`` to an ONNX ``Scan``; lengths mask the
state (``where``), and a reverse direction reads each sequence reversed within its own length. Found on torch
2.13: exporting the layers as they are fails — the dynamo exporter unrolls rnnkit's Python loops at the example's
T, and its ONNX LSTM/GRU for the fused kernel fails in onnxruntime at any other T; the TorchScript exporter
(``dynamo=False``) exports the fused kernel with a dynamic T, but turns rnnkit's own BPTT engine (``gru-before``)
into a graph that is wrong even at the example's shape. ``scan`` gives every core (rnn, lstm, gru, gru-before)
with dynamic B and T; minGRU/minLSTM cores (:mod:`rnnkit.layers.minimal`) go through the same ``scan`` with their
cells' step form (state ``h`` only); an LSTM-FCN's LSTM branch goes through it too, its convolutional branch
(masked convolutions, batch norm from the running statistics, masked means) exports as it is. The window model
and per-step frame encoders are not exported.

The package, in the order its parts import one another: :mod:`~rnnkit.export.recurrence` (the recurrence as
``scan``), :mod:`~rnnkit.export.graphs` (the sequence and step graph modules of each task model),
:mod:`~rnnkit.export.specs` (what ``model.onnx.json`` says: names, dtypes, shapes, ``input_steps``),
:mod:`~rnnkit.export.writer` (:func:`export_model`, :func:`export_run`), :mod:`~rnnkit.export.verify`
(:func:`verify_export` in onnxruntime) and :mod:`~rnnkit.export.command` (``rnnkit export``).
"""

from rnnkit.export.command import add_cli
from rnnkit.export.recurrence import State as State
from rnnkit.export.specs import EXPORT_FORMAT, series_input_steps
from rnnkit.export.verify import verify_export
from rnnkit.export.writer import ONNX_NOTE as ONNX_NOTE
from rnnkit.export.writer import export_model, export_run

__all__ = ["EXPORT_FORMAT", "add_cli", "export_model", "export_run", "series_input_steps", "verify_export"]
