"""Fixtures of the reliability suite (the helpers themselves are in ``helpers.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _writable_again(tmp_path):
    """Give pytest back a removable tmp tree after tests that made folders read-only."""
    yield
    for p in [tmp_path, *tmp_path.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
