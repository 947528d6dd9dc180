"""Load a saved model: manifest (checked) → original architecture → edits → weights.

No pickle anywhere: the manifest is JSON, the weights are safetensors. A manifest is checked
against its schema before anything is built, and a model passed in by the caller is only
changed once a dry run of every structural step on a meta-device copy went through, so a
refused load leaves it as it was.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.utils import read_only
from netsculpt.io.checks import check_attr, check_consistent, check_shapes, inside
from netsculpt.io.manifest import (
    FORMAT,
    build_module,
    existing_module,
    get_submodule,
    set_submodule,
)
from netsculpt.io.outputs import MANIFEST, WEIGHTS, interrupted_message
from netsculpt.io.schema import BUFFER_PREFIX, MASK_PREFIX, validate_manifest

# what a manifest without these keys means (older saves omit some)
_DEFAULTS: dict[str, Any] = {
    "source": None, "shapes": {}, "aliases": {}, "attrs": {}, "modules": [], "config": None,
    "masks": [], "init": None,
}  # fmt: skip
# HF config keys that describe the file, not the architecture
_CONFIG_SKIP = {"transformers_version", "torch_dtype", "dtype", "_name_or_path", "architectures"}


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Read ``manifest.json`` of a netsculpt folder and check it against the schema
    (:mod:`netsculpt.io.schema`); the dict has every field, defaults filled in."""
    folder = Path(directory)
    if not folder.is_dir():
        hint = None if folder.exists() else interrupted_message(folder)
        raise InputError(hint or f"load: {folder} is not a directory")
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"load: {path} is missing; not a netsculpt save folder")
    inside(path, folder)
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"load: {path} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"load: {path} is not a netsculpt manifest (format != {FORMAT!r})")
    validate_manifest(manifest, str(path))
    return {**_DEFAULTS, **manifest}


