"""Unstructured pruning (threshold, sparsity, N:M) and the removal of neurons that died of it."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.core.errors import InputError, VerificationError
from netsculpt.core.plan import Action, Plan
from netsculpt.core.select import is_ignored
from netsculpt.graph.capture import run_model
from netsculpt.graph.channels import StructureGraph
from netsculpt.importance.channels import channel_norms
from netsculpt.ops import prune_calibrated as C
from netsculpt.ops.prune_plan import channel_actions


def prunable_weights(model: nn.Module, ignore: list[str]) -> dict[str, nn.Parameter]:
    """Weights of every Linear and Conv layer not matched by ``ignore``."""
    out = {}
    for path, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) or mod.weight is None:
            continue
        if is_ignored(path, ignore):
            continue
        out[f"{path}.weight" if path else "weight"] = mod.weight
    return out


def weight_scores(model, weights: dict[str, nn.Parameter], importance: str, data) -> dict:
    """|W| (magnitude) or |W|·‖X‖ (Wanda, ``importance="activation"``) per weight entry."""
    scores = {n: w.detach().abs().float() for n, w in weights.items()}
    if importance == "activation":
        paths = [n.rsplit(".", 1)[0] for n in weights]
        norms = channel_norms(model, paths, data)
        for n in scores:
            v = norms.get(n.rsplit(".", 1)[0] + ":in")
            if v is not None and v.numel() == scores[n].shape[1]:
                shape = [1, -1] + [1] * (scores[n].dim() - 2)
                scores[n] = scores[n] * v.view(shape)
    elif importance not in ("l1", "l2", "magnitude"):
        raise InputError(
            f"unstructured pruning scores weights by 'magnitude' (l1/l2) or 'activation'; "
            f"got importance='{importance}'"
        )
    return scores


def masks_for(
    scores: dict[str, torch.Tensor],
    *,
    threshold=None,
    sparsity=None,
    global_=False,
    pattern: str | None = None,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Keep-masks for each weight, and notes about layers that were skipped."""
    notes: list[str] = []
    masks: dict[str, torch.Tensor] = {}
    if pattern is not None:
        n, m = parse_pattern(pattern)
        for name, s in scores.items():
            mask = nm_mask(s, n, m)
            if mask is None:
                notes.append(f"{name}: input width {s.shape[1]} is not a multiple of {m}; skipped")
            else:
                masks[name] = mask
        return masks, notes
    if threshold is not None:
        return {name: s >= threshold for name, s in scores.items()}, notes
    if global_:
        flat = torch.cat([s.flatten() for s in scores.values()])
        k = int(sparsity * flat.numel())
        cut = flat.kthvalue(k).values if k > 0 else flat.min() - 1
        return {name: s > cut for name, s in scores.items()}, notes
    for name, s in scores.items():
        k = int(sparsity * s.numel())
        if k == 0:
            masks[name] = torch.ones_like(s, dtype=torch.bool)
            continue
        idx = s.flatten().argsort()[:k]
        mask = torch.ones(s.numel(), dtype=torch.bool)
        mask[idx] = False
        masks[name] = mask.view_as(s)
    return masks, notes


def parse_pattern(pattern: str) -> tuple[int, int]:
    try:
        n, m = (int(v) for v in pattern.split(":"))
        if not 0 < n < m:
            raise ValueError
    except ValueError:
        raise InputError(f"pattern must look like 'N:M' with 0 < N < M, got '{pattern}'") from None
    return n, m


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor | None:
    """Keep the ``n`` largest of every ``m`` consecutive input weights (per output, per tap)."""
    if score.shape[1] % m:
        return None
    s = score.movedim(1, -1)  # (out, k..., in)
    shape = s.shape
    blocks = s.reshape(-1, m)
    keep = torch.zeros_like(blocks, dtype=torch.bool)
    keep.scatter_(1, blocks.topk(n, dim=1).indices, True)
    return keep.reshape(shape).movedim(-1, 1)


# -- dead neurons ------------------------------------------------------------------------------
def _zero_slices(t: torch.Tensor, dim: int) -> np.ndarray:
    dims = [d for d in range(t.dim()) if d != dim]
    nz = (t.detach() != 0).sum(dims) if dims else (t.detach() != 0).long()
    return (nz == 0).cpu().numpy()


