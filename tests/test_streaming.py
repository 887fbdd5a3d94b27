"""Streaming: a sequence fed in pieces (stateful ``forward`` calls, ``step``) equals it fed whole; per-row state
reset; detaching; the stream batching of :mod:`rnnkit.data.stream`; the language model's stateful forward.

Everything runs in float64 on tiny layers, so "equal" means equal to ~1e-12.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import rnnkit.runs.lm  # noqa: F401  (registers the lm kind)
from rnnkit.data.batching import Batch
from rnnkit.data.stream import TokenStream, char_vocab, encode_text, synthetic_text
from rnnkit.data.vocab import UNK, Vocab
from rnnkit.layers import GRU, LSTM, RNN, detach_state, reset_state
from rnnkit.runs.lm import LanguageModel
from rnnkit.tasks import ModelConfig

I, H, B, T = 3, 5, 4, 11
CUTS = (0, 1, 4, 8, 11)  # pieces of 1, 3, 4 and 3 steps


def make_layer(kind: str, layers: int, batch_first: bool = True):
    torch.manual_seed(0)
    kw = {"num_layers": layers, "batch_first": batch_first, "dtype": torch.float64}
    if kind == "rnn":
        return RNN(I, H, **kw)
    if kind == "lstm":
        return LSTM(I, H, **kw)
    return GRU(I, H, reset="before" if kind == "gru-before" else "after", **kw)


def close(a, b, what: str = "") -> None:
    if isinstance(a, tuple):
        for x, y in zip(a, b, strict=True):
            close(x, y, what)
        return
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=what)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "gru-before"])
def test_pieces_equal_whole_forward_and_backward(kind: str, layers: int):
    """forward(piece, hx) chained over pieces == forward(whole): outputs, final state and input gradients."""
    layer = make_layer(kind, layers)
    x = torch.randn(B, T, I, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    whole, h_whole = layer(x)
    (g_whole,) = torch.autograd.grad(whole.square().sum(), x)

    outs, state = [], None
    for a, b in itertools.pairwise(CUTS):
        out, state = layer(x[:, a:b], state)  # the state to pass with the next piece
        outs.append(out)
    pieces = torch.cat(outs, dim=1)
    close(pieces, whole, f"{kind} L={layers} outputs")
    close(state, h_whole, f"{kind} L={layers} final state")
    (g_pieces,) = torch.autograd.grad(pieces.square().sum(), x)
    close(g_pieces, g_whole, f"{kind} L={layers} input gradient through the carried state")


@pytest.mark.parametrize("kind", ["lstm", "gru-before"])
def test_step_by_step_equals_whole_time_major(kind: str):
    layer = make_layer(kind, 2, batch_first=False)
    x = torch.randn(T, B, I, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    whole, h_whole = layer(x)
    state = None
    for t in range(T):
        y, state = layer.step(x[t], state)
        close(y, whole[t], f"step {t}")
    close(state, h_whole)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_reset_state_starts_chosen_rows_afresh(kind: str):
    """Two streams in a batch: row 1 starts a new stream at the second piece, the other rows carry on."""
    layer = make_layer(kind, 2)
    g = torch.Generator().manual_seed(3)
    first = torch.randn(B, 5, I, dtype=torch.float64, generator=g)
    second = torch.randn(B, 6, I, dtype=torch.float64, generator=g)
    _, state = layer(first)
    reset = torch.tensor([False, True, False, True])
    out, final = layer(second, reset_state(state, reset))

    whole, h_whole = layer(torch.cat([first, second], dim=1))
    alone, h_alone = layer(second)  # a fresh stream: zero initial state
    for b in range(B):
        want = alone[b] if reset[b] else whole[b, 5:]
        close(out[b], want, f"row {b} outputs")
        want_h = h_alone if reset[b] else h_whole
        if isinstance(final, tuple):
            close(tuple(f[:, b] for f in final), tuple(w[:, b] for w in want_h), f"row {b} state")
        else:
            close(final[:, b], want_h[:, b], f"row {b} state")


def test_reset_state_with_initial_batch_dim_and_errors():
    state = torch.arange(24, dtype=torch.float64).view(2, 3, 4)  # (L, B, H)
    init = torch.full_like(state, -1.0)
    got = reset_state(state, torch.tensor([True, False, True]), initial=init)
    assert torch.equal(got[:, 1], state[:, 1])
    assert torch.equal(got[:, 0], init[:, 0]) and torch.equal(got[:, 2], init[:, 2])
    assert torch.equal(state, torch.arange(24, dtype=torch.float64).view(2, 3, 4)), "not modified in place"
    ctx = torch.ones(3, 2, 5)  # batch-first, e.g. the window model's context (B, W−1, I)
    got = reset_state(ctx, torch.tensor([False, True, False]), batch_dim=0)
    assert got[1].abs().sum() == 0 and torch.equal(got[0], ctx[0])
    assert reset_state(None, torch.tensor([True])) is None
    with pytest.raises(ValueError, match="1-D boolean"):
        reset_state(state, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="3 rows but the state"):
        reset_state(state, torch.tensor([True, False, True]), batch_dim=0)
    with pytest.raises(ValueError, match="initial holds 1 tensors"):
        reset_state((state, state), torch.tensor([True, False, True]), initial=(init,))


def test_detach_state_stops_gradients():
    layer = make_layer("lstm", 1)
    x = torch.randn(B, 4, I, dtype=torch.float64, requires_grad=True)
    _, state = layer(x)
    cut = detach_state(state)
    assert isinstance(cut, tuple) and all(not s.requires_grad for s in cut)
    close(cut, state)
    out, _ = layer(torch.randn(B, 3, I, dtype=torch.float64), cut)
    out.sum().backward()
    assert x.grad is None, "no gradient may flow back through a detached state"
    with pytest.raises(TypeError, match="tensor or a tuple"):
        detach_state("h")


# ---------------------------------------------------------------------------------------------------------- streams
def test_token_stream_is_batchify_in_chunks():
    ids = np.arange(1, 24)  # N = 23 → S = 22 // 3 = 7 steps per row, the last token is only a target
    stream = TokenStream(ids, batch_size=3, chunk=3)
    assert (stream.steps, len(stream), stream.tokens_used) == (7, 3, 21)
    chunks = list(stream)
    assert [c.inputs.shape[1] for c in chunks] == [3, 3, 1]
    inputs = torch.cat([c.inputs for c in chunks], dim=1)
    targets = torch.cat([c.targets for c in chunks], dim=1)
    for b in range(3):  # row b reads the contiguous text ids[7b : 7b + 7] and predicts the token after each
        assert inputs[b].tolist() == ids[7 * b : 7 * b + 7].tolist()
        assert targets[b].tolist() == ids[7 * b + 1 : 7 * b + 8].tolist()
    for c in chunks:
        assert c.inputs.dtype == torch.long and torch.equal(c.lengths, torch.full((3,), c.inputs.shape[1]))
    x, y = stream.pairs()
    assert x.tolist() == inputs.flatten().tolist() and y.tolist() == targets.flatten().tolist()
    assert [c.inputs.tolist() for c in stream] == [c.inputs.tolist() for c in chunks], "every pass is the same"
    assert len(TokenStream(ids, 3, 100)) == 1


def test_token_stream_errors():
    with pytest.raises(ValueError, match="too short for batch_size=4"):
        TokenStream([1, 2, 3, 4], 4, 2)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        TokenStream([1, 2, 3], 1, 0)
    with pytest.raises(ValueError, match="one sequence"):
        TokenStream(np.ones((2, 3), dtype=int), 1, 2)
    with pytest.raises(ValueError, match="integers"):
        TokenStream(np.ones(5), 1, 2)


def test_encode_text_matches_vocab_encode_and_synthetic_text():
    text = synthetic_text(500, seed=4)
    assert len(text) == 500 and text == synthetic_text(500, seed=4) and text != synthetic_text(500, seed=5)
    assert " " in text and "." in text
    vocab = Vocab.build([text[:400]])
    assert char_vocab(text[:400]) == vocab and char_vocab("Ab", fold_ascii=True) == Vocab.build(["Ab"], fold_ascii=True)
    ids = encode_text(text, vocab)
    assert ids.dtype == np.uint8
    assert ids.tolist() == vocab.encode(text)  # unknown characters → UNK in both
    assert "§" not in vocab and encode_text("e§", vocab).tolist() == [vocab.id_of("e"), UNK]
    with pytest.raises(ValueError, match="num_chars"):
        synthetic_text(0)


# ---------------------------------------------------------------------------------------------------------- the LM
@pytest.mark.parametrize("model", ["lstm", "gru", "window"])
def test_language_model_stateful_chunks_equal_whole(model: str):
    """LanguageModel.forward_stateful over chunks == one call on the whole stream == the generator's forward."""
    torch.manual_seed(5)
    cfg = ModelConfig(task="lm", model=model, vocab_size=12, embed_dim=4, hidden_size=6, num_layers=2, dropout=0.0)
    lm = LanguageModel(cfg).double().eval()
    ids = torch.randint(4, 12, (3, 15), generator=torch.Generator().manual_seed(6))
    tg = torch.randint(4, 12, (3, 15), generator=torch.Generator().manual_seed(7))
    whole = Batch(inputs=ids, lengths=torch.full((3,), 15), targets=tg)
    logits_whole, loss_whole, _ = lm.forward_stateful(whole)
    logits_plain, loss_plain = lm(whole)  # the generator's forward: the other path to the same numbers
    close(logits_whole, logits_plain)
    close(loss_whole, loss_plain)
    outs, state = [], None
    for a, b in ((0, 4), (4, 5), (5, 15)):
        piece = Batch(inputs=ids[:, a:b], lengths=torch.full((3,), b - a), targets=tg[:, a:b])
        logits, _, state = lm.forward_stateful(piece, state)
        outs.append(logits)
    close(torch.cat(outs, dim=1), logits_whole, f"{model} chunks vs whole")
    assert lm.state_batch_dim == (0 if model == "window" else 1)
