"""The edit log: what surgery changed, kept on the model so that ``io`` can write the structure
manifest and a fresh model can be rebuilt (surgery writes the log; io reads it, and never the
other way round).

Ops' appliers that replace or insert a module call :func:`record_module` instead of
``setattr``; it sets the module and appends a rebuildable spec to ``model._netsculpt_edits``::

    record_module(model, "layer4.1", nn.Identity())                      # a cut block
    record_module(model, "fc", nn.Sequential(model.fc, nn.Linear(10, 10)))  # an inserted layer

A spec is ``{"path", "type", "kwargs"}`` (plus ``"children"`` for Sequential / ModuleList);
a module already in the model is written as ``{"ref": "<its path>"}`` so that load keeps that
very module (with its own, possibly edited, structure) at the new place.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.utils import qualified_name, read_only

# structural attributes of common layers; surgery changes these, load sets them back
STRUCTURAL_ATTRS = (
    "in_features",
    "out_features",
    "in_channels",
    "out_channels",
    "groups",
    "num_features",
    "normalized_shape",
    "num_groups",
    "num_channels",
    "embedding_dim",
    "num_embeddings",
    "embed_dim",
    "num_heads",
    "head_dim",
    "kdim",
    "vdim",
    "hidden_dim",
    "_qkv_same_embed_dim",
)

# only classes from these packages are rebuilt from a manifest (never import arbitrary code)
_ALLOWED_PREFIXES = ("torch.nn.", "netsculpt.")
_CONTAINERS = (nn.Sequential, nn.ModuleList)


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (tuple, list)):
        return all(_jsonable(v) for v in value)
    return False


def _to_json(value: Any) -> Any:
    return [_to_json(v) for v in value] if isinstance(value, (tuple, list)) else value


def _from_json(value: Any) -> Any:
    # torch.nn constructors accept tuples wherever they store tuples (kernel_size, shapes)
    return tuple(_from_json(v) for v in value) if isinstance(value, list) else value


def _structural_kind(name: str, value: Any) -> bool:
    """Whether a whitelisted attribute holds what it names on torch layers (a size ≥ 1, a
    shape, a flag); a model's own attribute of that name that holds something else (timm
    LeViT's per-stage ``embed_dim`` tuple, an ``out_features`` of 0) is no structural size."""
    if name == "_qkv_same_embed_dim" or value is None:
        return value is None or isinstance(value, bool)
    if name == "normalized_shape":
        return isinstance(value, (tuple, list)) and all(_structural_kind("", v) for v in value)
    return type(value) is int and value >= 1


def structural_attrs(module: nn.Module) -> dict[str, Any]:
    """Structural attributes present on ``module`` (whitelist + its ``_netsculpt_attrs``).

    >>> structural_attrs(nn.Linear(4, 3))
    {'in_features': 4, 'out_features': 3}
    """
    names = STRUCTURAL_ATTRS + tuple(getattr(module, "_netsculpt_attrs", ()))
    out = {}
    for name in names:
        if read_only(module, name):
            continue  # derived from other attributes (recorded on their own modules)
        if name in module.__dict__ or hasattr(type(module), name):
            value = getattr(module, name, None)
            own = name not in STRUCTURAL_ATTRS or _structural_kind(name, value)
            if _jsonable(value) and not callable(value) and own:
                out[name] = _to_json(value)
    return out


