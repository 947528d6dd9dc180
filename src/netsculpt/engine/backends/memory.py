"""The in-memory backend: applies a Plan to the user's own ``nn.Module`` through ``surgery``.

Each action kind has an applier, ``fn(session, actions, **options) -> applied actions``;
consecutive actions of one kind are applied together (one surgery call removes every planned
channel group at once, as a graph-consistent edit). Ops register the appliers of their own
action kinds with :func:`applier`; the ones prune needs and
``drop_layers`` (which the shard backend applies too) live here.

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
KEEPS_STRUCTURE = {"zero_weights", "recalibrate_bn"}
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
        for kind, run in groupby(plan.actions, key=lambda a: a.kind):
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


@applier("drop_layers")
def _drop_layers(session: Any, actions: list[Action], **_: Any) -> list[Action]:
    """Delete transformer layers of a Hugging Face layer list (``layers``: positions in the
    list as it is when the action applies); the config's depth and per-layer fields follow."""
    from netsculpt.surgery.hf_layers import drop_layers

    for a in actions:
        a.args["layers"] = drop_layers(session.model, a.args["layers"])
    return actions


# -- depth: cut and grow -------------------------------------------------------------------------
def _blocks_by_name(session: Any) -> dict[str, Any]:
    return {b.name: b for b in session.blocks()}


def _container_of(model: nn.Module, block: Any) -> nn.Module | None:
    if block.index < 0:
        return None
    return model.get_submodule(block.container) if block.container else model


def _shifted(block: Any, container: str, index: int) -> bool:
    """True when ``block`` lives in ``container`` after position ``index`` (so that deleting or
    inserting an item there renames it)."""
    prefix = container + "." if container else ""
    for m in block.modules:
        if m.startswith(prefix):
            head = m[len(prefix) :].split(".")[0]
            if head.isdigit() and int(head) > index:
                return True
    return False


def _stale_block(block: Any, edits: list[tuple[Any, str]]) -> bool:
    """Whether an earlier edit of the same apply may have changed ``block`` as the last read
    of the blocks saw it. Edits deepest first leave every earlier block as it was, except that
    an item deleted from / inserted into a list renames the items after it, and a bridge that
    folds into the next Linear needs that Linear to be still there."""
    for done, what in edits:
        if set(block.modules) & set(done.modules):
            return True
        shifts = what in ("delete", "insert") and done.index >= 0
        if shifts and _shifted(block, done.container, done.index):
            return True
        if block.container == done.container and block.index >= 0 and done.index >= 0:
            if block.how == "bridge+fold" and done.index == block.index + len(block.modules):
                return True  # the Linear it folds into was edited
            if done.how == "bridge+fold" and block.index == done.index + len(done.modules):
                return True  # it is the Linear that bridge folded into
    return False


def _current_block(session: Any, blocks: dict, edits: list, name: str) -> Any:
    """The block ``name`` of the model as it is now: the last read when no edit since can have
    changed it, else a fresh read (one export)."""
    b = blocks.get(name)
    if b is None or _stale_block(b, edits):
        session.stale()
        blocks.clear()
        blocks.update(_blocks_by_name(session))
        edits.clear()
        b = blocks.get(name)
    return b


def _first_output(model: nn.Module, inputs: Any) -> torch.Tensor:
    from netsculpt.calibration import first_tensor, run
    from netsculpt.core.utils import eval_mode

    with eval_mode(model), torch.no_grad():
        return first_tensor(run(model, inputs)).detach().clone()


def _bridge_from(a: Action, block: Any, model: nn.Module, where: str) -> nn.Module:
    from netsculpt.surgery.depth import make_bridge

    if "weight" not in a.args or "bias" not in a.args:
        raise InputError(
            f"{where}: block '{block.name}' changes shape: a bridge needs weight and bias"
        )
    w = torch.as_tensor(a.args["weight"], dtype=torch.float64)
    b = torch.as_tensor(a.args["bias"], dtype=torch.float64)
    d = block.feature_dim
    want = (int(block.out_shape[d]), int(block.in_shape[d]))
    if tuple(w.shape) != want or tuple(b.shape) != want[:1]:
        raise InputError(
            f"{where}: bridge weight {tuple(w.shape)} / bias {tuple(b.shape)} do not map "
            f"'{block.name}' ({want[1]} -> {want[0]} features)"
        )
    return make_bridge(block, w, b, model.get_submodule(block.modules[0]))


