"""The in-memory backend: applies a Plan to the user's own ``nn.Module`` through ``surgery``.

Each action kind has an applier, ``fn(session, actions, **options) -> applied actions``;
consecutive actions of one kind (and one ``step``, where actions carry it) are applied together
(one surgery call removes every planned channel group at once, as a graph-consistent edit). Ops register the appliers of their own
action kinds with :func:`applier`; the two that prune needs live here.

:meth:`MemoryBackend.checkpoint` records the model's structure (classes, attributes, the
parameter and buffer tensors, the edit log, the masks, a Hugging Face config) without copying
any weight, so that a failed verb leaves the model exactly as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from itertools import groupby
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.plan import Action, Plan

Applier = Callable[..., list[Action]]
APPLIERS: dict[str, Applier] = {}
# action kinds that leave the structure as it was (no re-export needed afterwards)
KEEPS_STRUCTURE = {"zero_weights"}
_MODEL_STATE = ("_netsculpt_edits", "_netsculpt_masks")


def applier(kind: str) -> Callable[[Applier], Applier]:
    def deco(fn: Applier) -> Applier:
        APPLIERS[kind] = fn
        return fn

    return deco


class MemoryBackend:
    """Apply plans to a model in memory (the default backend of a :class:`Session`)."""

    name = "memory"

    def apply(self, session: Any, plan: Plan, **options: Any) -> Plan:
        done = Plan(plan.op, [], dict(plan.config))
        # one run per kind and step: a plan made in steps (optimize) replays step by step
        for (kind, _), run in groupby(plan.actions, key=lambda a: (a.kind, a.args.get("step"))):
            fn = APPLIERS.get(kind)
            if fn is None:
                raise InputError(f"plan: no in-memory applier for action kind {kind!r}")
            done.actions.extend(fn(session, list(run), **options))
            if kind not in KEEPS_STRUCTURE:
                session.stale()
        return done

    def checkpoint(self, session: Any) -> Callable[[], None]:
        return checkpoint(session.model)


def checkpoint(model: nn.Module) -> Callable[[], None]:
    """A function that puts ``model`` back into its present structure and tensors.

    Saves, for every module reachable now, its class, its attribute dict (with copies of its
    parameter, buffer and child dicts), and each parameter's data tensor; plus copies of the
    model's edit log and masks, and of a Hugging Face config's fields. Surgery replaces tensors
    rather than writing into them, so references are enough: no weight is copied.
    """
    saved = []
    for mod in model.modules():
        attrs = {
            k: (copy.copy(v) if isinstance(v, (list, dict, set)) else v)
            for k, v in vars(mod).items()
        }
        params = {k: (p, p.data if p is not None else None) for k, p in mod._parameters.items()}
        saved.append((mod, mod.__class__, attrs, params))
    config = getattr(model, "config", None)
    config_state = copy.deepcopy(vars(config)) if hasattr(config, "to_dict") else None
    extra = {k: copy.copy(getattr(model, k)) for k in _MODEL_STATE if hasattr(model, k)}

    def undo() -> None:
        for mod, cls, attrs, params in saved:
            mod.__class__ = cls
            mod.__dict__.clear()
            mod.__dict__.update(attrs)
            for p, data in params.values():
                if p is not None:
                    p.data = data
        for k in _MODEL_STATE:
            if k in extra:
                setattr(model, k, extra[k])
            elif k in vars(model):
                delattr(model, k)
        if config_state is not None:
            vars(config).clear()
            vars(config).update(config_state)

    return undo


# -- appliers ------------------------------------------------------------------------------------
def member_anchor(m: Any) -> tuple[str, int, int, int]:
    """``(tensor, dim, first position of channel 0, first position of channel 1)``: names one
    member's group uniquely, also where a dim is a product of groups (heads × head_dim)."""
    im = m.index_map
    p0 = np.nonzero(im == 0)[0]
    p1 = np.nonzero(im == 1)[0]
    return (m.tensor, int(m.dim), int(p0[0]) if len(p0) else -1, int(p1[0]) if len(p1) else -1)


def group_of_anchor(graph: Any) -> dict[tuple, Any]:
    """``anchor -> group`` over every member of every group."""
    return {member_anchor(m): g for g in graph.groups for m in g.members}


