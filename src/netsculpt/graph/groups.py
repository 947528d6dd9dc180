"""Turn the walk's classes of coupled channels into :class:`Group` objects (the end of
:func:`netsculpt.graph.build_graph`)."""

from __future__ import annotations

import re

from torch import nn

from netsculpt.graph.structure import Group, Member, StructureGraph, _flat_layouts


def finish(model: nn.Module, tr, patterns: list[str]) -> StructureGraph:
    """The StructureGraph of a finished walk ``tr`` (a Tracer): groups, reasons, lookups."""
    atoms, cap = tr.atoms, tr.cap
    tensor_layouts: dict[str, list] = {}
    for node in tr.graph.nodes:
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
    for node in tr.graph.nodes:
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
        bound_attrs=_bound_attrs(model, tr.bounds),
        _class_group=class_group,
    )


# int attributes that may hold a width used to slice channels
_WIDTH_NAME = re.compile(r"chan|chs|dim|feat|width|split|planes|hidden")


def _bound_attrs(model: nn.Module, bounds: list) -> list:
    modules = dict(model.named_modules())
    out = []
    for path, layout, bound in bounds:
        mod = modules.get(path)
        for attr, value in vars(mod).items() if mod is not None else ():
            if type(value) is int and value == bound and _WIDTH_NAME.search(attr):
                out.append((path, attr, layout, bound))
    return out
