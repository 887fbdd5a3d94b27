"""Helpers of the command-line defence tests (test_robust, test_defences): a tiny two-class folder of names, an
in-process ``rnnkit`` call that captures its output, and the one-line-error assertion (exit 2, no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnkit import cli

LETTERS = {"Alpha": "aeiou", "Beta": "bcdfg"}


def make_folder(path: Path, n: int = 12) -> Path:
    """A folder of two label files (``Alpha.txt``, ``Beta.txt``) of ``n`` made-up names each."""
    path.mkdir(parents=True)
    for cls, letters in LETTERS.items():
        items = sorted({cls[0] + letters[i % 5] + letters[(i * 3) % 5] * (1 + i % 3) + str(i) for i in range(n)})
        (path / f"{cls}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → bytes): compared before and after to prove nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def rnnkit_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """``rnnkit ARGS`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    """Exit 2, no traceback, exactly one ``rnnkit: error:`` line on stderr containing every needle; returns it."""
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rnnkit: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    return lines[0]


def write_tiny_ts(path: Path, n_per_class: int, seed: int, noise: float) -> Path:
    """A two-class (``up``/``down``), two-channel ``.ts`` file of unequal lengths 6–14: ramps plus ``noise``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = ["@problemName Tiny", "@timeStamps false", "@missing false", "@univariate false", "@dimensions 2"]
    lines += ["@equalLength false", "@classLabel true up down", "@data"]
    for _ in range(n_per_class):
        for cls in ("up", "down"):
            n = int(rng.integers(6, 15))
            t = np.linspace(0, 1, n) * (1 if cls == "up" else -1)
            dims = [",".join(f"{v:.4f}" for v in t * (c + 1) + noise * rng.normal(size=n)) for c in range(2)]
            lines.append(":".join(dims) + f":{cls}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


NAME_LETTERS = {"Alpha": "aeiou", "Beta": "bcdfg"}


def write_names(folder: Path) -> Path:
    """A tiny names folder (one ``CLASS.txt`` per class, ~40 made-up names each) for demo and serve tests."""
    folder.mkdir(parents=True)
    for i, (cls, letters) in enumerate(NAME_LETTERS.items()):
        items = sorted({cls[0] + letters[j % 5] + letters[(j * 7) % 5] * (1 + j % 3) for j in range(40 + i)})
        (folder / f"{cls}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    return folder
