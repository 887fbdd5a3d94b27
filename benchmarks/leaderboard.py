"""The leaderboard of issue 16: rnnkit's default settings next to the tools a practitioner would pick instead, on
the same splits, in one run.

Sections (docs/leaderboard.md holds the method in full):

- ``classify``: every classification set shipped in the aeon wheel (``aeon/datasets/data/``) except the held-out
  ones (:data:`HELD_OUT`), on the set's own TRAIN/TEST split. rnnkit: ``rnnkit train --task classify --data TRAIN.ts
  --test-data TEST.ts`` (its defaults carve 20 % of TRAIN for validation / early stopping). Peers on the same TEST
  part, fitted on all of TRAIN: aeon's MiniRocketClassifier (seeded) and 1-NN DTW (deterministic).
- ``forecast``: embedded:sunspots, embedded:msft, embedded:ppg and the univariate series aeon ships. rnnkit: ``rnnkit
  train --task forecast`` (test MASE / sMAPE of the model, of the window model it trains beside it, of naive and
  seasonal-naive). Peer: pmdarima's ``auto_arima`` fitted on rnnkit's training part, forecasting the same test
  windows (rolling origin, same horizon, parameters fixed, state updated with each new observation).
- ``names``: embedded:country and embedded:gender classification (rnnkit default vs ``--model window`` vs the
  majority class) and country-conditioned generation (nats/char; default vs ``--model window`` vs the bigram model).

rnnkit is driven only through its command line (``python -m rnnkit train ... --out DIR``, then ``DIR/metrics.json``).
Every rnnkit row is the mean ± sample standard deviation over ``--seeds`` seeds (min–max is in the JSON).

    python benchmarks/leaderboard.py                         # everything, 3 seeds (run it on an idle machine)
    python benchmarks/leaderboard.py --quick                 # smoke run: one small set per section, 1 seed, 1 epoch
    python benchmarks/leaderboard.py --only classify --sets ArrowHead BasicMotions --seeds 5
    python benchmarks/leaderboard.py --markdown docs/leaderboard.md   # also write the tables into the doc
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tarfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

# Reserved for independent evaluation (DESIGN.md §5, issue 16): nothing is ever tuned on these sets, so they must
# never appear on the leaderboard that the defaults are chosen from. The harness refuses them everywhere.
HELD_OUT = frozenset({"GunPoint", "ItalyPowerDemand", "JapaneseVowels"})

START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"
SECTIONS = ("classify", "forecast", "names")
QUICK_SETS = {"classify": "UnitTest", "forecast": "Airline", "names": "gender"}
QUICK_ARGS = ["--epochs", "1", "--max-minutes", "0.1"]  # 1 epoch, and at most 6 s of training on a busy machine
SPREAD = "sample std"

# Forecasting: rnnkit's split and windows (src/rnnkit/apps/forecast.py, data/series.py), reproduced here so the
# peer is scored on exactly rnnkit's test windows; every row checks it by recomputing rnnkit's seasonal-naive MAE.
VAL_FRACTION = TEST_FRACTION = 0.15
DEFAULT_CONTEXT, DEFAULT_HORIZON = 64, 12
# auto_arima kept affordable: fitted once per series on at most the last ARIMA_MAX_FIT training values, a smaller
# order search than pmdarima's defaults (p, q ≤ 5; P, Q ≤ 2), and a time cap per series
ARIMA_MAX_FIT = 1000
ARIMA_LIMITS = {"max_p": 3, "max_q": 3, "max_P": 1, "max_Q": 1, "maxiter": 30}
ARIMA_TIMEOUT_S = 600


def check_not_held_out(name: str) -> None:
    """Refuse a held-out set (also its variants such as ``JapaneseVowels_eq``)."""
    base = name.split("/")[-1].removesuffix(".ts").removesuffix("_TRAIN").removesuffix("_TEST").removesuffix("_eq")
    # the held-out sets are kept for independent evaluation of the defaults the leaderboard chooses
    assert base not in HELD_OUT, f"{name} is held out for independent evaluation (issue 16): not on the leaderboard"


# ---------------------------------------------------------------------------------------------------------- data
def aeon_data_dir() -> Path:
    """``aeon/datasets/data`` of the installed aeon, found without importing it."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("aeon is not installed: pip install aeon")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def ts_header(path: Path) -> dict[str, str]:
    """The ``@key value`` lines of a .ts file's header (keys lower-cased)."""
    header: dict[str, str] = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.lower().startswith("@data"):
                break
            if line.startswith("@"):
                key, _, value = line[1:].partition(" ")
                header[key.lower()] = value.strip()
    return header


@dataclass
class ClassifySet:
    name: str
    train: Path
    test: Path
    equal_length: bool


def discover_classification_sets(data_dir: Path | None = None) -> list[ClassifySet]:
    """Every ``<Name>_TRAIN.ts`` / ``<Name>_TEST.ts`` pair with class labels in ``data_dir``, held-out sets excluded.

    Skipped: regression sets (``@targetLabel``), time-stamped files (``UnitTestTimeStamps``, a loader test with no
    TEST file) and the ``_eq`` equal-length copies of a set that is listed itself (PickupGestureWiimoteZ_eq) or held
    out (JapaneseVowels_eq). Sorted by file size, smallest first.
    """
    data_dir = aeon_data_dir() if data_dir is None else data_dir
    found = []
    for train in sorted(data_dir.glob("*/*_TRAIN.ts")):
        name = train.name.removesuffix("_TRAIN.ts")
        test = train.with_name(f"{name}_TEST.ts")
        if not test.is_file() or name.split("_eq")[0] in HELD_OUT:
            continue
        if name.endswith("_eq") and (data_dir / name.removesuffix("_eq")).is_dir():
            continue
        head = ts_header(train)
        if not head.get("classlabel", "false").lower().startswith("true"):
            continue
        if head.get("timestamps", "false").lower() == "true":
            continue
        equal = head.get("equallength", "true").lower() == "true"
        found.append(ClassifySet(name, train, test, equal))
    found.sort(key=lambda s: (s.train.stat().st_size + s.test.stat().st_size, s.name))
    for s in found:
        check_not_held_out(s.name)
    return found


@dataclass
class ForecastSet:
    name: str
    data: str  # what rnnkit's --data gets
    args: list[str] = field(default_factory=list)  # data description only: columns, the known season
    note: str = ""


