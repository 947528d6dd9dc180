"""netsculpt for Keras 3: the same verbs on a Keras model, each returning a new Keras model.

::

    import netsculpt.keras as nk
    new_model, report = nk.prune(model, x, amount=0.5)     # x: NumPy arrays or backend tensors
    new_model.save("small.keras")                          # standard layers only

A Keras layer cannot change its width in place, so every structural verb (``prune``, ``cut``,
``merge``, ``grow``) builds a torch mirror of the model, runs the netsculpt op on it, and
rebuilds a new Keras model (Sequential stays Sequential) from the layers' configs and the
mirror's weights, checked to agree with the mirror on the example inputs (``verify.TOLERANCE``).
``heal`` and ``evaluate`` use Keras's own ``fit`` / ``evaluate``; ``analyze`` reports only.
``to_torch`` / ``to_keras`` expose the two conversions. See docs/keras.md for the layers.

Keras reads its backend when it is first imported: set ``KERAS_BACKEND`` before that. If it is
unset, Keras is not imported yet and TensorFlow is not installed, this module picks ``torch``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

_EXPORTS = {
    "prune": "netsculpt.keras.verbs",
    "cut": "netsculpt.keras.verbs",
    "merge": "netsculpt.keras.verbs",
    "grow": "netsculpt.keras.verbs",
    "analyze": "netsculpt.keras.verbs",
    "heal": "netsculpt.keras.train",
    "evaluate": "netsculpt.keras.train",
    "to_torch": "netsculpt.keras.build",
    "to_keras": "netsculpt.keras.rebuild",
    "TOLERANCE": "netsculpt.keras.verify",
    "SUPPORTED": "netsculpt.keras._base",
}

__all__ = sorted(_EXPORTS)


def _default_backend() -> None:
    if "keras" in sys.modules or "KERAS_BACKEND" in os.environ:
        return
    config = os.path.join(os.path.expanduser("~"), ".keras", "keras.json")
    if os.path.exists(config) or importlib.util.find_spec("tensorflow") is not None:
        return
    os.environ["KERAS_BACKEND"] = "torch"


def torch_next_to_tensorflow() -> None:
    """torch.export loads triton (its LLVM); loaded after TensorFlow's, the process crashes.
    Before TensorFlow is imported: load torch's compiler first. After: hide triton from torch
    (a TensorFlow CPU process has no use for it), so that torch.export runs without it."""
    if "torch._dynamo" in sys.modules:
        return
    if "tensorflow" not in sys.modules:
        if os.environ.get("KERAS_BACKEND") == "tensorflow":
            import torch._dynamo  # noqa: F401
    elif "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]  (import triton -> ImportError)


_default_backend()
torch_next_to_tensorflow()


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        if importlib.util.find_spec("keras") is None:
            from netsculpt.errors import InputError

            raise InputError("netsculpt.keras needs Keras 3: pip install 'netsculpt[keras]'")
        if name == "SUPPORTED":
            from netsculpt.keras import build  # noqa: F401 (fills the registry)
            from netsculpt.keras._base import CONVERTERS

            return tuple(sorted(CONVERTERS))
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'netsculpt.keras' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
