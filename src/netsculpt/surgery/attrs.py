"""Keep module attributes true to the sliced tensors, and snapshot everything an edit touches so
that a failed edit can be undone exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

# attributes that count attention heads, updated when a head group loses heads
HEAD_ATTRS = ("num_heads", "num_attention_heads", "n_heads", "n_head", "num_key_value_heads")


_MISSING = object()
# a module's tables: their entries are snapshotted one by one (tensors), not as a whole
_TABLES = ("_parameters", "_buffers", "_modules")


class Snapshot:
    """Original tensors, attributes, classes and masks of everything an edit touched, and the
    model's manifest entries (``_netsculpt_edits``): ``restore()`` leaves the model exactly as
    it was, attributes an edit added (``inner_dim``) removed again."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._tensors: dict[tuple[int, str], tuple] = {}
        self._attrs: dict[int, tuple] = {}
        self._fields: dict[tuple[int, str], tuple] = {}
        self._masks: dict[str, tuple] = {}
        # record_module replaces the list, never appends to it: keeping the object is enough
        self._edits = vars(model).get("_netsculpt_edits", _MISSING)

    def save_tensor(self, mod: nn.Module, attr: str, is_param: bool) -> None:
        key = (id(mod), attr)
        if key not in self._tensors:
            store = mod._parameters if is_param else mod._buffers
            self._tensors[key] = (mod, attr, is_param, store[attr])

    def save_attrs(self, mod: nn.Module) -> None:
        if id(mod) not in self._attrs:
            state = {k: v for k, v in vars(mod).items() if k not in _TABLES}
            self._attrs[id(mod)] = (mod, mod.__class__, state)

    def save_field(self, obj: Any, name: str) -> None:
        key = (id(obj), name)
        if key not in self._fields:
            self._fields[key] = (obj, name, getattr(obj, name))

    def save_mask(self, masks: dict, name: str) -> None:
        if name not in self._masks:
            self._masks[name] = (masks, masks.get(name))

    def restore(self) -> None:
        for mod, attr, is_param, value in self._tensors.values():
            (mod._parameters if is_param else mod._buffers)[attr] = value
        for mod, cls, state in self._attrs.values():
            mod.__class__ = cls
            for k in [k for k in vars(mod) if k not in state and k not in _TABLES]:
                del mod.__dict__[k]  # added by the edit
            mod.__dict__.update(state)
        for obj, name, value in self._fields.values():
            setattr(obj, name, value)
        for name, (masks, value) in self._masks.items():
            if value is None:
                masks.pop(name, None)
            else:
                masks[name] = value
        if self._edits is _MISSING:
            self.model.__dict__.pop("_netsculpt_edits", None)
        else:
            self.model.__dict__["_netsculpt_edits"] = self._edits


def _set(snap: Snapshot, mod: nn.Module, **values) -> None:
    snap.save_attrs(mod)
    for k, v in values.items():
        if hasattr(mod, k):
            mod.__dict__[k] = v


def fix_attributes(model: nn.Module, graph, plan, changed: set[str], snap: Snapshot) -> None:
    """Update shape attributes of every module whose tensors changed (and head counts)."""
    modules = dict(model.named_modules())
    for path in sorted(changed):
        mod = modules.get(path)
        if mod is not None:
            _fix_module(model, path, mod, graph, plan, snap)
    for path, attr, lays in getattr(graph, "shape_attrs", []):
        mod = modules.get(path)
        if mod is not None and hasattr(mod, attr):
            _set(snap, mod, **{attr: tuple(graph.kept_size(lay, plan) for lay in lays)})
    _fix_heads(modules, graph, plan, snap)
    _fix_known_models(model, modules, snap)
    from netsculpt.surgery.hf import fix_hf_modules

    fix_hf_modules(model, snap)  # Hugging Face width attributes and config


