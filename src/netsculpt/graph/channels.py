"""The structure graph: channel groups of a captured model.

``build_graph(model, example_inputs)`` exports the model, walks the ATen graph once applying one
rule per op (:mod:`netsculpt.graph.rules`) to couple tensor dims, and turns the resulting classes
of coupled channels into :class:`Group` objects: every parameter/buffer slice that must go when a
channel goes. The graph only reads the model; :mod:`netsculpt.surgery` edits it.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import NetsculptError, UnsupportedOpError
from netsculpt.graph import rules as R
from netsculpt.graph.capture import Captured, capture
from netsculpt.graph.groups import finish
from netsculpt.graph.inline import walk_graph
from netsculpt.graph.layout import Atoms, Incompatible

# the walk's results live in .structure; importing them from here keeps working
from netsculpt.graph.structure import (  # noqa: F401
    Group,
    MacTerm,
    Member,
    StructureGraph,
    _flat_layouts,
    _flat_nodes,
    group_anchor,
)


class _Symbolic(Exception):
    """A tensor whose size depends on data (unbacked symbol)."""


class Tracer:
    """Walks the captured graph once, applying the op rules."""

    def __init__(self, cap: Captured, ignore: list[str]):
        self.cap = cap
        self.graph = walk_graph(cap.program.graph_module)  # mode-only regions inlined
        self.atoms = Atoms()
        self.layouts: dict[str, Any] = {}
        self.roles: dict[tuple[str, int], str] = {}
        self.mac_terms: list[MacTerm] = []
        self.conv_groups: dict[str, tuple] = {}
        self.conv_inputs: dict[str, tuple] = {}
        self.splits: list[list[tuple]] = []
        self.shape_attrs: list[tuple[str, str, list]] = []
        self.bounds: list[tuple[str, tuple, int]] = []  # (module, layout, slice bound)
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
        if end <= start:  # an empty piece (Phi-3's pass-through part of a full rotary)
            return ()
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

    def record_bound(self, node, layout, bound: int) -> None:
        """A constant slice bound on a channel dim: an int attribute of the calling module equal
        to it is a width that must follow the channels (``x[:, : self.in_channels]``)."""
        if 0 < bound < self.atoms.layout_size(layout):
            self.bounds.append((self.path(node), layout, int(bound)))

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
        for node in self.graph.nodes:
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
        except NetsculptError:
            raise
        except Exception as e:  # a rule that cannot follow this use: its channels stay whole
            why = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
            out = self.opaque(
                node,
                f"the {name} rule could not follow channels in '{self.path(node)}' "
                f"({type(e).__name__}{': ' + why if why else ''})",
            )
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
    return finish(model, tr, patterns)
