"""In-memory appliers of the merge actions (``fold``, ``merge_neurons``, ``collapse_blocks``)
and of Hugging Face ``drop_layers``; registered on import by :mod:`.memory`."""

from __future__ import annotations

from typing import Any

import numpy as np

from netsculpt.core.errors import InputError
from netsculpt.core.plan import Action
from netsculpt.engine.backends.memory import applier


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
