"""Structured prune plans beyond one fraction: per-layer ratios and iterative rounds.

- ``amount={"layer1.*": 0.5, "fc*": 0.2}``: each group takes the ratio of the first pattern
  (in the mapping's order) that one of its producing modules matches (a name, a prefix, or an
  fnmatch glob); groups no pattern matches stay whole.
- ``steps=n``: reach the amount (or the budget) in ``n`` rounds. Round ``i`` removes, from each
  group, what brings it to ``i/n`` of the final removal (of its original size), scored anew on
  the model the earlier rounds left; a budget is interpolated linearly from the original
  figure. ``between(model, i)`` runs after every round but the last (a short ``ns.heal``).

>>> from types import SimpleNamespace as NS
>>> g = NS(id=0, size=16, kind="channel", members=[NS(module="layer1.conv", role="out")])
>>> ratio_of(g, {"fc*": 0.9, "layer1.*": 0.5})
0.5
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from netsculpt.core.errors import InputError
from netsculpt.ops import prune_plan as P


def check_amount(name: str, v: Any) -> None:
    """``amount``: a fraction in (0, 1), or a non-empty mapping of pattern → fraction."""
    from netsculpt.core.config import fraction

    if isinstance(v, dict):
        if not v:
            raise InputError(f"{name}: a mapping of module pattern → fraction, got an empty one")
        for k, r in v.items():
            if not isinstance(k, str) or not k:
                raise InputError(f"{name}: pattern {k!r} must be a module name or glob (a string)")
            fraction()(f"{name}[{k!r}]", r)
        return
    fraction()(name, v)


def ratio_of(group: Any, ratios: dict[str, float]) -> float | None:
    """The ratio of the first pattern one of the group's producing modules matches (None:
    none does)."""
    mods = [m.module for m in group.members if m.role == "out"] or [m.module for m in group.members]
    for pat, r in ratios.items():
        if any(m == pat or m.startswith(pat + ".") or fnmatch.fnmatch(m, pat) for m in mods):
            return float(r)
    return None


def per_group_plan(
    groups: list,
    scores: dict[int, np.ndarray],
    ratio: Callable[[Any], float | None],
    round_to: int | None,
    max_fraction: float,
    sizes: dict[int, int] | None = None,
) -> P.Plan:
    """Remove ``ratio(group)`` of each group's original size (``sizes``; default its size now)
    less what earlier rounds took: the lowest-scoring channels."""
    plan: P.Plan = {}
    for g in groups:
        r = ratio(g)
        if g.id not in scores or r is None or r <= 0:
            continue
        orig = (sizes or {}).get(g.id, g.size)
        total = P._n_remove(orig, min(r, max_fraction), round_to if g.kind == "channel" else None)
        n = min(total - (orig - g.size), g.size - 1)
        if n > 0:
            plan[g.id] = P._lowest(scores[g.id], n)
    return plan


class Rounds:
    """Where round ``i`` of ``n`` should be: the original sizes (by anchor) and figures."""

    def __init__(self, n: int, graph: Any, model: Any, anchor: Callable[[Any], list]) -> None:
        self.n, self.i, self.anchor = n, 1, anchor
        self.sizes0 = {self._key(g): g.size for g in graph.prunable_groups()}
        self.total0 = sum(g.size for g in graph.prunable_groups())
        self.macs0, self.params0 = graph.predict_macs(), graph.predict_params(model)

    def _key(self, g: Any) -> tuple:
        return tuple(self.anchor(g))

    def sizes(self, groups: list) -> dict[int, int]:
        """Each group's original size (a group the start did not have: as if it had shrunk
        like the others)."""
        done = (self.i - 1) / self.n
        return {g.id: self.sizes0.get(self._key(g), round(g.size / max(1 - done, 1e-9)))
                for g in groups}  # fmt: skip

    def budget(self, target: float | None, base: float) -> float | None:
        """Round ``i``'s absolute limit: linear from the original figure to the target's."""
        if target is None:
            return None
        goal = target * base if target <= 1 else target
        return max(base - (base - goal) * self.i / self.n, 1.000001)


def plan_round(
    graph: Any,
    model: Any,
    usable: list,
    scores: dict,
    cfg: Any,
    key: Any,
    rounds: Rounds | None,
    normalize: bool = True,
) -> tuple[P.Plan, Any]:
    """The channels this call (or this round) removes, and the fraction it used
    (``normalize``: divide each group's scores by their mean before a global ranking)."""
    common = dict(round_to=cfg.round_to, max_fraction=cfg.max_fraction, uniform_key=key,
                  normalize=normalize)  # fmt: skip
    if cfg.target_macs is not None or cfg.target_params is not None:
        tm, tp = cfg.target_macs, cfg.target_params
        if rounds is not None:
            tm, tp = rounds.budget(tm, rounds.macs0), rounds.budget(tp, rounds.params0)
        return P.budget_plan(graph, model, usable, scores, target_macs=tm, target_params=tp,
                             global_=cfg.global_, **common)  # fmt: skip
    share = 1.0 if rounds is None else rounds.i / rounds.n
    if isinstance(cfg.amount, dict):
        sizes = rounds.sizes(usable) if rounds else None
        chans = per_group_plan(usable, scores, lambda g: _scaled(ratio_of(g, cfg.amount), share),
                               cfg.round_to, cfg.max_fraction, sizes)  # fmt: skip
        return chans, cfg.amount
    if rounds is None:
        return P.plan_for(usable, scores, cfg.amount, global_=cfg.global_, **common), cfg.amount
    frac = cfg.amount * share
    if cfg.global_:  # the share of all the original channels, less what is gone
        now = sum(g.size for g in usable if g.id in scores)
        gone = rounds.total0 - now
        n = max(0, math.floor(frac * rounds.total0 + 1e-9) - gone)
        f_now = min((n + 0.5) / max(now, 1), 1.0)
        return P.plan_for(usable, scores, f_now, global_=True, **common), frac
    chans = per_group_plan(usable, scores, lambda g: frac, cfg.round_to, cfg.max_fraction,
                           rounds.sizes(usable))  # fmt: skip
    if key is not None:
        chans = P.equalize(chans, usable, scores, key, cfg.round_to)
    return chans, frac


def _scaled(r: float | None, share: float) -> float | None:
    return None if r is None else r * share


def scheduled(session: Any, cfg: Any, once: Callable[..., Any], anchor: Callable) -> Any:
    """``cfg.steps`` rounds of ``once(session, cfg, rounds)`` (each scores the model anew), the
    ``between`` hook after each but the last; one Report whose plan holds every round's
    actions (each tagged with its round as ``step``: a replay applies them round by round)."""
    rounds = Rounds(cfg.steps, session.graph, session.model, anchor)
    reports = []
    for i in range(1, cfg.steps + 1):
        rounds.i = i
        rep = once(session, cfg, rounds)
        for a in rep.plan.actions:
            a.args["step"] = i
        reports.append(rep)
        if cfg.between is not None and i < cfg.steps:
            cfg.between(session.model, i)
            session.stale()
    first, last = reports[0], reports[-1]
    last.before = first.before
    last.plan.actions = [a for r in reports for a in r.plan.actions]
    last.details["rounds"] = [
        {"round": i + 1, "params": r.after.params, "macs": r.after.macs,
         "removed": r.details.get("removed")}
        for i, r in enumerate(reports)
    ]  # fmt: skip
    last.details["groups_first_round"] = first.details.get("groups")
    return last
