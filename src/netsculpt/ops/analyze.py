"""analyze: what is coupled to what, and what matters — per channel group and per block."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from netsculpt.graph import build_graph
from netsculpt.importance import score_groups
from netsculpt.report import Report, Snapshot


def analyze(
    model: nn.Module,
    example_inputs: Any,
    *,
    data: Any = None,
    importance: str = "l2",
    blocks: bool | None = None,
    criteria: tuple[str, ...] | None = None,
    ignore: list | tuple = (),
) -> Report:
    """Measure ``model`` without changing it: its channel groups (size, what is coupled, whether
    and why protected, importance) and, with ``data`` or ``blocks=True``, each block's effect.

    >>> import torch, netsculpt as ns
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> len(ns.analyze(m, torch.ones(1, 4)).details["groups"])
    1
    """
    graph = build_graph(model, example_inputs, ignore=list(ignore))
    groups = [g for g in graph.groups if g.size > 1 and any(m.kind == "param" for m in g.members)]
    scores = score_groups(importance, model, graph, graph.prunable_groups(), data=data)
    rows = []
    for g in groups:
        s = scores.get(g.id)
        rows.append(
            {
                "group": g.id,
                "kind": g.kind,
                "size": g.size,
                "prunable": g.prunable,
                "why_protected": g.reason,
                "coupled": g.modules,
                "tensors": len(g.members),
                f"{importance}_mean": None if s is None else float(np.mean(s)),
                f"{importance}_min": None if s is None else float(np.min(s)),
            }
        )
    snap = Snapshot(params=graph.predict_params(model), macs=graph.predict_macs())
    details: dict[str, Any] = {
        "groups": rows,
        "scores": {f"group {g}": float(np.mean(s)) for g, s in scores.items()},
    }
    if blocks or (blocks is None and data is not None):
        from netsculpt.importance.blocks import TABLE_DEFAULT, block_table

        details["blocks"] = block_table(model, example_inputs, data, criteria or TABLE_DEFAULT)
    return Report(
        op="analyze", config={"importance": importance}, before=snap, after=snap, details=details
    )
