"""Task models: padding invariance, the generator's loss by hand, greedy sampling against full forward passes."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.data.batching import IGNORE_INDEX, Batch
from rnnkit.data.vocab import BOS, EOS, UNK
from rnnkit.tasks import MODELS, ModelConfig, SequenceClassifier, SequenceGenerator, build_model

CORES = ["rnn", "lstm", "gru", "gru-before"]


def _tiny(task: str, model: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(task=task, model=model, embed_dim=4, hidden_size=6, dropout=0.0, **kw)
    return build_model(cfg).double().eval()


def test_registry_lists_every_core():
    assert set(CORES) <= set(MODELS)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model(ModelConfig(task="classify", model="nope", vocab_size=9, num_classes=2))


@pytest.mark.parametrize("model", CORES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_padding_never_changes_a_prediction(model, bidirectional):
    clf = _tiny("classify", model, vocab_size=12, num_classes=3, num_layers=2, bidirectional=bidirectional)
    seqs = [[5, 6, 7], [8], [9, 10, 11, 4, 5]]
    T = max(map(len, seqs)) + 2  # extra padding on every row
    inputs = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        inputs[i, : len(s)] = torch.tensor(s)
    lengths = torch.tensor([len(s) for s in seqs])
    batched, _ = clf(Batch(inputs, lengths))
    for i, s in enumerate(seqs):
        alone, _ = clf(Batch(torch.tensor([s]), torch.tensor([len(s)])))
        torch.testing.assert_close(batched[i], alone[0], rtol=0, atol=1e-12)
    # a different pad value in the padded tail (any id) changes nothing either
    noisy = inputs.clone()
    noisy[0, 3:] = 9
    torch.testing.assert_close(clf(Batch(noisy, lengths))[0], batched, rtol=0, atol=0)


def test_classifier_loss_is_mean_cross_entropy():
    clf = _tiny("classify", "gru", vocab_size=10, num_classes=4)
    batch = Batch(torch.tensor([[5, 6], [7, 0]]), torch.tensor([2, 1]), torch.tensor([3, 1]))
    logits, loss = clf(batch)
    logp = torch.log_softmax(logits, dim=1)
    assert math.isclose(loss.item(), -(logp[0, 3] + logp[1, 1]).item() / 2, rel_tol=1e-12)
    assert clf(Batch(batch.inputs, batch.lengths))[1] is None
    torch.testing.assert_close(clf.predict_proba(batch).sum(1), torch.ones(2, dtype=torch.float64))


def test_classifier_real_valued_inputs():
    clf = _tiny("classify", "lstm", input_features=3, num_classes=2)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    logits, _ = clf(Batch(x, torch.tensor([5, 2])))
    alone, _ = clf(Batch(x[1:, :2], torch.tensor([2])))
    torch.testing.assert_close(logits[1], alone[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["init", "input", "both"])
def test_generator_loss_equals_hand_computation(mode):
    gen = _tiny("generate", "lstm", vocab_size=9, num_conditions=2, condition_mode=mode)
    # items [5, 6] and [7]: inputs [BOS, s...], targets [s..., EOS], padded with IGNORE_INDEX
    inputs = torch.tensor([[BOS, 5, 6], [BOS, 7, 0]])
    targets = torch.tensor([[5, 6, EOS], [7, EOS, IGNORE_INDEX]])
    batch = Batch(inputs, torch.tensor([3, 2]), targets, torch.tensor([1, 0]))
    logits, loss = gen(batch)
    logp = torch.log_softmax(logits, dim=-1)
    picked = [logp[0, 0, 5], logp[0, 1, 6], logp[0, 2, EOS], logp[1, 0, 7], logp[1, 1, EOS]]
    expected = -sum(picked) / len(picked)  # mean NLL over the 5 real target symbols, EOS included
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-12)


def _greedy_by_forward(gen: SequenceGenerator, condition, prefix, max_len):
    """Reference decoder: re-run the whole forward pass on the growing sequence, take the argmax each time."""
    seq = [BOS, *prefix]
    while len(seq) - 1 < max_len:
        ids = torch.tensor([seq])
        cond = None if condition is None else torch.tensor([condition])
        logits, _ = gen(Batch(ids, torch.tensor([len(seq)]), None, cond))
        last = logits[0, -1].clone()
        last[[0, BOS, UNK]] = -float("inf")
        nxt = int(last.argmax())
        if nxt == EOS:
            break
        seq.append(nxt)
    return seq[1:]


@pytest.mark.parametrize("model", CORES)
def test_greedy_sampling_equals_argmax_of_full_forward_and_keeps_prefix(model):
    gen = _tiny("generate", model, vocab_size=11, num_conditions=3, num_layers=2)
    for cond, prefix in [(0, []), (2, [6, 7])]:
        got = gen.sample(cond, n=2, temperature=0, prefix=prefix, max_len=8)
        want = _greedy_by_forward(gen, cond, prefix, 8)
        assert got == [want, want]
        assert got[0][: len(prefix)] == prefix


def test_unconditional_sampling_respects_top_k_and_max_len():
    gen = _tiny("generate", "gru", vocab_size=10)
    g = torch.Generator().manual_seed(0)
    samples = gen.sample(None, n=20, temperature=1.5, top_k=1, max_len=5, generator=g)
    assert all(len(s) <= 5 for s in samples)
    assert samples == [gen.sample(None, n=1, temperature=0, max_len=5)[0]] * 20  # top-1 is argmax
    with pytest.raises(ValueError, match="unconditional"):
        gen.sample(1)


def test_vector_condition():
    gen = _tiny("generate", "rnn", vocab_size=10, condition_dim=3)
    assert len(gen.sample([0.1, 0.2, 0.3], n=2, max_len=4)) == 2
    with pytest.raises(ValueError, match="shape"):
        gen(Batch(torch.tensor([[BOS]]), torch.tensor([1]), None, torch.zeros(1, 2, dtype=torch.float64)))


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="at least 2 classes"):
        SequenceClassifier(ModelConfig(task="classify", vocab_size=10, num_classes=1))
    with pytest.raises(ValueError, match="bidirectional"):
        SequenceGenerator(ModelConfig(task="generate", vocab_size=10, bidirectional=True))
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({"task": "classify", "colour": "red"})


def test_input_encoder_refuses_ids_outside_the_vocabulary_and_integer_reals() -> None:
    from rnnkit.tasks import InputEncoder, ModelConfig

    tokens = InputEncoder(ModelConfig(vocab_size=6, embed_dim=3))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 6\)"):
        tokens(torch.tensor([[1, 6]]))
    reals = InputEncoder(ModelConfig(input_features=2))
    with pytest.raises(TypeError, match="floating-point"):
        reals(torch.zeros(1, 3, 2, dtype=torch.long))
