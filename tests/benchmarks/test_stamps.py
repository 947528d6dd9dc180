"""Every section of ``benchmarks/RESULTS.md`` is one that a script in ``benchmarks/`` writes, and
every one carries a stamp line (``benchmarks/_results.stamp``) that names a commit of this
repository's history."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = re.compile(r"<!-- (?P<name>[\w-]+):begin -->\n(?P<body>.*?)<!-- (?P=name):end -->", re.S)
STAMP = re.compile(r"^_Stamp: commit `(?P<commit>[0-9a-f]{7,40}|unknown)`(?: \(dirty\))?, ", re.M)


def _sections() -> dict[str, str]:
    return {m["name"]: m["body"] for m in SECTION.finditer(RESULTS.read_text())}


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def test_every_section_is_written_by_a_script():
    scripts = "\n".join(p.read_text() for p in (ROOT / "benchmarks").glob("*.py"))
    # names as the scripts spell them; an f-string's {field} stands for any name part
    names = re.findall(r"""write_section\(\s*f?["']([\w{}-]+)["']""", scripts)
    patterns = [re.compile(re.sub(r"\{\w+\}", r"[\\w-]+", n)) for n in names]
    unknown = [s for s in _sections() if not any(p.fullmatch(s) for p in patterns)]
    assert not unknown, f"sections no script in benchmarks/ writes: {unknown}"


def test_every_stamp_names_a_commit_of_this_history():
    probe = _git("rev-parse", "--is-shallow-repository")
    if probe.returncode != 0:
        pytest.skip("not a git checkout: the commits cannot be looked up")
    if probe.stdout.strip() == "true":
        pytest.skip("a shallow clone: older commits are not in it")
    bad = {}
    for name, body in _sections().items():
        for m in STAMP.finditer(body):
            commit = m["commit"]
            ok = (
                commit != "unknown"
                and _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0
            )
            if not ok:
                bad[name] = commit
    assert not bad, f"stamps naming commits that are not in the history: {bad}"


def test_every_section_has_a_stamp():
    missing = [name for name, body in _sections().items() if not STAMP.search(body)]
    assert not missing, f"sections without a stamp line: {missing}"
