"""Shared fixtures: the tiny models of :mod:`tinymodels`."""

from __future__ import annotations

import pytest

from tinymodels import make_tiny


@pytest.fixture
def tiny() -> dict[str, tuple]:
    return make_tiny()
