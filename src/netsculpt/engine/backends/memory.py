"""The in-memory backend: applies a Plan to the user's own ``nn.Module`` through ``surgery``.

Each action kind has an applier, ``fn(session, actions, **options) -> applied actions``;
consecutive actions of one kind (and one ``step``, where actions carry it) are applied together
(one surgery call removes every planned channel group at once, as a graph-consistent edit). Ops
register the appliers of their own action kinds with :func:`applier`; the ones prune needs live
here, the merge and depth ones in their own modules.

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
KEEPS_STRUCTURE = {"zero_weights", "obs_prune", "recalibrate_bn"}
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
    model's edit log and masks, and of a Hugging Face config's fields, and each parameter's
    ``requires_grad`` flag. Surgery replaces tensors rather than writing into them, so
    references are enough: no weight is copied.
    """
    saved = []
    for mod in model.modules():
        attrs = {
            k: (copy.copy(v) if isinstance(v, (list, dict, set)) else v)
            for k, v in vars(mod).items()
        }
        params = {
            k: (p, p.data if p is not None else None, p is not None and p.requires_grad)
            for k, p in mod._parameters.items()
        }
        saved.append((mod, mod.__class__, attrs, params))
    config = getattr(model, "config", None)
    config_state = copy.deepcopy(vars(config)) if hasattr(config, "to_dict") else None
    extra = {k: copy.copy(getattr(model, k)) for k in _MODEL_STATE if hasattr(model, k)}

    def undo() -> None:
        for mod, cls, attrs, params in saved:
            mod.__class__ = cls
            mod.__dict__.clear()
            mod.__dict__.update(attrs)
            for p, data, grad in params.values():
                if p is not None:
                    p.data = data
                    p.requires_grad_(grad)
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
    session: Any,
    actions: list[Action],
    *,
    safe: bool = True,
    check: Any = None,
    verify: bool = True,
    **_: Any,
) -> list[Action]:
    """Remove every planned group at once; with ``safe``, groups whose removal breaks the
    model are left out (the session gets a note for each) instead of failing the edit.
    ``verify=False``: shapes only, the model is not run (a meta model that cannot run)."""
    from netsculpt.surgery import remove_channels, remove_channels_safely

    graph = session.graph
    by_group = resolve_channels(session, actions)
    if not verify:
        remove_channels(session.model, graph, by_group)
        return actions
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

    if any("_mask" not in a.args and a.args.get("importance") == "wanda" for a in actions):
        actions = _replanned(session, actions, "zero_weights")
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


def _replanned(session: Any, actions: list[Action], kind: str) -> list[Action]:
    """A saved calibrated step (no masks / Hessians): planned again on the model as it is now."""
    from netsculpt.ops.prune_calibrated import replan

    return replan(session, actions, kind)()


@applier("obs_prune")
def _obs_prune(session: Any, actions: list[Action], **_: Any) -> list[Action]:
    """SparseGPT: prune each weight by the OBS rule on its input Hessian and reconstruct the
    kept weights (:func:`netsculpt.surgery.sparsegpt.obs_prune`); the weights are new tensors,
    the masks are kept as for ``zero_weights``."""
    from netsculpt.ops.prune_unstructured import parse_pattern
    from netsculpt.surgery.sparsegpt import obs_prune, reconstruct

    if any(a.args.get("_hessian") is None for a in actions):
        actions = _replanned(session, actions, "obs_prune")
    params = dict(session.model.named_parameters(remove_duplicate=False))
    edits = {}
    for i, a in enumerate(actions):
        name, rule = a.args["tensor"], a.args["rule"]
        w = params.get(name)
        if w is None or w.dim() != 2:
            raise InputError(f"plan obs_prune[{i}]: the model has no Linear weight {name!r}")
        pattern = parse_pattern(rule["pattern"]) if "pattern" in rule else None
        edits[name] = obs_prune(
            w, a.args["_hessian"], sparsity=rule.get("sparsity"), pattern=pattern,
            blocksize=int(a.args.get("blocksize", 128)),
            percdamp=float(a.args.get("percdamp", 0.01)),
        )  # fmt: skip
    zeroed = reconstruct(session.model, edits)
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


# the appliers of the other action kinds register themselves on import
from netsculpt.engine.backends import depth_appliers, merge_appliers  # noqa: E402, F401
