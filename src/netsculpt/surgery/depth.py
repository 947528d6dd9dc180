"""Depth edits: remove a block (skip / identity / bridge), insert an identity layer
(Net2DeeperNet), expand a residual block (LLaMA-Pro). Every replacement is recorded in the
structure manifest so that ``netsculpt.load`` can replay it; :class:`Undo` puts things back.

>>> import torch
>>> from torch import nn
>>> from netsculpt.graph.blocks import find_blocks
>>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
>>> block = find_blocks(net, torch.randn(2, 4))[1]
>>> remove_block(net, block)
'2: replaced by the identity'
>>> type(net[2]).__name__
'Identity'
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from netsculpt.core.edits import record_module, set_submodule
from netsculpt.core.errors import InputError
from netsculpt.graph.blocks import IDEMPOTENT, Block
from netsculpt.surgery.hf import layer_fields

_HF_IDX = ("layer_idx",)


def _stream(x: Any, args: tuple) -> Any:
    """The block's input: its first tensor argument (a loaded ``.pt2``'s blocks may take
    symbolic sizes before it)."""
    if isinstance(x, torch.Tensor):
        return x
    return next((a for a in args if isinstance(a, torch.Tensor)), x)


class Skip(nn.Module):
    """A removed residual block: returns its (first tensor) input; other arguments are ignored."""

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        return _stream(x, args)


class Zero(nn.Module):
    """A removed residual branch ``f`` of ``x + f(x)``: returns zeros shaped like its input."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.zeros_like(_stream(x, args))


