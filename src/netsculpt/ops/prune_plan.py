"""Turn channel scores into a removal plan: per-group fraction, global ranking, or a budget."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from netsculpt.core.plan import Action
from netsculpt.graph.channels import Group, StructureGraph

Plan = dict[int, np.ndarray]


def embedding_names(model) -> set[str]:
    """Every name of the input embedding's parameters (a token table tied to an LM head under
    another name, or a patch embedding's projection); empty without ``get_input_embeddings``."""
    get = getattr(model, "get_input_embeddings", None)
    try:
        emb = get() if callable(get) else None
    except NotImplementedError:
        emb = None
    if not hasattr(emb, "parameters"):
        return set()
    own = {id(p) for p in emb.parameters()}
    return {n for n, p in model.named_parameters(remove_duplicate=False) if id(p) in own}


def group_parts(graph: StructureGraph, model) -> dict[int, str]:
    """Each prunable group's part: ``"heads"``, ``"hidden"`` (the residual stream, which reaches
    the input embedding) or ``"mlp"`` (any other channel group, e.g. MLP intermediate
    channels)."""
    names = embedding_names(model)
    return {
        g.id: "heads"
        if g.kind == "head"
        else "hidden"
        if names & {m.tensor for m in g.members}
        else "mlp"
        for g in graph.prunable_groups()
    }


def _n_remove(size: int, fraction: float, round_to: int | None, min_keep: int = 1) -> int:
    """How many of ``size`` channels go for ``fraction``, keeping a multiple of ``round_to``."""
    keep = size - int(math.floor(fraction * size + 1e-9))
    if round_to and round_to > 1 and size > round_to:
        keep = max(round_to, int(math.ceil(keep / round_to)) * round_to)
    keep = min(size, max(min_keep, keep))
    return size - keep


def _lowest(scores: np.ndarray, n: int) -> np.ndarray:
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.argsort(scores, kind="stable")[:n]).astype(np.int64)


def uniform_plan(
    groups: list[Group], scores: dict[int, np.ndarray], fraction: float, round_to: int | None
) -> Plan:
    """Remove ``fraction`` of every scored group's channels (the lowest-scoring ones)."""
    plan: Plan = {}
    for g in groups:
        if g.id not in scores:
            continue
        n = _n_remove(g.size, fraction, round_to if g.kind == "channel" else None)
        if n > 0:
            plan[g.id] = _lowest(scores[g.id], n)
    return plan


def global_plan(
    groups: list[Group],
    scores: dict[int, np.ndarray],
    fraction: float,
    round_to: int | None,
    max_fraction: float = 0.9,
    normalize: bool = True,
) -> Plan:
    """Remove ``fraction`` of all channels, ranked across groups by scores normalised per group
    (each group's scores divided by their mean; as they are for ``normalize=False``, scores
    already comparable across groups such as LAMP's), never more than ``max_fraction`` of a
    group."""
    ids, vals, chans = [], [], []
    for g in groups:
        s = scores.get(g.id)
        if s is None:
            continue
        mean = (float(np.mean(s)) or 1.0) if normalize else 1.0
        ids.append(np.full(g.size, g.id))
        vals.append(s / mean)
        chans.append(np.arange(g.size))
    if not ids:
        return {}
    ids_a, vals_a, chans_a = np.concatenate(ids), np.concatenate(vals), np.concatenate(chans)
    total = len(vals_a)
    n = int(math.floor(fraction * total + 1e-9))
    order = np.argsort(vals_a, kind="stable")
    by_id = {g.id: g for g in groups}
    picked: dict[int, list[int]] = {}
    cap = {gid: _n_remove(by_id[gid].size, max_fraction, None) for gid in np.unique(ids_a)}
    taken = 0
    for k in order:
        if taken >= n:
            break
        gid = int(ids_a[k])
        lst = picked.setdefault(gid, [])
        if len(lst) < cap[gid]:
            lst.append(int(chans_a[k]))
            taken += 1
    plan: Plan = {}
    for gid, lst in picked.items():
        g = by_id[gid]
        n_g = len(lst)
        if round_to and g.kind == "channel" and g.size > round_to:
            keep = g.size - n_g
            keep = max(round_to, int(math.ceil(keep / round_to)) * round_to)
            n_g = g.size - min(g.size, keep)
        if n_g > 0:
            plan[gid] = _lowest(scores[gid], n_g)
    return plan


