"""Load-time checks of a manifest against the model being rebuilt and the weights file.

The schema (:mod:`netsculpt.io.schema`) checks the manifest on its own; these need the model:
every path names an existing module, attributes are whitelisted and typed, shapes are those
of the saved tensors, and structural attributes agree with the weights at the end.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import ManifestError, UnsafeFileError
from netsculpt.io.manifest import STRUCTURAL_ATTRS
from netsculpt.io.schema import BUFFER_PREFIX, MAX_DIM

# width attributes of Hugging Face layers that surgery keeps in step with the weights
# (see netsculpt.surgery.hf); a manifest may set these too, on modules that have them
HF_ATTRS = (
    "split_size", "num_heads", "embed_dim", "head_dim", "attention_head_size", "scaling",
    "num_attention_heads", "n_heads", "all_head_size", "num_key_value_heads",
    "num_key_value_groups", "nf", "nx", "intermediate_size",
)  # fmt: skip


def inside(path: Path, folder: Path) -> None:
    """Refuse ``path`` when it resolves (through symlinks) to somewhere outside ``folder``."""
    real, base = path.resolve(), folder.resolve()
    if base not in real.parents:
        raise UnsafeFileError(
            f"load: {path} is a symbolic link to {real}, outside {folder}; refusing to read it"
        )


def check_shapes(
    manifest: dict[str, Any], tensors: dict[str, torch.Tensor], where: Path, weights: Path
) -> None:
    """Every recorded shape is the shape of a tensor in the weights file (so no size in the
    manifest can ask for more memory than the file holds)."""
    aliases = manifest["aliases"]
    for name, shape in manifest["shapes"].items():
        t = tensors.get(name)
        if t is None:
            t = tensors.get(BUFFER_PREFIX + name)
        if t is None and name in aliases:
            t = tensors.get(aliases[name])
        if t is None:
            raise ManifestError(
                f"load: {where}: shapes[{name!r}]: {weights.name} holds no tensor of that name"
            )
        if list(t.shape) != list(shape):
            raise ManifestError(
                f"load: {where}: shapes[{name!r}] is {list(shape)} but {weights.name} holds "
                f"{list(t.shape)}"
            )


def _size(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_DIM


def _same_kind(current: Any, value: Any) -> bool:
    if isinstance(current, bool):
        return type(value) is bool
    if isinstance(current, int):
        return type(value) is int
    if isinstance(current, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(current, str):
        return isinstance(value, str)
    return isinstance(current, (list, tuple)) and isinstance(value, list)


def check_attr(module: nn.Module, name: str, value: Any, what: str) -> Any:
    """``value`` if the manifest may set attribute ``name`` of ``module`` to it; else raise.

    Allowed: the structural attributes (:data:`~netsculpt.io.manifest.STRUCTURAL_ATTRS`,
    sizes ≥ 1), the Hugging Face widths in :data:`HF_ATTRS` and the names the module's class
    lists in ``_netsculpt_attrs`` — the last two only where the module has them already, with a
    value of the same type. Nothing else: no new attributes, no methods, no private names.
    """
    current = getattr(module, name, None)
    if name in STRUCTURAL_ATTRS:
        if value is None and current is None:
            return value
        if name == "_qkv_same_embed_dim":
            ok, want = type(value) is bool, "true or false"
        elif name == "normalized_shape":
            ok = isinstance(value, list) and 0 < len(value) <= 8 and all(map(_size, value))
            want = "a list of integers ≥ 1"
        else:
            ok, want = _size(value), "an integer in [1, 2**31)"
        if not ok:
            raise ManifestError(f"load: {what} must be {want}, got {value!r}")
        return value
    declared = tuple(getattr(type(module), "_netsculpt_attrs", ()) or ())
    if name not in HF_ATTRS + declared:
        raise ManifestError(
            f"load: {what}: not an attribute a manifest may set on {type(module).__name__} "
            "(only structural sizes)"
        )
    if name not in vars(module) and not hasattr(type(module), name):
        raise ManifestError(f"load: {what}: {type(module).__name__} has no attribute {name!r}")
    if callable(current) or isinstance(current, (nn.Module, torch.Tensor)):
        raise ManifestError(f"load: {what}: {name!r} is not a plain value attribute")
    if current is not None and not _same_kind(current, value):
        raise ManifestError(
            f"load: {what} must be a {type(current).__name__} like the module's, got {value!r}"
        )
    if type(value) is int and not 0 <= value <= MAX_DIM:
        raise ManifestError(f"load: {what} must be in [0, 2**31), got {value}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ManifestError(f"load: {what} must be finite, got {value}")
    return value


def _dims(mod: nn.Module) -> list[tuple[str, Any, int, str]]:
    """(attribute, its value, the width the weights say, which tensor says so)."""
    w = getattr(mod, "weight", None)
    if isinstance(mod, nn.Linear) and w is not None and w.dim() == 2:
        return [
            ("in_features", mod.in_features, w.shape[1], "weight"),
            ("out_features", mod.out_features, w.shape[0], "weight"),
        ]
    if isinstance(mod, nn.modules.conv._ConvNd) and w is not None:
        a, b = (
            ("in_channels", "out_channels") if mod.transposed else ("out_channels", "in_channels")
        )
        g = mod.groups if _size(mod.groups) else 1
        return [(a, getattr(mod, a), w.shape[0], "weight"), (b, getattr(mod, b), w.shape[1] * g,
                                                              "weight × groups")]  # fmt: skip
    return []


def check_consistent(model: nn.Module, where: Path, changed: set[tuple[str, str]]) -> None:
    """A size the manifest changed on a stock layer is the size of its loaded weight (a
    manifest that says ``in_features: 5`` for a 4-input weight is refused). Sizes the manifest
    leaves as the fresh model has them are not judged here."""
    for path, mod in model.named_modules():
        for attr, value, actual, tensor in _dims(mod):
            if (path, attr) in changed and value != actual:
                raise ManifestError(
                    f"load: {where}: attrs[{path!r}].{attr} is {value!r} but {path or 'the model'}"
                    f".{tensor} gives {int(actual)}"
                )
