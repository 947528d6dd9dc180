"""The block planner of ``merge`` — LaCo layer collapse: merge ``span`` adjacent, identical
residual blocks into the first one with the RDSC rule ``θ*_l = θ_l + Σ_{k=1..m} (θ_{l+k} − θ_l)``
(norms kept from block ``l``), replace the others by the identity, and keep the change only if
the model's output stays similar.

The sum uses the *original* ``θ_l`` for every ``k``. LaCo's reference notebook updates ``θ_l`` in
place inside the loop, which yields ``θ_{l+m}`` (layer replacement, not RDSC); see
docs/algorithms.md §2.

This module plans and tries: each candidate is a ``collapse_blocks`` action applied by the
session (the write is :func:`netsculpt.surgery.fold.collapse_blocks`) and undone through the
backend's checkpoint when the output similarity drops to ``threshold`` or below.

>>> a, b, c = (torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0]))
>>> rdsc([a, b, c])
tensor([5.])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.plan import Action, Plan
from netsculpt.core.utils import eval_mode
from netsculpt.measure.outputs import similarity
from netsculpt.surgery.fold import rdsc

__all__ = ["block_runs", "collapse", "outputs", "rdsc", "similarity"]


def _signature(module: nn.Module) -> tuple:
    return (type(module), tuple((k, tuple(v.shape)) for k, v in module.state_dict().items()))


def block_runs(model: nn.Module, blocks: list, allowed: set[int] | None = None) -> list[list]:
    """Runs of adjacent residual blocks (one container, same class, same tensor shapes; removed
    blocks between them do not count) that can be collapsed into each other, as ``Block``s of
    ``blocks`` (:func:`netsculpt.graph.blocks.find_blocks`). ``allowed``: ids of the block
    modules that may take part (``None``: all)."""
    from netsculpt.surgery.depth import Skip

    runs: list[list] = []
    for b in blocks:
        if b.kind != "residual" or b.how != "skip" or not b.removable or not b.same_shape:
            continue
        module = model.get_submodule(b.name)
        if allowed is not None and id(module) not in allowed:
            continue
        sig = _signature(module)
        last = runs[-1][-1] if runs else None
        if last is not None and last[0].container == b.container and last[1] == sig:
            box = model.get_submodule(b.container) if b.container else model
            gap = list(box.children())[last[0].index + 1 : b.index]
            if all(isinstance(m, (nn.Identity, Skip)) for m in gap):
                runs[-1].append((b, sig))
                continue
        runs.append([(b, sig)])
    return [[b for b, _ in run] for run in runs if len(run) > 1]


@torch.no_grad()
def outputs(model: nn.Module, inputs: list) -> list[torch.Tensor]:
    """The model's main output (logits) on each of ``inputs``, in float64, in eval mode."""
    from netsculpt.calibration.batches import logits_of, run

    with eval_mode(model):
        return [logits_of(run(model, x)).detach().double() for x in inputs]


def allowed_blocks(model: nn.Module, blocks: list, names: Iterable[str] | None) -> set[int] | None:
    """Ids of the modules of the blocks ``names`` (``None``: every block may collapse). Module
    identity, not the name, is kept: a ModuleList renumbers its items after a deletion."""
    if names is None:
        return None
    known = {b.name for b in blocks}
    unknown = [n for n in names if n not in known]
    if unknown:
        shown = ", ".join(sorted(known)[:8]) + (" ..." if len(known) > 8 else "")
        raise InputError(f"merge: blocks= names no block {unknown[0]!r} of this model ({shown})")
    return {id(model.get_submodule(n)) for n in names}


def collapse(session: Any, cfg: Any) -> tuple[list[Action], dict]:
    """LaCo's loop over each run of identical residual blocks, from the top down: apply each
    candidate collapse through ``session``, keep it when the output similarity on the
    calibration batches stays above ``cfg.threshold``, else restore. Returns the kept
    ``collapse_blocks`` actions and the details."""
    model = session.model
    inputs = [b.inputs for b in session.batches()]
    ref = outputs(model, inputs)
    allowed = allowed_blocks(model, session.blocks(), cfg.names)
    merged, tried, kept = [], [], []
    removed = 0
    runs = block_runs(model, session.blocks(), allowed)
    r = len(runs) - 1
    while r >= 0:
        run = runs[r]
        layer = len(run) - cfg.span
        while layer >= 0:
            if cfg.max_removed is not None and removed + cfg.span - 1 > cfg.max_removed:
                break
            cands = run[layer : layer + cfg.span]
            names = [b.name for b in cands]
            # the Block objects ride along in memory so that a try needs no new export
            action = Action("collapse_blocks", {"blocks": names, "_blocks": cands})
            undo = session.backend.checkpoint(session)
            session.apply(Plan("merge", [action]))
            sim = similarity(ref, outputs(model, inputs))
            tried.append({"blocks": names, "similarity": sim, "accepted": sim > cfg.threshold})
            if sim > cfg.threshold:
                merged.append({"into": names[0], "removed": names[1:], "similarity": sim})
                kept.append(Action("collapse_blocks", {"blocks": names}, sim))
                removed += len(cands) - 1
                # re-read the blocks: a ModuleList shifted; the merged block kept its name
                runs = block_runs(model, session.blocks(), allowed)
                r = next((i for i, rr in enumerate(runs) if names[0] in {b.name for b in rr}), -1)
                if r < 0:
                    break
                run = runs[r]
                pos = [b.name for b in run].index(names[0])
                layer = min(pos - 1, len(run) - cfg.span)
            else:
                undo()
                session.stale()
                layer -= 1
        r -= 1
    final = similarity(ref, outputs(model, inputs))
    notes = [] if merged else [f"no block collapse kept output similarity > {cfg.threshold}"]
    details = {
        "merged": merged,
        "tried": tried,
        "removed": removed,
        "similarity": final,
        "notes": notes,
    }
    return kept, details
