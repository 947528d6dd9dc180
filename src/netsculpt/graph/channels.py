"""The structure graph: channel groups of a captured model.

``build_graph(model, example_inputs)`` exports the model, walks the ATen graph once applying one
rule per op (:mod:`netsculpt.graph.rules`) to couple tensor dims, and turns the resulting classes
of coupled channels into :class:`Group` objects: every parameter/buffer slice that must go when a
channel goes. The graph only reads the model; :mod:`netsculpt.surgery` edits it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.core.errors import UnsupportedOpError
from netsculpt.graph import rules as R
from netsculpt.graph.capture import Captured, capture
from netsculpt.graph.layout import Atoms, Incompatible


@dataclass
class Member:
    """One tensor dim that a group's channels index into."""

    tensor: str  # parameter / buffer name, e.g. "layer1.0.conv1.weight"
    dim: int
    index_map: np.ndarray  # position in the dim -> channel of the group, or -1
    role: str  # "out" (produces the channel), "in" (consumes it), "norm", "other"
    module: str  # owning module path
    kind: str = "param"  # "param" | "buffer"

    def positions(self, channels: np.ndarray) -> np.ndarray:
        """Positions of this dim that belong to the given channels of the group."""
        return np.nonzero(np.isin(self.index_map, channels))[0]


@dataclass
class Group:
    """A set of channels that can only be removed together, index for index."""

    id: int
    size: int
    kind: str  # "channel" or "head"
    members: list[Member]
    prunable: bool
    reason: str | None = None  # why it is protected
    root: int = -1

    @property
    def modules(self) -> list[str]:
        return sorted({m.module for m in self.members})

    def describe(self) -> str:
        mods = self.modules
        head = ", ".join(mods[:4]) + (f" (+{len(mods) - 4})" if len(mods) > 4 else "")
        return f"{self.kind} group {self.id}: {self.size} × [{head}]"


def group_anchor(group: Group) -> list:
    """``[tensor, dim, first position of channel 0, of channel 1]`` of the group's first
    producing parameter member: names the group in any capture of the same architecture (the
    ``anchor`` of a plan's channel actions)."""
    members = [m for m in group.members if m.kind == "param"] or list(group.members)
    m = next((m for m in members if m.role == "out"), members[0])
    p0, p1 = (np.nonzero(m.index_map == c)[0] for c in (0, 1))
    return [m.tensor, m.dim, int(p0[0]) if len(p0) else -1, int(p1[0]) if len(p1) else -1]


@dataclass
class MacTerm:
    const: int
    numel_of: tuple[str, int]  # (node name, output index or -1)
    factors: list[tuple[str, int]]  # (node name, dim)


@dataclass
class StructureGraph:
    """Channel groups of a model plus what is needed to predict sizes after a removal plan."""

    captured: Captured
    atoms: Atoms
    layouts: dict[str, Any]
    tensor_layouts: dict[str, list]
    groups: list[Group]
    mac_terms: list[MacTerm]
    conv_groups: dict[str, tuple]  # conv module path -> layout of its groups dim
    conv_inputs: dict[str, tuple]  # conv module path -> layout of its input channel dim
    shape_attrs: list[tuple[str, str, list]] = field(default_factory=list)  # (module, attr, dims)
    _class_group: dict[int, Group] = field(default_factory=dict)

    # -- lookups -------------------------------------------------------------------------------
    def group(self, gid: int) -> Group:
        return self.groups[gid]

    def prunable_groups(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]

    def group_of_class(self, cls: int) -> Group | None:
        return self._class_group.get(cls)

    # -- predicting sizes ----------------------------------------------------------------------
    def removed_positions(self, layout: tuple, plan: dict[int, np.ndarray]) -> np.ndarray:
        """Positions of a dim with ``layout`` removed by ``plan`` ({group id: channels})."""
        n = self.atoms.layout_size(layout)
        mask = np.zeros(n, dtype=bool)
        for cls in set(self.atoms.leaves(layout)):
            g = self._class_group.get(cls)
            if g is not None and g.id in plan and len(plan[g.id]):
                mask |= np.isin(self.atoms.index_map(layout, cls), plan[g.id])
        return np.nonzero(mask)[0]

    def kept_size(self, layout: tuple, plan: dict[int, np.ndarray]) -> int:
        return self.atoms.layout_size(layout) - len(self.removed_positions(layout, plan))

    def _node_dims(self, name: str, index: int = -1) -> list:
        lays = self.layouts.get(name)
        if lays is None:
            return []
        if index >= 0 or (lays and isinstance(lays[0], list)):
            lays = lays[max(index, 0)]
        return lays

    def predict_macs(self, plan: dict[int, np.ndarray] | None = None) -> int:
        """MACs of the model after removing ``plan`` (counted on the captured graph)."""
        plan = plan or {}
        total = 0
        for term in self.mac_terms:
            v = term.const
            for lay in self._node_dims(*term.numel_of):
                v *= self.kept_size(lay, plan)
            for name, dim in term.factors:
                lays = self._node_dims(name)
                v *= self.kept_size(lays[dim], plan) if lays else 1
            total += v
        return int(total)

    def predict_params(self, model: nn.Module, plan: dict[int, np.ndarray] | None = None) -> int:
        plan = plan or {}
        seen, total = set(), 0
        for name, p in model.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            lays = self.tensor_layouts.get(name)
            if lays is None or not plan:
                total += p.numel()
                continue
            n = 1
            for lay in lays:
                n *= self.kept_size(lay, plan)
            total += n
        return int(total)