def forecast_sets(data_dir: Path | None = None) -> list[ForecastSet]:
    """rnnkit's embedded series and the univariate series aeon ships (Longley: 16 yearly rows, not a series to
    forecast; the .tsf files are collections of many series; Daphnet/KDD are anomaly-detection data)."""
    d = aeon_data_dir() if data_dir is None else data_dir
    return [
        ForecastSet("sunspots", "embedded:sunspots", note="monthly, m=12 from the dates"),
        ForecastSet("msft", "embedded:msft", note="daily Close, m=5 (trading days) from the dates"),
        ForecastSet("ppg", "embedded:ppg", note="100 Hz, no calendar season: m=1"),
        ForecastSet("Airline", str(d / "Airline" / "Airline.csv"), note="monthly, m=12 from the dates"),
        ForecastSet(
            "Lynx",
            str(d / "Lynx" / "Lynx.csv"),
            note="yearly (the ~10-year cycle is not a calendar season): m=1; the unnamed index column (years) skipped",
        ),
        ForecastSet("ShampooSales", str(d / "ShampooSales" / "ShampooSales.csv"), note="monthly, m=12, 36 values"),
        ForecastSet("PBS", str(d / "PBS_dataset" / "PBS_dataset.csv"), note="monthly ('1991 Jul'), m=12 from them"),
        ForecastSet(
            "Uschange",
            str(d / "Uschange" / "Uschange.csv"),
            ["--value-columns", "Consumption"],
            "quarterly Consumption ('1970 Q1'), m=4 from the dates",
        ),
        ForecastSet("solar", str(d / "solar" / "solar.csv"), ["--season", "48"], "half-hourly: --season 48 given"),
    ]


def read_forecast_values(fs: ForecastSet) -> np.ndarray:
    """The target column of ``fs`` as rnnkit reads it (checked per row against rnnkit's seasonal-naive MAE)."""
    if fs.data == "embedded:sunspots":
        path = _package_dir("pmdarima") / "datasets" / "data" / "sunspots.txt.gz"
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return np.array([float(x) for line in f for x in line.split()])
    if fs.data == "embedded:msft":
        import pandas as pd

        with tarfile.open(_package_dir("pmdarima") / "datasets" / "data" / "msft.tar.gz", "r:gz") as tar:
            member = tar.extractfile("msft.csv")
            assert member is not None
            frame = pd.read_csv(member)
        frame["Date"] = pd.to_datetime(frame["Date"])
        if frame["Date"].is_monotonic_decreasing:
            frame = frame.iloc[::-1]
        return frame["Close"].to_numpy(dtype=float)
    if fs.data == "embedded:ppg":
        with (_package_dir("heartpy") / "data" / "data.csv").open(encoding="utf-8") as f:
            return np.array([float(line) for line in f if line.strip()])
    import pandas as pd

    frame = pd.read_csv(fs.data)
    column = fs.args[fs.args.index("--value-columns") + 1] if "--value-columns" in fs.args else frame.columns[-1]
    return frame[column].to_numpy(dtype=float)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def chronological_split(n: int) -> tuple[int, int]:
    """``(train_end, val_end)`` of rnnkit's 70/15/15 time-order split (data/series.py ``chronological_split``)."""
    n_test = max(1, round(n * TEST_FRACTION))
    n_val = max(1, round(n * VAL_FRACTION))
    return n - n_val - n_test, n - n_test


def short_series_settings(n: int) -> tuple[int, int] | None:
    """``(context, horizon)`` for a series too short for rnnkit's defaults (C=64, K=12), else None.

    The rule: K = min(12, validation steps, test steps), C = min(64, training steps − K); it mirrors the check in
    rnnkit's forecast app (train ≥ C + K, validation ≥ K, test ≥ K for the direct strategy).
    """
    train_end, val_end = chronological_split(n)
    n_val, n_test = val_end - train_end, n - val_end
    if train_end >= DEFAULT_CONTEXT + DEFAULT_HORIZON and n_val >= DEFAULT_HORIZON and n_test >= DEFAULT_HORIZON:
        return None
    k = min(DEFAULT_HORIZON, n_val, n_test)
    return min(DEFAULT_CONTEXT, train_end - k), k


def forecast_origins(n: int, context: int, horizon: int) -> np.ndarray:
    """Origins ``t`` of rnnkit's test windows (data/series.py ``make_windows`` over the test part)."""
    _, val_end = chronological_split(n)
    return np.arange(max(context - 1, val_end - 1), n - horizon, dtype=np.int64)


def seasonal_naive(y: np.ndarray, origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    k = np.arange(1, horizon + 1)
    return y[origins[:, None] + k - season * np.ceil(k / season).astype(np.int64)]


def smape(truth: np.ndarray, pred: np.ndarray) -> float:
    denom = np.abs(truth) + np.abs(pred)
    terms = np.divide(2 * np.abs(pred - truth), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100 * np.mean(terms))


# ---------------------------------------------------------------------------------------------------------- numbers
def mean_spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (None for one value), min, max and n of ``values``."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else None,
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
    }


def fmt(stats: dict[str, Any] | None, digits: int = 3, na: str = "n/a") -> str:
    """``0.912 ± 0.013`` (mean ± sample std), ``0.912`` for one value, ``na`` when there is none."""
    if not stats or stats.get("mean") is None:
        return na
    s = f"{stats['mean']:.{digits}f}"
    if stats.get("std") is not None:
        s += f" ± {stats['std']:.{digits}f}"
    return s


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds / 60:.1f} min"


def winner(scores: dict[str, float | None], higher_is_better: bool = True) -> str:
    """The name with the best score (ties: every tied name, joined by ' = '); '–' when no score exists."""
    known = {k: v for k, v in scores.items() if v is not None and math.isfinite(v)}
    if not known:
        return "–"
    best = max(known.values()) if higher_is_better else min(known.values())
    return " = ".join(k for k, v in known.items() if abs(v - best) <= 1e-12)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def replace_between_markers(text: str, block: str) -> str:
    """``text`` with everything between :data:`START` and :data:`END` replaced by ``block``."""
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"the file needs the markers {START} and {END} (in that order)")
    return text[: i + len(START)] + "\n" + block.strip() + "\n" + text[j:]