def _all_zero_channels(group, tensors, role: str) -> np.ndarray | None:
    """Channels of ``group`` whose every ``role`` weight slice is zero (None: no such member)."""
    members = [
        m
        for m in group.members
        if m.role == role and m.kind == "param" and tensors[m.tensor].dim() >= 2
    ]
    if not members:
        return None
    dead = np.ones(group.size, dtype=bool)
    for m in members:
        zero = _zero_slices(tensors[m.tensor], m.dim)
        sel = m.index_map >= 0
        alive = np.zeros(group.size, dtype=bool)
        np.logical_or.at(alive, m.index_map[sel], ~zero[sel])
        dead &= ~alive
    return dead


def dead_channels(model, graph: StructureGraph) -> tuple[dict[int, np.ndarray], dict]:
    """Channels nobody reads (every consuming weight is zero) and channels that carry a
    constant (every producing weight is zero): ``({group: channels}, {group: constant-ones})``."""
    tensors = dict(model.named_parameters(remove_duplicate=False))
    unread, constant = {}, {}
    for g in graph.prunable_groups():
        if any(m.tensor not in tensors for m in g.members if m.kind == "param"):
            continue
        no_reader = _all_zero_channels(g, tensors, "in")
        no_writer = _all_zero_channels(g, tensors, "out")
        dead = np.zeros(g.size, dtype=bool)
        if no_reader is not None:
            dead |= no_reader
        const = np.zeros(g.size, dtype=bool)
        if no_writer is not None:
            const = no_writer & ~dead
        keep_one = (dead | const).all()
        if keep_one:  # a layer may not lose every channel: keep the last one
            last = int(np.nonzero(const)[0][-1] if const.any() else np.nonzero(dead)[0][-1])
            dead[last] = const[last] = False
        if dead.any():
            unread[g.id] = np.nonzero(dead)[0]
        if const.any():
            constant[g.id] = np.nonzero(const)[0]
    return unread, constant


def constant_folds(
    model, graph, constant: dict[int, np.ndarray], example_inputs
) -> tuple[dict[int, np.ndarray], list[tuple[str, torch.Tensor]]]:
    """For each constant channel, the bias change that absorbs its value into the layers that
    read it: ``({group: channels that can be folded}, [(module path, bias delta)])``. Reads
    only; ``netsculpt.surgery.masks.add_to_bias`` applies the deltas."""
    mods = dict(model.named_modules())
    folded: dict[int, np.ndarray] = {}
    deltas: list[tuple[str, torch.Tensor]] = []
    for gid, chans in constant.items():
        g = graph.groups[gid]
        readers = [m for m in g.members if m.role == "in" and m.kind == "param"]
        ok = all(_foldable(mods.get(m.module)) for m in readers) and readers
        if not ok:
            continue
        values = {m.module: _reader_inputs(model, mods[m.module], example_inputs) for m in readers}
        plans = []
        for m in readers:
            x0, x1 = values[m.module]
            pos = m.positions(chans)
            v0, v1 = x0[..., pos], x1[..., pos]
            const = v0.reshape(-1, len(pos))
            if not (
                torch.allclose(v0.reshape(-1, len(pos)), const[:1].expand_as(const))
                and torch.allclose(v1.reshape(-1, len(pos)), const[:1].expand_as(const))
            ):
                break
            plans.append((m.module, pos, const[0]))
        else:
            with torch.no_grad():
                for path, pos, val in plans:
                    w = mods[path].weight
                    w = w.reshape(w.shape[0], w.shape[1])[:, pos]
                    deltas.append((path, (w @ val.to(w.dtype)).detach()))
            folded[gid] = chans
    return folded, deltas


def _foldable(mod) -> bool:
    if isinstance(mod, nn.Linear):
        return mod.bias is not None
    if isinstance(mod, nn.modules.conv._ConvNd):
        return (
            mod.bias is not None
            and mod.groups == 1
            and all(k == 1 for k in mod.kernel_size)
            and all(p == 0 for p in mod.padding)
        )
    return False


def _reader_inputs(model, mod, example_inputs):
    """The module's input on the example inputs and on perturbed ones, channels last."""
    seen = []
    h = mod.register_forward_hook(lambda m, a, o: seen.append(a[0].detach()))
    try:
        run_model(model, example_inputs)
        run_model(model, _perturb(example_inputs))
    finally:
        h.remove()
    x0, x1 = seen[0], seen[1]
    if not isinstance(mod, nn.Linear):
        x0, x1 = x0.movedim(1, -1), x1.movedim(1, -1)
    return x0, x1


def _perturb(x):
    if isinstance(x, torch.Tensor):
        return x + torch.randn_like(x) * (x.float().std() + 1) if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: _perturb(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_perturb(v) for v in x)
    return x


