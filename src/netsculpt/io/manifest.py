"""The structure manifest: the edit log (:mod:`netsculpt.core.edits`) read back, so that a
fresh model can be rebuilt.

Ops that replace or insert a module call :func:`record_module` instead of ``setattr``; it sets
the module and appends a rebuildable spec to ``model._netsculpt_edits``::

    record_module(model, "layer4.1", nn.Identity())                      # a cut block
    record_module(model, "fc", nn.Sequential(model.fc, nn.Linear(10, 10)))  # an inserted layer

A spec is ``{"path", "type", "kwargs"}`` (plus ``"children"`` for Sequential / ModuleList);
a module already in the model is written as ``{"ref": "<its path>"}`` so that load keeps that
very module (with its own, possibly edited, structure) at the new place.
"""

from __future__ import annotations

import copy
import importlib
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from netsculpt.core.edits import (  # noqa: F401  (the edit log's names, read here)
    _ALLOWED_PREFIXES,
    _CONTAINERS,
    STRUCTURAL_ATTRS,
    _from_json,
    get_submodule,
    init_kwargs,
    module_spec,
    record_module,
    set_submodule,
    structural_attrs,
)
from netsculpt.core.errors import ManifestError

FORMAT = "netsculpt/1"


def existing_module(model: nn.Module, path: str, what: str) -> nn.Module:
    """The submodule at ``path``, found through registered children only (never attributes);
    ManifestError naming ``what`` when there is none."""
    mod = model
    for part in path.split(".") if path else []:
        child = mod._modules.get(part)
        if child is None:
            raise ManifestError(f"load: {what} {path!r} names no module of {type(model).__name__}")
        mod = child
    return mod


def _numel(module: nn.Module) -> int:
    return sum(t.numel() for t in (*module.parameters(), *module.buffers()))


def construct(
    cls: type, kwargs: dict[str, Any], what: str, budget: int | None, growth: int = 2
) -> nn.Module:
    """``cls(**kwargs)``, refused with one line when it fails or, built on the meta device
    first, would hold more than ``growth`` × ``budget`` elements (the weights file's count,
    plus some slack): a size nobody saved."""
    if budget is not None:
        try:
            with torch.device("meta"):
                probe = cls(**kwargs)
        except Exception:  # noqa: BLE001 - the real build below says what is wrong
            probe = None
        if probe is not None and _numel(probe) > growth * budget + 10**7:
            raise ManifestError(
                f"load: {what} would build {_numel(probe):,} parameters; the weights file holds "
                f"{budget:,} in all"
            )
    try:
        return cls(**kwargs)
    except Exception as exc:  # noqa: BLE001 - constructors raise anything on bad sizes
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ManifestError(f"load: {what}: cannot build {cls.__name__}: {first}") from exc


def build_module(
    spec: dict[str, Any], model: nn.Module, budget: int | None = None, what: str = "manifest.json"
) -> nn.Module:
    """Rebuild a module from its spec, resolving ``{"ref": path}`` against ``model`` now.

    ``budget`` (the element count of the weights file) bounds what a spec may build."""
    if "ref" in spec:
        return existing_module(model, spec["ref"], f"{what}.ref")
    if "copy" in spec:
        return copy.deepcopy(existing_module(model, spec["copy"], f"{what}.copy"))
    cls = _import_class(spec["type"])
    kwargs = {k: _from_json(v) for k, v in spec.get("kwargs", {}).items()}
    if "children" in spec:
        if cls not in _CONTAINERS:
            raise ManifestError(f"load: {what}.children: only Sequential / ModuleList have them")
        children = [
            (name, build_module(child, model, budget, f"{what}.children[{j}]"))
            for j, (name, child) in enumerate(spec["children"])
        ]
        if cls is nn.ModuleList:
            if [name for name, _ in children] != [str(j) for j in range(len(children))]:
                raise ManifestError(f"load: {what}.children: ModuleList children are 0, 1, ...")
            return nn.ModuleList([module for _, module in children])
        try:
            return nn.Sequential(OrderedDict(children))
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"load: {what}.children: {exc}") from exc
    return construct(cls, kwargs, f"{what}.kwargs", budget)


def _import_class(type_name: str) -> type:
    if not type_name.startswith(_ALLOWED_PREFIXES):
        raise ManifestError(
            f"manifest.json: refusing to import {type_name}; only torch.nn and netsculpt classes"
        )
    module_name, _, qual = type_name.rpartition(".")
    # a nested qualname (Outer.Inner) needs walking down from the module
    while module_name:
        try:
            obj: Any = importlib.import_module(module_name)
            break
        except ImportError:
            module_name, _, head = module_name.rpartition(".")
            qual = f"{head}.{qual}"
    else:
        raise ManifestError(f"manifest.json: cannot import {type_name}")
    for part in qual.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ManifestError(f"manifest.json: {type_name} is not an nn.Module class")
    if not obj.__module__.startswith(("torch.nn", "netsculpt")):
        raise ManifestError(f"manifest.json: {type_name} is defined outside torch.nn and netsculpt")
    return obj
