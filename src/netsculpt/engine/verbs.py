"""The verbs: ``verb(model, example_inputs, config=None, *, data=None, **overrides) -> Report``.

Every verb is made from the registry: the keywords are fields of the op's frozen config, one
:class:`~netsculpt.engine.session.Session` runs the op, and the model is restored when
anything fails. :func:`apply` replays a saved or hand-written :class:`~netsculpt.core.plan.Plan`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.plan import Plan
from netsculpt.engine import registry
from netsculpt.engine.session import Session


def session_for(model: nn.Module, example_inputs: Any, cfg: Any, data: Any) -> Session:
    """The session an op's config asks for (its data rule, selection, seed)."""
    return Session(
        model,
        example_inputs,
        data=data,
        ignore=getattr(cfg, "ignore", ()),
        max_batches=getattr(cfg, "max_batches", 8),
        batch_size=getattr(cfg, "batch_size", None),
        seed=getattr(cfg, "seed", 0),
    )


def call(
    name: str,
    model: nn.Module,
    example_inputs: Any,
    config: Any = None,
    *,
    data: Any = None,
    **overrides: Any,
) -> Any:
    """Run the registered op ``name`` on ``model`` (edited in place) and return its Report.

    ``scope=`` (a submodule name or a list of them): the op runs on those submodules as one
    program, with the inputs they receive in one forward of the model; channels coupled across
    scopes go together (see :mod:`netsculpt.engine.scope`).
    """
    scope = overrides.pop("scope", None)
    cfg = registry.get(name).config(config, overrides)
    _refuse_meta(name, model)
    if scope is not None:
        from netsculpt.engine.scope import run_scoped

        if getattr(cfg, "between", None) is not None:
            raise InputError(f"{name}: between= with scope= is not supported (during the rounds "
                             "the model runs the scopes only); call the verb once per round")  # fmt: skip

        def each(inputs: Any, batches: Any) -> Any:
            return run(name, session_for(model, inputs, cfg, batches), cfg)

        return run_scoped(
            name, model, example_inputs, scope, data, each,
            max_batches=getattr(cfg, "max_batches", 16), batch_size=getattr(cfg, "batch_size", None),
            seed=getattr(cfg, "seed", 0),
        )  # fmt: skip
    return run(name, session_for(model, example_inputs, cfg, data), cfg)


def run(name: str, session: Session, config: Any = None, **overrides: Any) -> Any:
    """Run the registered op ``name`` on a session the caller made (another backend, a
    scorer that reads weights from files); the same planning and Report as :func:`call`."""
    spec = registry.get(name)
    ready = isinstance(config, spec.configs) and not overrides
    cfg = config if ready else spec.config(config, overrides)
    report = session.guarded(lambda: spec.module.run(session, cfg))
    report.config = {"op": name, **cfg.to_dict(), **report.config}
    return report


# ops that only read shapes and run on a model whose weights are on the meta device (none of
# the verbs yet: even analyze scores weights; ns.capture / ns.build_graph work on meta)
SHAPE_ONLY: set[str] = set()


def _refuse_meta(name: str, model: Any) -> None:
    """Scores, verification and folds need weights: a meta model is refused in one line."""
    if name in SHAPE_ONLY or not isinstance(model, nn.Module):
        return
    if any(t.device.type == "meta" for t in model.parameters()):
        raise InputError(
            f"{name}: the model's weights are on the meta device and {name} needs their values; "
            "load the weights first (netsculpt.hf.prune_pretrained / cut_pretrained edit a "
            "checkpoint folder without loading it; ns.build_graph reads a meta model's shapes)"
        )


def verb(name: str):
    """The public function for op ``name`` (docstring from the op module's ``run``)."""

    def fn(
        model: nn.Module, example_inputs: Any, config: Any = None, *, data: Any = None, **kw: Any
    ) -> Any:
        return call(name, model, example_inputs, config, data=data, **kw)

    spec = registry.get(name)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = spec.module.run.__doc__
    fn.__module__ = "netsculpt"
    return fn


def apply(
    model: nn.Module, example_inputs: Any, plan: Plan | dict | str, *, data: Any = None
) -> Any:
    """Replay ``plan`` (a Plan, its dict, or a path to its JSON / to a report.json) on
    ``model`` in place and return a Report; the same architecture as the run that made it.

    >>> import torch, netsculpt as ns
    >>> make = lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> a, b = make(), make()
    >>> rep = ns.prune(a, torch.ones(1, 4), amount=0.5)
    >>> _ = ns.apply(b, torch.ones(1, 4), rep.plan)
    >>> b[0].out_features
    4
    """
    if isinstance(plan, dict):
        plan = Plan.from_dict(plan)
    elif not isinstance(plan, Plan):
        plan = Plan.from_json(plan)
    if plan.op not in registry.names():
        raise InputError(f"plan: made by unknown op {plan.op!r}")
    spec = registry.get(plan.op)
    if plan.config.get("scope"):
        from netsculpt.engine.scope import run_scoped

        def each(inputs: Any, batches: Any) -> Any:
            return _replay(spec, model, inputs, plan, batches)

        scope = plan.config["scope"]
        return run_scoped(plan.op, model, example_inputs, scope, data, each)
    return _replay(spec, model, example_inputs, plan, data)


def _replay(spec: Any, model: nn.Module, example_inputs: Any, plan: Plan, data: Any) -> Any:
    session = Session(model, example_inputs, data=data, seed=plan.config.get("seed", 0) or 0)

    def body() -> Any:
        before = session.snapshot()
        replay = getattr(spec.module, "replay", None)
        todo = replay(session, plan) if replay else plan
        done = session.apply(todo, safe=False)
        return session.report(plan.op, {"replayed": True}, done, before, session.snapshot())

    return session.guarded(body)