def dead_plan(model, graph: StructureGraph, example_inputs) -> tuple[dict, dict, list, list]:
    """What dead-neuron removal would do: ``(unread, folded, bias deltas, notes)`` — channels
    nobody reads, constant channels whose value folds into the readers' biases, and those bias
    changes. Reads only."""
    unread, constant = dead_channels(model, graph)
    notes = []
    folded, deltas = (
        constant_folds(model, graph, constant, example_inputs) if constant else ({}, [])
    )
    skipped = {g: c for g, c in constant.items() if g not in folded}
    if skipped:
        notes.append(
            f"{sum(len(c) for c in skipped.values())} channels with zero input "
            f"weights kept: their constant output could not be folded"
        )
    return unread, folded, deltas, notes


# -- the unstructured prune: plan, apply, remove what died --------------------------------
def rule(cfg: Any) -> dict[str, Any]:
    if cfg.pattern is not None:
        return {"pattern": cfg.pattern}
    if cfg.threshold is not None:
        return {"threshold": cfg.threshold}
    return {"global_sparsity" if cfg.global_ else "sparsity": cfg.sparsity}


def zero_actions(session: Any, weights: dict, rule: dict, importance: str) -> list[Action]:
    """``zero_weights`` actions (with their masks in memory) for ``rule`` on ``weights``."""
    data = session.data_batches("importance='activation'" if importance == "activation" else None)
    scores = weight_scores(session.model, weights, importance, data)
    masks, notes = masks_for(
        scores, threshold=rule.get("threshold"),
        sparsity=rule.get("sparsity", rule.get("global_sparsity")),
        global_="global_sparsity" in rule, pattern=rule.get("pattern"),
    )  # fmt: skip
    session.notes.extend(notes)
    return [
        Action("zero_weights", {"tensor": n, "rule": rule, "importance": importance, "_mask": m})
        for n, m in masks.items()
    ]


def run_unstructured(session: Any, cfg: Any) -> Any:
    t0 = time.perf_counter()
    model = session.model
    # one capture, before any weight changes (so a model that cannot be captured fails early);
    # zeroing weights does not change the structure, so it also serves dead-neuron removal
    graph = session.graph
    before = session.snapshot(predicted={})
    weights = prunable_weights(model, session.ignore)
    if not weights:
        raise InputError("no Linear or Conv weights to prune (all ignored?)")
    if cfg.importance in C.METHODS:  # layer after layer, each stage applied before the next
        plan = C.run_stages(session, weights, rule(cfg), cfg.importance)
    else:
        plan = session.apply(
            Plan("prune", zero_actions(session, weights, rule(cfg), cfg.importance))
        )
    plan.config = {"mode": "unstructured", **cfg.to_dict()}
    zeroed = sum(a.args["zeros"] for a in plan.actions)
    weights = prunable_weights(model, session.ignore)
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    removed_plan: dict = {}
    if cfg.remove_dead:
        removed_plan = remove_dead(session, graph, plan)
    after = session.snapshot(predicted=removed_plan, graph=graph)
    details = {
        "weights_zeroed": zeroed,
        "sparsity": zeros / total if total else 0.0,
        "dead_channels_removed": int(sum(len(c) for c in removed_plan.values())),
        "nonzero_params": sum(int((p != 0).sum()) for p in model.parameters()),
        "per_layer_sparsity": {
            n: float((w == 0).float().mean())
            for n, w in prunable_weights(model, session.ignore).items()
        },
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return session.report("prune", {"mode": "unstructured"}, plan, before, after, details)


def remove_dead(session: Any, graph: Any, plan: Plan) -> dict:
    """Plan and apply the removal of dead neurons (outputs must stay within 1e-4); adds the
    applied actions to ``plan`` and returns ``{group: channels}`` of the removal."""
    from netsculpt.surgery import outputs_close

    unread, folded, deltas, notes = dead_plan(session.model, graph, session.example_inputs)
    session.notes.extend(notes)
    chans = {
        gid: np.union1d(unread.get(gid, []), folded.get(gid, [])).astype(np.int64)
        for gid in set(unread) | set(folded)
    }
    if not chans:
        return {}
    reference = run_model(session.model, session.example_inputs)
    steps = Plan("prune", [Action("add_bias", {"module": p, "delta": d}) for p, d in deltas])
    steps.actions += channel_actions(graph, chans, {})

    def same(_: Any, out: Any) -> str | None:
        return outputs_close(reference, out, rtol=1e-4, atol=1e-5)

    undo = session.backend.checkpoint(session)
    try:
        done = session.apply(steps, safe=False, check=same)
    except VerificationError as e:
        undo()
        session.stale()
        session.notes.append(f"dead channels kept: removing them changed the outputs ({e})")
        return {}
    plan.actions.extend(done.actions)
    return chans
