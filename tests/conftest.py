"""Shared fixtures: the tiny models of :mod:`tinymodels`."""

from __future__ import annotations

import pytest

from tinymodels import make_tiny


@pytest.fixture
def tiny() -> dict[str, tuple]:
    return make_tiny()


@pytest.fixture(autouse=True)
def _progress_lines_only_when_asked(monkeypatch):
    """Progress lines in a pipe depend on how long a step took (MIN_SECONDS), i.e. on how busy
    the machine is; tests see them only where they set the threshold themselves."""
    from netsculpt.core import progress

    monkeypatch.setenv(progress.MIN_SECONDS_ENV, "3600")
