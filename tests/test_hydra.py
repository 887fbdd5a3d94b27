"""Hydra's competing kernels (rnnkit.tasks.hydra) against a hand loop over groups, kernels and steps in float64;
padding, scaling, state; and their part in a series run's kernel ridge (--hydra)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error, rnnkit_main
from rnnkit import cli
from rnnkit.runs.folder import load_run
from rnnkit.tasks.hydra import CompetingKernels
from rnnkit.tasks.kernels import KernelRidge, RandomKernels, padded_chunks


def _series(n: int, channels: int, lengths: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    return [g.standard_normal((int(g.integers(*lengths)), channels)).cumsum(0) for _ in range(n)]


def _hand_features(mod: CompetingKernels, s: np.ndarray) -> np.ndarray:
    """Unscaled features by explicit loops (float64): for each dilation, input (series, then its difference),
    group and step, the kernel with the largest response adds it to its soft count, the one with the smallest
    adds 1 to its hard count; then √max(f, 0)."""
    h, k = mod.half, mod.per_group
    out = []
    for i, d in enumerate(mod.dilations.tolist()):
        for j in range(2):
            mask = mod.channel_mask[2 * i + j].double().numpy()  # (G/2, C)
            w = mod.weight[2 * i + j, :, 0].double().numpy()  # (G/2·k, 9)
            for g in range(h):
                x = s @ mask[g]  # (L,): the group's channel sum
                if j == 1:
                    x = x[1:] - x[:-1]  # L − 1 steps
                n = len(x)
                soft, hard = np.zeros(k), np.zeros(k)
                for t in range(n):
                    taps = [x[t + (m - 4) * d] if 0 <= t + (m - 4) * d < n else 0.0 for m in range(9)]
                    r = [sum(w[g * k + q, m] * taps[m] for m in range(9)) for q in range(k)]
                    soft[int(np.argmax(r))] += max(r)
                    hard[int(np.argmin(r))] += 1.0
                out.extend([*soft, *hard])
    return np.sqrt(np.maximum(np.array(out), 0.0))


@pytest.mark.parametrize("channels", [1, 3])
def test_features_equal_a_hand_loop(channels: int) -> None:
    series = _series(3, channels, (20, 30), seed=channels)
    mod = CompetingKernels(channels, groups=4, per_group=3).draw(series, seed=5)
    assert mod.plan() == [1, 2]  # mean length in 20..29: ⌊log2((L̄ − 1) / 8)⌋ = 1
    assert mod.num_features == 2 * 3 * 4 * 2
    w = mod.weight[:, :, 0]
    torch.testing.assert_close(w.sum(-1), torch.zeros_like(w[..., 0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(w.abs().sum(-1), torch.ones_like(w[..., 0]))
    for s in series:
        mine = mod(torch.from_numpy(s).unsqueeze(0)).numpy()[0]  # float64 input: float64 features
        np.testing.assert_allclose(mine, _hand_features(mod, s), rtol=1e-10, atol=1e-10)


def test_padding_changes_nothing_and_the_scaling_keeps_zeros() -> None:
    series = _series(7, 2, (12, 70), seed=1)
    mod = CompetingKernels(2, groups=8).fit(series, seed=0)
    batch = torch.cat([mod(x, n) for x, n in padded_chunks(series, 2)])  # one padded batch, lengths 12..69
    raw = CompetingKernels(2, groups=8).draw(series, seed=0)
    for s, f in zip(series, batch, strict=True):
        alone = mod(torch.from_numpy(s.astype(np.float32)).unsqueeze(0))[0]
        torch.testing.assert_close(f, alone, rtol=1e-5, atol=1e-5)
        u = raw(torch.from_numpy(s.astype(np.float32)).unsqueeze(0))[0]  # unscaled: (f − μ)/σ where f ≠ 0
        expected = torch.where(u != 0, (u - mod.mu) / mod.sigma, torch.zeros_like(u))
        torch.testing.assert_close(alone, expected)
        assert torch.all(alone[u == 0] == 0)  # a kernel that never won stays exactly 0
    # the scaling's statistics: over the training series' unscaled features
    U = torch.cat([raw(x, n).double() for x, n in padded_chunks(series, 2)])
    torch.testing.assert_close(mod.mu.double(), U.mean(0), rtol=1e-5, atol=1e-6)
    sigma = U.std(0, unbiased=False) + (U == 0).double().mean(0) ** 4 + 1e-8
    torch.testing.assert_close(mod.sigma.double(), sigma, rtol=1e-5, atol=1e-6)


def test_fit_is_seeded_and_the_ridge_state_round_trips_with_and_without_competing_kernels() -> None:
    series = _series(10, 1, (40, 41))
    labels = [i % 2 for i in range(10)]

    def ridge(seed: int, groups: int = 16) -> KernelRidge:
        return KernelRidge(RandomKernels(1, 168), 2, CompetingKernels(1, groups) if groups else None).fit(
            series, labels, seed
        )

    a, b, c = ridge(1), ridge(1), ridge(2)
    assert torch.equal(a.competing.weight, b.competing.weight)
    assert not torch.equal(a.competing.weight, c.competing.weight)
    assert a.coef.shape == (168 + a.competing.num_features, 2)
    for fitted in (a, ridge(1, groups=0)):  # the state of a ridge without them: what runs before --hydra saved
        state = fitted.state_dict()
        assert any(key.startswith("competing.") for key in state) == (fitted.competing is not None)
        again = KernelRidge.from_state(state)
        again.load_state_dict(state)
        assert (again.competing is None) == (fitted.competing is None)
        np.testing.assert_array_equal(again.probabilities(series), fitted.probabilities(series))


def test_bad_groups_are_refused() -> None:
    for groups in (0, 3):
        with pytest.raises(ValueError, match="even number of groups"):
            CompetingKernels(1, groups)
    with pytest.raises(RuntimeError, match="fit has not run"):
        CompetingKernels(1, 4)(torch.zeros(1, 5, 1))


# ------------------------------------------------------------------------------------------------- in a run
TINY = ["--hidden", "8", "--epochs", "1", "--batch-size", "8", "--ensemble", "1", "--kernels", "168"]


SERIES_SEED = 30  # the data of the conftest's series_files fixture


def test_hydra_zero_is_the_random_kernels_alone_as_runs_before_the_option(
    tmp_path: Path, series_files: tuple[str, str]
) -> None:
    from rnnkit.runs import classify_series as cs
    from rnnkit.runs.series_kernels import load_kernels

    train, test = series_files
    out = tmp_path / "h0"
    assert cli.main(["train", "--task", "classify", "--data", train, "--test-data", test, *TINY, "--hydra", "0",
                     "--kernel-pooling", "ppv", "--out", str(out)]) == 0  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["kernels"]["hydra"] == 0 and config["kernels"]["pooling"] == "ppv"
    run = load_run(out)
    assert load_kernels(run).competing is None and load_kernels(run).kernels.pools == 1
    part = cs.load_series(test, "test")
    before = cs.series_probabilities(run, part.X)
    # a folder an earlier release wrote has no "hydra" and no "pooling" key (and its kernels.safetensors no
    # "kernels.stretch", as a PPV-only state here): it reads as no competing kernels, PPV alone
    del config["kernels"]["hydra"], config["kernels"]["pooling"]
    (out / "config.json").write_text(json.dumps(config))
    np.testing.assert_array_equal(cs.series_probabilities(load_run(out), part.X), before)
    assert cli.main(["evaluate", str(out)]) == 0


def test_odd_groups_or_hydra_without_kernels_get_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, series_files: tuple[str, str]
) -> None:
    train, _ = series_files
    for value, words in (("3", "even number"), ("-2", "--hydra"), ("8 --kernels 0", "--kernels 0 turns off")):
        out = tmp_path / f"odd{value.split()[0]}"
        code, o, err = rnnkit_main(capsys, "train", "--task", "classify", "--data", train, *TINY, "--hydra",
                                   *value.split(), "--out", out)  # fmt: skip
        assert_one_line_error(code, o, err, words)
        assert not out.exists()