# ---------------------------------------------------------------------------------------------------------- rnnkit
def run_rnnkit(args: Sequence[str], out: Path, log: list[str]) -> tuple[dict[str, Any] | None, str | None, float]:
    """``python -m rnnkit train ARGS --out OUT``: (metrics.json, None, wall s) or (None, the error line, wall s)."""
    cmd = [sys.executable, "-m", "rnnkit", "train", *args, "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    log.append(f"$ {' '.join(cmd)}  [{wall:.1f} s, rc {proc.returncode}]")
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return None, (lines[-1] if lines else f"exit status {proc.returncode}"), wall
    return json.loads((out / "metrics.json").read_text(encoding="utf-8")), None, wall


def _only_threads(extra: Sequence[str]) -> bool:
    """True when ``--train-args`` hold nothing but ``--threads N`` (or ``--threads=N``): the one option ``--reuse``
    lets through (not checked against the folder: one trained with other threads can differ by rounding, so reuse
    folders of the same ``--train-args``); any other option (``--epochs 5``, ``--dtw-steps 128``, a second
    ``--test-data``, ``--quick``'s settings) changes the run, which is trained again."""
    rest = list(extra)
    while rest:
        head = rest.pop(0)
        if head.startswith("--threads="):
            continue
        if head != "--threads" or not rest:
            return False
        rest.pop(0)
    return True


def reusable(folder: Path, args: Sequence[str], seed: int, extra: Sequence[str] = ()) -> dict[str, Any] | None:
    """``--reuse``: the metrics of a finished run folder that the default series-classification command
        ``args`` (no ``--model``) with ``seed`` and ``extra`` (``--train-args``: nothing but ``--threads``,
    :func:`_only_threads`) would write again today, else None. Checked on its ``config.json``:
        the same data files and seed, every setting the kind's defaults fill (model, sizes, schedule,
        ``--series-norm``, ``--val-fraction``: 0.2 in folders from before the option) equal to today's defaults, the
        downsampling factor today's default picks for that training part (1 in folders from before ``--downsample``),
        the epochs today's default schedule gives it (:func:`default_epochs`) and the ensemble size today's rule gives
        it (:func:`default_members`: 1, a single model, in folders from before board8). Anything else is trained
        again."""
    from rnnkit.runs.classify_series import DEFAULTS as SERIES_DEFAULTS
    from rnnkit.runs.classify_series import VAL_FRACTION, auto_downsample, default_epochs, prepare_series
    from rnnkit.runs.series_defaults import default_members

    if "--model" in args or "--task" not in args or args[args.index("--task") + 1] != "classify":
        return None
    if not _only_threads(extra):  # e.g. --train-args "--dtw-steps 128"
        return None
    if not (folder / "metrics.json").is_file() or not (folder / "config.json").is_file():
        return None
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    record = config.get("options") or {}
    want = {"data": str(Path(args[args.index("--data") + 1]).resolve()), "seed": seed}
    want["test_data"] = str(Path(args[args.index("--test-data") + 1]).resolve()) if "--test-data" in args else None
    if any(record.get(k) != v for k, v in want.items()):
        return None
    before = {"val_fraction": VAL_FRACTION, "augment": 0.0, "dtw_steps": 0}  # options added later: earlier folders
    for key, value in SERIES_DEFAULTS.items():
        if key == "downsample":
            continue  # compared as the factor the run read its series at, below
        saved = record.get(key, (record.get("options") or {}).get(key, before.get(key)))
        if saved != value:
            return None
    d = config["data"]
    split = prepare_series(d["data"], d["val_data"], d["test_data"], d["seed"], val_fraction=d["val_fraction"])
    factor = auto_downsample(split.train) if SERIES_DEFAULTS["downsample"] == 0 else SERIES_DEFAULTS["downsample"]
    if config.get("downsample", 1) != factor:  # folders from before --downsample read the series as they are
        return None
    epochs = default_epochs(split.train, factor)
    if config["train"]["epochs"] != epochs:  # a schedule of an earlier step budget
        return None
    # the ensemble size: one model in folders from before board8
    if config.get("model", {}).get("ensemble", 1) != default_members(split.train, factor, epochs):
        return None
    return json.loads((folder / "metrics.json").read_text(encoding="utf-8"))


def rnnkit_seeds(
    args: Sequence[str],
    out: Path,
    seeds: Sequence[int],
    extra: Sequence[str],
    log: list[str],
    reuse: bool = False,
) -> dict[str, Any]:
    """One rnnkit configuration over ``seeds``: every run's metrics and wall time, or the first error. With
    ``reuse``, a run folder :func:`reusable` accepts is read instead of trained (its wall time: None)."""
    runs = []
    for seed in seeds:
        cached = reusable(out / f"seed{seed}", args, seed, extra) if reuse else None
        if cached is not None:
            log.append(f"reused {out / f'seed{seed}'} (same data, seed and default settings)")
            runs.append({"seed": seed, "wall_s": None, "train_s": cached.get("train_seconds"), "metrics": cached})
            continue
        metrics, error, wall = run_rnnkit([*args, "--seed", str(seed), *extra], out / f"seed{seed}", log)
        if error is not None:
            return {"args": list(args), "error": error, "runs": runs}
        runs.append({"seed": seed, "wall_s": round(wall, 2), "metrics": metrics})
    walls = [r["wall_s"] for r in runs if r["wall_s"] is not None]
    reused = len(runs) - len(walls)
    return {"args": [*args, *extra], "runs": runs, "wall_s": mean_spread(walls) if walls else None, "reused": reused}


def key_stats(row: dict[str, Any], key: str) -> dict[str, Any] | None:
    if row.get("error") or not row.get("runs"):
        return None
    return mean_spread([r["metrics"][key] for r in row["runs"]])


# ---------------------------------------------------------------------------------------------------------- classify
def rnnkit_key(model: str | None) -> str:
    """The row key of one rnnkit configuration: ``rnnkit`` for the defaults, ``rnnkit:MODEL`` with ``--model``."""
    return "rnnkit" if model is None else f"rnnkit:{model}"


def model_args(model: str | None) -> list[str]:
    """``rnnkit train`` options of one column: ``None`` the defaults; ``"lstm-fcn"`` → ``--model lstm-fcn``; a
    column with more options, ``"lstm-fcn --series-norm zscore"`` (``default --lr 1e-3``: the default model)."""
    if model is None:
        return []
    words = shlex.split(model)
    return ([] if words[0] == "default" else ["--model", words[0]]) + words[1:]


def classify_section(
    sets: list[ClassifySet],
    seeds: Sequence[int],
    extra: Sequence[str],
    out: Path,
    log: list[str],
    models: Sequence[str | None] = (None,),
    reuse: bool = False,
):
    import aeon
    from aeon.classification.convolution_based import MiniRocketClassifier
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier
    from aeon.datasets import load_from_ts_file

    rows = []
    warmed = False
    for cs in sets:
        check_not_held_out(cs.name)
        print(f"classify {cs.name} ...", file=sys.stderr, flush=True)
        X_tr, y_tr = load_from_ts_file(str(cs.train))
        X_te, y_te = load_from_ts_file(str(cs.test))
        lengths = [x.shape[-1] for x in (*X_tr, *X_te)]
        row: dict[str, Any] = {
            "set": cs.name,
            "n_train": len(y_tr),
            "n_test": len(y_te),
            "length": min(lengths) if min(lengths) == max(lengths) else [min(lengths), max(lengths)],
            "channels": int(X_tr[0].shape[0]),
            "classes": len(set(y_tr)),
            "equal_length": cs.equal_length,
            "aeon": aeon.__version__,
        }
        row["models"] = [rnnkit_key(m) for m in models]
        for model in models:  # the defaults (None) and every --model, one configuration at a time
            key = rnnkit_key(model)
            row[key] = rnnkit_seeds(
                ["--task", "classify", "--data", str(cs.train), "--test-data", str(cs.test), *model_args(model)],
                out / "classify" / cs.name / key.replace(":", "-").replace(" ", "_"),
                seeds,
                extra,
                log,
                reuse=reuse,
            )
            row[key]["test_accuracy"] = key_stats(row[key], "test_accuracy")
            runs = row[key].get("runs") or []
            if runs and all("kernels_accuracy" in r["metrics"] for r in runs):  # the default's two parts, alone
                for part in ("networks_accuracy", "kernels_accuracy"):
                    row[key][part] = key_stats(row[key], part)
                row[key]["kernels_weights"] = [r["metrics"]["kernels_weight"] for r in runs]
            if runs and all("dtw_accuracy" in r["metrics"] for r in runs):  # and its DTW member (board17)
                row[key]["dtw_accuracy"] = key_stats(row[key], "dtw_accuracy")
                row[key]["dtw_weights"] = [r["metrics"]["dtw_weight"] for r in runs]
        cache = out / "classify" / cs.name / "peers.json"  # the peers are measured once per set, then read back
        cached = _read_peers(cache, seeds, aeon.__version__)
        if cached is not None:
            row.update(cached)
            row["peers_cached"] = str(cache)
            row["winner"] = _classify_winner(row)
            rows.append(row)
            continue
        if not warmed:  # numba compiles the peers on first use (~20 s): keep that out of the first set's wall time
            t0 = time.perf_counter()
            for warm in ("UnitTest", "BasicMotions", "PickupGestureWiimoteZ"):  # univariate, multivariate, unequal
                path = aeon_data_dir() / warm / f"{warm}_TRAIN.ts"
                if not path.is_file():
                    continue
                X_w, y_w = load_from_ts_file(str(path))
                step = max(1, len(y_w) // 10)  # ten series across the file: several classes
                X_w, y_w = X_w[::step], y_w[::step]
                if warm != "PickupGestureWiimoteZ":
                    MiniRocketClassifier(random_state=0, n_jobs=1).fit(X_w, y_w).predict(X_w)
                KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1, n_jobs=1).fit(X_w, y_w).predict(X_w[:2])
            warmed = True
            print(f"  peers warmed up (numba compilation) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        # MiniRocket: seeded (random kernel biases come from the training data sample); over the same seeds
        mr: dict[str, Any] = {"settings": "MiniRocketClassifier(n_kernels=10000, random_state=seed, n_jobs=1)"}
        if not cs.equal_length and not MiniRocketClassifier.get_class_tag(
            "capability:unequal_length", raise_error=False, tag_value_default=False
        ):
            mr["na"] = f"aeon {aeon.__version__} MiniRocketClassifier has no unequal-length capability"
        else:
            accs, walls = [], []
            for seed in seeds:
                t0 = time.perf_counter()
                clf = MiniRocketClassifier(random_state=seed, n_jobs=1).fit(X_tr, y_tr)
                accs.append(float(np.mean(clf.predict(X_te) == y_te)))
                walls.append(time.perf_counter() - t0)
            mr.update(accuracies=accs, test_accuracy=mean_spread(accs), wall_s=mean_spread(walls))
        row["minirocket"] = mr
        # 1-NN DTW (full window, aeon's default DTW): deterministic, once; handles unequal lengths
        dtw: dict[str, Any] = {"settings": 'KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1, n_jobs=1)'}
        if not cs.equal_length and not KNeighborsTimeSeriesClassifier.get_class_tag(
            "capability:unequal_length", raise_error=False, tag_value_default=False
        ):
            dtw["na"] = f"aeon {aeon.__version__} KNeighborsTimeSeriesClassifier has no unequal-length capability"
        else:
            t0 = time.perf_counter()
            knn = KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1, n_jobs=1).fit(X_tr, y_tr)
            acc = float(np.mean(knn.predict(X_te) == y_te))
            dtw.update(
                accuracies=[acc], test_accuracy=mean_spread([acc]), wall_s=mean_spread([time.perf_counter() - t0])
            )
        row["dtw"] = dtw
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(
            json.dumps({"aeon": aeon.__version__, "seeds": list(seeds), "minirocket": mr, "dtw": dtw}, indent=1) + "\n",
            encoding="utf-8",
        )
        row["winner"] = _classify_winner(row)
        rows.append(row)
    return rows


def _read_peers(path: Path, seeds: Sequence[int], version: str) -> dict[str, Any] | None:
    """The peers' results cached by an earlier run of the same set: MiniRocket over the same seeds, same aeon."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("aeon") != version or saved.get("seeds") != list(seeds):
        return None
    return {"minirocket": saved["minirocket"], "dtw": saved["dtw"]}


def _classify_winner(row: dict[str, Any]) -> str:
    return winner(
        {
            **{key: _mean(row[key].get("test_accuracy")) for key in row["models"]},
            "MiniRocket": _mean(row["minirocket"].get("test_accuracy")),
            "1-NN DTW": _mean(row["dtw"].get("test_accuracy")),
        }
    )


def _mean(stats: dict[str, Any] | None) -> float | None:
    return None if not stats else stats.get("mean")


def _cell(entry: dict[str, Any], key: str = "test_accuracy") -> str:
    if entry.get("error"):
        return f"n/a ({entry['error'][:80]})"
    if entry.get("na"):
        return f"n/a ({entry['na']})"
    return fmt(entry.get(key))


def _wall_cell(entry: dict[str, Any]) -> str:
    """The mean wall time; runs read back with ``--reuse`` show their training time (from metrics.json)."""
    if entry.get("reused"):
        train = [r["train_s"] for r in entry.get("runs", []) if r.get("train_s") is not None]
        return f"reused (training {fmt_seconds(statistics.fmean(train))})" if train else "reused"
    return fmt_seconds(_mean(entry.get("wall_s")))


def _parts_cell(entry: dict[str, Any]) -> str:
    """A run with a kernel ridge (``--kernels``): its networks' and its ridge's test accuracy alone (and its DTW
    member's, ``--dtw-steps``), the weight ``w`` of the ridge (with the DTW member) each seed chose on its
    validation part, and the DTW member's share ``v`` beside the ridge; ``–`` for runs without one."""
    if entry.get("kernels_accuracy") is None:
        return "–"
    weights = ", ".join(f"{w:g}" for w in entry.get("kernels_weights", []))
    cell = f"{fmt(entry.get('networks_accuracy'))} / {fmt(entry.get('kernels_accuracy'))}"
    if entry.get("dtw_accuracy") is None:
        return f"{cell} ({weights})"
    shares = ", ".join(f"{v:g}" for v in entry.get("dtw_weights", []))
    return f"{cell} / {fmt(entry.get('dtw_accuracy'))} (w {weights}; v {shares})"


def _parts_header(key: str, rows: list[dict[str, Any]]) -> str:
    if any(r[key].get("dtw_accuracy") is not None for r in rows):
        return f"{key}'s parts alone: networks / kernel ridge / DTW member (w, v per seed)"
    return f"{key}'s parts alone: networks / kernel ridge (w per seed)"


def classify_table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0].get("models", ["rnnkit"])) if rows else ["rnnkit"]  # rows of one run share their models
    parts = any(r[keys[0]].get("kernels_accuracy") is not None for r in rows)  # a column only for runs with a ridge
    header = [
        "set",
        "n_train",
        "n_test",
        "length",
        "channels",
        "classes",
        *[f"{k} acc" for k in keys],
        *([_parts_header(keys[0], rows)] if parts else []),
        "MiniRocket acc",
        "1-NN DTW acc",
        "wins",
        f"wall ({' / '.join(keys)} / MR / DTW)",
    ]
    body = []
    for r in rows:
        length = r["length"] if isinstance(r["length"], int) else f"{r['length'][0]}–{r['length'][1]}"
        walls = " / ".join(_wall_cell(r[k]) for k in (*keys, "minirocket", "dtw"))
        body.append(
            [
                r["set"],
                r["n_train"],
                r["n_test"],
                length,
                r["channels"],
                r["classes"],
                *[_cell(r[k]) for k in keys],
                *([_parts_cell(r[keys[0]])] if parts else []),
                _cell(r["minirocket"]),
                _cell(r["dtw"]),
                r["winner"],
                walls,
            ]
        )
    both = [r for r in rows if all(_mean(r[k].get("test_accuracy")) is not None for k in keys)]
    summary = []
    for name, key in (*((k, k) for k in keys), ("MiniRocket", "minirocket"), ("1-NN DTW", "dtw")):
        vals = [_mean(r[key].get("test_accuracy")) for r in both]
        if vals and all(v is not None for v in vals):
            summary.append(f"{name} {statistics.fmean(vals):.3f}")
    tail = f"\n\nMean accuracy over the {len(both)} sets every method scored: " + ", ".join(summary) if summary else ""
    return markdown_table(header, body) + tail + classify_goals(rows, keys)


