"""Calibrated unstructured / N:M pruning, layer after layer: Wanda and SparseGPT.

Both methods are sequential: the statistics of a layer are measured on the outputs of the
layers before it *after* those were pruned. The prunable weights are split into **stages** in
forward order: the Linears of one item of the model's layer list (a decoder layer) form one
stage; every other weight is a stage of its own. For each stage:

1. the model runs on the calibration batches up to the stage (the forward stops after the
   module holding the stage's weights) with hooks collecting each Linear's input statistics
   (:mod:`netsculpt.calibration.stats`): ``‖X_j‖₂`` for Wanda, ``H = 2 X Xᵀ / n`` for SparseGPT;
2. the stage's actions are planned: Wanda, ``zero_weights`` masks from ``|W_ij|·‖X_j‖₂``,
   compared within each output row (``sparsity``) or in every M inputs (``pattern``);
   SparseGPT, ``obs_prune`` actions carrying the Hessian (the backend runs the OBS solver,
   :mod:`netsculpt.surgery.sparsegpt`, which also updates the kept weights);
3. the session applies them before the next stage is measured.

:func:`stage_actions` is the one planner: the shard-by-shard path
(:mod:`netsculpt.hf.calibrated`) calls it on each decoder layer it loads, with the same
statistics code, so both give the same weights for the same data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from netsculpt.calibration.stats import InputStats, common_module, input_stats, model_runner
from netsculpt.core.errors import InputError
from netsculpt.core.plan import Action, Plan
from netsculpt.importance.weights import wanda_scores

METHODS = ("wanda", "sparsegpt")
PERCDAMP, BLOCKSIZE = 0.01, 128  # SparseGPT's dampening (fraction of mean diag H) and block


def check_rule(rule: dict[str, Any], importance: str) -> None:
    if not ({"sparsity", "pattern"} & rule.keys()):
        raise InputError(
            f"importance='{importance}' prunes to sparsity= (per layer) or pattern= (N:M); "
            "threshold= and global_=True use magnitude or activation scores"
        )


def row_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask removing the lowest ``sparsity`` fraction of each output row (Wanda's
    comparison group)."""
    k = int(score.shape[1] * sparsity)
    keep = torch.ones_like(score, dtype=torch.bool)
    if k:
        keep.scatter_(1, score.topk(k, dim=1, largest=False).indices, False)
    return keep


def stage_actions(
    weights: dict[str, nn.Parameter],
    stats: dict[str, InputStats],
    rule: dict[str, Any],
    importance: str,
    step: int,
    prefix: str = "",
) -> list[Action]:
    """The actions of one stage: ``weights`` by name, ``stats`` by module path (the name
    without ``.weight``), the names written into the actions with ``prefix``."""
    from netsculpt.ops.prune_unstructured import nm_mask, parse_pattern

    out = []
    for name, w in weights.items():
        st = stats[name.rsplit(".", 1)[0]]
        args: dict[str, Any] = {"tensor": prefix + name, "rule": rule, "importance": importance,
                                "step": step}  # fmt: skip
        if importance == "sparsegpt":
            args.update(blocksize=BLOCKSIZE, percdamp=PERCDAMP, _hessian=st.hessian)
            out.append(Action("obs_prune", args))
            continue
        score = wanda_scores(w, st.norm())
        if "pattern" in rule:
            mask = nm_mask(score, *parse_pattern(rule["pattern"]))
            if mask is None:
                raise InputError(
                    f"{name}: input width {w.shape[1]} is not a multiple of M in "
                    f"pattern {rule['pattern']}"
                )
        else:
            mask = row_mask(score, rule["sparsity"])
        out.append(Action("zero_weights", {**args, "_mask": mask}))
    return out


def _layer_list(model: nn.Module) -> tuple[str, int] | None:
    """``(path, length)`` of the ModuleList holding the most parameters (the decoder layers)."""
    best, size = None, 0
    for path, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 1:
            n = sum(p.numel() for p in mod.parameters())
            if n > size:
                best, size = (path, len(mod)), n
    return best


