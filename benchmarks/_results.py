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