def load(directory: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a saved model: original architecture → recorded edits → shapes → weights.

    ``model`` is a fresh instance of the original architecture; when None it is built from the
    manifest's source (torchvision, built-in, Hugging Face config). A Hugging Face folder (a
    ``config.json`` and no manifest, as the CLI writes for an HF model) loads with
    ``from_pretrained``, from safetensors only.

    The manifest is checked against its schema before anything is built, every path it names
    must exist, and it may only set structural attributes (see ``docs/safety.md``); the
    weights file must lie inside the folder (a symlink out of it is refused).

    >>> model = load("out/", torchvision.models.resnet50())   # doctest: +SKIP
    """
    from safetensors.torch import load_file

    folder = Path(directory)
    if model is None and not (folder / MANIFEST).is_file() and (folder / "config.json").is_file():
        from netsculpt.io.files import load_model_file

        return load_model_file(folder)  # a Hugging Face folder (safetensors only)
    manifest = read_manifest(folder)
    where = folder / MANIFEST
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise InputError(f"load: {weights} is missing")
    inside(weights, folder)
    try:
        tensors = load_file(str(weights))
    except Exception as exc:
        raise InputError(f"load: {weights} is not a readable safetensors file ({exc})") from exc
    check_shapes(manifest, tensors, where, weights)
    budget = sum(t.numel() for t in tensors.values())
    if model is None:
        from netsculpt.io.sources import build_from_source

        model = build_from_source(manifest, budget=budget)
    else:
        dry = _meta_copy(model)
        if dry is not None:  # every refusal happens here, before the caller's model is touched
            with torch.device("meta"):
                _rebuild(dry, manifest, tensors, where, weights, budget, dry=True)
    _rebuild(model, manifest, tensors, where, weights, budget)
    model._netsculpt_edits = list(manifest["modules"])
    if manifest["source"] == "hf":
        from netsculpt.hf.io import after_load

        after_load(model)  # layer_idx follows the (possibly reordered) layer list
    if manifest["source"]:
        model._netsculpt_source = manifest["source"]
    return model


def _meta_copy(model: nn.Module) -> nn.Module | None:
    from netsculpt.surgery.slicing import meta_clone

    try:
        return meta_clone(model)
    except Exception:  # noqa: BLE001 - a model that cannot be deep-copied loads without it
        return None


def _rebuild(
    model: nn.Module,
    manifest: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    where: Path,
    weights: Path,
    budget: int,
    dry: bool = False,
) -> None:
    for i, spec in enumerate(manifest["modules"]):
        existing_module(model, spec["path"], f"{where}: modules[{i}].path")
        new = build_module(spec, model, budget, f"{where}: modules[{i}]")
        set_submodule(model, spec["path"], new)
    _fix_shapes(model, manifest["shapes"], tensors, weights)
    changed = _set_attrs(model, manifest["attrs"], where)
    _set_config(model, manifest["config"])
    _tie(model, manifest["aliases"], weights)
    state = _checked_state(model, tensors, manifest, weights)
    check_consistent(model, where, changed)
    if not dry:
        _load_tensors(model, tensors, state)
        _refresh_recurrent(model)


def _refresh_recurrent(model: nn.Module) -> None:
    """nn.LSTM / GRU / RNN run from ``_flat_weights``: point it at the replaced parameters."""
    from netsculpt.surgery.rnn import refresh

    for module in model.modules():
        refresh(module)


def _set_attrs(
    model: nn.Module, attrs: dict[str, dict[str, Any]], where: Path
) -> set[tuple[str, str]]:
    """Set the recorded attributes; returns the ``(path, name)`` of those that changed."""
    changed = set()
    for path, values in attrs.items():
        module = existing_module(model, path, f"{where}: attrs key") if path else model
        for name, value in values.items():
            if read_only(module, name):
                continue  # a derived value (saved by an older version): follows its sources
            value = check_attr(module, name, value, f"{where}: attrs[{path!r}].{name}")
            current = getattr(module, name, None)
            if isinstance(value, list) and isinstance(current, (tuple, list)):
                value = type(current)(value)
            if value != current:
                changed.add((path, name))
            setattr(module, name, value)
    return changed


def _set_config(model: nn.Module, saved: dict[str, Any] | None) -> None:
    config = getattr(model, "config", None)
    if not saved or config is None or not hasattr(config, "to_dict"):
        return
    current = config.to_dict()
    for key, value in saved.items():
        if key in _CONFIG_SKIP or isinstance(value, dict) or key not in current:
            continue
        if current[key] != value:
            setattr(config, key, value)


def _add_missing(
    model: nn.Module, name: str, shape: list[int], saved: torch.Tensor | None, weights: Path
) -> None:
    """Create a param/buffer that surgery added where the fresh model registers None (a bias)."""
    mod_path, _, leaf = name.rpartition(".")
    try:
        owner = model.get_submodule(mod_path)
    except AttributeError:
        owner = None
    for table, is_param in (
        (getattr(owner, "_parameters", {}), True),
        (getattr(owner, "_buffers", {}), False),
    ):
        if leaf in table and table[leaf] is None:
            ref = next(owner.parameters(), None)
            dtype = saved.dtype if saved is not None else torch.float32
            new = torch.empty(shape, dtype=dtype, device=ref.device if ref is not None else "cpu")
            table[leaf] = nn.Parameter(new) if is_param else new
            return
    raise InputError(f"load: {weights}: key '{name}' is not in {type(model).__name__}")


def _fix_shapes(
    model: nn.Module, shapes: dict[str, list[int]], tensors: dict[str, torch.Tensor], weights: Path
) -> None:
    """Replace every param/buffer whose saved shape differs by an empty one of the saved shape."""
    owners: dict[int, list[tuple[dict[str, Any], str]]] = {}
    for module in model.modules(remove_duplicate=False):
        for table in (module._parameters, module._buffers):
            for leaf, tensor in table.items():
                if tensor is not None:
                    owners.setdefault(id(tensor), []).append((table, leaf))
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(dict(model.named_buffers(remove_duplicate=False)))
    for name, shape in shapes.items():
        old = named.get(name)
        if old is None:
            _add_missing(model, name, shape, tensors.get(name), weights)
            continue
        if list(old.shape) == list(shape):
            continue
        new = torch.empty(shape, dtype=old.dtype, device=old.device)
        if isinstance(old, nn.Parameter):
            new = nn.Parameter(new, requires_grad=old.requires_grad)
        # every name that held the old tensor (tied weights) gets the same new one
        for table, leaf in owners.get(id(old), []):
            table[leaf] = new
        for other, tensor in list(named.items()):
            if tensor is old:
                named[other] = new


def _tie(model: nn.Module, aliases: dict[str, str], weights: Path) -> None:
    """Make every saved alias the very tensor it was tied to (fresh models may not tie them)."""
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update(model.named_buffers(remove_duplicate=False))
    for alias, kept in aliases.items():
        if alias not in named or kept not in named:
            key = alias if alias not in named else kept
            raise InputError(f"load: {weights}: key '{key}' is not in {type(model).__name__}")
        mod_path, _, leaf = alias.rpartition(".")
        owner = get_submodule(model, mod_path) if mod_path else model
        table = owner._parameters if leaf in owner._parameters else owner._buffers
        table[leaf] = named[kept]


def _checked_state(
    model: nn.Module, tensors: dict[str, torch.Tensor], manifest: dict[str, Any], weights: Path
) -> dict[str, torch.Tensor]:
    """The state dict to load: every key of the model present, with the model's shapes."""
    state = {k: v for k, v in tensors.items() if not k.startswith((MASK_PREFIX, BUFFER_PREFIX))}
    for alias, kept in manifest["aliases"].items():
        if kept not in state:
            raise InputError(f"load: {weights}: alias '{alias}' points to missing key '{kept}'")
        state[alias] = state[kept]
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        key = missing[0] if missing else unexpected[0]
        what = "missing from the file" if missing else "not in the model"
        raise InputError(f"load: {weights}: key '{key}' is {what}")
    for key, value in state.items():
        if tuple(expected[key].shape) != tuple(value.shape):
            raise InputError(
                f"load: {weights}: key '{key}' has shape {list(value.shape)}, "
                f"model has {list(expected[key].shape)}"
            )
    # modules that version their state (torchvision's MNASNet) read it from the metadata
    state = collections.OrderedDict(state)
    state._metadata = getattr(expected, "_metadata", None)  # type: ignore[attr-defined]
    return state


def _load_tensors(
    model: nn.Module, tensors: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> None:
    model.load_state_dict(state, strict=True)
    for key, value in tensors.items():
        if key.startswith(BUFFER_PREFIX):
            name = key[len(BUFFER_PREFIX) :]
            mod_path, _, leaf = name.rpartition(".")
            owner = get_submodule(model, mod_path) if mod_path else model
            old = owner._buffers.get(leaf)
            owner._buffers[leaf] = value.to(
                dtype=old.dtype if old is not None else value.dtype,
                device=old.device if old is not None else "cpu",
            )
    masks = {
        k[len(MASK_PREFIX) :]: v.bool() for k, v in tensors.items() if k.startswith(MASK_PREFIX)
    }
    if masks:
        from netsculpt.surgery.masks import attach_masks

        model._netsculpt_masks = masks
        attach_masks(model)