def classify_goals(rows: list[dict[str, Any]], keys: Sequence[str]) -> str:
    """Issue 16's series goals for the first rnnkit column: its mean accuracy ≥ MiniRocket's over the sets
    MiniRocket scores, and ≥ 1-NN DTW on every set."""
    if not keys or not rows:
        return ""
    key = keys[0]
    scored = [r for r in rows if _mean(r[key].get("test_accuracy")) is not None]
    mr = [r for r in scored if _mean(r["minirocket"].get("test_accuracy")) is not None]
    if not mr:
        return ""
    ours = statistics.fmean(_mean(r[key]["test_accuracy"]) for r in mr)
    theirs = statistics.fmean(_mean(r["minirocket"]["test_accuracy"]) for r in mr)
    below = [
        f"{r['set']} ({_mean(r[key]['test_accuracy']):.3f} < {_mean(r['dtw']['test_accuracy']):.3f})"
        for r in scored
        if _mean(r["dtw"].get("test_accuracy")) is not None
        and _mean(r[key]["test_accuracy"]) < _mean(r["dtw"]["test_accuracy"]) - 1e-9
    ]
    return (
        f"\n\nGoals ({key}): mean accuracy {ours:.3f} against MiniRocket's {theirs:.3f} over the {len(mr)} sets "
        f"MiniRocket scores: {'met' if ours >= theirs - 1e-9 else 'not met'}; below 1-NN DTW on "
        f"{', '.join(below) if below else 'no set'}: {'not met' if below else 'met'}."
    )


