"""The proposals of one search step and what each is predicted to save.

- width: for every prunable channel group, remove the ``k`` lowest-scoring channels, ``k`` the
  smallest that saves the step's cost while the kept width stays a multiple of the granularity
  (never more than half of the group in one step);
- block: remove one residual block (or a same-shape layer), planned as a ``remove_block``
  action when this install's backend applies them (the ``cut`` op's action kind).

Savings are predicted without running the candidate: MACs and params from the structure graph
(:meth:`~netsculpt.graph.channels.StructureGraph.predict_macs`), latency from the latency table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netsculpt.core.plan import Action, Plan
from netsculpt.core.select import is_ignored
from netsculpt.optimize.latency import LatencyTable, Layer, out_elements

BLOCK_HOWS = ("skip", "zero", "identity")


def auto_granularity(size: int, kind: str = "channel", fixed: int | None = None) -> int:
    """Kept widths are multiples of this: ``fixed`` if given, else 16 for ≥ 64 channels, 8 for
    ≥ 16, else 1 (heads: 1)."""
    if kind == "head":
        return 1
    if fixed is not None:
        return fixed if size > fixed else 1
    return 16 if size >= 64 else 8 if size >= 16 else 1


def kept_options(size: int, q: int) -> list[int]:
    """Kept widths one step may leave, largest first: multiples of ``q`` below ``size`` and at
    least half of it (and at least ``q``, at least 1).

    >>> kept_options(128, 16), kept_options(20, 8), kept_options(6, 1)
    ([112, 96, 80, 64], [16], [5, 4, 3])
    """
    floor = max(q, 1, math.ceil(size / 2)) if size > 2 else 1
    top = (size - 1) // q * q
    return [k for k in range(top, 0, -q) if k >= floor]


@dataclass
class Candidate:
    kind: str  # "width" | "block"
    label: str
    actions: list[Action]
    saving: float
    chans: dict[int, np.ndarray] = field(default_factory=dict)
    proxy: float = math.nan

    def plan(self, step: int) -> Plan:
        for a in self.actions:
            a.args["step"] = step
        return Plan("optimize", list(self.actions))


class Costs:
    """The model's predicted cost now and after a candidate, for one metric."""

    def __init__(
        self,
        metric: str,
        graph: Any,
        model: Any,
        layers: list[Layer] | None = None,
        table: LatencyTable | None = None,
    ) -> None:
        self.metric, self.graph, self.model = metric, graph, model
        self.layers, self.table = layers or [], table
        self.now = self.after({})

    def sizes(self, chans: dict[int, np.ndarray]) -> dict[str, tuple[int, int]]:
        """``{layer path: (out, in)}`` after removing ``chans`` (``{group id: channels}``)."""
        out = {}
        for ly in self.layers:
            lays = self.graph.tensor_layouts.get(ly.path + ".weight")
            if lays is None or len(lays) < 2 or not chans:
                out[ly.path] = ly.dims
            else:
                out[ly.path] = (self.graph.kept_size(lays[0], chans),
                                self.graph.kept_size(lays[1], chans))  # fmt: skip
        return out

    def after(self, chans: dict[int, np.ndarray]) -> float:
        if self.metric == "macs":
            return float(self.graph.predict_macs(chans))
        if self.metric == "params":
            return float(self.graph.predict_params(self.model, chans))
        return self.table.predict(self.layers, self.sizes(chans))

    def block_saving(self, block: Any) -> float:
        from netsculpt.measure.blocks import mac_delta, param_delta

        if self.metric == "macs":
            return -float(mac_delta(self.model, self.graph.captured.program, block))
        if self.metric == "params":
            return -float(param_delta(self.model, block))
        inside = [ly for ly in self.layers if is_ignored(ly.path, block.modules)]
        sizes = {ly.path: ly.dims for ly in inside}
        rest = self.table.rest_ms * 0.5 * out_elements(inside, sizes) / self.table.rest_elems
        return self.table.scale * self.table.layers_ms(sizes, inside) + rest


def width_candidates(
    graph: Any,
    scores: dict[int, np.ndarray],
    costs: Costs,
    goal: float,
    granularity: int | None,
    describe: Callable[[Any, int], str],
) -> list[Candidate]:
    """One proposal per scored prunable group: the fewest lowest-scoring channels whose
    removal saves ``goal`` (or the most one step may remove, when none does)."""
    from netsculpt.ops.prune import channel_actions

    out = []
    for g in graph.prunable_groups():
        s = scores.get(g.id)
        if s is None:
            continue
        q = auto_granularity(g.size, g.kind, granularity)
        best = None
        for kept in kept_options(g.size, q):
            chans = {g.id: np.sort(np.argsort(s, kind="stable")[: g.size - kept]).astype(np.int64)}
            saving = costs.now - costs.after(chans)
            if saving > 0:
                best = (kept, chans, saving)
                if saving >= goal:
                    break
        if best is None:
            continue
        kept, chans, saving = best
        actions = channel_actions(graph, chans, scores)
        out.append(Candidate("width", describe(g, kept), actions, saving, chans))
    return out


def block_candidates(blocks: list, costs: Costs, ignore: list[str]) -> list[Candidate]:
    """One proposal per removable residual block / same-shape layer that nothing ignores."""
    out = []
    for b in blocks:
        if not b.removable or b.how not in BLOCK_HOWS:
            continue
        if any(is_ignored(m, ignore) for m in b.modules):
            continue
        saving = costs.block_saving(b)
        if saving > 0:
            action = Action("remove_block", {"block": b.name, "how": b.how})
            out.append(Candidate("block", f"block {b.name} ({b.kind}, {b.how})", [action], saving))
    return out


def can_remove_blocks() -> bool:
    """Whether this install's backend applies ``remove_block`` actions (the cut op plans them)."""
    from netsculpt.engine import registry
    from netsculpt.engine.backends.memory import APPLIERS

    try:
        registry.get("cut")  # an op module registers its own appliers on import
    except Exception:
        return False
    return "remove_block" in APPLIERS
