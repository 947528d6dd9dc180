"""Save a (surgically edited) model as safetensors + manifest; load it into a fresh instance.

No pickle anywhere: the manifest is JSON, the weights are safetensors.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.errors import InputError
from netsculpt.io.manifest import (
    FORMAT,
    build_module,
    get_submodule,
    init_kwargs,
    set_submodule,
    structural_attrs,
)
from netsculpt.surgery.attrs import read_only
from netsculpt.utils import qualified_name, unique_state_dict

WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
MASK_PREFIX = "__mask__."
BUFFER_PREFIX = "__buffer__."  # non-persistent buffers (not in state_dict, may have new shapes)
# HF config keys that describe the file, not the architecture
_CONFIG_SKIP = {"transformers_version", "torch_dtype", "dtype", "_name_or_path", "architectures"}


def _non_persistent_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for mod_name, module in model.named_modules():
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            buf = module._buffers.get(name)
            if buf is not None:
                out[f"{mod_name}.{name}" if mod_name else name] = buf
    return out


def _hf_config(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    return json.loads(json.dumps(to_dict(), default=str)) if callable(to_dict) else None


def build_manifest(
    model: nn.Module, source: str | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The manifest dict and the tensors to write (aliases, masks and extra buffers included).

    >>> manifest, tensors = build_manifest(nn.Linear(2, 1))
    >>> manifest["shapes"]
    {'weight': [1, 2], 'bias': [1]}
    """
    tensors, aliases = unique_state_dict(model)
    extra = _non_persistent_buffers(model)
    shapes = {
        name: list(t.shape)
        for name, t in model.state_dict().items()
        if isinstance(t, torch.Tensor)  # skip get_extra_state() payloads
    }
    shapes.update({name: list(t.shape) for name, t in extra.items()})
    for name, buf in extra.items():
        tensors[BUFFER_PREFIX + name] = buf.detach().cpu().contiguous().clone()
    from netsculpt.surgery.masks import sync_masks

    masks = dict(sync_masks(model)) if getattr(model, "_netsculpt_masks", None) else {}
    for name, mask in masks.items():
        if name not in shapes:
            raise InputError(f"save: mask for '{name}' names no parameter of the model")
        tensors[MASK_PREFIX + name] = mask.detach().to("cpu", torch.bool).contiguous().clone()
    source = source or getattr(model, "_netsculpt_source", None)
    config = _hf_config(model)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "class": qualified_name(model),
        "source": source or ("hf" if config is not None else None),
        "shapes": shapes,
        "aliases": aliases,
        "attrs": {
            name or "": attrs
            for name, module in model.named_modules()
            if (attrs := structural_attrs(module))
        },
        "modules": list(getattr(model, "_netsculpt_edits", [])),
        "config": config,
        "masks": sorted(masks),
    }
    if manifest["source"] is None and qualified_name(model).startswith("netsculpt."):
        manifest["source"] = "netsculpt"  # rebuilt from class + init kwargs
        manifest["init"] = init_kwargs(model)
    return manifest, tensors


def save(model: nn.Module, directory: str | os.PathLike, *, source: str | None = None) -> Path:
    """Write ``model.safetensors`` + ``manifest.json`` into ``directory``, atomically.

    ``source`` says how to build the original architecture ("torchvision:resnet50",
    "builtin:digits-mlp", "hf"); default: ``model._netsculpt_source``. Returns the directory.

    >>> save(model, "out/")            # doctest: +SKIP
    >>> load("out/")                   # doctest: +SKIP
    """
    from safetensors.torch import save_file

    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise InputError(f"save: {target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).exists():
        raise InputError(
            f"save: {target} is not empty and not a netsculpt folder; refusing to overwrite"
        )
    # build everything first: bad input is refused before a byte is written
    manifest, tensors = build_manifest(model, source)
    text = json.dumps(manifest, indent=1)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        (tmp / MANIFEST).write_text(text)
        if target.exists():
            target.rename(old)  # keep the previous save until the new one is in place
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``manifest.json`` of a netsculpt folder."""
    folder = Path(directory)
    if not folder.is_dir():
        raise InputError(f"load: {folder} is not a directory")
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"load: {path} is missing; not a netsculpt save folder")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"load: {path} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"load: {path} is not a netsculpt manifest (format != {FORMAT!r})")
    return manifest


def load(directory: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a saved model: original architecture → recorded edits → shapes → weights.

    ``model`` is a fresh instance of the original architecture; when None it is built from the
    manifest's source (torchvision, built-in, Hugging Face config).

    >>> model = load("out/", torchvision.models.resnet50())   # doctest: +SKIP
    """
    from safetensors.torch import load_file

    folder = Path(directory)
    manifest = read_manifest(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise InputError(f"load: {weights} is missing")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:
        raise InputError(f"load: {weights} is not a readable safetensors file ({exc})") from exc
    if model is None:
        from netsculpt.io.sources import build_from_source

        model = build_from_source(manifest)
    for spec in manifest.get("modules", []):
        set_submodule(model, spec["path"], build_module(spec, model))
    _fix_shapes(model, manifest.get("shapes", {}), tensors, weights)
    _set_attrs(model, manifest.get("attrs", {}), folder / MANIFEST)
    _set_config(model, manifest.get("config"))
    _tie(model, manifest.get("aliases", {}), weights)
    _load_tensors(model, tensors, manifest, weights)
    _refresh_recurrent(model)
    model._netsculpt_edits = list(manifest.get("modules", []))
    if manifest.get("source") == "hf":
        from netsculpt.hf.io import after_load

        after_load(model)  # layer_idx follows the (possibly reordered) layer list
    if manifest.get("source"):
        model._netsculpt_source = manifest["source"]
    return model


def _refresh_recurrent(model: nn.Module) -> None:
    """nn.LSTM / GRU / RNN run from ``_flat_weights``: point it at the replaced parameters."""
    from netsculpt.surgery.rnn import refresh

    for module in model.modules():
        refresh(module)


def _set_attrs(model: nn.Module, attrs: dict[str, dict[str, Any]], where: Path) -> None:
    for path, values in attrs.items():
        try:
            module = model.get_submodule(path)
        except AttributeError as exc:
            raise InputError(
                f"load: {where}: attrs of '{path}': no such submodule in {type(model).__name__}"
            ) from exc
        for name, value in values.items():
            if read_only(module, name):
                continue  # a derived value (saved by an older version): follows its sources
            current = getattr(module, name, None)
            if isinstance(value, list) and isinstance(current, (tuple, list)):
                value = type(current)(value)
            setattr(module, name, value)


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


def _load_tensors(
    model: nn.Module, tensors: dict[str, torch.Tensor], manifest: dict[str, Any], weights: Path
) -> None:
    state = {k: v for k, v in tensors.items() if not k.startswith((MASK_PREFIX, BUFFER_PREFIX))}
    for alias, kept in manifest.get("aliases", {}).items():
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