# ---------------------------------------------------------------------------------------------------------- forecast
def arima_forecasts(y: np.ndarray, train_end: int, origins: np.ndarray, horizon: int, season: int):
    """auto_arima fitted on ``y[:train_end]``; K-step forecasts from every origin with the fitted parameters fixed
    and the Kalman state filtered through every observation up to the origin (no refit). Returns (M, K), info."""
    import pmdarima as pm

    t0 = time.perf_counter()
    start = max(0, train_end - ARIMA_MAX_FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = pm.auto_arima(
            y[start:train_end],
            seasonal=season > 1,
            m=max(season, 1),
            stepwise=True,
            suppress_warnings=True,
            error_action="ignore",
            **ARIMA_LIMITS,
        )
        res = model.arima_res_.apply(y)  # same parameters, filtered over the whole series
    fr = res.filter_results
    if all(a.shape[-1] == 1 for a in (fr.design, fr.transition, fr.state_intercept, fr.obs_intercept)):
        Z, T = fr.design[0, :, 0], fr.transition[:, :, 0]
        c, d = fr.state_intercept[:, 0], fr.obs_intercept[0, 0]
        state = fr.predicted_state[:, origins + 1].T  # (M, S): the state at t+1 given y[..t]
        steps = []
        for _ in range(horizon):
            steps.append(state @ Z + d)
            state = state @ T.T + c
        pred = np.stack(steps, axis=1)
    else:  # time-varying system matrices: statsmodels' dynamic prediction per origin (slower, same numbers)
        pred = np.stack(
            [res.get_prediction(start=o + 1, end=o + horizon, dynamic=True).predicted_mean for o in origins]
        )
    info = {
        "order": list(model.order),
        "seasonal_order": list(model.seasonal_order),
        "fitted_on": [start, train_end],
        "fit_s": time.perf_counter() - t0,
    }
    return pred, info


def arima_with_time_cap(y: np.ndarray, train_end: int, origins: np.ndarray, horizon: int, season: int):
    """:func:`arima_forecasts` in a forked process, given up after :data:`ARIMA_TIMEOUT_S` (then n/a, recorded)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        job = pool.apply_async(arima_forecasts, (y, train_end, origins, horizon, season))
        try:
            return job.get(timeout=ARIMA_TIMEOUT_S)
        except mp.TimeoutError:
            pool.terminate()
            raise TimeoutError(f"auto_arima took over {ARIMA_TIMEOUT_S} s (the time cap)") from None


def forecast_section(sets: list[ForecastSet], seeds: Sequence[int], extra: Sequence[str], out: Path, log: list[str]):
    rows = []
    for fs in sets:
        print(f"forecast {fs.name} ...", file=sys.stderr, flush=True)
        y = read_forecast_values(fs)
        n = len(y)
        settings = short_series_settings(n)
        args = ["--task", "forecast", "--data", fs.data, *fs.args]
        row: dict[str, Any] = {"set": fs.name, "data": fs.data, "n": n, "note": fs.note, "settings": "defaults"}
        if settings is not None:
            args += ["--context", str(settings[0]), "--horizon", str(settings[1])]
            row["settings"] = (
                f"too short for the defaults (C=64, K=12): --context {settings[0]} --horizon {settings[1]}"
            )
        rk = rnnkit_seeds(args, out / "forecast" / fs.name, seeds, extra, log)
        row["rnnkit"] = rk
        if rk.get("error"):
            row["winner"] = "–"
            rows.append(row)
            continue
        m0 = rk["runs"][0]["metrics"]
        context, horizon, season = int(m0["context"]), int(m0["horizon"]), int(m0["season"])
        train_end, val_end = chronological_split(n)
        origins = forecast_origins(n, context, horizon)
        truth = y[origins[:, None] + np.arange(1, horizon + 1)]
        scale = float(np.mean(np.abs(y[season:train_end] - y[: train_end - season])))
        sn = seasonal_naive(y, origins, horizon, season)
        sn_mae = float(np.mean(np.abs(truth - sn)))
        same = (  # the same windows, the same truth and the same MASE scale as rnnkit's metrics.json
            len(origins) == m0["num_test_windows"]
            and math.isclose(sn_mae, m0["seasonal_naive_mae"], rel_tol=1e-4)
            and math.isclose(m0["seasonal_naive_mae"] / scale, m0["seasonal_naive_mase"], rel_tol=1e-4)
        )
        row.update(
            context=context,
            horizon=horizon,
            season=season,
            n_train=train_end,
            n_val=val_end - train_end,
            n_test=n - val_end,
            test_windows=len(origins),
            same_windows_as_rnnkit=same,
        )
        for key in ("test", "window"):
            for metric in ("mase", "smape", "mae"):
                rk[f"{key}_{metric}"] = key_stats(rk, f"{key}_{metric}")
        base = {k: m0[k] for k in m0 if k.startswith(("naive_", "seasonal_naive_"))}  # deterministic: no seed
        row["baselines"] = base
        arima: dict[str, Any] = {}
        if not same:
            arima["na"] = "could not reproduce rnnkit's test windows (window count, seasonal-naive MAE or MASE scale)"
        else:
            # deterministic, so measured once per series and window layout, then read back (out/forecast/NAME)
            cache = out / "forecast" / fs.name / "arima.json"
            key = {"n": n, "train_end": train_end, "context": context, "horizon": horizon, "season": season}
            saved = json.loads(cache.read_text(encoding="utf-8")) if cache.is_file() else {}
            if saved.get("key") == key:
                arima = {**saved["arima"], "cached": str(cache)}
            else:
                try:
                    pred, info = arima_with_time_cap(y, train_end, origins, horizon, season)
                    mae = float(np.mean(np.abs(truth - pred)))
                    arima.update(info, mae=mae, mase=mae / scale, smape=smape(truth, pred))
                except Exception as e:  # a failed fit is a result (recorded), not a crash of the whole board
                    arima["na"] = f"auto_arima failed: {type(e).__name__}: {e}"[:200]
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps({"key": key, "arima": arima}, default=str) + "\n", encoding="utf-8")
        row["arima"] = arima
        row["winner"] = winner(
            {
                "rnnkit": _mean(rk["test_mase"]),
                "window": _mean(rk["window_mase"]),
                "naive": base.get("naive_mase"),
                "seasonal-naive": base.get("seasonal_naive_mase"),
                "auto_arima": arima.get("mase"),
            },
            higher_is_better=False,
        )
        rows.append(row)
    return rows


def forecast_table(rows: list[dict[str, Any]]) -> str:
    header = [
        "series",
        "n",
        "C / K / m",
        "test windows",
        "rnnkit MASE",
        "window MASE",
        "naive MASE",
        "s-naive MASE",
        "auto_arima MASE",
        "rnnkit sMAPE",
        "s-naive sMAPE",
        "auto_arima sMAPE",
        "wins",
        "wall (rnnkit / ARIMA)",
    ]
    body = []
    for r in rows:
        rk = r["rnnkit"]
        if rk.get("error"):
            body.append([r["set"], r["n"], "–", "–", f"n/a ({rk['error'][:80]})", *["–"] * 8, "–"])
            continue
        b, a = r["baselines"], r["arima"]
        a_mase = f"{a['mase']:.3f}" if "mase" in a else f"n/a ({a.get('na', '')[:60]})"
        a_smape = f"{a['smape']:.2f}" if "smape" in a else "n/a"
        walls = f"{fmt_seconds(_mean(rk['wall_s']))} / {fmt_seconds(a.get('fit_s'))}"
        body.append(
            [
                r["set"],
                r["n"],
                f"{r['context']} / {r['horizon']} / {r['season']}",
                r["test_windows"],
                fmt(rk["test_mase"]),
                fmt(rk["window_mase"]),
                f"{b['naive_mase']:.3f}",
                f"{b['seasonal_naive_mase']:.3f}",
                a_mase,
                fmt(rk["test_smape"], 2),
                f"{b['seasonal_naive_smape']:.2f}",
                a_smape,
                r["winner"],
                walls,
            ]
        )
    return markdown_table(header, body) + forecast_goals(rows)


def forecast_goals(rows: list[dict[str, Any]]) -> str:
    """Issue 16's forecasting goals, checked on the rows: rnnkit's mean MASE ≤ the best of seasonal-naive and
    auto_arima on a majority of the series, and never above the naive MASE by more than 5 %."""
    scored = [r for r in rows if not r["rnnkit"].get("error")]
    if not scored:
        return ""
    beats, worse = [], []
    for r in scored:
        mase = _mean(r["rnnkit"]["test_mase"])
        peers = [r["baselines"]["seasonal_naive_mase"], *([r["arima"]["mase"]] if "mase" in r["arima"] else [])]
        if mase is not None and mase <= min(peers):
            beats.append(r["set"])
        naive = r["baselines"]["naive_mase"]
        if mase is not None and mase > 1.05 * naive:
            worse.append(f"{r['set']} ({mase / naive:.2f}× naive)" if naive > 0 else f"{r['set']} ({mase:.3g} > 0)")
    majority = len(beats) > len(scored) / 2
    return (
        f"\n\nGoals: rnnkit's MASE ≤ the best of seasonal-naive and auto_arima on {len(beats)} of {len(scored)} "
        f"series ({', '.join(beats) or 'none'}): {'met' if majority else 'not met'} (a majority is needed); more "
        f"than 5 % worse than naive on {', '.join(worse) if worse else 'none'}: {'not met' if worse else 'met'}."
    )


# ---------------------------------------------------------------------------------------------------------- names
NGRAM_C = (0.3, 1.0, 3.0)
"""The linear SVM's regularisation, chosen on rnnkit's validation part (as rnnkit keeps its best epoch)."""


def char_ngram_svm(name: str, seeds: Sequence[int]) -> dict[str, Any]:
    """The practitioner's tool for short strings, on rnnkit's own splits: scikit-learn's TF-IDF of character
    1–5-grams within word boundaries (sublinear tf) and a linear SVM, ``C`` chosen on the validation part from
    :data:`NGRAM_C`; accuracy on the test part, per seed (the split of ``rnnkit train --seed S``)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from rnnkit.runs import RunOptions
    from rnnkit.runs.text import prepare_split

    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        split = prepare_split(RunOptions(task="classify", data=f"embedded:{name}", seed=seed))  # rnnkit's own
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True)
        x_train = vec.fit_transform(split.train.items)
        x_val, x_test = vec.transform(split.val.items), vec.transform(split.test.items)
        y_val, y_test = np.asarray(split.val.labels), np.asarray(split.test.labels)
        fits = [LinearSVC(C=c).fit(x_train, split.train.labels) for c in NGRAM_C]
        val = [float((m.predict(x_val) == y_val).mean()) for m in fits]
        best = int(np.argmax(val))
        acc = float((fits[best].predict(x_test) == y_test).mean())
        wall = time.perf_counter() - t0
        runs.append({"seed": seed, "C": NGRAM_C[best], "val_accuracy": val[best], "test_accuracy": acc, "wall_s": wall})
    return {
        "runs": runs,
        "test_accuracy": mean_spread([r["test_accuracy"] for r in runs]),
        "wall_s": mean_spread([r["wall_s"] for r in runs]),
    }


