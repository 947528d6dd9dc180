"""In-memory appliers of the depth actions of cut and grow (``remove_block``,
``recalibrate_bn``, ``grow``); registered on import by :mod:`.memory`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.plan import Action
from netsculpt.engine.backends.memory import applier, group_of_anchor


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
