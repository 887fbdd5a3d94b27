"""A real client, unchanged: a typical torch.nn training script run once with torch.nn and once with rnnkit's layers.

The script below has the shape of PyTorch's word-language-model example (``examples/word_language_model``):
``getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)``, ``init_hidden`` from ``next(self.parameters())``,
``repackage_hidden``, ``clip_grad_norm_``, a manual SGD step, saving the best model with ``torch.save(model, f)`` and
reloading it with ``torch.load(f, weights_only=True)`` and an allowlist of torch.nn classes, then
``flatten_parameters()``. The test swaps ``nn.LSTM/GRU/RNN`` for rnnkit's in the script's ``nn`` namespace and
nothing else; losses must be bitwise identical (same seed, float32, rnnkit's ``auto`` engine running torch's kernel:
the test turns the compiled kernels off, with which ``auto`` runs rnnkit's C++ kernel on CPU, equal to rounding —
tests/test_compiled_engine.py).
"""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F

import rnnkit

nn = torch.nn  # the script's namespace; the test replaces it


# ---------------------------------------------------------------------------------------------------- the script
class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder (as in PyTorch's example)."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ["LSTM", "GRU"]:
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.init_weights()
        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous()


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].view(-1)


def main(rnn_type, save_path, epochs=3, ntokens=17, bptt=6, lr=5.0, clip=0.25):
    torch.manual_seed(1111)
    corpus = torch.randint(ntokens, (600,), generator=torch.Generator().manual_seed(0))
    train_data = batchify(corpus[:400], 5)
    val_data = batchify(corpus[400:500], 2)
    test_data = batchify(corpus[500:], 2)
    model = RNNModel(rnn_type, ntokens, 8, 12, 2, dropout=0.2)
    criterion = nn.NLLLoss()
    losses = []

    def evaluate(data_source, bsz):
        model.eval()
        total_loss = 0.0
        hidden = model.init_hidden(bsz)
        with torch.no_grad():
            for i in range(0, data_source.size(0) - 1, bptt):
                data, targets = get_batch(data_source, i, bptt)
                output, hidden = model(data, hidden)
                hidden = repackage_hidden(hidden)
                total_loss += len(data) * criterion(output, targets).item()
        return total_loss / (len(data_source) - 1)

    best_val_loss = None
    for _epoch in range(epochs):
        model.train()
        hidden = model.init_hidden(5)
        for i in range(0, train_data.size(0) - 1, bptt):
            data, targets = get_batch(train_data, i, bptt)
            model.zero_grad()
            hidden = repackage_hidden(hidden)
            output, hidden = model(data, hidden)
            loss = criterion(output, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            losses.append(loss.item())
        val_loss = evaluate(val_data, 2)
        losses.append(val_loss)
        if not best_val_loss or val_loss < best_val_loss:
            with open(save_path, "wb") as f:
                torch.save(model, f)
            best_val_loss = val_loss
        else:
            lr /= 4.0
    # Load the best saved model: weights only, with torch.nn's classes and the script's own allowlisted
    allow = [RNNModel, nn.Dropout, nn.Embedding, nn.Linear, nn.LSTM, nn.GRU, nn.RNN]
    with open(save_path, "rb") as f, torch.serialization.safe_globals(allow):
        model = torch.load(f, weights_only=True)
        model.rnn.flatten_parameters()  # after load the rnn params are not a continuous chunk of memory
    test_loss = evaluate(test_data, 2)
    losses.append(test_loss)
    return losses, model


# ---------------------------------------------------------------------------------------------------- the test
@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU", "RNN_TANH"])
def test_word_language_model_script_runs_unchanged_on_rnnkit(rnn_type, tmp_path, monkeypatch):
    monkeypatch.setattr(rnnkit.engine.compiled, "rnn_extension", lambda: None)  # auto runs torch's kernel: bitwise
    want, torch_model = main(rnn_type, tmp_path / "torch.pt")
    assert type(torch_model.rnn).__module__ == "torch.nn.modules.rnn"

    patched = types.SimpleNamespace(**{k: getattr(torch.nn, k) for k in dir(torch.nn) if not k.startswith("__")})
    patched.LSTM, patched.GRU, patched.RNN = rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN
    monkeypatch.setattr(sys.modules[__name__], "nn", patched)
    got, ours = main(rnn_type, tmp_path / "rnnkit.pt")

    assert type(ours.rnn).__module__.startswith("rnnkit")  # the reload gave back rnnkit's layer
    assert all(math.isfinite(v) for v in got)
    assert got == want  # bitwise: every training, validation and (reloaded-model) test loss