def names_section(
    which: Sequence[str],
    seeds: Sequence[int],
    extra: Sequence[str],
    out: Path,
    log: list[str],
    with_window: bool = True,
) -> list[dict[str, Any]]:
    rows = []
    for name in which:
        print(f"names {name} ...", file=sys.stderr, flush=True)
        task, data = (
            ("generate", "embedded:country") if name == "country-generate" else ("classify", f"embedded:{name}")
        )
        key = "test_nll_per_char" if task == "generate" else "test_accuracy"
        args = ["--task", task, "--data", data]
        row: dict[str, Any] = {"set": name, "task": task, "data": data, "metric": key}
        row["window"] = {"na": "not run with --quick"}
        for label, more in (("rnnkit", []), ("window", ["--model", "window"])):
            if label == "window" and not with_window:
                continue
            entry = rnnkit_seeds([*args, *more], out / "names" / name / label, seeds, extra, log)
            entry[key] = key_stats(entry, key)
            row[label] = entry
        row["ngram"] = char_ngram_svm(name, seeds) if task == "classify" else {"na": "classification only"}
        ref = "bigram_nll_per_char" if task == "generate" else "majority_accuracy"
        row["baseline_key"] = ref
        row["baseline"] = key_stats(row["rnnkit"], ref)
        first = (row["rnnkit"].get("runs") or [{}])[0].get("metrics", {})
        row["n_train"], row["n_test"] = first.get("num_train"), first.get("num_test")
        row["winner"] = winner(
            {
                "rnnkit": _mean(row["rnnkit"].get(key)),
                "window": _mean(row["window"].get(key)),
                "char n-gram SVM": _mean(row["ngram"].get(key)),
                "bigram" if task == "generate" else "majority": _mean(row["baseline"]),
            },
            higher_is_better=task == "classify",
        )
        rows.append(row)
    return rows


