"""prune (剪枝): zero weights, remove neurons / channels / heads — a smaller model that runs."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from torch import nn

from netsculpt.errors import InputError
from netsculpt.graph import build_graph
from netsculpt.importance import ESTIMATORS, score_groups
from netsculpt.ops import prune_plan as P
from netsculpt.ops import prune_unstructured as U
from netsculpt.report import Report, Snapshot, layer_sizes
from netsculpt.surgery import remove_channels_safely


@dataclass(frozen=True)
class UnstructuredConfig:
    """Zero individual weights: ``|w| < threshold``, the lowest ``sparsity`` fraction (per layer
    or ``global_``), or an N:M ``pattern``; then remove neurons that died (``remove_dead``)."""

    threshold: float | None = None
    sparsity: float | None = None
    pattern: str | None = None
    global_: bool = False
    importance: str = "magnitude"
    remove_dead: bool = True
    ignore: tuple = ()


@dataclass(frozen=True)
class StructuredConfig:
    """Remove whole channels / neurons / heads through the coupled groups.

    ``amount``: the fraction of each group's channels removed (of the heads, for a head group);
    with ``global_`` the fraction of all channels, ranked across groups. ``target_macs`` /
    ``target_params``: a budget (fraction of the original if ≤ 1, else an absolute count) met
    by searching the fraction. ``round_to``: kept counts are multiples of it.
    """

    amount: float | None = None
    importance: str = "l2"
    global_: bool = False
    target_macs: float | None = None
    target_params: float | None = None
    round_to: int | None = None
    max_fraction: float = 0.9
    uniform: bool = False
    ignore: tuple = ()
    seed: int = 0


@dataclass
class _Context:
    model: nn.Module
    example_inputs: Any
    data: Any = None
    notes: list[str] = field(default_factory=list)


def prune(
    model: nn.Module,
    example_inputs: Any,
    *,
    amount: float | None = None,
    sparsity: float | None = None,
    threshold: float | None = None,
    pattern: str | None = None,
    structured: bool | None = None,
    importance: str | None = None,
    global_: bool = False,
    target_macs: float | None = None,
    target_params: float | None = None,
    round_to: int | None = None,
    uniform: bool = False,
    ignore: list | tuple = (),
    data: Any = None,
    remove_dead: bool = True,
    seed: int = 0,
) -> Report:
    """Prune ``model`` in place and return a :class:`~netsculpt.report.Report`.

    Structured (the default when ``amount`` / ``target_*`` is given, or ``structured=True``):
    remove channels, neurons and heads through the structure graph. Unstructured (``threshold``,
    ``pattern``, or ``sparsity`` without ``structured=True``): zero weights, keep masks so that
    fine-tuning cannot revive them, then physically remove neurons left without weights.

    ``uniform=True`` (structured): every group of the same part and size — each layer's heads,
    each layer's MLP channels, each residual stream — loses the same number of channels (the
    mean of what the plan, global or budgeted, took from them). For a Hugging Face model this
    keeps per-layer widths equal, so the config describes the model and ``save_pretrained`` /
    ``from_pretrained`` round-trips.

    >>> import torch, netsculpt as ns
    >>> m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> rep = ns.prune(m, torch.randn(1, 8), amount=0.5)
    >>> m[0].out_features
    8
    """
    ignore = _ignore_names(model, ignore)
    if structured is None:
        structured = amount is not None or target_macs is not None or target_params is not None
    if structured:
        frac = amount if amount is not None else sparsity
        if frac is None and target_macs is None and target_params is None:
            raise InputError("structured pruning needs amount=, target_macs= or target_params=")
        cfg = StructuredConfig(
            amount=frac,
            importance=importance or "l2",
            global_=global_,
            target_macs=target_macs,
            target_params=target_params,
            round_to=round_to,
            uniform=uniform,
            ignore=tuple(ignore),
            seed=seed,
        )
        _check_structured(cfg)
        return _structured(_Context(model, example_inputs, data), cfg)
    if uniform:
        raise InputError("uniform=True applies to structured pruning (amount= or target_*=)")
    if threshold is None and sparsity is None and pattern is None:
        raise InputError("nothing to prune: pass amount=, sparsity=, threshold= or pattern=")
    cfg = UnstructuredConfig(
        threshold=threshold,
        sparsity=sparsity,
        pattern=pattern,
        global_=global_,
        importance=importance or "magnitude",
        remove_dead=remove_dead,
        ignore=tuple(ignore),
    )
    _check_unstructured(cfg)
    return _unstructured(_Context(model, example_inputs, data), cfg)


def _ignore_names(model: nn.Module, ignore) -> list[str]:
    names = {id(m): n for n, m in model.named_modules()}
    out = []
    for item in ignore or ():
        if isinstance(item, nn.Module):
            if id(item) not in names:
                raise InputError("ignore= lists a module that is not part of this model")
            out.append(names[id(item)])
        elif isinstance(item, str):
            out.append(item)
        else:
            raise InputError(f"ignore= takes modules or name patterns, got {type(item).__name__}")
    return out


def _fraction(name: str, v: float | None, upper: float = 1.0) -> None:
    if v is not None and not (0 < v < upper):
        raise InputError(f"{name} must be in (0, {upper:g}), got {v}")


def _check_structured(cfg: StructuredConfig) -> None:
    _fraction("amount", cfg.amount)
    for name in ("target_macs", "target_params"):
        v = getattr(cfg, name)
        if v is not None and v <= 0:
            raise InputError(f"{name} must be > 0 (a fraction ≤ 1 or an absolute count)")
    if cfg.importance not in ESTIMATORS:
        raise InputError(
            f"unknown importance '{cfg.importance}'; choose one of {', '.join(ESTIMATORS)}"
        )
    if cfg.round_to is not None and cfg.round_to < 1:
        raise InputError(f"round_to must be a positive integer, got {cfg.round_to}")


def _check_unstructured(cfg: UnstructuredConfig) -> None:
    _fraction("sparsity", cfg.sparsity)
    if cfg.threshold is not None and cfg.threshold < 0:
        raise InputError(f"threshold must be ≥ 0, got {cfg.threshold}")


def _snapshot(model, graph, plan=None) -> Snapshot:
    return Snapshot(params=graph.predict_params(model, plan), macs=graph.predict_macs(plan))


def _structured(ctx: _Context, cfg: StructuredConfig) -> Report:
    t0 = time.perf_counter()
    model = ctx.model
    graph = build_graph(model, ctx.example_inputs, ignore=list(cfg.ignore))
    before = _snapshot(model, graph)
    layers_before = layer_sizes(model)
    groups = graph.prunable_groups()
    scores = score_groups(cfg.importance, model, graph, groups, data=ctx.data, seed=cfg.seed)
    unscored = [g for g in groups if g.id not in scores]
    if unscored:
        ctx.notes.append(f"{len(unscored)} groups have no '{cfg.importance}' score and stay whole")
    key = _uniform_key(model, graph) if cfg.uniform else None
    skipped: dict[int, str] = {}
    for attempt in range(3):  # re-plan without groups that turned out to break the model
        usable = [g for g in groups if g.id in scores and g.id not in skipped]
        if cfg.target_macs is not None or cfg.target_params is not None:
            plan, frac = P.budget_plan(
                graph,
                model,
                usable,
                scores,
                target_macs=cfg.target_macs,
                target_params=cfg.target_params,
                global_=cfg.global_,
                round_to=cfg.round_to,
                max_fraction=cfg.max_fraction,
                uniform_key=key,
            )
        else:
            frac = cfg.amount
            plan = P.plan_for(
                usable,
                scores,
                frac,
                global_=cfg.global_,
                round_to=cfg.round_to,
                max_fraction=cfg.max_fraction,
                uniform_key=key,
            )
        edit, bad = remove_channels_safely(model, graph, plan, ctx.example_inputs)
        skipped.update(bad)
        if not bad or cfg.amount is not None or attempt == 2:
            break  # a fixed fraction needs no re-plan; a budget is searched again without them
        edit.undo()
    plan = {g: ch for g, ch in plan.items() if g not in skipped}  # what was really removed
    after = _snapshot(model, graph, plan)
    _budget_notes(ctx, cfg, before, after)
    for gid, why in skipped.items():
        ctx.notes.append(f"kept {graph.groups[gid].describe()}: {why}")
    details = {
        "fraction": frac,
        "groups": [_group_row(graph.groups[g], plan.get(g), scores.get(g)) for g in sorted(scores)],
        "skipped": {graph.groups[g].describe(): why for g, why in skipped.items()},
        "protected": _protected_summary(graph),
        "scores": {f"group {g}": float(np.mean(s)) for g, s in scores.items()},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return _report(ctx, "structured", cfg, before, after, details, layers_before)


def _uniform_key(model: nn.Module, graph):
    """Which groups must lose equal counts: same kind and part (heads / MLP / the residual
    stream that reaches an input embedding); ``equalize`` also splits them by size."""
    parts = P.group_parts(graph, model)
    return lambda g: (g.kind, parts[g.id])


def _report(ctx: _Context, mode: str, cfg, before, after, details, layers_before) -> Report:
    return Report(
        op="prune",
        config={"mode": mode, **asdict(cfg)},
        before=before,
        after=after,
        details=details,
        notes=ctx.notes,
        layers_before=layers_before,
        layers_after=layer_sizes(ctx.model),
    )


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


def _budget_notes(ctx, cfg, before: Snapshot, after: Snapshot) -> None:
    for name, target in (("macs", cfg.target_macs), ("params", cfg.target_params)):
        if target is None:
            continue
        base = getattr(before, name)
        goal = target * base if target <= 1 else target
        if getattr(after, name) > goal:
            ctx.notes.append(
                f"{name} budget not reached: {getattr(after, name):,} > {int(goal):,} "
                f"(at most {cfg.max_fraction:.0%} of any group is removed)"
            )


def _unstructured(ctx: _Context, cfg: UnstructuredConfig) -> Report:
    t0 = time.perf_counter()
    model = ctx.model
    # one capture, before any weight changes (so a model that cannot be captured fails early);
    # zeroing weights does not change the structure, so it also serves dead-neuron removal
    graph = build_graph(model, ctx.example_inputs, ignore=list(cfg.ignore))
    before = _snapshot(model, graph)
    layers_before = layer_sizes(model)
    weights = U.prunable_weights(model, list(cfg.ignore))
    if not weights:
        raise InputError("no Linear or Conv weights to prune (all ignored?)")
    scores = U.weight_scores(model, weights, cfg.importance, ctx.data)
    masks, notes = U.masks_for(
        scores,
        threshold=cfg.threshold,
        sparsity=cfg.sparsity,
        global_=cfg.global_,
        pattern=cfg.pattern,
    )
    ctx.notes.extend(notes)
    zeroed = U.apply_masks_now(model, weights, masks)
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    plan: dict = {}
    if cfg.remove_dead:
        plan, notes = U.remove_dead(model, graph, ctx.example_inputs)
        ctx.notes.extend(notes)
    removed = int(sum(len(c) for c in plan.values()))
    after = _snapshot(model, graph, plan)
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    details = {
        "weights_zeroed": zeroed,
        "sparsity": zeros / total if total else 0.0,
        "dead_channels_removed": removed,
        "nonzero_params": nonzero,
        "per_layer_sparsity": {
            n: float((w == 0).float().mean())
            for n, w in U.prunable_weights(model, list(cfg.ignore)).items()
        },
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return _report(ctx, "unstructured", cfg, before, after, details, layers_before)
