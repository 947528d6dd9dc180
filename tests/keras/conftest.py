"""Keras tests: skipped when Keras is not installed; the backend is torch unless KERAS_BACKEND
says otherwise (``make test-keras-tf`` runs them on TensorFlow)."""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
import netsculpt.keras  # noqa: E402, F401 (before Keras: sets up the backend's imports)

_spec = importlib.util.find_spec("keras")
if _spec is None or _spec.origin is None:  # not installed (a bare folder named keras is no Keras)
    pytest.skip("Keras is not installed", allow_module_level=True)
keras = pytest.importorskip("keras")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