@applier("remove_block")
def _remove_block(session: Any, actions: list[Action], *, safe: bool = True, **_: Any) -> list:
    """Remove each block in turn (the ablation the op scored, checked on the example inputs);
    a ``bridge="train"`` bridge is distilled towards the outputs before this apply and its
    trained weights written back into the action (``trained``), so a replay rebuilds it.
    With ``safe``, a block that is no longer removable is kept, with a note."""
    from netsculpt.calibration import outputs, span_replaced
    from netsculpt.core.errors import VerificationError
    from netsculpt.importance.blocks import replacement
    from netsculpt.surgery.bridge import train_bridge
    from netsculpt.surgery.depth import Undo, fold_bridge, remove_block

    model, x = session.model, session.example_inputs
    training = [a for a in actions if a.args.get("train_steps") and not a.args.get("trained")]
    batches = session.batches() if training else []
    refs = outputs(model, batches) if training else []
    blocks = _blocks_by_name(session)
    edits: list[tuple[Any, str]] = []
    done = []
    for i, a in enumerate(actions):
        where = f"plan remove_block[{i}]"
        name = str(a.args["block"])
        b = _current_block(session, blocks, edits, name)
        how = a.args.get("how") or (b.how if b is not None else "")
        why = (
            f"no block named {name!r}" if b is None
            else f"it cannot be removed: {b.reason}" if not b.removable
            else f"it is removed by {b.how!r} on this model, the plan says {how!r}"
            if how != b.how else None
        )  # fmt: skip
        if why is not None:
            if safe:
                session.notes.append(f"{name}: kept (no longer removable after the later removals)")
                continue
            raise InputError(f"{where}: {why}")
        bridge = _bridge_from(a, b, model, where) if how.startswith("bridge") else None
        if bridge is not None:

            def fn(x_: torch.Tensor, y_: torch.Tensor, bridge: nn.Module = bridge) -> torch.Tensor:
                with torch.no_grad():
                    return bridge(x_)

        else:
            fn = replacement(b)
        ref = None
        if fn is not None:
            with span_replaced(model, b.modules[0], b.modules[-1], fn):
                ref = _first_output(model, x)
        train = bridge is not None and a in training
        undo = Undo(model)
        line = remove_block(model, b, bridge, fold=bool(a.args.get("fold", True)) and not train,
                            undo=undo)  # fmt: skip
        out = _first_output(model, x)
        if ref is not None and (out.shape != ref.shape or not torch.allclose(out, ref, 1e-4, 1e-5)):
            raise VerificationError(f"cut: removing '{name}' did not give the ablated output")
        if train:
            steps = int(a.args["train_steps"])
            train_bridge(model, b.modules[0], [bt.inputs for bt in batches], refs, steps)
            trained = model.get_submodule(b.modules[0])
            a.args["weight"] = trained.weight.detach().reshape(trained.weight.shape[0], -1).tolist()
            a.args["bias"] = trained.bias.detach().tolist()
            a.args["trained"] = True
            if how == "bridge+fold" and a.args.get("fold", True):
                line = fold_bridge(model, b, undo)
            line += f" (trained {steps} steps)"
        if a.args.get("bridge") == "none" and bridge is not None:
            line += " (bridge='none': the first channels, not fitted)"
        session.notes.extend(undo.notes)
        box = _container_of(model, b)
        deleted = isinstance(box, nn.ModuleList) and how in ("skip", "zero")
        edits.append((b, "delete" if deleted else "replace"))
        a.args["_note"] = line
        done.append(a)
    return done


@applier("recalibrate_bn")
def _recalibrate_bn(session: Any, actions: list[Action], **_: Any) -> list[Action]:
    """Re-estimate every BatchNorm's running statistics on the calibration data (once for a
    run of these actions); without data they are kept, with a note."""
    from netsculpt.surgery.bn import reestimate_bn

    if not session.has_data:
        session.notes.append("recalibrate_bn: no data= given, BatchNorm statistics kept")
        return []
    batches = session.batches()
    n = reestimate_bn(session.model, batches)
    for a in actions:
        a.args.update(layers=n, batches=len(batches))
    return actions