def names_table(rows: list[dict[str, Any]]) -> str:
    header = [
        "data",
        "task (metric)",
        "n_train",
        "n_test",
        "rnnkit default",
        "window model",
        "char 1–5-gram TF-IDF + linear SVM (sklearn)",
        "baseline",
        "wins",
        "wall (rnnkit / window / SVM)",
    ]
    body = []
    for r in rows:
        metric = "nats/char, lower is better" if r["task"] == "generate" else "accuracy"
        base = ("bigram " if r["task"] == "generate" else "majority ") + fmt(r["baseline"])
        ngram = r.get("ngram", {"na": "not run"})  # a leaderboard.json from before the peer
        walls = " / ".join(fmt_seconds(_mean(e.get("wall_s"))) for e in (r["rnnkit"], r["window"], ngram))
        body.append(
            [
                r["data"],
                f"{r['task']} ({metric})",
                r["n_train"] or "–",
                r["n_test"] or "–",
                _cell(r["rnnkit"], r["metric"]),
                _cell(r["window"], r["metric"]),
                _cell(ngram, r["metric"]),
                base,
                r["winner"],
                walls,
            ]
        )
    return markdown_table(header, body)


# ---------------------------------------------------------------------------------------------------------- machine
def load_average() -> dict[str, Any]:
    """``/proc/loadavg``: 1/5/15-minute load and running/total scheduling entities (None off Linux)."""
    try:
        parts = Path("/proc/loadavg").read_text().split()
    except OSError:
        return {"loadavg": None}
    return {"load_1m": float(parts[0]), "load_5m": float(parts[1]), "load_15m": float(parts[2]), "running": parts[3]}


def machine() -> dict[str, Any]:
    versions = {}
    for pkg in ("torch", "aeon", "pmdarima", "statsmodels", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "python": platform.python_version(),
        "versions": versions,
        "torch_threads_env": os.environ.get("OMP_NUM_THREADS"),
    }


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    parts = []
    names = {
        "classify": "Series classification (accuracy)",
        "forecast": "Forecasting (test MASE, lower is better)",
        "names": "Names",
    }
    tables = {"classify": classify_table, "forecast": forecast_table, "names": names_table}
    for section in SECTIONS:
        if section in result["sections"]:
            parts.append(f"### {names[section]}\n\n{tables[section](result['sections'][section])}")
    start, end = result["load_start"], result["load_end"]
    parts.append(
        f"Measured {result['started']} in {fmt_seconds(result['wall_s'])}{' (--quick)' if result['quick'] else ''}: "
        f"{len(result['seeds'])} seed(s) {result['seeds']}, rnnkit rows mean ± {SPREAD} (min–max in the JSON); "
        f"{m['cores']} cores, {m['processor']}, torch {m['versions']['torch']}, aeon {m['versions']['aeon']}, "
        f"pmdarima {m['versions']['pmdarima']}; load average at start {start.get('load_1m')} "
        f"(running {start.get('running')}), at end {end.get('load_1m')} (running {end.get('running')})."
    )
    return "\n\n".join(parts)