def resolve_channels(session: Any, actions: list[Action]) -> dict[int, np.ndarray]:
    """``{group id: channels}`` of the session's graph for ``remove_channels`` actions."""
    index = group_of_anchor(session.graph)
    plan: dict[int, np.ndarray] = {}
    for i, a in enumerate(actions):
        g = _group(index, a, i)
        size = a.args.get("size")
        if size is not None and int(size) != g.size:
            raise InputError(
                f"plan remove_channels[{i}]: made for a group of {size} channels; this model's "
                f"{g.describe()} has {g.size} (a plan applies to the architecture it was made for)"
            )
        ch = np.asarray(a.args["channels"], dtype=np.int64)
        if ch.size and (ch.min() < 0 or ch.max() >= g.size):
            raise InputError(
                f"plan remove_channels[{i}]: channel {int(ch.max())} is outside the group of "
                f"{g.size} ({g.describe()})"
            )
        if not g.prunable:
            raise InputError(f"plan remove_channels[{i}]: {g.describe()} is protected: {g.reason}")
        plan[g.id] = np.union1d(plan.get(g.id, np.zeros(0, np.int64)), ch).astype(np.int64)
    return plan


def _group(index: dict, a: Action, i: int) -> Any:
    anchor = a.args["anchor"]
    ok = isinstance(anchor, (list, tuple)) and len(anchor) == 4
    g = index.get((str(anchor[0]), *(int(x) for x in anchor[1:]))) if ok else None
    if g is None:
        raise InputError(
            f"plan remove_channels[{i}]: anchor {anchor!r} names no channel group of this model "
            "([tensor, dim, first position of channel 0, of channel 1]; a plan applies to the "
            "architecture it was made for)"
        )
    return g


@applier("remove_channels")
def _remove_channels(
    session: Any, actions: list[Action], *, safe: bool = True, check: Any = None, **_: Any
) -> list[Action]:
    """Remove every planned group at once; with ``safe``, groups whose removal breaks the
    model are left out (the session gets a note for each) instead of failing the edit."""
    from netsculpt.surgery import remove_channels, remove_channels_safely

    graph = session.graph
    by_group = resolve_channels(session, actions)
    if not safe:
        remove_channels(session.model, graph, by_group, session.example_inputs, check=check)
        return actions
    _, bad = remove_channels_safely(
        session.model, graph, by_group, session.example_inputs, check=check
    )
    for gid, why in bad.items():
        session.notes.append(f"kept {graph.groups[gid].describe()}: {why}")
    session.refused = {**getattr(session, "refused", {}), **bad}
    index = group_of_anchor(graph)
    return [a for i, a in enumerate(actions) if _group(index, a, i).id not in bad]


@applier("zero_weights")
def _zero_weights(session: Any, actions: list[Action], **_: Any) -> list[Action]:
    """Zero weights by each action's mask (``_mask``: in memory only, never serialised;
    ``ns.apply`` recomputes it from the action's ``rule``)."""
    from netsculpt.surgery.masks import zero_weights

    params = dict(session.model.named_parameters(remove_duplicate=False))
    masks = {}
    for i, a in enumerate(actions):
        name = a.args["tensor"]
        if name not in params:
            raise InputError(f"plan zero_weights[{i}]: the model has no parameter {name!r}")
        mask = a.args.get("_mask")
        if mask is None:
            raise InputError(
                f"plan zero_weights[{i}]: {name} has no mask (replay it with ns.apply)"
            )
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if tuple(mask.shape) != tuple(params[name].shape):
            raise InputError(
                f"plan zero_weights[{i}]: mask shape {tuple(mask.shape)} does not match "
                f"{name} {tuple(params[name].shape)}"
            )
        masks[name] = mask
    zeroed = zero_weights(session.model, masks)
    for a in actions:
        a.args["zeros"] = zeroed.get(a.args["tensor"], 0)
    return actions


