"""Hugging Face transformers in, working Hugging Face models out.

Family-aware helpers around the generic ops: config sync after surgery (:mod:`.config`),
structured pruning of heads / MLP / hidden with ``uniform=True`` (:mod:`.prune`), saving
(:mod:`.io`) and the MiniLM demo (:mod:`.demo`). Importing this package does not import
transformers; the functions that need it import it when called.

>>> import netsculpt.hf as nhf
>>> callable(nhf.prune)
True
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "prune": "netsculpt.hf.structured",
    "layer_widths": "netsculpt.hf.config",
    "sync_config": "netsculpt.hf.config",
    "hf_compatible": "netsculpt.hf.config",
    "save_pretrained": "netsculpt.hf.io",
    "load_minilm": "netsculpt.hf.io",
    "run_minilm_demo": "netsculpt.hf.demo",
    "prune_pretrained": "netsculpt.hf.sharded",
    "cut_pretrained": "netsculpt.hf.sharded",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'netsculpt.hf' has no attribute {name!r}")