def _fix_module(model, path: str, mod: nn.Module, graph, plan, snap: Snapshot) -> None:
    w = getattr(mod, "weight", None)
    if isinstance(mod, nn.Linear):
        _set(snap, mod, in_features=w.shape[1], out_features=w.shape[0])
    elif isinstance(mod, nn.modules.conv._ConvNd):
        g_lay = graph.conv_groups.get(path)
        groups = graph.kept_size(g_lay, plan) if g_lay is not None else 1
        if mod.transposed:
            _set(snap, mod, in_channels=w.shape[0], out_channels=w.shape[1] * groups, groups=groups)
        else:
            lay = graph.conv_inputs.get(path)
            cin = graph.kept_size(lay, plan) if lay is not None else w.shape[1] * groups
            _set(snap, mod, in_channels=cin, out_channels=w.shape[0], groups=groups)
    elif isinstance(mod, (nn.modules.batchnorm._NormBase,)):
        ref = w if w is not None else mod.running_mean
        if ref is not None:
            _set(snap, mod, num_features=ref.shape[0])
    elif isinstance(mod, nn.GroupNorm):
        _set(snap, mod, num_channels=w.shape[0])
    elif isinstance(mod, nn.LayerNorm) or type(mod).__name__ in ("RMSNorm", "LayerNorm2d"):
        if w is not None:
            _set(snap, mod, normalized_shape=tuple(w.shape))
    elif isinstance(mod, nn.Embedding):
        _set(snap, mod, num_embeddings=w.shape[0], embedding_dim=w.shape[1])
    elif isinstance(mod, nn.MultiheadAttention):
        _fix_mha(model, path, mod, snap)


def _fix_mha(model, path: str, mod: nn.MultiheadAttention, snap: Snapshot) -> None:
    from netsculpt.surgery.modules import PrunedMultiheadAttention

    if mod.in_proj_weight is None:
        raise NotImplementedError(
            f"'{path}': nn.MultiheadAttention with separate q/k/v widths is not supported"
        )
    embed = mod.in_proj_weight.shape[1]
    inner = mod.in_proj_weight.shape[0] // 3
    head_dim = getattr(mod, "inner_dim", mod.embed_dim) // mod.num_heads
    heads = inner // head_dim
    if inner == embed and not isinstance(mod, PrunedMultiheadAttention):
        _set(snap, mod, embed_dim=embed, kdim=embed, vdim=embed, num_heads=heads, head_dim=head_dim)
        return
    _set(snap, mod, embed_dim=embed, kdim=embed, vdim=embed, num_heads=heads, head_dim=head_dim)
    mod.__class__ = PrunedMultiheadAttention
    mod.__dict__["inner_dim"] = inner
    _record(model, path, mod)


def _record(model, path: str, mod: nn.Module) -> None:
    try:
        from netsculpt.core.edits import record_module
    except ImportError:  # io not installed in a stripped-down build
        return
    record_module(model, path, mod)


def _fix_heads(modules: dict[str, nn.Module], graph, plan, snap: Snapshot) -> None:
    """Modules (and their parents) that count the heads of a pruned head group."""
    for gid, channels in plan.items():
        g = graph.groups[gid]
        if g.kind != "head" or len(channels) == 0:
            continue
        kept = g.size - len(np.unique(channels))
        paths: set[str] = set()
        for m in g.members:
            parts = m.module.split(".") if m.module else []
            for k in range(len(parts), max(len(parts) - 3, -1), -1):
                paths.add(".".join(parts[:k]))
        for p in paths:
            mod = modules.get(p)
            if mod is None:
                continue
            for attr in HEAD_ATTRS:
                if getattr(mod, attr, None) == g.size and not isinstance(
                    mod, nn.MultiheadAttention
                ):
                    _set(snap, mod, **{attr: kept})


def _fix_known_models(model, modules: dict[str, nn.Module], snap: Snapshot) -> None:
    """Architectures that keep a width in a plain attribute used in forward."""
    for path, mod in modules.items():
        name = type(mod).__name__
        if name in ("ShiftedWindowAttention", "ShiftedWindowAttentionV2"):
            _fix_swin_attention(model, path, mod, snap)
        if name == "VisionTransformer" and hasattr(mod, "conv_proj"):
            width = mod.conv_proj.out_channels
            if mod.hidden_dim != width:
                _set(snap, mod, hidden_dim=width)


def _fix_swin_attention(model, path: str, mod: nn.Module, snap: Snapshot) -> None:
    """torchvision's window attention derives head_dim from the input width: once heads are
    gone it needs the variant that reads the width from its projections."""
    w = mod.qkv.weight
    if w.shape[0] == 3 * w.shape[1]:
        return
    from netsculpt.surgery.tv_modules import PRUNED

    snap.save_attrs(mod)
    mod.__class__ = PRUNED[type(mod)]
    _record(model, path, mod)
