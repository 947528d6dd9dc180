"""Save / load edited models (safetensors + JSON manifest, never pickle) and export them.

>>> import netsculpt as ns
>>> ns.save(model, "out/")                 # doctest: +SKIP
>>> model = ns.load("out/")                # rebuilt from the recorded source + manifest
"""

from __future__ import annotations

from netsculpt.io.export import export
from netsculpt.io.files import load_model_file
from netsculpt.io.loading import load, read_manifest
from netsculpt.io.manifest import record_module
from netsculpt.io.resolve import resolve_model
from netsculpt.io.saving import save

__all__ = [
    "export",
    "load",
    "load_model_file",
    "read_manifest",
    "record_module",
    "resolve_model",
    "save",
]
