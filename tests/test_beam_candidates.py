"""``Seq2Seq.beam_candidates`` (what ``rnnkit serve`` shows for a seq2seq run): the first candidate is
``beam_search``'s output (``greedy``'s for a beam of 1), the candidates are distinct, best first, at most ``beam``,
and every score is the teacher-forced log-probability of its output computed by ``forward`` (``Seq2Seq.score``), in
float64. A beam holding every candidate output finds the exhaustive best first.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from rnnkit.tasks.config import ModelConfig
from rnnkit.tasks.seq2seq import Seq2Seq, collate_pairs


def partly_trained(model: str, symbols: int, seed: int, steps: int = 30) -> Seq2Seq:
    """A float64 model after a few Adam steps on reversal over ``symbols`` letters (flat enough that the beam's
    candidates differ in order and length)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    V = 4 + symbols
    cfg = ModelConfig(
        task="seq2seq", model=model, vocab_size=V, target_vocab_size=V, embed_dim=4, hidden_size=5,
        bidirectional=True, attention=True, dropout=0.0,
    )  # fmt: skip
    m = Seq2Seq(cfg).double()
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    for _ in range(steps):
        src = [[rng.randrange(4, V) for _ in range(rng.randint(1, 3))] for _ in range(16)]
        _, loss = m(collate_pairs(src, [s[::-1] for s in src]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


@pytest.mark.parametrize("model", ["gru", "lstm", "rnn"])
def test_candidates_are_the_beams_outputs_with_their_teacher_forced_scores(model: str) -> None:
    m = partly_trained(model, symbols=3, seed=1)
    sources = [[4], [5, 6], [6, 4, 5], [4, 4, 6, 5]]
    max_len = 5
    several = 0
    for beam in (1, 2, 3, 5):
        found = m.beam_candidates(sources, beam, max_len)
        best = m.greedy(sources, max_len) if beam == 1 else m.beam_search(sources, beam, max_len)
        assert len(found) == len(sources)
        for src, cands, top in zip(sources, found, best, strict=True):
            assert 1 <= len(cands) <= beam
            outs, scores = [c[0] for c in cands], [c[1] for c in cands]
            assert outs[0] == top
            assert len({tuple(o) for o in outs}) == len(outs), outs
            assert scores == sorted(scores, reverse=True)
            assert all(len(o) <= max_len for o in outs)
            reference = m.score([src] * len(outs), outs).tolist()  # forward(), not the decoding loop
            assert scores == pytest.approx(reference, rel=1e-10, abs=1e-12)
            several += len(cands) > 1
    assert several > 0  # the test has teeth: some beams found more than one candidate
    assert not m.training


def test_a_beam_holding_every_output_puts_the_exhaustive_best_first() -> None:
    m = partly_trained("gru", symbols=2, seed=0)
    alphabet, max_len = [4, 5], 3
    every = [list(c) for n in range(max_len + 1) for c in itertools.product(alphabet, repeat=n)]
    sources = [[4], [5, 4], [4, 4, 5]]
    found = m.beam_candidates(sources, len(every), max_len)
    for src, cands in zip(sources, found, strict=True):
        scores = m.score([src] * len(every), every)
        assert cands[0][0] == every[int(scores.argmax())]
        assert all(c[0] in every for c in cands)


def test_bad_widths_are_refused() -> None:
    m = partly_trained("gru", symbols=2, seed=0, steps=1)
    with pytest.raises(ValueError, match="beam"):
        m.beam_candidates([[4]], 0, 3)
    with pytest.raises(ValueError, match="max_len"):
        m.beam_candidates([[4]], 2, -1)
