"""The top-level handler: bad input is one line and exit 2, a bug is one line and exit 1 that
says how to see the traceback (``--debug`` / ``NETSCULPT_DEBUG=1``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import netsculpt
import netsculpt.cli.analyze
from netsculpt.cli import main
from netsculpt.errors import InputError


def _raise(exc):
    def run(args):
        raise exc

    return run


@pytest.fixture
def no_debug_env(monkeypatch):
    monkeypatch.delenv("NETSCULPT_DEBUG", raising=False)


def test_a_bug_is_one_line_exit_1_naming_it(monkeypatch, capsys, no_debug_env):
    monkeypatch.setattr(netsculpt.cli.analyze, "run", _raise(ZeroDivisionError("division by zero")))
    assert main(["analyze", "digits-mlp"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("netsculpt analyze: error: internal error ZeroDivisionError")
    assert "bug" in err and "--debug" in err and "NETSCULPT_DEBUG=1" in err


@pytest.mark.parametrize(
    "argv", [["--debug", "analyze", "digits-mlp"], ["analyze", "digits-mlp", "--debug"]]
)
def test_debug_flag_prints_the_traceback_too(monkeypatch, capsys, no_debug_env, argv):
    monkeypatch.setattr(netsculpt.cli.analyze, "run", _raise(KeyError("boom")))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError" in err
    assert err.strip().splitlines()[-1].startswith("netsculpt analyze: error: internal error")


def test_debug_environment_variable(monkeypatch, capsys):
    monkeypatch.setenv("NETSCULPT_DEBUG", "1")
    monkeypatch.setattr(netsculpt.cli.analyze, "run", _raise(InputError("bad input")))
    assert main(["analyze", "digits-mlp"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("netsculpt analyze: error: bad input")


def test_multi_line_messages_become_one_line(monkeypatch, capsys, no_debug_env):
    monkeypatch.setattr(netsculpt.cli.analyze, "run", _raise(InputError("first\n  second\n")))
    assert main(["analyze", "digits-mlp"]) == 2
    assert capsys.readouterr().err == "netsculpt analyze: error: first; second\n"


def test_interrupt_is_one_line_exit_130(monkeypatch, capsys, no_debug_env):
    monkeypatch.setattr(netsculpt.cli.analyze, "run", _raise(KeyboardInterrupt()))
    assert main(["analyze", "digits-mlp"]) == 130
    assert capsys.readouterr().err == "netsculpt analyze: interrupted\n"


def test_usage_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["prune", "digits-mlp", "--amount", "nan"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--amount" in err and "finite" in err


BUG = """
import sys
import netsculpt.cli.analyze as analyze
from netsculpt.cli import main
def run(args):
    return {}["missing"]
analyze.run = run
sys.exit(main(["analyze", "digits-mlp"]))
"""


@pytest.mark.parametrize("debug", [False, True])
def test_real_process_bug_shows_no_traceback_unless_asked(tmp_path, debug):
    src = str(Path(netsculpt.__file__).parents[1])
    env = {k: v for k, v in os.environ.items() if k != "NETSCULPT_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    if debug:
        env["NETSCULPT_DEBUG"] = "1"
    r = subprocess.run(
        [sys.executable, "-c", BUG], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=240,
    )  # fmt: skip
    assert r.returncode == 1
    assert ("Traceback" in r.stderr) is debug
    if not debug:
        assert r.stderr.count("\n") == 1 and "internal error KeyError" in r.stderr
