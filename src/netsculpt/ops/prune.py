"""prune (剪枝): zero weights, remove neurons / channels / heads — a smaller model that runs.

Two configs: :class:`StructuredConfig` (remove whole channels through the coupled groups) and
:class:`UnstructuredConfig` (zero weights, then remove the neurons that died). The op only
plans: scores come from ``importance``, the plan is a list of ``remove_channels`` /
``zero_weights`` actions, and the session's backend applies it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from netsculpt.core.config import (
    OpConfig,
    budget,
    fraction,
    integer,
    non_negative,
    one_of,
    option,
)
from netsculpt.core.errors import InputError
from netsculpt.core.plan import Action, Plan
from netsculpt.importance import ESTIMATORS, score_groups
from netsculpt.ops import prune_plan as P
from netsculpt.ops import prune_schedule as S
from netsculpt.ops import prune_unstructured as U
from netsculpt.ops.prune_plan import anchor, channel_actions
from netsculpt.report import Snapshot

PARTS = ("heads", "mlp", "hidden")


def _importance(name: str, v: Any) -> None:
    if v is None or callable(v):
        return
    if v not in ESTIMATORS and v != "magnitude":
        raise InputError(f"unknown importance {v!r}; choose one of {', '.join(ESTIMATORS)}")


def _hook(name: str, v: Any) -> None:
    if v is not None and not callable(v):
        raise InputError(f"{name} must be a function fn(model, round), got {v!r}")


def _targets(name: str, v: Any) -> None:
    bad = [t for t in v or () if t not in PARTS]
    if bad or not v:
        raise InputError(f"{name} must be a non-empty subset of {PARTS}, got {tuple(v or ())}")


@dataclass(frozen=True)
class StructuredConfig(OpConfig):
    """Remove whole channels / neurons / heads through the coupled groups.

    ``amount``: the fraction of each group's channels removed (of the heads, for a head group);
    with ``global_`` the fraction of all channels, ranked across groups. ``target_macs`` /
    ``target_params``: a budget (fraction of the original if ≤ 1, else an absolute count) met
    by searching the fraction. ``round_to``: kept counts are multiples of it.
    """

    amount: float | dict[str, float] | None = option(
        None, S.check_amount, "fraction of each group's channels removed (or {glob: fraction})"
    )
    importance: str | Callable | None = option(
        None, _importance, "channel scores: a name or fn(model, group) -> scores; "
        "default activation with data, else l2"
    )  # fmt: skip
    global_: bool = option(False, None, "rank channels across groups")
    target_macs: float | None = option(None, budget(), "MACs budget (fraction ≤ 1, or a count)")
    target_params: float | None = option(None, budget(), "params budget (fraction ≤ 1, or count)")
    round_to: int | None = option(None, integer(1), "kept channel counts are multiples of N")
    max_fraction: float = option(0.9, fraction(hi_closed=True), "most of a group removed")
    uniform: bool = option(False, None, "equal counts per part and size (HF-compatible)")
    targets: tuple[str, ...] = option(PARTS, _targets, "parts that may lose channels")
    all_or_nothing: bool = option(False, None, "refuse the prune if a planned group breaks")
    ignore: Any = option((), None, "modules to leave whole: names, globs, modules, filter_fn")
    max_batches: int = option(16, integer(1), "calibration batches read (data-driven scores)")
    batch_size: int | None = option(None, integer(1), "batch size when data is a Dataset")
    seed: int = option(0, integer(0), "seed of every random choice")
    steps: int = option(1, integer(1), "reach the amount / budget in N rounds, scored anew")
    between: Callable | None = option(
        None, _hook, "fn(model, round) after each round but the last (e.g. a short ns.heal)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.amount, dict):
            clash = [k for k in ("global_", "uniform") if getattr(self, k)]
            clash += [k for k in ("target_macs", "target_params") if getattr(self, k) is not None]
            if clash:
                raise InputError(
                    f"prune: amount={{pattern: fraction}} sets per-layer ratios; not with {clash[0]}="
                )


@dataclass(frozen=True)
class UnstructuredConfig(OpConfig):
    """Zero individual weights: ``|w| < threshold``, the lowest ``sparsity`` fraction (per layer
    or ``global_``), or an N:M ``pattern``; then remove neurons that died (``remove_dead``)."""

    threshold: float | None = option(None, non_negative(), "zero weights with |score| below this")
    sparsity: float | None = option(None, fraction(), "fraction of weights to zero")
    pattern: str | None = option(None, None, "N:M sparsity, e.g. 2:4")
    global_: bool = option(False, None, "rank weights across layers")
    importance: str = option(
        "magnitude",
        one_of("magnitude", "l1", "l2", "activation", "wanda", "sparsegpt"),
        "weight scores: magnitude, activation (|W|·‖X‖ per layer), wanda (per output row, "
        "layer after layer) or sparsegpt (OBS with weight reconstruction)",
    )
    remove_dead: bool = option(True, None, "remove neurons left without weights")
    ignore: Any = option((), None, "modules to leave whole: names, globs, modules, filter_fn")
    max_batches: int = option(16, integer(1), "calibration batches read (activation)")
    batch_size: int | None = option(None, integer(1), "batch size when data is a Dataset")
    seed: int = option(0, integer(0), "seed of every random choice")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threshold is None and self.sparsity is None and self.pattern is None:
            raise InputError("nothing to prune: pass amount=, sparsity=, threshold= or pattern=")
        if self.pattern is not None:
            U.parse_pattern(self.pattern)


CONFIGS = (StructuredConfig, UnstructuredConfig)


def choose(overrides: dict[str, Any]) -> type:
    """Structured when ``amount`` / ``target_*`` is given or ``structured=True``; unstructured
    for ``threshold`` / ``pattern`` / ``sparsity`` without it."""
    structured = overrides.get("structured")
    if structured is None:
        keys = ("amount", "target_macs", "target_params")
        structured = any(overrides.get(k) is not None for k in keys)
    return StructuredConfig if structured else UnstructuredConfig


def prepare(cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """Keyword forms the configs accept: ``sparsity=`` as a structured amount, ``ignore`` and
    ``targets`` as tuples, and ``uniform`` refused for unstructured pruning."""
    kw = {k: v for k, v in overrides.items() if v is not None or k in ("importance",)}
    if cls is StructuredConfig:
        if "sparsity" in kw:
            kw.setdefault("amount", kw.pop("sparsity"))
        if kw.get("remove_dead", True):
            kw.pop("remove_dead", None)  # the default of the other mode: nothing to refuse
        for k in ("threshold", "pattern", "remove_dead"):
            if k in kw:
                raise InputError(f"prune: {k}= is an unstructured option; drop amount/target_*")
        if (
            kw.get("amount") is None
            and kw.get("target_macs") is None
            and kw.get("target_params") is None
        ):
            raise InputError("structured pruning needs amount=, target_macs= or target_params=")
        if "targets" in kw:
            kw["targets"] = tuple(
                [kw["targets"]] if isinstance(kw["targets"], str) else kw["targets"]
            )
    elif kw.pop("uniform", False):
        raise InputError("uniform=True applies to structured pruning (amount= or target_*=)")
    else:
        for k in ("amount", "round_to", "target_macs", "target_params", "targets"):
            kw.pop(k, None)
        if kw.get("importance") is None:
            kw.pop("importance", None)
    if isinstance(kw.get("ignore"), list):
        kw["ignore"] = tuple(kw["ignore"])
    return kw


def run(session: Any, cfg: Any) -> Any:
    """Prune ``model`` in place and return a :class:`~netsculpt.report.Report`.

    Structured (the default when ``amount`` / ``target_*`` is given, or ``structured=True``):
    remove channels, neurons and heads through the structure graph. Unstructured (``threshold``,
    ``pattern``, or ``sparsity`` without ``structured=True``): zero weights, keep masks so that
    fine-tuning cannot revive them, then physically remove neurons left without weights.

    ``importance``: a registered name (l1, l2, lamp, fpgm, taylor, activation, bn_scale, random)
    or any
    callable ``fn(model, group) -> scores`` (one score per channel of the group, higher =
    more important). Without it: ``activation`` when ``data`` is given, else ``l2``.

    ``uniform=True`` (structured): every group of the same part and size — each layer's heads,
    each layer's MLP channels, each residual stream — loses the same number of channels (the
    mean of what the plan, global or budgeted, took from them). For a Hugging Face model this
    keeps per-layer widths equal, so the config describes the model and ``save_pretrained`` /
    ``from_pretrained`` round-trips.

    >>> import torch, netsculpt as ns
    >>> m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> rep = ns.prune(m, torch.ones(1, 8), amount=0.5)
    >>> m[0].out_features, rep.plan.actions[0].kind
    (8, 'remove_channels')
    """
    if isinstance(cfg, UnstructuredConfig):
        return U.run_unstructured(session, cfg)
    return _structured(session, cfg)


# -- structured ----------------------------------------------------------------------------------
def importance_name(cfg: StructuredConfig, session: Any) -> str | Callable:
    if cfg.importance is not None:
        return cfg.importance
    return "activation" if session.has_data else "l2"


def scores_for(session: Any, importance: Any, groups: list, seed: int) -> dict[int, np.ndarray]:
    """``{group id: scores}`` by a registered estimator or a callable ``fn(model, group)``;
    a named estimator comes from the session's ``scorer`` when it has one."""
    if callable(importance):
        out = {}
        for g in groups:
            s = np.asarray(importance(session.model, g), dtype=np.float64).reshape(-1)
            if s.shape != (g.size,) or not np.isfinite(s).all():
                raise InputError(
                    f"importance callable: {g.describe()} needs {g.size} finite scores, "
                    f"got shape {s.shape}"
                )
            out[g.id] = s
        return out
    if getattr(session, "scorer", None) is not None:
        with session.step(f"score {len(groups)} groups ({importance})"):
            return session.scorer(importance, groups)
    needs = getattr(ESTIMATORS.get(importance), "needs_data", False)
    data = session.data_batches(f"importance '{importance}'" if needs else None)
    graph = session.graph
    with session.step(f"score {len(groups)} groups ({importance})"):
        return score_groups(importance, session.model, graph, groups, data=data, seed=seed)


