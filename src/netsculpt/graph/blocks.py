"""The depth view of a model: its sequence of blocks, read from the exported graph.

A block is what ``cut`` can remove and ``grow`` can duplicate:

- ``"residual"``: a module computing ``x + f(x)`` itself (a ResNet ``BasicBlock``, a transformer
  layer, a ConvNeXt ``CNBlock``); optionally followed by an idempotent activation of a
  non-negative input (torchvision's ``relu(x + f(x))``). Removed, it becomes the identity.
- ``"branch"``: a module ``f`` whose caller computes ``x + f(x)``. Removed, it outputs zeros.
- ``"layer"``: a plain layer of an ``nn.Sequential`` (a Linear / conv plus the norm and
  activation that follow it). Removed, it becomes the identity (same shapes) or a bridge.

Blocks are the items of ``nn.Sequential`` / ``nn.ModuleList`` containers, residual branches found
anywhere, or, in a model without containers, the root's children in call order.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))
>>> [(b.name, b.kind, b.in_shape[-1], b.out_shape[-1]) for b in find_blocks(net, torch.randn(4, 10))]
[('0', 'layer', 10, 64), ('2', 'layer', 64, 32), ('4', 'layer', 32, 1)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netsculpt.graph.block_rules import (  # noqa: F401  (re-exported: the public names)
    _changed,
    _plain_how,
    block_ignored,
    blocks_by_name,
    bridge_dim,
    own_group,
)
from netsculpt.graph.capture import Captured, _clean_path, capture

# Activations with phi(phi(x)) == phi(x): Net2DeeperNet may insert an identity layer after them.
IDEMPOTENT = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Identity)
_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.PReLU, nn.Dropout, nn.Identity,
)  # fmt: skip
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
_ADDS = {"add.Tensor", "add_.Tensor"}
_NONNEG = {"relu.default", "relu_.default", "sigmoid.default", "softmax.int"}
_PASS = {  # ops through which non-negativity / "the same value" survives
    "max_pool2d.default", "max_pool1d.default", "avg_pool2d.default", "adaptive_avg_pool2d.default",
    "dropout.default", "dropout_.default", "clone.default", "contiguous.default", "view.default",
    "reshape.default", "flatten.using_ints", "permute.default", "transpose.int", "getitem",
}  # fmt: skip
_SAME = {  # ops that return their input's value unchanged (in eval mode)
    "to.dtype", "to.device", "to.dtype_layout", "clone.default", "contiguous.default",
    "alias.default", "dropout.default", "detach.default", "_to_copy.default",
}  # fmt: skip
_MAC_OPS = {"linear.default", "addmm.default", "mm.default", "bmm.default", "matmul.default"}
_CONTAINERS = (nn.Sequential, nn.ModuleList)


def _container_type(m: nn.Module) -> type | None:
    """``nn.Sequential`` / ``nn.ModuleList`` for such a container (exactly that class), or for
    the interpreter module that ``torch.export.unflatten`` made of one (a loaded ``.pt2``: its
    ``_ty`` names the original class; its items may take extra symbolic-size arguments)."""
    if type(m) in _CONTAINERS:
        return type(m)
    ty = getattr(m, "_ty", None)
    for cls in _CONTAINERS:
        if ty == f"{cls.__module__}.{cls.__qualname__}":
            return cls
    return None


@dataclass(frozen=True)
class Block:
    """One removable / growable unit of depth; shapes are those seen on the example inputs."""

    name: str  # the block's module path (a plain layer: its first item)
    kind: str  # "residual" | "branch" | "layer"
    modules: tuple[str, ...]  # module paths that make up the block (container items)
    container: str  # path of the nn.Sequential / nn.ModuleList holding it ("" = none)
    index: int  # position of the first item in the container (-1 = not a container item)
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int
    out_params: tuple[str, ...] = ()  # params (relative to the block) writing into the residual add
    activation: str = ""  # class name of a plain layer's trailing activation
    removable: bool = True
    how: str = ""  # "skip" | "zero" | "identity" | "bridge" | "bridge+fold"
    reason: str = ""  # why not removable
    feature_dim: int = -1  # the channel dim of the block's input (1 for NCHW convs)

    @property
    def residual(self) -> bool:
        return self.kind in ("residual", "branch")

    @property
    def same_shape(self) -> bool:
        return self.in_shape == self.out_shape


def _op(node: torch.fx.Node) -> str:
    t = node.target
    if getattr(t, "__name__", "") == "getitem":
        return "getitem"
    return (
        f"{getattr(t, '_opname', getattr(t, '__name__', str(t)))}.{getattr(t, '_overloadname', '')}"
    )


class _Index:
    """Per-node module membership and tensor-ness of one captured program."""

    def __init__(self, cap: Captured) -> None:
        self.cap = cap
        self.nodes = [n for n in cap.graph.nodes if n.op == "call_function"]
        self.order = {n: i for i, n in enumerate(cap.graph.nodes)}
        self.paths: dict[torch.fx.Node, set[str]] = {}
        for n in self.nodes:
            stack = n.meta.get("nn_module_stack") or {}
            self.paths[n] = {_clean_path(v[0]) for v in stack.values()}

    def inside(self, mods: set[str]) -> list[torch.fx.Node]:
        return [n for n in self.nodes if self.paths[n] & mods]

    def is_data(self, n: Any) -> bool:
        if not isinstance(n, torch.fx.Node):
            return False
        if n.op == "placeholder" and self.cap.input_kind.get(n.name, "user_input") != "user_input":
            return False
        return isinstance(n.meta.get("val"), torch.Tensor)

    def params_of(self, n: torch.fx.Node) -> list[str]:
        out = []
        for a in n.all_input_nodes:
            if a.op == "placeholder" and self.cap.input_kind.get(a.name) == "param":
                out.append(self.cap.tensor_of_input[a.name])
        return out

    def boundary(self, inner: list[torch.fx.Node]) -> tuple[list, list]:
        """(inputs, outputs) of a node set: data nodes used from outside / used outside."""
        s = set(inner)
        ins: list = []
        for n in inner:
            for a in n.all_input_nodes:
                if a not in s and self.is_data(a) and a not in ins:
                    ins.append(a)
        outs = [n for n in inner if self.is_data(n) and any(u not in s for u in n.users)]
        return ins, outs

    def nonneg(self, n: torch.fx.Node, depth: int = 0) -> bool:
        if depth > 20 or n.op != "call_function":
            return False
        op = _op(n)
        if op in _NONNEG:
            return True
        if op in _PASS:
            return self.nonneg(n.args[0], depth + 1)
        if op in _ADDS:
            return all(
                self.nonneg(a, depth + 1) for a in n.args[:2] if isinstance(a, torch.fx.Node)
            )
        return False

    def writer_params(self, n: torch.fx.Node, depth: int = 0) -> list[str]:
        """Params of the nearest op producing ``n`` (walking back through param-free ops)."""
        if depth > 40 or not isinstance(n, torch.fx.Node) or n.op != "call_function":
            return []
        ps = self.params_of(n)
        if ps:
            return ps
        data = [a for a in n.args if self.is_data(a)]
        return self.writer_params(data[0], depth + 1) if data else []

    def feature_dim(self, inner: list[torch.fx.Node]) -> int:
        for n in sorted(inner, key=self.order.__getitem__):
            op = _op(n)
            if op.startswith("conv") or op.startswith("batch_norm"):
                return 1
            if op in _MAC_OPS or op.startswith("layer_norm") or op.startswith("embedding"):
                return -1
        return -1

    def macs(self, inner: list[torch.fx.Node]) -> int:
        total = 0
        for n in inner:
            op, val = _op(n), n.meta.get("val")
            if not isinstance(val, torch.Tensor):
                continue
            if op in _MAC_OPS or op.startswith("conv"):
                w = [a for a in n.all_input_nodes if a is not n.args[0]]
                src = n.args[0].meta.get("val") if isinstance(n.args[0], torch.fx.Node) else None
                if op.startswith("conv") and w:
                    k = w[0].meta["val"]
                    total += val.numel() * int(k[0].numel())
                elif src is not None and isinstance(src, torch.Tensor):
                    total += val.numel() * int(src.shape[-1])
            elif op.startswith("scaled_dot_product_attention"):
                q = n.args[0].meta["val"]
                k = n.args[1].meta["val"]
                total += 2 * q.numel() * int(k.shape[-2])
        return total


def _strip(n: Any, stop: Any = ()) -> Any:
    """Walk back through value-preserving ops (casts, eval dropout), stopping at ``stop``."""
    while (
        isinstance(n, torch.fx.Node)
        and n not in stop
        and n.op == "call_function"
        and _op(n) in _SAME
    ):
        n = n.args[0]
    return n


def _residual_chain(ix: _Index, out: torch.fx.Node, inputs: list, inner: set) -> tuple:
    """If ``out`` is ``x + f1 + f2 ...`` with ``x`` an input (optionally under an idempotent
    activation of a non-negative x): (x, [branch nodes]); else (None, [])."""
    node, post = out, False
    if _op(node) in ("relu.default", "relu_.default") and node.args[0] in inner:
        node, post = node.args[0], True
    branches: list = []
    while _op(node) in _ADDS and node in inner:
        a, b = _strip(node.args[0], inputs), _strip(node.args[1], inputs)
        for skip, br in ((a, b), (b, a)):
            if skip in inputs:
                if post and not ix.nonneg(skip):
                    return None, []
                return skip, [*branches, br]
        for skip, br in ((a, b), (b, a)):
            if isinstance(skip, torch.fx.Node) and _op(skip) in _ADDS and skip in inner:
                branches.append(br)
                node = skip
                break
        else:
            return None, []
    return None, []


def _walk(model: nn.Module, path: str, residual: set[str], out: list) -> None:
    """Collect (container, index, item path) for container items, recursing into plain
    containers and into modules that are not blocks themselves."""
    if _container_type(model) is not None:
        for i, (name, child) in enumerate(model.named_children()):
            p = f"{path}.{name}" if path else name
            if _container_type(child) is not None and p not in residual:
                _walk(child, p, residual, out)
            else:
                out.append((path, i, p))
        return
    for name, child in model.named_children():
        p = f"{path}.{name}" if path else name
        if p in residual:
            out.append(("", -1, p))
        else:
            _walk(child, p, residual, out)


def _group_plain(model: nn.Module, items: list[tuple[str, int, str]]) -> list[list]:
    """Group container items into plain layers: a compute item absorbs following norms and
    element-wise activations of the same container."""
    groups: list[list] = []
    for it in items:
        mod = model.get_submodule(it[2])
        absorb = isinstance(mod, (*_ELEMENTWISE, *_NORMS))
        if groups and absorb and groups[-1][0][0] == it[0] and groups[-1][-1][1] == it[1] - 1:
            groups[-1].append(it)
        else:
            groups.append([it])
    return groups


def find_blocks(model: nn.Module, example_inputs: Any, cap: Captured | None = None) -> list[Block]:
    """The model's blocks in execution order (see the module docstring for what a block is).

    Reads only: captures the model with ``torch.export`` (or uses ``cap``) and never edits it.
    """
    cap = cap or capture(model, example_inputs)
    ix = _Index(cap)
    mods = dict(model.named_modules())
    # 1. residual modules: x + f(x) inside ("residual") or around them ("branch")
    kinds: dict[str, tuple] = {}
    for p, m in mods.items():
        if not p or isinstance(m, nn.ModuleList) or _container_type(m) is nn.ModuleList:
            continue
        plain_seq = _container_type(m) is nn.Sequential  # residual only through its items
        inner = ix.inside({p})
        if not inner:
            continue
        ins, outs = ix.boundary(inner)
        if len(outs) != 1:
            continue
        skip, brs = (None, []) if plain_seq else _residual_chain(ix, outs[0], ins, set(inner))
        if skip is not None:
            kinds[p] = ("residual", skip, outs[0], brs)
            continue
        for u in outs[0].users:
            if _op(u) in _ADDS and u not in inner:
                other = _strip(u.args[1] if u.args[0] is outs[0] else u.args[0], ins)
                if other in ins:
                    kinds[p] = ("branch", other, outs[0], [outs[0]])
    # keep the outermost residual modules
    outer = {p for p in kinds if not any(p.startswith(q + ".") for q in kinds)}
    items: list[tuple[str, int, str]] = []
    _walk(model, "", outer, items)
    if not items:  # a model without containers: the root's children are its layers
        items = [("", i, name) for i, (name, _) in enumerate(model.named_children())]
    blocks = []
    for group in _group_plain(model, items):
        paths = [p for _, _, p in group]
        b = _make_block(model, ix, group, kinds.get(paths[0]) if paths[0] in outer else None)
        if b is not None and b[1].reason.endswith("outputs") and len(group) > 1:
            # an absorbed activation is shared with other layers: keep the items apart
            blocks.extend(x for it in group if (x := _make_block(model, ix, [it], None)))
        elif b is not None:
            blocks.append(b)
    blocks.sort(key=lambda b: b[0])
    return [b for _, b in blocks]


def _make_block(model: nn.Module, ix: _Index, group: list, res: tuple | None) -> tuple | None:
    paths = tuple(p for _, _, p in group)
    inner = ix.inside(set(paths))
    if not inner:
        return None  # never called on the example inputs (or parameter-free and traced away)
    first = min(ix.order[n] for n in inner)
    params = sum(
        p.numel()
        for p in {id(p): p for q in paths for p in model.get_submodule(q).parameters()}.values()
    )
    container, index = group[0][0], group[0][1]
    macs, fdim = ix.macs(inner), ix.feature_dim(inner)
    prefix = paths[0] + "."
    if res is not None:
        kind, skip, out, brs = res
        outp = [q for br in brs for q in ix.writer_params(br)]
        rel = tuple(q[len(prefix) :] for q in outp if q.startswith(prefix))
        shape = tuple(skip.meta["val"].shape)
        how = "skip" if kind == "residual" else "zero"
        b = Block(paths[0], kind, paths, container, index, shape, tuple(out.meta["val"].shape),
                  params, macs, rel, "", True, how, "", fdim)  # fmt: skip
        return first, b
    ins, outs = ix.boundary(inner)
    last = model.get_submodule(paths[-1])
    act = type(last).__name__ if isinstance(last, _ELEMENTWISE) and len(paths) > 1 else ""
    carried = _carried_state(model, container, ins, outs) if params else None
    if carried is not None:  # a layer-list item fed side inputs (masks, positions): deletable
        shp = tuple(carried.meta["val"].shape)
        b = Block(paths[0], "layer", paths, container, index, shp, shp, params, macs, (), act,
                  True, "skip", "", fdim)  # fmt: skip
        return first, b
    if len(ins) != 1 or len(outs) != 1:
        shp = tuple(outs[0].meta["val"].shape) if outs else ()
        ishp = tuple(ins[0].meta["val"].shape) if ins else ()
        b = Block(paths[0], "layer", paths, container, index, ishp, shp, params, macs, (), act,
                  False, "", f"{len(ins)} inputs / {len(outs)} outputs", fdim)  # fmt: skip
        return first, b
    ishp, oshp = tuple(ins[0].meta["val"].shape), tuple(outs[0].meta["val"].shape)
    how, reason = _plain_how(model, group, ishp, oshp, params, fdim)
    b = Block(paths[0], "layer", paths, container, index, ishp, oshp, params, macs, (), act,
              not reason, how, reason, fdim)  # fmt: skip
    return first, b


def _carried_state(model: nn.Module, container: str, ins: list, outs: list):
    """The input a ``ModuleList`` item hands on, when it also reads side inputs.

    A Hugging Face encoder layer is called as ``layer(hidden_states, attention_mask, ...)`` by a
    loop over its ``ModuleList``: deleting the item passes ``hidden_states`` straight to the next
    one. That holds when the item has one output and exactly one input of the output's shape
    (the mask and position tensors have other shapes). None otherwise."""
    if len(outs) != 1 or len(ins) < 2 or not container:
        return None
    holder = model.get_submodule(container)
    unflattened = hasattr(holder, "_ty") and _container_type(holder) is not None
    if not (isinstance(holder, nn.ModuleList) or unflattened):
        return None
    shape = tuple(outs[0].meta["val"].shape)
    same = [i for i in ins if tuple(i.meta["val"].shape) == shape]
    return same[0] if len(same) == 1 else None