class _Symbolic(Exception):
    """A tensor whose size depends on data (unbacked symbol)."""


class Tracer:
    """Walks the captured graph once, applying the op rules."""

    def __init__(self, cap: Captured, ignore: list[str]):
        self.cap = cap
        self.atoms = Atoms()
        self.layouts: dict[str, Any] = {}
        self.roles: dict[tuple[str, int], str] = {}
        self.mac_terms: list[MacTerm] = []
        self.conv_groups: dict[str, tuple] = {}
        self.conv_inputs: dict[str, tuple] = {}
        self.splits: list[list[tuple]] = []
        self.shape_attrs: list[tuple[str, str, list]] = []
        self.ignore = ignore
        self._node = None

    # -- node helpers used by rules ------------------------------------------------------------
    @staticmethod
    def val(node):
        return node.meta.get("val") if isinstance(node, torch.fx.Node) else None

    def shape(self, node) -> tuple[int, ...] | None:
        v = self.val(node)
        if isinstance(v, (tuple, list)):
            v = v[0] if v else None
        if v is None or not hasattr(v, "shape"):
            return None
        try:
            return tuple(int(s) for s in v.shape)
        except Exception as e:  # a data-dependent size: nothing can be coupled through it
            raise _Symbolic from e

    def L(self, node) -> list:
        lays = self.layouts.get(node.name)
        if lays is None:
            raise KeyError(node.name)
        if lays and isinstance(lays[0], list):  # tuple output used directly: take the first
            return lays[0]
        return lays

    def tensor_args(self, node) -> list:
        out = []
        for a in list(node.args) + list(node.kwargs.values()):
            if isinstance(a, torch.fx.Node) and isinstance(self.val(a), torch.Tensor):
                out.append(a)
        return out

    def is_param(self, node) -> bool:
        return isinstance(node, torch.fx.Node) and node.name in self.cap.tensor_of_input

    def fresh(self, size: int, reason: str) -> tuple:
        return (self.atoms.new(size, protect=reason if size > 1 else None),)

    def opaque_value(self, val) -> list | None:
        if val is None or not hasattr(val, "shape"):
            return None
        try:
            sizes = [int(s) for s in val.shape]
        except Exception as e:
            raise _Symbolic from e
        return [self.fresh(n, "output of an op netsculpt cannot follow") for n in sizes]

    def opaque(self, node, reason: str = "output of an op netsculpt cannot follow"):
        for a in self.tensor_args(node):
            self.protect_node(a, f"{reason} ({R.op_name(node)})")
        v = self.val(node)
        if isinstance(v, (tuple, list)):
            return [self.opaque_value(x) for x in v]
        return self.opaque_value(v)

    def protect(self, layout, reason: str) -> None:
        self.atoms.protect(layout, reason)

    def protect_node(self, node, reason: str) -> None:
        lays = self.layouts.get(node.name) if isinstance(node, torch.fx.Node) else None
        for lay in _flat_layouts(lays):
            self.atoms.protect(lay, reason)

    def flag(self, layout, flag: str) -> None:
        self.atoms.flag(layout, flag)

    def role(self, node, dim: int, role: str) -> None:
        if self.is_param(node):
            key = (self.cap.tensor_of_input[node.name], dim % len(self.shape(node)))
            self.roles.setdefault(key, role)

    def unify(self, l1, l2, node) -> None:
        try:
            self.atoms.unify(l1, l2)
        except Incompatible as e:
            why = f"channels cannot be aligned at {R.op_name(node)} in '{self.path(node)}' ({e})"
            self.atoms.protect(l1, why)
            self.atoms.protect(l2, why)

    def factor(self, layout, m: int, node) -> tuple[tuple, tuple]:
        try:
            return self.atoms.factor(layout, m)
        except Incompatible as e:
            why = f"cannot split channels at {R.op_name(node)} in '{self.path(node)}' ({e})"
            self.atoms.protect(layout, why)
            n = self.atoms.layout_size(layout)
            return self.fresh(n // m, why), self.fresh(m, why)

    def product(self, l1, l2) -> tuple:
        return self.atoms.product(l1, l2)

    def sub_layout(self, layout, start: int, end: int, node) -> tuple:
        n = self.atoms.layout_size(layout)
        if start == 0 and end == n:
            return layout
        pieces = [self.atoms.new(s) for s in (start, end - start, n - end) if s > 0]
        try:
            self.atoms.unify(layout, tuple(pieces))
        except Incompatible as e:
            self.protect(layout, f"slice across a product ({e})")
            return self.fresh(end - start, "slice across a product")
        return (pieces[1] if start > 0 else pieces[0],)

    def reshape(self, lx, sin, sout, node) -> list:
        pieces = _reshape_pieces(sin, sout)
        if pieces is None:
            for lay in lx:
                self.protect(lay, f"reshape {sin} -> {sout} mixes dims")
            return [self.fresh(s, f"reshape {sin} -> {sout}") for s in sout]
        in_pieces, out_pieces, sizes = pieces
        piece_lay: dict[int, tuple] = {}
        for d, ps in in_pieces.items():
            rest = lx[d]
            inner_lays = []
            for k in reversed(ps[1:]):
                rest, inner = self.factor(rest, sizes[k], node)
                inner_lays.insert(0, inner)
            lays = [rest] + inner_lays
            for k, lay in zip(ps, lays):
                piece_lay[k] = lay
            if len(ps) > 1:
                self.splits.append(lays)
        out = []
        for d, s in enumerate(sout):
            ps = out_pieces.get(d)
            if not ps:
                out.append(self.fresh(1, "unit dim") if s == 1 else self.fresh(s, "reshape"))
                continue
            lay = piece_lay[ps[-1]]
            for k in reversed(ps[:-1]):
                lay = self.product(piece_lay[k], lay)
            out.append(lay)
        return out

    def record_attr(self, node, attr: str, layouts: list) -> None:
        self.shape_attrs.append((self.path(node), attr, layouts))

    def record_conv(self, node, in_layout, g_layout) -> None:
        self.conv_inputs[self.path(node)] = in_layout
        if g_layout is not None:
            self.conv_groups[self.path(node)] = g_layout

    def macs(self, node, numel_of, factors, const: int = 1) -> None:
        self.mac_terms.append(
            MacTerm(const, (numel_of.name, -1), [(f.name, d) for f, d in factors])
        )

    def path(self, node) -> str:
        return Captured.module_path(node)

    # -- the walk ------------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.cap.graph.nodes:
            self._node = node
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "call_function":
                self._call(node)
            elif node.op == "output":
                for a in _flat_nodes(node.args):
                    self.protect_node(a, "model output")
        self._resolve_splits()

    def _placeholder(self, node) -> None:
        shp = self.shape(node)
        if shp is None:
            return
        kind = self.cap.input_kind.get(node.name, "user_input")
        reason = {
            "user_input": "model input",
            "constant": "tensor constant created by the model's code",
        }.get(kind)
        self.layouts[node.name] = [
            (self.atoms.new(s, protect=reason if s > 1 else None),) for s in shp
        ]

    def _call(self, node) -> None:
        name = R.op_name(node)
        fn = R.RULES.get(name)
        if fn is None:
            path = self.path(node)
            if self._ignored(path):
                self.layouts[node.name] = self.opaque(node, f"inside ignored module '{path}'")
                return
            raise UnsupportedOpError(
                f"no channel rule for ATen op '{node.target}' in module '{path or '<root>'}' "
                f"({Captured.module_type(node) or 'top level'}); pass ignore=['{path or '*'}'] "
                f"to leave that module's channels untouched"
            )
        try:
            out = fn(self, node)
        except KeyError:  # an input has no layout (non-tensor): treat as opaque
            out = self.opaque(node)
        except _Symbolic:
            for a in self.tensor_args(node):
                self.protect_node(a, f"data-dependent shape at {name} in '{self.path(node)}'")
            out = None
        if out is not None:
            self.layouts[node.name] = out

    def _ignored(self, path: str) -> bool:
        return any(
            path == p or path.startswith(p + ".") or fnmatch.fnmatch(path, p) for p in self.ignore
        )

    def _resolve_splits(self) -> None:
        """A view that splits a channel dim: keep whole heads (outer) when the outer part is an
        attention head dim, otherwise keep the inner part prunable and fix the outer count."""
        head_flags = {"head", "mmbatch"}
        for lays in self.splits:
            outer_leaves = [c for lay in lays[:-1] for c in self.atoms.leaves(lay)]
            headlike = any(self.atoms.flags.get(c, set()) & head_flags for c in outer_leaves)
            if headlike:
                self.atoms.protect(lays[-1], "per-head dim of a head split")
                for lay in lays[:-1]:
                    for c in self.atoms.leaves(lay):
                        if not self.atoms.flags.get(c, set()) & head_flags:
                            self.atoms.protect((c,), "outer dim of a head split")
            else:
                for lay in lays[:-1]:
                    self.atoms.protect(lay, "count of a reshape split (a constant in the code)")


def _flat_nodes(args) -> list:
    out = []
    for a in args if isinstance(args, (list, tuple)) else [args]:
        if isinstance(a, (list, tuple)):
            out.extend(_flat_nodes(a))
        elif isinstance(a, torch.fx.Node):
            out.append(a)
    return out


def _flat_layouts(lays) -> list:
    if lays is None:
        return []
    if lays and isinstance(lays[0], list):
        return [lay for sub in lays if sub for lay in sub]
    return [lay for lay in lays if lay is not None]


def _reshape_pieces(sin, sout):
    """Common refinement of two shapes, ignoring 1s: piece sizes and which dims hold them."""
    a = [(i, s) for i, s in enumerate(sin) if s != 1]
    b = [(j, s) for j, s in enumerate(sout) if s != 1]
    in_p: dict[int, list[int]] = {i: [] for i, _ in a}
    out_p: dict[int, list[int]] = {j: [] for j, _ in b}
    sizes: list[int] = []
    ia = ib = 0
    ra = rb = None
    while ia < len(a) and ib < len(b):
        ra = a[ia][1] if ra is None else ra
        rb = b[ib][1] if rb is None else rb
        p = min(ra, rb)
        if max(ra, rb) % p:
            return None
        k = len(sizes)
        sizes.append(p)
        in_p[a[ia][0]].append(k)
        out_p[b[ib][0]].append(k)
        ra //= p
        rb //= p
        if ra == 1:
            ia, ra = ia + 1, None
        if rb == 1:
            ib, rb = ib + 1, None
    if ia != len(a) or ib != len(b):
        return None
    return in_p, out_p, sizes


def _patterns(model: nn.Module, ignore) -> list[str]:
    names = {id(m): n for n, m in model.named_modules()}
    if callable(ignore) and not isinstance(ignore, nn.Module):
        ignore = [n for n, m in model.named_modules() if n and ignore(m, n)]
    out = []
    for item in ignore or []:
        if isinstance(item, nn.Module):
            if id(item) not in names:
                raise UnsupportedOpError("ignore= names a module that is not part of the model")
            out.append(names[id(item)])
        else:
            out.append(str(item))
    return out


def build_graph(
    model: nn.Module, example_inputs: Any, ignore=None, cap: Captured | None = None
) -> StructureGraph:
    """Capture ``model`` (or read ``cap``, an existing capture) and group its coupled channels.

    ``ignore``: modules, name patterns (fnmatch) or a ``filter_fn(module, name) -> bool``
    (True: leave it untouched) whose output channels stay untouched.

    >>> g = build_graph(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.ones(1, 4))
    >>> [grp.size for grp in g.prunable_groups()]
    [8]
    """
    cap = cap if cap is not None else capture(model, example_inputs)
    patterns = _patterns(model, ignore)
    tr = Tracer(cap, patterns)
    tr.run()
    return _finish(model, tr, patterns)


def _finish(model: nn.Module, tr: Tracer, patterns: list[str]) -> StructureGraph:
    atoms, cap = tr.atoms, tr.cap
    tensor_layouts: dict[str, list] = {}
    for node in cap.graph.nodes:
        if node.op == "placeholder" and node.name in cap.tensor_of_input:
            lays = tr.layouts.get(node.name)
            if lays is not None:
                tensor_layouts[cap.tensor_of_input[node.name]] = lays
    # ignored modules: their produced channels stay
    for fqn, lays in tensor_layouts.items():
        mod = fqn.rsplit(".", 1)[0] if "." in fqn else ""
        if tr._ignored(mod):
            for d, lay in enumerate(lays):
                if tr.roles.get((fqn, d), "other") != "in":
                    atoms.protect(lay, f"ignored module '{mod}'")
    # classes seen in activations (data flows through them)
    observed: set[int] = set()
    for node in cap.graph.nodes:
        if node.op == "call_function":
            for lay in _flat_layouts(tr.layouts.get(node.name)):
                observed.update(atoms.leaves(lay))
    kinds = {
        cap.tensor_of_input[n]: k for n, k in cap.input_kind.items() if n in cap.tensor_of_input
    }
    classes: dict[int, list[Member]] = {}
    order: list[int] = []
    for fqn, lays in tensor_layouts.items():
        mod = fqn.rsplit(".", 1)[0] if "." in fqn else ""
        for d, lay in enumerate(lays):
            for cls in dict.fromkeys(atoms.leaves(lay)):
                if atoms.size[cls] < 2:
                    continue
                if cls not in classes:
                    classes[cls] = []
                    order.append(cls)
                classes[cls].append(
                    Member(
                        fqn,
                        d,
                        atoms.index_map(lay, cls),
                        tr.roles.get((fqn, d), "other"),
                        mod,
                        kinds.get(fqn, "param"),
                    )
                )
    groups: list[Group] = []
    class_group: dict[int, Group] = {}
    for cls in order:
        members = classes[cls]
        reason = atoms.protected.get(cls)
        if reason is None and cls not in observed:
            reason = "no data flows through these channels"
        if reason is None and any(m.kind == "constant" for m in members):
            reason = "tensor constant created by the model's code"
        if reason is None and not any(m.kind == "param" for m in members):
            reason = "no parameter to remove"
        is_head = bool(atoms.flags.get(cls, set()) & {"head", "mmbatch"})
        g = Group(
            len(groups),
            atoms.size[cls],
            "head" if is_head else "channel",
            members,
            reason is None,
            reason,
            cls,
        )
        groups.append(g)
        class_group[cls] = g
    return StructureGraph(
        captured=cap,
        atoms=atoms,
        layouts=tr.layouts,
        tensor_layouts=tensor_layouts,
        groups=groups,
        mac_terms=tr.mac_terms,
        conv_groups=tr.conv_groups,
        conv_inputs=tr.conv_inputs,
        shape_attrs=tr.shape_attrs,
        _class_group=class_group,
    )