def stages(model: nn.Module, weights: dict[str, nn.Parameter], first: Any) -> list[list[str]]:
    """``weights`` split into stages (see the module docstring), in the order the model first
    runs them on one batch; weights the batch never reaches come last, one stage each."""
    found = _layer_list(model)
    order: dict[str, int] = {}
    mods = {n.rsplit(".", 1)[0]: n for n in weights}
    handles = []
    for path, mod in model.named_modules():
        if path in mods:

            def pre(m: nn.Module, a: tuple, path: str = path) -> None:
                order.setdefault(mods[path], len(order))

            handles.append(mod.register_forward_pre_hook(pre))
    try:
        model_runner(model, [first])()
    finally:
        for h in handles:
            h.remove()

    def key(name: str) -> str:
        if found is not None and name.startswith(found[0] + "."):
            return ".".join(name.split(".")[: found[0].count(".") + 2])
        return name

    out: dict[str, list[str]] = {}
    for name in sorted(weights, key=lambda n: order.get(n, len(order))):
        out.setdefault(key(name), []).append(name)
    return list(out.values())


def stats_now(session: Any, names: list[str], importance: str, why: str) -> dict:
    """Input statistics of the Linears holding ``names`` on the model as it is now."""
    model = session.model
    mods = {n.rsplit(".", 1)[0]: model.get_submodule(n.rsplit(".", 1)[0]) for n in names}
    bad = [p for p, m in mods.items() if not isinstance(m, nn.Linear)]
    if bad:
        raise InputError(f"importance='{importance}' prunes Linear weights; {bad[0]} is not one")
    run_fn = model_runner(model, session.batches(why), common_module(model, names))
    return input_stats(mods, run_fn, hessian=importance == "sparsegpt")


def run_stages(session: Any, weights: dict[str, nn.Parameter], rule: dict, importance: str) -> Plan:
    """Plan and apply every stage in order; returns the applied actions (masks and Hessians
    stay in memory, they are not written by ``Plan.to_json``)."""
    check_rule(rule, importance)
    why = f"importance='{importance}'"
    linear = {n: w for n, w in weights.items() if w.dim() == 2}
    skipped = sorted(set(weights) - set(linear))
    if skipped:
        session.notes.append(f"{importance}: {len(skipped)} conv weights left dense ({skipped[0]})")
    if not linear:
        raise InputError(f"{why}: no Linear weights to prune")
    done = Plan("prune", [])
    for step, names in enumerate(stages(session.model, linear, session.batches(why)[0])):
        stats = stats_now(session, names, importance, why)
        actions = stage_actions({n: linear[n] for n in names}, stats, rule, importance, step)
        done.actions += session.apply(Plan("prune", actions)).actions
        for a in done.actions[-len(actions) :]:
            a.args.pop("_hessian", None)  # n² floats per layer: not kept once applied
    return done


def replan(session: Any, actions: list[Action], kind: str) -> Callable[[], list[Action]]:
    """For the backend: the actions of one saved step (no masks / Hessians) planned again on
    the model as it is now, from the session's calibration data."""
    importance = actions[0].args.get("importance", "sparsegpt")
    rule = actions[0].args["rule"]
    params = dict(session.model.named_parameters(remove_duplicate=False))
    names = [a.args["tensor"] for a in actions]
    missing = [n for n in names if n not in params]
    if missing:
        raise InputError(f"plan {kind}: the model has no parameter {missing[0]!r}")
    check_rule(rule, importance)

    def make() -> list[Action]:
        stats = stats_now(
            session, names, importance, f"replaying an importance='{importance}' plan"
        )
        step = actions[0].args.get("step", 0)
        return stage_actions({n: params[n] for n in names}, stats, rule, importance, step)

    return make
