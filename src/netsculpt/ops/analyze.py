"""analyze: what is coupled to what, and what matters — per channel group and per block.

The op measures and changes nothing: its Report's ``plan`` is an empty ``Plan("analyze")``
(replaying it with ``ns.apply`` is a no-op). Groups come from the session's graph, blocks from
``session.blocks()``, data-driven scores from the session's calibration batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from netsculpt.core.config import OpConfig, integer, option
from netsculpt.core.errors import InputError
from netsculpt.core.plan import Plan
from netsculpt.importance import ESTIMATORS, score_groups


def _importance(name: str, v: Any) -> None:
    if v not in ESTIMATORS:
        raise InputError(f"unknown importance {v!r}; choose one of {', '.join(ESTIMATORS)}")


def _blocks(name: str, v: Any) -> None:
    if v is None or isinstance(v, bool):
        return
    if isinstance(v, str) or not all(isinstance(n, str) for n in v):
        raise InputError(f"{name} must be True / False or a list of block names, got {v!r}")


def _criteria(name: str, v: Any) -> None:
    from netsculpt.importance.blocks import CRITERIA

    bad = [c for c in v or () if c not in CRITERIA]
    if bad:
        raise InputError(f"unknown block criterion {bad[0]!r}; choose from {', '.join(CRITERIA)}")


@dataclass(frozen=True)
class AnalyzeConfig(OpConfig):
    """What to measure: group scores by ``importance``; block scores (``criteria``) when
    ``blocks`` is True, a list of block names (only those rows), or None with ``data``."""

    importance: str = option("l2", _importance, "group score: a registered estimator name")
    blocks: bool | tuple[str, ...] | None = option(
        None, _blocks, "score blocks: True, a list of block names, or None (with data)"
    )
    criteria: tuple[str, ...] | None = option(None, _criteria, "block criteria (default table)")
    ignore: Any = option((), None, "modules to leave out: names, globs, modules, filter_fn")
    max_batches: int = option(8, integer(1), "calibration batches read (data-driven scores)")
    batch_size: int | None = option(None, integer(1), "batch size when data is a Dataset")
    seed: int = option(0, integer(0), "seed of every random choice")


CONFIGS = (AnalyzeConfig,)


def prepare(cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """``blocks`` / ``criteria`` / ``ignore`` lists as tuples."""
    kw = dict(overrides)
    for k in ("blocks", "criteria", "ignore"):
        if isinstance(kw.get(k), (list, str)) and not (k == "ignore" and isinstance(kw[k], str)):
            kw[k] = tuple([kw[k]] if isinstance(kw[k], str) else kw[k])
    return kw


def run(session: Any, cfg: AnalyzeConfig) -> Any:
    """Measure ``model`` without changing it: its channel groups (size, what is coupled, whether
    and why protected, importance) and, with ``data`` or ``blocks=True``, each block's effect
    (``blocks=[names]``: only those blocks). The Report's ``plan`` is empty.

    >>> import torch, netsculpt as ns
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> rep = ns.analyze(m, torch.ones(1, 4))
    >>> [r["size"] for r in rep.details["groups"] if r["prunable"]], len(rep.plan)
    ([8], 0)
    """
    model, graph, imp = session.model, session.graph, cfg.importance
    groups = [g for g in graph.groups if g.size > 1 and any(m.kind == "param" for m in g.members)]
    needs = getattr(ESTIMATORS.get(imp), "needs_data", False)
    data = session.data_batches(f"importance '{imp}'" if needs else None)
    prunable = graph.prunable_groups()
    with session.step(f"score {len(prunable)} groups ({imp})"):
        scores = score_groups(imp, model, graph, prunable, data=data, seed=cfg.seed)
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
                f"{imp}_mean": None if s is None else float(np.mean(s)),
                f"{imp}_min": None if s is None else float(np.min(s)),
            }
        )
    snap = session.snapshot(predicted={})
    details: dict[str, Any] = {
        "groups": rows,
        "scores": {f"group {g}": float(np.mean(s)) for g, s in scores.items()},
    }
    if cfg.blocks or (cfg.blocks is None and session.has_data):
        details["blocks"] = _block_rows(session, cfg)
    plan = Plan("analyze", [], cfg.to_dict())
    return session.report("analyze", {"importance": imp}, plan, snap, snap, details)


def _block_rows(session: Any, cfg: AnalyzeConfig) -> list[dict]:
    from netsculpt.importance.blocks import TABLE_DEFAULT, block_table

    blocks = session.blocks()
    if isinstance(cfg.blocks, tuple):
        known = {b.name for b in blocks}
        unknown = [n for n in cfg.blocks if n not in known]
        if unknown:
            raise InputError(f"analyze: blocks= names no block {unknown[0]!r} of this model")
        blocks = [b for b in blocks if b.name in cfg.blocks]
    data = session.batches() if session.has_data else None
    with session.step(f"score {len(blocks)} blocks"):
        return block_table(
            session.model,
            session.example_inputs,
            data,
            cfg.criteria or TABLE_DEFAULT,
            blocks=blocks,
            max_batches=cfg.max_batches,
        )
