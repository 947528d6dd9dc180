"""Structured pruning of a Hugging Face transformer by part: heads, MLP channels, hidden size.

Same engine as ``ns.prune`` (graph groups → scores → plan → surgery), plus what HF users need:
choose which parts go (``targets``), and ``uniform=True`` so every layer keeps the same number of
heads and MLP channels — the config then describes the model and ``save_pretrained`` /
``from_pretrained`` round-trips. With grouped-query attention the graph couples each KV head
with its query group, so a KV head always leaves with its queries.

>>> import netsculpt.hf as nhf                                     # doctest: +SKIP
>>> rep = nhf.prune(model, {"input_ids": ids}, amount=0.3, targets=("heads", "mlp"))  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from torch import nn

from netsculpt.errors import InputError
from netsculpt.graph import build_graph
from netsculpt.graph.channels import Group, StructureGraph
from netsculpt.importance import ESTIMATORS, score_groups
from netsculpt.ops import prune_plan as P
from netsculpt.report import Report, Snapshot, layer_sizes
from netsculpt.surgery import remove_channels_safely

TARGETS = ("heads", "mlp", "hidden")


def plan_parts(
    graph: StructureGraph,
    model: nn.Module,
    targets,
    score: Callable[[list[Group]], dict],
    amount: float,
    *,
    global_: bool,
    round_to: int | None,
    uniform: bool,
) -> tuple[dict[int, str], list[Group], dict]:
    """``(parts, groups, plan)``: the prunable groups of the chosen parts, scored by
    ``score(groups)`` and planned; ``uniform``: the same count from every group of a part and
    size (the mean of the plan's counts). Shared by in-memory and shard-by-shard pruning."""
    parts = P.group_parts(graph, model)
    groups = [g for g in graph.prunable_groups() if parts[g.id] in targets]
    scores = score(groups)
    groups = [g for g in groups if g.id in scores]
    plan = P.plan_for(groups, scores, amount, global_=global_, round_to=round_to, max_fraction=0.9)
    if uniform:
        plan = P.equalize(plan, groups, scores, lambda g: parts[g.id])
    return parts, groups, plan


def removed_counts(plan: dict, parts: dict[int, str], targets) -> dict[str, int]:
    """Channels (heads, for head groups) a plan removes from each target part."""
    return {t: int(sum(len(ch) for g, ch in plan.items() if parts[g] == t)) for t in targets}


def check_amount_targets(amount: float, targets) -> None:
    """One-line errors for an amount outside (0, 1) or targets outside :data:`TARGETS`."""
    if not 0 < amount < 1:
        raise InputError(f"amount must be in (0, 1), got {amount}")
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise InputError(f"targets must be a subset of {TARGETS}, got {tuple(targets)}")


def _protected_parts(graph: StructureGraph, model: nn.Module, targets, groups) -> list[str]:
    """A note for each requested part with no prunable group, with the graph's reason (a base
    model such as ``BertModel`` returns the hidden states: its hidden size is the output)."""
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
            ]  # the residual stream: the widest coupling that reaches the embedding or output
            stream = max(held, key=lambda g: len(g.members), default=None)
            why = (stream.reason or "") if stream is not None else ""
        notes.append(f"{t}: nothing prunable" + (f" ({why})" if why else ""))
    return notes


def prune(
    model: nn.Module,
    example_inputs: Any,
    *,
    amount: float = 0.3,
    targets: tuple[str, ...] | list[str] = ("heads", "mlp"),
    uniform: bool = True,
    importance: str = "l2",
    global_: bool = False,
    data: Any = None,
    round_to: int | None = None,
) -> Report:
    """Prune heads / MLP channels / hidden size of an HF model in place; returns a Report.

    ``amount``: fraction removed from each chosen part (``global_``: ranked across groups).
    ``uniform``: equal counts in every layer (HF-compatible config). ``importance``: any of
    ``ns.prune``'s estimators (``l2``, ``taylor``, ``activation`` — Minitron-style — need
    ``data`` for the data-driven ones).
    """
    check_amount_targets(amount, targets)
    if importance not in ESTIMATORS:
        raise InputError(f"unknown importance {importance!r}; one of {', '.join(ESTIMATORS)}")
    t0 = time.perf_counter()
    graph = build_graph(model, example_inputs)
    before = Snapshot(params=graph.predict_params(model), macs=graph.predict_macs())
    layers_before = layer_sizes(model)
    parts, groups, plan = plan_parts(
        graph, model, targets, lambda gs: score_groups(importance, model, graph, gs, data=data),
        amount, global_=global_, round_to=round_to, uniform=uniform,
    )  # fmt: skip
    edit, skipped = remove_channels_safely(model, graph, plan, example_inputs)
    if skipped and uniform:
        edit.undo()
        raise InputError(
            "uniform pruning needs every planned group; these broke the model: "
            + "; ".join(f"{graph.groups[g].describe()}: {why}" for g, why in skipped.items())
        )
    from netsculpt.hf.config import hf_compatible, layer_widths

    ok, why = hf_compatible(model)
    kept = {g: ch for g, ch in plan.items() if g not in skipped}
    after = Snapshot(params=graph.predict_params(model, kept), macs=graph.predict_macs(kept))
    details = {
        "removed": removed_counts(kept, parts, targets),
        "layers": layer_widths(model),
        "hf_compatible": ok,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    notes = [f"save with ns.save: {w}" for w in why]
    notes += [f"kept {graph.groups[g].describe()}: {w}" for g, w in skipped.items()]
    notes += _protected_parts(graph, model, targets, groups)
    return Report(
        op="prune",
        config={"mode": "hf", "amount": amount, "targets": list(targets), "uniform": uniform,
                "importance": importance, "global_": global_},
        before=before,
        after=after,
        details=details,
        notes=notes,
        layers_before=layers_before,
        layers_after=layer_sizes(model),
    )  # fmt: skip