@applier("add_bias")
def _add_bias(session: Any, actions: list[Action], **_: Any) -> list[Action]:
    from netsculpt.surgery.masks import add_to_bias

    mods = dict(session.model.named_modules())
    folds = []
    for i, a in enumerate(actions):
        mod = mods.get(a.args["module"])
        if mod is None or getattr(mod, "bias", None) is None:
            raise InputError(f"plan add_bias[{i}]: {a.args['module']!r} is no module with a bias")
        delta = torch.as_tensor(a.args["delta"])
        if delta.shape != mod.bias.shape:
            raise InputError(
                f"plan add_bias[{i}]: delta of {tuple(delta.shape)} for a bias of {tuple(mod.bias.shape)}"
            )
        folds.append((a.args["module"], delta))
    add_to_bias(session.model, folds)
    return actions


@applier("fold")
def _fold(session: Any, actions: list[Action], **_: Any) -> list[Action]:
    """Exact folds (``surgery.fold.apply_fold``), in order; each replaced module is recorded
    in the structure manifest."""
    from netsculpt.surgery import fold

    for i, a in enumerate(actions):
        modules = a.args["modules"]
        if isinstance(modules, str) or not isinstance(modules, (list, tuple)):
            raise InputError(f"plan fold[{i}]: modules must be a list of module paths")
        fold.apply_fold(session.model, str(a.args["fold_kind"]), modules, where=f"plan fold[{i}]")
    return actions


def _producer_group(graph: Any, producer: str, where: str) -> Any:
    """The channel group of ``producer``'s output channels (its weight's dim 0)."""
    tensor = f"{producer}.weight"
    for g in graph.groups:
        if any(m.tensor == tensor and m.role == "out" and m.dim == 0 for m in g.members):
            return g
    raise InputError(f"{where}: {producer!r} produces no channel group of this model")


@applier("merge_neurons")
def _merge_neurons(session: Any, actions: list[Action], **_: Any) -> list[Action]:
    """Neuron Merging: add each merged neuron's consumer columns, scaled by its ratio, to the
    kept neuron's (``surgery.fold.merge_into_consumers``), then remove the merged neurons of
    every producer at once (``surgery.remove_channels``)."""
    from netsculpt.surgery import remove_channels
    from netsculpt.surgery.fold import merge_into_consumers

    graph = session.graph
    removal: dict[int, np.ndarray] = {}
    updates = []
    for i, a in enumerate(actions):
        where = f"plan merge_neurons[{i}]"
        group = _producer_group(graph, str(a.args["producer"]), where)
        try:
            merged = [(int(j), int(k), float(r)) for j, k, r in a.args["merged"]]
        except (TypeError, ValueError):
            raise InputError(f"{where}: merged is a list of [j, k, ratio] triples") from None
        for j, k, _r in merged:
            if not (0 <= j < group.size and 0 <= k < group.size) or j == k:
                raise InputError(
                    f"{where}: [{j}, {k}] is not a pair of channels of {group.describe()}"
                )
        if not group.prunable:
            raise InputError(f"{where}: {group.describe()} is protected: {group.reason}")
        if group.id in removal:
            raise InputError(f"{where}: {a.args['producer']!r} is merged twice in one plan")
        updates.append((group, merged))
        removal[group.id] = np.array(sorted({j for j, _, _ in merged}), dtype=np.int64)
    for group, merged in updates:
        merge_into_consumers(session.model, group, merged)
    if removal:
        remove_channels(session.model, graph, removal, session.example_inputs)
    return actions


@applier("collapse_blocks")
def _collapse_blocks(session: Any, actions: list[Action], **_: Any) -> list[Action]:
    """LaCo: RDSC of each action's blocks into the first, the others removed
    (``surgery.fold.collapse_blocks``). Blocks are named as in ``session.blocks()`` at the time
    of the action (a ModuleList renumbers after a removal); an action made in this session
    carries its ``Block`` s in memory (``_blocks``) and needs no export."""
    from netsculpt.surgery.fold import collapse_blocks

    for i, a in enumerate(actions):
        names = a.args["blocks"]
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or len(names) < 2:
            raise InputError(f"plan collapse_blocks[{i}]: blocks must list two or more blocks")
        blocks = a.args.get("_blocks")
        if blocks is None:
            by_name = {b.name: b for b in session.blocks()}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise InputError(
                    f"plan collapse_blocks[{i}]: {missing[0]!r} is no block of this model"
                )
            blocks = [by_name[n] for n in names]
        collapse_blocks(session.model, blocks)
        session.stale()  # the next action's names refer to the model after this one
    return actions