def init_kwargs(module: nn.Module, path: str = "") -> dict[str, Any]:
    """Constructor kwargs that rebuild ``module``'s structure (weights come from the state dict).

    A class may define ``_netsculpt_init()`` returning them; torch.nn layers are read from their
    attributes by constructor parameter name.

    >>> init_kwargs(nn.Linear(4, 3, bias=False))
    {'in_features': 4, 'out_features': 3, 'bias': False}
    """
    custom = getattr(module, "_netsculpt_init", None)
    if callable(custom):
        kwargs = dict(custom())
    else:
        kwargs = {}
        params = inspect.signature(type(module).__init__).parameters
        for name, param in list(params.items())[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or name in (
                "device",
                "dtype",
            ):
                continue
            if name == "bias" and isinstance(param.default, bool):
                kwargs[name] = getattr(module, "bias", None) is not None
            elif hasattr(module, name) and _jsonable(getattr(module, name)):
                kwargs[name] = getattr(module, name)
            elif param.default is param.empty:
                raise InputError(
                    f"cannot record {qualified_name(module)} at '{path}': constructor argument "
                    f"'{name}' is not an attribute; define _netsculpt_init() returning its kwargs"
                )
    for key, value in kwargs.items():
        if not _jsonable(value):
            raise InputError(
                f"cannot record {qualified_name(module)} at '{path}': kwarg '{key}' "
                f"({type(value).__name__}) is not JSON; return plain values from _netsculpt_init"
            )
    return {k: _to_json(v) for k, v in kwargs.items()}


def _shapes(module: nn.Module) -> list:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def _twin(module: nn.Module, twins: dict[str, nn.Module]) -> str | None:
    """Path of another module of the same class and the same tensor shapes, if any."""
    shapes = None
    for path, other in twins.items():
        if other is not module and type(other) is type(module):
            shapes = _shapes(module) if shapes is None else shapes
            if _shapes(other) == shapes:
                return path
    return None


def module_spec(
    module: nn.Module,
    known: dict[int, str],
    path: str = "",
    twins: dict[str, nn.Module] | None = None,
) -> dict[str, Any]:
    """Rebuildable spec of ``module``; modules in ``known`` (id → path) become ``{"ref": path}``.

    >>> module_spec(nn.Sequential(nn.Identity()), {})["children"]
    [['0', {'type': 'torch.nn.modules.linear.Identity', 'kwargs': {}}]]
    """
    if id(module) in known:
        return {"ref": known[id(module)]}
    type_name = qualified_name(module)
    twin = _twin(module, twins or {})
    if not type_name.startswith(_ALLOWED_PREFIXES) and twin is not None:
        # a copy of a module of the model (block expansion): rebuilt by copying that module
        return {"copy": twin}
    if not type_name.startswith(_ALLOWED_PREFIXES):
        raise InputError(
            f"cannot record {type_name} at '{path}': only torch.nn and netsculpt modules can be "
            "rebuilt on load; use a torch.nn container or a netsculpt module"
        )
    spec: dict[str, Any] = {"type": type_name}
    if type(module) in _CONTAINERS:  # subclasses have their own constructors
        spec["kwargs"] = {}
        spec["children"] = [
            [name, module_spec(child, known, f"{path}.{name}" if path else name, twins)]
            for name, child in module.named_children()
        ]
    else:
        spec["kwargs"] = init_kwargs(module, path)
    return spec


def record_module(model: nn.Module, path: str, module: nn.Module) -> dict[str, Any]:
    """Put ``module`` at ``path`` in ``model`` and record how to rebuild it; returns the spec.

    Parts of ``module`` already in ``model`` are recorded as references to their current path.
    A later edit at the same path replaces an earlier one unless it refers back to it.

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    >>> record_module(net, "1", nn.Identity())["type"]
    'torch.nn.modules.linear.Identity'
    """
    if not path:
        raise InputError("record_module: path is empty; the root module cannot be replaced")
    known = {}
    for name, sub in model.named_modules(remove_duplicate=False):
        if name and id(sub) not in known:
            known[id(sub)] = name
    current = get_submodule(model, path)  # the target must exist: replacing, not inventing
    if current is module:
        # edited in place (e.g. its class swapped): record what it is now, not a self-reference
        known.pop(id(module), None)
    twins = {name: sub for name, sub in model.named_modules() if name}
    spec = {"path": path, **module_spec(module, known, path, twins)}
    set_submodule(model, path, module)
    edits: list[dict[str, Any]] = list(getattr(model, "_netsculpt_edits", []))
    if not _refers_into(spec, path):
        # the new module is self-contained: earlier edits at or below this path are moot
        edits = [e for e in edits if not _is_under(e["path"], path)]
    edits.append(spec)
    model._netsculpt_edits = edits
    return spec


def _is_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def _refers_into(spec: dict[str, Any], path: str) -> bool:
    if "ref" in spec:
        return _is_under(spec["ref"], path)
    return any(_refers_into(child, path) for _, child in spec.get("children", []))


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule(path)`` with an InputError naming the path."""
    try:
        return model.get_submodule(path)
    except AttributeError as exc:
        raise InputError(f"no submodule '{path}' in {type(model).__name__}") from exc


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``path`` (works for Sequential / ModuleList indices)."""
    parent_path, _, leaf = path.rpartition(".")
    parent = get_submodule(model, parent_path) if parent_path else model
    setattr(parent, leaf, module)
