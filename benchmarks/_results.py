"""Shared by the benchmark scripts: replace one marked section of benchmarks/RESULTS.md.

The environment variable ``NETSCULPT_RESULTS`` names another file to write instead (the smoke
tests in ``tests/benchmarks`` point it at a temporary folder, so they never touch RESULTS.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
RESULTS_ENV = "NETSCULPT_RESULTS"


def results_path() -> Path:
    """The file :func:`write_section` edits: ``$NETSCULPT_RESULTS`` if set, else RESULTS.md."""
    return Path(os.environ.get(RESULTS_ENV) or RESULTS)


def write_section(name: str, text: str) -> None:
    """Put ``text`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` (appended if new)."""
    path = results_path()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    new = (
        pattern.sub(lambda _: block, old) if pattern.search(old) else f"{old.rstrip()}\n\n{block}\n"
    )
    path.write_text(new)


def stamp(command: str, anchors: tuple[str, ...] = (), anchor_python: str | None = None) -> str:
    """The line that opens every section: commit (``dirty`` when tracked files other than
    RESULTS.md have changes), date,
    torch and anchor versions, threads, CPU and the exact command.

    ``anchor_python``: the interpreter whose environment holds the anchors, when they run in a
    venv of their own (tfmot in the TensorFlow venv); by default the running one."""
    import datetime
    import importlib.metadata as md
    import platform
    import subprocess

    import torch

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], capture_output=True, text=True, check=True,
                                  cwd=RESULTS.parent).stdout.strip()  # fmt: skip
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # RESULTS.md itself does not make the code dirty: the sections written earlier in the same
    # ``make bench`` run change it before the next script stamps
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ":/",
                  ":(top,exclude)benchmarks/RESULTS.md")  # fmt: skip
    dirty = " (dirty)" if changed else ""
    versions = [f"torch {torch.__version__}"]
    found = _versions(anchors, anchor_python) if anchor_python else {}
    for name in anchors:
        try:
            v = found[name] if anchor_python else md.version(name)
        except md.PackageNotFoundError:
            v = None
        versions.append(f"{name} {v}" if v else f"{name} not installed")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    date = datetime.date.today().isoformat()
    return (
        f"_Stamp: commit `{commit}`{dirty}, {date}, {', '.join(versions)}, "
        f"{torch.get_num_threads()} thread(s), {cpu}; command: `{command}`_"
    )


def _versions(names: tuple[str, ...], python: str) -> dict[str, str | None]:
    """The installed versions of ``names`` in the environment of the interpreter ``python``."""
    import json
    import subprocess

    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try:\n"
        "        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))"
    )
    try:
        out = subprocess.run([python, "-c", code, *names], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        return json.loads(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return dict.fromkeys(names)
