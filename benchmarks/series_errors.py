"""Which test series of an aeon-shipped classification set each peer gets wrong, beside rnnkit run folders.

The leaderboard (``benchmarks/leaderboard.py``) reports accuracies; this script answers the question behind a gap
of one or two test series: do the strongest peers miss the same series? It fits aeon's MiniRocket, ROCKET, Hydra,
MultiRocket-Hydra (seeded), 1-NN DTW and 1-NN Euclidean distance on the set's TRAIN file, and reads any rnnkit
series-classification run folders given with ``--runs`` (trained on that set, e.g. by the leaderboard), and prints
one Markdown row per model and seed: accuracy and the indices of the test series it misses (0-based, in the TEST
file's order). The held-out sets (GunPoint, ItalyPowerDemand, JapaneseVowels) are refused: nothing is tuned on
them, not even by looking.

    python benchmarks/series_errors.py UnitTest
    python benchmarks/series_errors.py UnitTest --runs runs/board17/classify/UnitTest/default/seed*
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

HELD_OUT = ("GunPoint", "ItalyPowerDemand", "JapaneseVowels")


def peers(seed: int) -> dict[str, Callable[[], Any]]:
    """The aeon classifiers compared, each built with ``seed`` where it draws random numbers."""
    from aeon.classification.convolution_based import (
        HydraClassifier,
        MiniRocketClassifier,
        MultiRocketHydraClassifier,
        RocketClassifier,
    )
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    return {
        "MiniRocket": lambda: MiniRocketClassifier(random_state=seed),
        "ROCKET": lambda: RocketClassifier(random_state=seed),
        "Hydra": lambda: HydraClassifier(random_state=seed),
        "MultiRocket-Hydra": lambda: MultiRocketHydraClassifier(random_state=seed),
        "1-NN DTW": lambda: KNeighborsTimeSeriesClassifier(distance="dtw"),
        "1-NN Euclidean": lambda: KNeighborsTimeSeriesClassifier(distance="euclidean"),
    }


def row(name: str, seed: Any, predicted: np.ndarray, gold: np.ndarray) -> str:
    """``| name | seed | accuracy | missed indices |``."""
    missed = np.flatnonzero(predicted != gold).tolist()
    return f"| {name} | {seed} | {float(np.mean(predicted == gold)):.3f} | {', '.join(map(str, missed)) or '–'} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", help="an aeon-shipped classification set, e.g. UnitTest")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the randomised peers (default: 3)")
    ap.add_argument("--runs", nargs="*", default=[], help="rnnkit run folders trained on the set")
    args = ap.parse_args(argv)
    if args.set in HELD_OUT:
        print(f"{args.set} is held out for independent evaluation: not looked at here", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")  # numba's casting notes
    from aeon.datasets import load_classification

    X, y = load_classification(args.set, split="train")
    X_test, gold = load_classification(args.set, split="test")
    print(f"{args.set}: {len(y)} training and {len(gold)} test series\n")
    print("| model | seed | accuracy | test series missed |\n|---|---|---|---|")
    for seed in range(args.seeds):
        for name, make in peers(seed).items():
            if name.startswith("1-NN") and seed:  # deterministic: one row
                continue
            print(row(name, seed if not name.startswith("1-NN") else "–", make().fit(X, y).predict(X_test), gold))
    if args.runs:
        from rnnkit.runs.classify_series import series_probabilities
        from rnnkit.runs.folder import load_run

        for folder in args.runs:
            run = load_run(folder)
            probs = series_probabilities(run, X_test if isinstance(X_test, list) else np.asarray(X_test))
            predicted = np.array([run.classes[i] for i in probs.argmax(1)])
            print(row(f"rnnkit {folder}", run.config["data"]["seed"], predicted, np.asarray(gold)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
