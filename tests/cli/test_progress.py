"""One progress system: sparse plain lines in a pipe (no carriage returns), nothing with -q,
a live display on a terminal; -q / -v on every command."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netsculpt.cli import build_parser, main
from netsculpt.core import progress

RECIPE = """\
model: digits-mlp
data: digits
steps:
  - train: {steps: 10, lr: 0.003}
  - evaluate: {}
  - prune: {amount: 0.5}
  - heal: {steps: 10, teacher: original}
  - evaluate: {}
"""
STEPS = 5  # recipe steps


@pytest.fixture(autouse=True)
def _reset_level():
    yield
    progress.set_level(None)


def _run_piped(tmp_path: Path, *argv: str) -> str:
    """``netsculpt ARGV`` with stdout and stderr going to a file, every step counted as long."""
    log = tmp_path / "log.txt"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    env[progress.MIN_SECONDS_ENV] = "0"  # every step counts as long: the most lines possible
    env.pop(progress.ENV, None)
    with open(log, "w") as f:
        cmd = [sys.executable, "-m", "netsculpt.cli", *argv]
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    return text


def _step_lines(text: str) -> list[str]:
    """The progress lines of a log, checked: each is a step's one closing line or a loop's
    line per tenth (at most 9 of them per loop, in order)."""
    assert "\r" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("netsculpt: ")]
    tenths: dict[str, list[int]] = {}  # per loop now running: the tenths it wrote
    for ln in lines:
        text = ln[len("netsculpt: ") :]
        if ": done in " in text:
            tenths.pop(text.split(": done in ")[0], None)  # that loop (or step) has ended
            continue
        label, _, rest = text.rpartition(": ")
        assert "%)" in rest, ln  # not a step's end: a loop's tenth
        seen = tenths.setdefault(label, [])
        seen.append(int(rest.split("(")[1].split("%")[0]))
        assert len(seen) <= 9 and seen == sorted(set(seen)), (label, seen)
    return lines


def test_piped_recipe_writes_few_plain_lines(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE)
    text = _run_piped(tmp_path, "run", "r.yaml")
    lines = _step_lines(text)
    assert len(lines) >= STEPS
    assert any("heal" in ln and "done in" in ln for ln in lines)
    assert "total" in text  # the report still prints


def test_a_piped_prune_reports_each_engine_step_once(tmp_path):
    """Capture, channel groups, calibration reading, scoring and surgery each write their
    one line (the engine steps, reported by the session), then the command's own."""
    argv = ["prune", "digits-cnn", "--amount", "0.5", "--importance", "taylor"]
    lines = _step_lines(_run_piped(tmp_path, *argv, "--data", "digits-image", "-o", "out"))
    labels = [ln[len("netsculpt: ") :].split(": done in")[0] for ln in lines]
    for step in ("capture (torch.export)", "channel groups", "read calibration data",
                 "prune: surgery and verify (3 actions)", "prune digits-cnn", "save out"):  # fmt: skip
        assert labels.count(step) >= 1, (step, labels)
    assert any(lb.startswith("score ") and lb.endswith(" groups (taylor)") for lb in labels)
    assert labels.count("read calibration data") == 1  # data is read once per session
    quiet = _run_piped(tmp_path, "-q", *argv, "--data", "digits-image", "-o", "out2")
    assert "netsculpt: " not in quiet and "\r" not in quiet and "saved to out2" in quiet


def test_q_silences_a_recipe(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv(progress.MIN_SECONDS_ENV, "0")
    (tmp_path / "r.yaml").write_text("model: digits-mlp\nsteps:\n  - prune: {amount: 0.5}\n")
    assert main(["-q", "run", str(tmp_path / "r.yaml")]) == 0
    out, err = capfd.readouterr()
    assert "total" in out and "netsculpt: " not in err and "\r" not in out + err


def test_track_in_a_pipe_writes_one_line_per_tenth(monkeypatch, capsys):
    monkeypatch.setenv(progress.MIN_SECONDS_ENV, "0")
    assert sum(progress.track(range(1000), "count")) == sum(range(1000))
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 10  # 10%..90% and the final line
    assert lines[0].startswith("netsculpt: count: 100/1000 (10%)") and "done in" in lines[-1]
    with progress.step("short"):  # shorter than MIN_SECONDS: silent
        monkeypatch.delenv(progress.MIN_SECONDS_ENV)
    assert capsys.readouterr().err == ""


def test_quiet_and_disabled_write_nothing(capsys, monkeypatch):
    monkeypatch.setenv(progress.MIN_SECONDS_ENV, "0")
    progress.set_level("quiet")
    list(progress.track(range(50), "x"))
    with progress.step("y"):
        pass
    progress.set_level("normal")
    with progress.bar("z", 10, enabled=False) as b:
        b.advance(10)
    assert capsys.readouterr().err == ""


def test_terminal_display_runs_and_leaves_one_line(monkeypatch):
    monkeypatch.setattr(progress, "_tty", lambda: True)
    monkeypatch.setenv(progress.MIN_SECONDS_ENV, "0")
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    with progress.step("outer"):
        for _ in progress.track(range(5), "inner"):
            pass
    assert progress._state["live"] is None and progress._state["users"] == 0
    assert "outer: done in" in buf.getvalue()


def test_q_and_v_on_every_command_and_library_bars(monkeypatch):
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    parser = build_parser()
    assert os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") == "1"  # quiet unless -v
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        assert "-v" in sub._option_string_actions, name
        assert "-q" in sub._option_string_actions, name
    parser.parse_args(["-v", "evaluate", "digits-mlp", "--data", "digits"])
    assert progress.level() == progress.VERBOSE
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ  # back on with -v
    args = parser.parse_args(["prune", "digits-mlp", "--amount", "0.5", "-q"])
    assert progress.level() == progress.QUIET and not hasattr(args, "_verbosity")
    assert os.environ[progress.ENV] == "0"  # child processes inherit it
