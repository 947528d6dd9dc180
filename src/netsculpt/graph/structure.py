"""What the structure walk produces: channel groups, their members, and size prediction.

:class:`StructureGraph` is built by :func:`netsculpt.graph.build_graph` (see
:mod:`netsculpt.graph.channels`); it only reads the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.graph.capture import Captured
from netsculpt.graph.layout import Atoms


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
    # (module, attribute, layout, bound): an int attribute used as a slice bound of a channel dim
    bound_attrs: list[tuple[str, str, tuple, int]] = field(default_factory=list)
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

    def kept_before(self, layout: tuple, bound: int, plan: dict[int, np.ndarray]) -> int:
        """How many of the first ``bound`` positions of a dim with ``layout`` ``plan`` keeps."""
        return bound - int((self.removed_positions(layout, plan) < bound).sum())

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
