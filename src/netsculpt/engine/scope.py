"""Scoped verbs: edit named submodules of a model that cannot be captured whole.

A detector's ``forward`` loops over images, sorts boxes and filters them by score: no single
graph describes it. Its backbone, FPN and heads are plain tensor programs, though. With
``scope="backbone"`` (or a list of submodule names) the verb runs the whole model once,
records by hook what each scope really receives, and runs on each scope as a model of its
own with those inputs: the scope's outputs are its model outputs, so they keep their width and
everything outside the scopes (anchors, box decoding, NMS) sees the same tensors as before.

>>> import torch, netsculpt as ns
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
>>> net.add_module("head", torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
...                                            torch.nn.Linear(16, 2)))
>>> rep = ns.prune(net, torch.ones(1, 4), amount=0.5, scope="head")
>>> net.head[0].out_features, net[2].out_features, rep.details["scopes"]
(8, 8, ['head'])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.plan import Action, Plan
from netsculpt.core.utils import eval_mode, normalize_inputs
from netsculpt.report import Report, Snapshot

SCOPED_OPS = ("prune",)


def scope_names(op: str, model: nn.Module, scope: Any) -> list[str]:
    """The scopes as a list of submodule paths, each checked to exist, none inside another."""
    if op not in SCOPED_OPS:
        raise InputError(f"{op}: scope= is a prune option; {op} edits the whole model")
    names = [scope] if isinstance(scope, str) else list(scope or ())
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InputError(f"{op}: scope must name submodules, e.g. 'backbone', got {scope!r}")
    for n in names:
        try:
            model.get_submodule(n)
        except AttributeError:
            kids = ", ".join(k for k, _ in model.named_children()) or "none"
            raise InputError(
                f"{op}: scope {n!r}: {type(model).__name__} has no such submodule "
                f"(its children: {kids})"
            ) from None
    for a in names:
        for b in names:
            if a != b and (b + ".").startswith(a + "."):
                raise InputError(f"{op}: scope {b!r} lies inside scope {a!r}; name one of them")
    return names


def record_inputs(
    op: str, model: nn.Module, example_inputs: Any, names: list[str]
) -> dict[str, tuple[tuple, dict]]:
    """Run ``model`` once (eval, no grad) and return each scope's ``(args, kwargs)``."""
    seen: dict[str, list] = {n: [] for n in names}

    def hook(name: str) -> Callable:
        def pre(_mod, args, kwargs):
            seen[name].append((_detached(args), _detached(kwargs)))

        return pre

    handles = [
        model.get_submodule(n).register_forward_pre_hook(hook(n), with_kwargs=True) for n in names
    ]
    args, kwargs = normalize_inputs(example_inputs, model)
    try:
        with eval_mode(model), torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    for n, calls in seen.items():
        if not calls:
            raise InputError(f"{op}: scope {n!r} did not run in the model's forward; name a "
                             "submodule that runs on these inputs")  # fmt: skip
        if len(calls) > 1:
            raise InputError(
                f"{op}: scope {n!r} runs {len(calls)} times in one forward (once per input or "
                "level); scope the module that calls it, so that one graph holds every call"
            )
    return {n: seen[n][0] for n in names}


def _detached(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return type(obj)((k, _detached(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_detached(v) for v in obj)
    return obj


def _prefixed(spec: Any, prefix: str) -> Any:
    """An edit spec of a scope, its paths made paths of the whole model."""
    if isinstance(spec, dict):
        out = {}
        for k, v in spec.items():
            if k in ("path", "ref", "copy") and isinstance(v, str):
                out[k] = f"{prefix}.{v}" if v else prefix
            else:
                out[k] = _prefixed(v, prefix)
        return out
    if isinstance(spec, list):
        return [_prefixed(v, prefix) for v in spec]
    return spec


def _lift_edits(model: nn.Module, sub: nn.Module, name: str) -> None:
    """Move the module replacements recorded on the scope into the model's edit log."""
    edits = list(sub.__dict__.pop("_netsculpt_edits", None) or [])
    if edits:
        log = list(getattr(model, "_netsculpt_edits", []))
        model._netsculpt_edits = log + [_prefixed(e, name) for e in edits]


def run_scoped(
    op: str,
    model: nn.Module,
    example_inputs: Any,
    scope: Any,
    data: Any,
    each: Callable[[nn.Module, Any, str], Report],
) -> Report:
    """Run ``each(submodule, its recorded inputs, its name)`` on every scope, all or nothing; one Report
    over the whole model (params) and the scopes (MACs: theirs, the rest is not a graph)."""
    if data is not None:
        raise InputError(f"{op}: data= with scope= is not supported (the data feeds the whole "
                         "model, the scopes see other tensors); use importance='l2'")  # fmt: skip
    names = scope_names(op, model, scope)
    inputs = record_inputs(op, model, example_inputs, names)
    params0 = sum(p.numel() for p in model.parameters())
    saved = {n: _backup(model.get_submodule(n)) for n in names}
    log0 = list(getattr(model, "_netsculpt_edits", []))
    reports: dict[str, Report] = {}
    try:
        for n in names:
            sub = model.get_submodule(n)
            reports[n] = each(sub, inputs[n], n)
            _lift_edits(model, sub, n)
    except BaseException:
        for n, back in saved.items():
            _restore(model, n, back)
        model._netsculpt_edits = log0
        raise
    return _combined(op, model, names, reports, params0)


def _backup(sub: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(sub)


def _restore(model: nn.Module, name: str, back: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, back)


def _combined(op, model, names, reports: dict[str, Report], params0: int) -> Report:
    actions = [
        Action(a.kind, {**a.args, "scope": n}, a.score)
        for n in names
        for a in (reports[n].plan.actions if reports[n].plan is not None else [])
    ]
    first = reports[names[0]]
    config = {**(first.plan.config if first.plan is not None else {}), "scope": names}
    macs0 = sum(r.before.macs or 0 for r in reports.values())
    macs1 = sum(r.after.macs or 0 for r in reports.values())
    after = Snapshot(params=sum(p.numel() for p in model.parameters()), macs=macs1)
    return Report(
        op=op,
        config={**first.config, "scope": names},
        before=Snapshot(params=params0, macs=macs0),
        after=after,
        details={
            "scopes": names,
            "macs_of": "the scopes (the rest of the model is not captured)",
            "per_scope": {n: r.details for n, r in reports.items()},
        },
        notes=[f"{n}: {note}" for n, r in reports.items() for note in r.notes],
        steps=list(reports.values()),
        plan=Plan(op, actions, config),
    )


def split_plan(plan: Plan) -> dict[str, Plan]:
    """A scoped plan (its actions carry ``scope``) as one plan per scope, in order."""
    out: dict[str, Plan] = {}
    for i, a in enumerate(plan.actions):
        n = a.args.get("scope")
        if not isinstance(n, str):
            raise InputError(f"plan actions[{i}]: a scoped plan names the scope of every action")
        args = {k: v for k, v in a.args.items() if k != "scope"}
        out.setdefault(n, Plan(plan.op, [], dict(plan.config))).actions.append(
            Action(a.kind, args, a.score)
        )
    return out