def _structured(session: Any, cfg: StructuredConfig, rounds: Any = None) -> Any:
    if cfg.steps > 1 and rounds is None:
        return S.scheduled(session, cfg, _structured, anchor)
    t0 = time.perf_counter()
    model, graph = session.model, session.graph
    before = session.snapshot(predicted={})
    parts = P.group_parts(graph, model)
    groups = [g for g in graph.prunable_groups() if parts[g.id] in cfg.targets]
    importance = importance_name(cfg, session)
    label = (
        importance if isinstance(importance, str) else getattr(importance, "__name__", "callable")
    )
    scores = scores_for(session, importance, groups, cfg.seed)
    unscored = [g for g in groups if g.id not in scores]
    if unscored:
        session.notes.append(f"{len(unscored)} groups have no '{label}' score and stay whole")
    key = (lambda g: (g.kind, parts[g.id])) if cfg.uniform else None
    est = ESTIMATORS.get(importance) if isinstance(importance, str) else None
    normalize = not getattr(est, "normalized", False)  # LAMP scores compare across groups
    skipped: dict[int, str] = {}
    budgeted = cfg.target_macs is not None or cfg.target_params is not None
    for attempt in range(3):  # re-plan a budget without groups that turned out to break the model
        usable = [g for g in groups if g.id in scores and g.id not in skipped]
        chans, frac = S.plan_round(graph, model, usable, scores, cfg, key, rounds, normalize)
        plan = Plan("prune", channel_actions(graph, chans, scores), {"mode": "structured"})
        undo = session.backend.checkpoint(session)
        session.refused = {}
        session.apply(plan, safe=True)
        bad = dict(session.refused)
        skipped.update(bad)
        if bad and cfg.all_or_nothing:
            undo()
            session.stale()
            raise InputError(
                "uniform pruning needs every planned group; these broke the model: "
                + "; ".join(f"{graph.groups[g].describe()}: {w}" for g, w in bad.items())
            )
        if not bad or not budgeted or attempt == 2:
            break  # a fixed fraction needs no re-plan; a budget is searched again without them
        undo()
        session.stale()
        session.notes[:] = [n for n in session.notes if not n.startswith("kept ")]
    kept = {g: ch for g, ch in chans.items() if g not in skipped}
    plan = Plan(
        "prune", channel_actions(graph, kept, scores), {"mode": "structured", **cfg.to_dict()}
    )
    after = session.snapshot(predicted=kept, graph=graph)
    if rounds is None or rounds.i == rounds.n:  # a budget is of the original figures
        base = before if rounds is None else Snapshot(macs=rounds.macs0, params=rounds.params0)
        _budget_notes(session, cfg, base, after)
    details = {
        "fraction": frac,
        "importance": label,
        "groups": [_group_row(graph.groups[g], kept.get(g), scores.get(g)) for g in sorted(scores)],
        "removed": {
            t: int(sum(len(c) for g, c in kept.items() if parts[g] == t)) for t in cfg.targets
        },
        "skipped": {graph.groups[g].describe(): why for g, why in skipped.items()},
        "protected": _protected_summary(graph),
        "scores": {f"group {g}": float(np.mean(s)) for g, s in scores.items()},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    session.notes.extend(_protected_parts(graph, model, cfg.targets, groups))
    return session.report("prune", {"mode": "structured"}, plan, before, after, details)


def _group_row(g, removed, scores) -> dict:
    return {
        "group": g.id,
        "kind": g.kind,
        "size": g.size,
        "kept": g.size - (0 if removed is None else len(removed)),
        "modules": g.modules,
        "mean_score": None if scores is None else float(np.mean(scores)),
    }


def _protected_summary(graph) -> dict[str, int]:
    out: dict[str, int] = {}
    for g in graph.groups:
        if not g.prunable and g.size > 1:
            key = (g.reason or "").split(" (")[0]
            out[key] = out.get(key, 0) + 1
    return out


def _protected_parts(graph, model, targets, groups) -> list[str]:
    """A note for each explicitly requested part with no prunable group, with the graph's
    reason (a base model such as ``BertModel`` returns the hidden states)."""
    if tuple(targets) == PARTS:
        return []
    parts = P.group_parts(graph, model)
    found = {parts[g.id] for g in groups}
    emb = P.embedding_names(model)
    notes = []
    for t in targets:
        if t in found:
            continue
        why = ""
        if t == "hidden":
            held = [g for g in graph.groups if emb & {m.tensor for m in g.members}] or [
                g for g in graph.groups if (g.reason or "").startswith("model output")
            ]
            stream = max(held, key=lambda g: len(g.members), default=None)
            why = (stream.reason or "") if stream is not None else ""
        notes.append(f"{t}: nothing prunable" + (f" ({why})" if why else ""))
    return notes


def _budget_notes(session, cfg, before, after) -> None:
    for name, target in (("macs", cfg.target_macs), ("params", cfg.target_params)):
        if target is None:
            continue
        base = getattr(before, name)
        goal = target * base if target <= 1 else target
        if getattr(after, name) > goal:
            session.notes.append(
                f"{name} budget not reached: {getattr(after, name):,} > {int(goal):,} "
                f"(at most {cfg.max_fraction:.0%} of any group is removed)"
            )


def replay(session: Any, plan: Plan) -> Plan:
    """A saved plan holds no masks: recompute each ``zero_weights`` mask from its rule on the
    model's weights (data-driven rules need ``data=``); other actions replay as written."""
    out = Plan(plan.op, [], dict(plan.config))
    params = dict(session.model.named_parameters(remove_duplicate=False))
    pending: dict[tuple, dict] = {}
    for i, a in enumerate(plan.actions):
        calibrated = a.args.get("importance") in ("wanda", "sparsegpt")
        if a.kind != "zero_weights" or "_mask" in a.args or calibrated:  # the backend re-plans
            # a calibrated step (wanda, sparsegpt) when it applies, after the steps before it
            out.actions.append(a)
            continue
        if a.args["tensor"] not in params:
            raise InputError(f"plan actions[{i}]: the model has no parameter {a.args['tensor']!r}")
        key = (repr(sorted(a.args["rule"].items())), a.args.get("importance", "magnitude"))
        pending.setdefault(key, {})[a.args["tensor"]] = params[a.args["tensor"]]
        if len(pending[key]) == 1:
            out.actions.append(Action("_zero", {"key": key, "rule": a.args["rule"]}))
    final = Plan(plan.op, [], dict(plan.config))
    for a in out.actions:
        if a.kind == "_zero":
            final.actions += U.zero_actions(
                session, pending[a.args["key"]], a.args["rule"], a.args["key"][1]
            )
        else:
            final.actions.append(a)
    return final