def equalize(
    plan: Plan,
    groups: list[Group],
    scores: dict[int, np.ndarray],
    key: Callable[[Group], Hashable],
    round_to: int | None = None,
) -> Plan:
    """The same number of channels removed from every group that shares ``key`` (for instance
    every layer's heads, every layer's MLP): the mean of the plan's counts over those groups,
    rounded, each group losing its own lowest-scoring channels. Keeps ``round_to`` multiples."""
    buckets: dict[Hashable, list[Group]] = {}
    for g in groups:
        if g.id in scores:
            buckets.setdefault((key(g), g.size), []).append(g)
    out: Plan = {}
    for gs in buckets.values():
        n = int(round(float(np.mean([len(plan.get(g.id, ())) for g in gs]))))
        size = gs[0].size
        if n > 0 and round_to and gs[0].kind == "channel" and size > round_to:
            keep = max(round_to, int(math.ceil((size - n) / round_to)) * round_to)
            n = size - min(size, keep)
        for g in gs:
            if n > 0:
                out[g.id] = _lowest(scores[g.id], n)
    return out


def plan_for(
    groups: list[Group],
    scores: dict[int, np.ndarray],
    fraction: float,
    *,
    global_: bool,
    round_to: int | None,
    max_fraction: float,
    uniform_key: Callable[[Group], Hashable] | None = None,
    normalize: bool = True,
) -> Plan:
    """``global_``: rank channels across groups; else remove ``fraction`` of each group. With
    ``uniform_key``, counts are then made equal across groups sharing a key (:func:`equalize`)."""
    if global_:
        plan = global_plan(groups, scores, fraction, round_to, max_fraction, normalize)
    else:
        plan = uniform_plan(groups, scores, min(fraction, max_fraction), round_to)
    if uniform_key is not None:
        plan = equalize(plan, groups, scores, uniform_key, round_to)
    return plan


def budget_plan(
    graph: StructureGraph,
    model,
    groups: list[Group],
    scores: dict[int, np.ndarray],
    *,
    target_macs: float | None,
    target_params: float | None,
    global_: bool,
    round_to: int | None,
    max_fraction: float,
    uniform_key: Callable[[Group], Hashable] | None = None,
    normalize: bool = True,
) -> tuple[Plan, float]:
    """The smallest fraction whose plan meets the MACs / params budget (bisection on the graph's
    own size prediction, no forward passes). Targets are fractions of the original (≤ 1) or
    absolute counts (> 1)."""
    macs0 = graph.predict_macs()
    params0 = graph.predict_params(model)

    def limit(target, base):
        if target is None:
            return None
        return target * base if target <= 1 else target

    lim_m, lim_p = limit(target_macs, macs0), limit(target_params, params0)

    def meets(plan: Plan) -> bool:
        ok = True
        if lim_m is not None:
            ok &= graph.predict_macs(plan) <= lim_m
        if lim_p is not None:
            ok &= graph.predict_params(model, plan) <= lim_p
        return ok

    def make(f: float) -> Plan:
        return plan_for(
            groups,
            scores,
            f,
            global_=global_,
            round_to=round_to,
            max_fraction=max_fraction,
            uniform_key=uniform_key,
            normalize=normalize,
        )

    lo, hi = 0.0, max_fraction
    best = make(hi)
    if not meets(best):
        return best, hi  # the budget is out of reach: do the most we may, the report says so
    for _ in range(14):
        mid = (lo + hi) / 2
        plan = make(mid)
        if meets(plan):
            hi, best = mid, plan
        else:
            lo = mid
    return best, hi


def channel_actions(graph: Any, plan: dict[int, np.ndarray], scores: dict) -> list[Action]:
    """One ``remove_channels`` action per planned group, named by its anchor tensor."""
    out = []
    for gid in sorted(plan):
        g = graph.groups[gid]
        ch = np.asarray(plan[gid], dtype=np.int64)
        if not len(ch):
            continue
        s = scores.get(gid)
        out.append(Action("remove_channels", {
            "anchor": anchor(g), "channels": ch.tolist(), "size": g.size,
            "group_kind": g.kind, "modules": g.modules,
        }, None if s is None else float(np.mean(s[ch]))))  # fmt: skip
    return out


def anchor(group: Any) -> list:
    """``[tensor, dim, first position of channel 0, of channel 1]`` of the group's first
    producing parameter member: names the group in any capture of the same architecture."""
    members = [m for m in group.members if m.kind == "param"] or list(group.members)
    m = next((m for m in members if m.role == "out"), members[0])
    p0, p1 = (np.nonzero(m.index_map == c)[0] for c in (0, 1))
    return [m.tensor, m.dim, int(p0[0]) if len(p0) else -1, int(p1[0]) if len(p1) else -1]
