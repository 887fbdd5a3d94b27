"""The command line's basics: --version, --help, and the one-line error contract (exit code 2, no traceback)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rnnkit
from rnnkit import cli


def _rnnkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_version_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"rnnkit {rnnkit.__version__} ")


def test_python_m_rnnkit_help_lists_subcommands() -> None:
    proc = _rnnkit("--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: rnnkit" in proc.stdout
    assert "bench" in proc.stdout
    assert proc.stderr == ""


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    assert "usage: rnnkit" in capsys.readouterr().out


def test_every_flag_has_help_and_a_shown_default() -> None:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.dest == "help" or action.required:  # required ones (positionals included) need no default
                continue
            assert action.help, f"rnnkit {name} {action.option_strings} has no help"
            assert "default" in action.help or action.default is not None, (name, action.option_strings)
        assert "(default:" in text


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--cells", "nope"],  # argparse's own error
        ["bench", "--shapes", "1,2,3"],  # a malformed shape
        ["bench", "--repeats", "0"],
        ["no-such-command"],
    ],
)
def test_bad_argument_is_one_line_exit_2(args: list[str]) -> None:
    proc = _rnnkit(*args)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("rnnkit: error: ")
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_value_error_from_a_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--budget", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("rnnkit: error: --budget must be a positive number")