def merge_results(paths: Sequence[str | Path]) -> str:
    """The tables of several runs of this script (their ``leaderboard.json``), rows of a section in the order
    given, each run's measurement line kept (``--merge``: a board measured in parts, e.g. one section at a time)."""
    results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    for result in results:
        for rows in result["sections"].values():
            for row in rows:
                check_not_held_out(row.get("set", ""))
    merged: dict[str, list[Any]] = {}
    for result in results:
        for section, rows in result["sections"].items():
            merged.setdefault(section, []).extend(rows)
    first = {**results[0], "sections": merged}
    lines = [render({**r, "sections": {}}) for r in results]  # each part's measurement line
    return (
        render({**first, "sections": merged}).rsplit("\n\n", 1)[0]
        + "\n\n"
        + "\n\n".join(
            f"Part {i + 1} (`{r['command']}`): {line}" for i, (r, line) in enumerate(zip(results, lines, strict=True))
        )
    )


# ---------------------------------------------------------------------------------------------------------- sweep
def sweep_table(folders: Sequence[str | Path]) -> str:
    """The sweep's Markdown table from run folders already on disk (nothing is trained): for every set under
    ``FOLDER/classify/``, every rnnkit column (``rnnkit``, ``rnnkit-MODEL…``: the mean ± sample std of
    ``test_accuracy`` over the ``seed*/metrics.json`` found, with the seeds counted) and the cached peers."""
    cells: dict[str, dict[str, list[float]]] = {}
    peers: dict[str, dict[str, Any]] = {}
    columns: list[str] = []
    for folder in folders:
        for set_dir in sorted(Path(folder, "classify").glob("*")):
            check_not_held_out(set_dir.name)
            if (set_dir / "peers.json").is_file():
                peers.setdefault(set_dir.name, json.loads((set_dir / "peers.json").read_text(encoding="utf-8")))
            for col in sorted(p for p in set_dir.iterdir() if p.is_dir()):
                accs = [
                    json.loads(m.read_text(encoding="utf-8"))["test_accuracy"]
                    for m in sorted(col.glob("seed*/metrics.json"))
                ]
                if accs:
                    cells.setdefault(set_dir.name, {})[col.name] = accs
                    if col.name not in columns:
                        columns.append(col.name)
    order = [s.name for s in discover_classification_sets()]
    sets = sorted(cells, key=lambda n: order.index(n) if n in order else len(order))
    header = ["set", *columns, "MiniRocket", "1-NN DTW"]
    body = []
    for name in sets:
        row = [name]
        for col in columns:
            accs = cells[name].get(col)
            row.append("–" if not accs else f"{fmt(mean_spread(accs))} (n={len(accs)})")
        pe = peers.get(name, {})
        row.append(_cell(pe.get("minirocket", {"na": "not run"})))
        row.append(_cell(pe.get("dtw", {"na": "not run"})))
        body.append(row)
    return markdown_table(header, body)


# ---------------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: one small set per section, 1 seed, 1 epoch")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 per rnnkit row (default 3; --quick: 1)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    p.add_argument("--sets", nargs="+", default=None, help="only these sets / series / names data (any section)")
    p.add_argument("--out", default="runs/leaderboard", help="folder for the JSON, the tables and the run folders")
    p.add_argument("--markdown", default=None, help="also write the tables between the leaderboard markers here")
    p.add_argument(
        "--model",
        nargs="+",
        default=None,
        help="classify: rnnkit rows with these --model choices (`default` = no --model), e.g. default lstm-fcn; "
        "`none`: the peers only (cached per set in OUT/classify/SET/peers.json)",
    )
    p.add_argument(
        "--sweep-table",
        nargs="+",
        default=None,
        metavar="DIR",
        help="print the classification sweep's table from the run folders under DIR/classify (trains nothing)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="classify: read a finished default run folder under --out instead of training it again, when its "
        "config.json shows the same data, seed and today's default settings and --train-args set nothing but "
        "--threads (so --quick never reuses; its wall time is then not known)",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="render the tables of several leaderboard.json files (a board measured in parts; trains nothing)",
    )
    p.add_argument(
        "--train-args",
        default="",
        help='extra options for every `rnnkit train` (one string), e.g. "--threads 1" on a shared machine, or '
        '"--epochs 10" to prune a sweep; recorded in the JSON',
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.sweep_table:
        print(sweep_table(args.sweep_table))
        return {}
    if args.merge:
        tables = merge_results(args.merge)
        if args.markdown:
            doc = Path(args.markdown)
            doc.write_text(replace_between_markers(doc.read_text(encoding="utf-8"), tables), encoding="utf-8")
        print(tables)
        return {}
    for name in args.sets or []:
        check_not_held_out(name)
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    extra = [*(QUICK_ARGS if args.quick else []), *shlex.split(args.train_args)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log: list[str] = []

    def chosen(section: str, available: list[str]) -> list[str]:
        if args.sets:
            return [s for s in available if s in args.sets]
        return [QUICK_SETS[section]] if args.quick else available

    result: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick,
        "seeds": seeds,
        "spread": SPREAD,
        "machine": machine(),
        "load_start": load_average(),
        "sections": {},
    }
    t0 = time.perf_counter()
    if "classify" in args.only:
        sets = discover_classification_sets()
        keep = chosen("classify", [s.name for s in sets])
        names = args.model or ["default"]
        models = [] if names == ["none"] else [None if m == "default" else m for m in names]
        result["sections"]["classify"] = classify_section(
            [s for s in sets if s.name in keep], seeds, extra, out, log, models, reuse=args.reuse
        )
    if "forecast" in args.only:
        fsets = forecast_sets()
        keep = chosen("forecast", [s.name for s in fsets])
        result["sections"]["forecast"] = forecast_section([s for s in fsets if s.name in keep], seeds, extra, out, log)
    if "names" in args.only:
        which = chosen("names", ["country", "gender", "country-generate"])
        result["sections"]["names"] = names_section(which, seeds, extra, out, log, with_window=not args.quick)
    result["wall_s"] = time.perf_counter() - t0
    result["load_end"] = load_average()
    result["commands"] = log
    (out / "leaderboard.json").write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    tables = render(result)
    (out / "leaderboard.md").write_text(tables + "\n", encoding="utf-8")
    if args.markdown:
        doc = Path(args.markdown)
        doc.write_text(replace_between_markers(doc.read_text(encoding="utf-8"), tables), encoding="utf-8")
    print(tables)
    print(f"\nwrote {out / 'leaderboard.json'} and {out / 'leaderboard.md'}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