@applier("grow")
def _grow(session: Any, actions: list[Action], **_: Any) -> list[Action]:
    """Grow function-preservingly: ``wider`` actions widen their channel groups in one edit
    (Net2WiderNet); ``deeper`` ones insert an identity layer or a zero-output block copy, in
    the order given (deepest first keeps the earlier names). ``trainable="new"`` freezes the
    parameters that were there before."""
    from netsculpt.graph.blocks import own_group
    from netsculpt.surgery import widen
    from netsculpt.surgery.depth import Undo, expand_block, insert_identity_layer

    model = session.model
    old = {id(p) for p in model.parameters()}
    kinds = {a.args["grow_kind"] for a in actions}
    if kinds - {"deeper", "wider"}:
        bad = sorted(kinds - {"deeper", "wider"})[0]
        raise InputError(f"plan grow: grow_kind must be deeper or wider, got {bad!r}")
    wider = [a for a in actions if a.args["grow_kind"] == "wider"]
    if wider:
        graph = session.graph
        index = group_of_anchor(graph)
        blocks = None
        plan: dict[int, np.ndarray] = {}
        for i, a in enumerate(wider):
            where = f"plan grow[{i}]"
            if "anchor" in a.args:
                anchor = a.args["anchor"]
                ok = isinstance(anchor, (list, tuple)) and len(anchor) == 4
                g = index.get((str(anchor[0]), *(int(v) for v in anchor[1:]))) if ok else None
                if g is None:
                    raise InputError(
                        f"{where}: anchor {anchor!r} names no channel group of this model"
                    )
            else:
                blocks = blocks if blocks is not None else _blocks_by_name(session)
                b = blocks.get(str(a.args["block"]))
                if b is None:
                    raise InputError(f"{where}: no block named {a.args['block']!r}")
                g = own_group(graph, b)
                if g is None:
                    raise InputError(f"{where}: block '{b.name}' has no channel group of its own")
            if "src" in a.args:
                src = np.asarray(a.args["src"], dtype=np.int64)
            else:
                extra = max(1, round(g.size * (float(a.args.get("factor", 2.0)) - 1)))
                src = np.arange(extra) % g.size
            if src.size and (src.min() < 0 or src.max() >= g.size):
                raise InputError(f"{where}: channel {int(src.max())} is outside {g.describe()}")
            plan[g.id] = np.concatenate([plan.get(g.id, np.zeros(0, np.int64)), src])
            a.args.update(size=g.size, added_units=int(src.size), src=src.tolist())
            a.args["_group"] = g.describe()
        first = wider[0].args
        widen(model, graph, plan, noise=float(first.get("noise", 0.0)),
              seed=int(first.get("seed", 0)))  # fmt: skip
        session.stale()
    deeper = [a for a in actions if a.args["grow_kind"] == "deeper"]
    blocks = _blocks_by_name(session) if deeper else {}
    edits: list[tuple[Any, str]] = []
    for i, a in enumerate(deeper):
        name = str(a.args["block"])
        b = _current_block(session, blocks, edits, name)
        if b is None:
            raise InputError(f"plan grow[{i}]: no block named {name!r}")
        how = a.args.get("how") or ("block-expansion" if b.residual else "net2deeper")
        undo = Undo(model)
        if how == "block-expansion":
            new = expand_block(model, b, undo)
            edits.append((b, "insert"))
        elif how == "net2deeper":
            new = insert_identity_layer(model, b, undo)
            edits.append((b, "replace"))
        else:
            raise InputError(f"plan grow[{i}]: how must be net2deeper or block-expansion")
        session.notes.extend(undo.notes)
        a.args.update(how=how, params_added=sum(p.numel() for p in new.parameters()))
        a.args["_layer"] = type(new).__name__
    if any(a.args.get("trainable") == "new" for a in actions):
        for p in model.parameters():
            if id(p) in old:
                p.requires_grad_(False)
    return actions