class Chain(nn.Module):
    """``second(first(...))`` for a block that takes more than its input (a loaded ``.pt2``'s
    block may take symbolic sizes too): both get the same other arguments."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.first(*args, **kwargs)
        i = next((k for k, a in enumerate(args) if isinstance(a, torch.Tensor)), 0)
        return self.second(*args[:i], out, *args[i + 1 :], **kwargs)


def _extra_inputs(m: nn.Module) -> bool:
    """A module that runs a graph taking more than one input (an unflattened program's)."""
    g = getattr(m, "graph", None)
    return isinstance(g, torch.fx.Graph) and sum(n.op == "placeholder" for n in g.nodes) > 1


class Undo:
    """Remembers replaced modules, manifest entries and config fields; ``restore()`` reverts."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.edits = list(getattr(model, "_netsculpt_edits", []))
        self.modules: list[tuple[str, nn.Module]] = []
        self.attrs: list[tuple[Any, str, Any]] = []
        self.notes: list[str] = []
        self.callbacks: list = []

    def later(self, fn) -> None:
        """Run ``fn`` on restore (another editor's own undo), newest first."""
        self.callbacks.append(fn)

    def replace(self, path: str, new: nn.Module) -> None:
        self.modules.append((path, self.model.get_submodule(path)))
        try:
            record_module(self.model, path, new)
        except InputError as e:  # e.g. a transformers layer: its config was updated instead
            set_submodule(self.model, path, new)
            if hasattr(self.model, "module_call_graph"):
                return  # a loaded .pt2 program: saved by exporting it again, not by a manifest
            self.notes.append(f"{path}: not in the netsculpt manifest ({e}); use save_pretrained")

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        self.attrs.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def restore(self) -> None:
        for fn in reversed(self.callbacks):
            fn()
        self.callbacks = []
        for obj, name, value in reversed(self.attrs):
            setattr(obj, name, value)
        for path, old in reversed(self.modules):
            parent, _, leaf = path.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, leaf, old)
        self.model._netsculpt_edits = self.edits
        self.modules, self.attrs = [], []


def _container(model: nn.Module, block: Block) -> nn.Module | None:
    if block.index < 0:
        return None
    return model.get_submodule(block.container) if block.container else model


def _fix_layer_list(
    model: nn.Module, block: Block, order: list[int], old_len: int, undo: Undo
) -> None:
    """Keep a Hugging Face config (depth and per-layer fields, see
    :func:`~netsculpt.surgery.hf.layer_fields`) and the layers' ``layer_idx`` in step with a
    ModuleList rebuilt as ``order`` (original index of each new item)."""
    owners = [model] + [
        model.get_submodule(".".join(block.container.split(".")[:i]))
        for i in range(1, block.container.count(".") + 2)
    ]
    configs = {id(c): c for o in owners if (c := getattr(o, "config", None)) is not None}
    for cfg in configs.values():
        if getattr(cfg, "num_hidden_layers", None) == old_len:
            for name, value in layer_fields(cfg, order, old_len).items():
                undo.setattr(cfg, name, value)
            undo.setattr(cfg, "num_hidden_layers", len(order))
    layers = model.get_submodule(block.container)
    for i, layer in enumerate(layers):
        for obj in (layer, getattr(layer, "self_attn", None), getattr(layer, "attention", None)):
            if obj is not None and isinstance(getattr(obj, "layer_idx", None), int):
                undo.setattr(obj, "layer_idx", i)


def _rebuild(model: nn.Module, block: Block, items: list[nn.Module], undo: Undo, edit: str) -> None:
    """Replace the block's container with one holding ``items`` (a ModuleList keeps HF in step)."""
    old = _container(model, block)
    if isinstance(old, nn.ModuleList):
        new: nn.Module = nn.ModuleList(items)
    else:
        new = nn.Sequential(OrderedDict(_names(old, items)))
    undo.replace(block.container, new)
    if isinstance(old, nn.ModuleList):
        n, i = len(old), block.index
        # delete: item i goes; insert: a copy of item i follows it
        order = [*range(i), *range(i + 1, n)] if edit == "delete" else [*range(i + 1), *range(i, n)]
        _fix_layer_list(model, block, order, n, undo)


def _names(old: nn.Module, items: list[nn.Module]) -> list[tuple[str, nn.Module]]:
    """Keys for a rebuilt Sequential: renumbered if they were numbers, else kept (+ "_copy")."""
    named = {id(m): n for n, m in old.named_children()}
    if all(n.isdigit() for n in named.values()):
        return [(str(i), m) for i, m in enumerate(items)]
    out: list[tuple[str, nn.Module]] = []
    for m in items:
        name = named.get(id(m)) or f"{out[-1][0] if out else 'block'}_copy"
        while any(name == n for n, _ in out) or (id(m) not in named and name in named.values()):
            name += "_copy"
        out.append((name, m))
    return out


def make_bridge(block: Block, w: torch.Tensor, b: torch.Tensor, like: nn.Module) -> nn.Module:
    """A Linear (feature dim -1) or 1x1 conv (dim 1) computing ``x @ w.T + b``."""
    ref = next(like.parameters())
    out_f, in_f = w.shape
    if block.feature_dim == -1:
        layer: nn.Module = nn.Linear(in_f, out_f)
        weight = w
    else:
        conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[len(block.in_shape)]
        layer = conv(in_f, out_f, 1)
        weight = w.reshape(out_f, in_f, *([1] * (len(block.in_shape) - 2)))
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(b)
    return layer.to(device=ref.device, dtype=ref.dtype)


def fold_linear(first: nn.Linear, second: nn.Linear) -> nn.Linear:
    """One Linear equal to ``second(first(x))``."""
    w = second.weight.double() @ first.weight.double()
    b = second.weight.double() @ first.bias.double()
    if second.bias is not None:
        b = b + second.bias.double()
    out = nn.Linear(first.in_features, second.out_features)
    with torch.no_grad():
        out.weight.copy_(w)
        out.bias.copy_(b)
    return out.to(device=second.weight.device, dtype=second.weight.dtype)


def remove_block(
    model: nn.Module,
    block: Block,
    bridge: nn.Module | None = None,
    *,
    fold: bool = True,
    undo: Undo | None = None,
) -> str:
    """Remove ``block`` in place; returns one line saying how. ``bridge`` replaces a
    shape-changing span (see :func:`make_bridge`); ``fold`` merges it into the next Linear."""
    if not block.removable:
        raise InputError(f"block '{block.name}' cannot be removed: {block.reason}")
    undo = undo or Undo(model)
    box = _container(model, block)
    seq = isinstance(box, nn.Sequential)
    if block.how in ("skip", "zero") and isinstance(box, nn.ModuleList):
        items = [m for i, m in enumerate(box) if i != block.index]
        _rebuild(model, block, items, undo, "delete")
        keeps = " (the skip path remains)" if block.residual else ""
        return f"{block.name}: deleted from {block.container}{keeps}"
    if block.how in ("skip", "zero"):
        undo.replace(
            block.name, nn.Identity() if seq else Skip() if block.how == "skip" else Zero()
        )
        return f"{block.name}: removed (the skip path remains)"
    if block.how == "identity":
        for p in block.modules:
            undo.replace(p, nn.Identity() if seq else Skip())
        return f"{block.name}: replaced by the identity"
    if bridge is None:
        raise InputError(f"block '{block.name}' changes shape: it needs a bridge")
    for p in block.modules[1:]:
        undo.replace(p, nn.Identity() if seq else Skip())
    undo.replace(block.modules[0], bridge)
    if block.how == "bridge+fold" and fold:
        return fold_bridge(model, block, undo)
    return f"{block.name}: replaced by a {_describe(bridge)} bridge"


def fold_bridge(model: nn.Module, block: Block, undo: Undo | None = None) -> str:
    """Merge the bridge at the block's first item into the Linear that follows the block."""
    undo = undo or Undo(model)
    box = _container(model, block)
    bridge = model.get_submodule(block.modules[0])
    names = [n for n, _ in box.named_children()]
    nxt = names[block.index + len(block.modules)]
    nxt_path = f"{block.container}.{nxt}" if block.container else nxt
    undo.replace(nxt_path, fold_linear(bridge, model.get_submodule(nxt_path)))
    undo.replace(block.modules[0], nn.Identity())
    return f"{block.name}: bridged ({_describe(bridge)}) and folded into {nxt_path}"


def _describe(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return f"Linear({m.in_features}->{m.out_features})"
    return f"{type(m).__name__}({m.in_channels}->{m.out_channels}, 1x1)"


# -- grow ---------------------------------------------------------------------------------------
def identity_layer(block: Block, like: nn.Module) -> nn.Module:
    """Net2DeeperNet: a Linear with ``W = I`` or a 3x3 conv with a Dirac kernel."""
    c = block.out_shape[block.feature_dim]
    ref = next(like.parameters(), None)
    if block.feature_dim == -1:
        layer: nn.Module = nn.Linear(c, c)
        with torch.no_grad():
            layer.weight.copy_(torch.eye(c))
    else:
        conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[len(block.out_shape)]
        layer = conv(c, c, 3, padding=1)
        nn.init.dirac_(layer.weight)
    with torch.no_grad():
        layer.bias.zero_()
    return layer if ref is None else layer.to(device=ref.device, dtype=ref.dtype)


def insert_identity_layer(model: nn.Module, block: Block, undo: Undo | None = None) -> nn.Module:
    """Insert an identity layer (+ a copy of the activation) after a plain layer that ends in an
    idempotent activation (``phi(phi(x)) == phi(x)``: ReLU yes, tanh / sigmoid / GELU no)."""
    undo = undo or Undo(model)
    last = model.get_submodule(block.modules[-1])
    if block.kind != "layer":
        raise InputError(f"block '{block.name}' is residual: grow it with a block copy instead")
    if len(block.modules) < 2 or not block.activation:
        raise InputError(
            f"block '{block.name}' does not end in an activation: an identity layer after it "
            f"would be linear; pick a block that ends in ReLU"
        )
    if not isinstance(last, IDEMPOTENT):
        raise InputError(
            f"cannot grow deeper after {type(last).__name__} at '{block.modules[-1]}': "
            f"phi(phi(x)) != phi(x), so an identity layer would change the output; "
            f"use a block ending in ReLU / ReLU6 / Hardtanh, or kind='wider'"
        )
    new = identity_layer(block, model.get_submodule(block.modules[0]))
    undo.replace(block.modules[-1], nn.Sequential(last, new, copy.deepcopy(last)))
    return new


def expand_block(model: nn.Module, block: Block, undo: Undo | None = None) -> nn.Module:
    """LLaMA-Pro block expansion: insert after ``block`` a copy whose output projection(s) are
    zero, so that the copy adds nothing at insertion (``x + 0``)."""
    undo = undo or Undo(model)
    if not block.residual:
        raise InputError(f"block '{block.name}' is not residual: use an identity layer")
    if not block.out_params:
        raise InputError(f"block '{block.name}': found no output projection to zero")
    orig = model.get_submodule(block.name)
    new = copy.deepcopy(orig)
    with torch.no_grad():
        for name in block.out_params:
            new.get_parameter(name).zero_()
    box = _container(model, block)
    if box is not None and block.container:
        items = list(box.children())
        items.insert(block.index + 1, new)
        _rebuild(model, block, items, undo, "insert")
    elif block.kind == "residual":
        undo.replace(
            block.name, Chain(orig, new) if _extra_inputs(orig) else nn.Sequential(orig, new)
        )
    else:
        raise InputError(f"branch '{block.name}' is not in a container: cannot add a copy")
    return new
