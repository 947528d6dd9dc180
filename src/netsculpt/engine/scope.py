"""Scoped verbs: edit named submodules of a model that cannot be captured whole.

A detector's ``forward`` loops over images, sorts boxes and filters them by score: no single
graph describes it. Its backbone, FPN and heads are plain tensor programs, though. With
``scope="backbone"`` (or a list of submodule names) the verb runs the whole model once and
records what each scope really receives; the scopes then form one program
(:mod:`netsculpt.engine.joint`) that is captured and pruned as the model. A tensor one scope
returns and another takes unchanged is a link of that program, so the channels coupled
across the two (an FPN's outputs and the heads' inputs) are pruned together; a scope output
the outer code computes with keeps its width, with that use as the reason, and everything
outside the scopes (anchors, box decoding, NMS) sees the same tensors as before.

With ``data=``, every calibration batch runs through the whole model once and the scopes'
inputs recorded from it are the batches the program is scored on (``activation``,
``taylor``: the program's own predictions are the target).

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

from netsculpt.calibration.batches import DEFAULT_BATCH_SIZE, read_batches
from netsculpt.core.errors import InputError, NetsculptError
from netsculpt.engine.backends.memory import checkpoint
from netsculpt.engine.joint import Joint, installed, structure, trace
from netsculpt.graph.capture import run_model
from netsculpt.report import Report

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


def run_scoped(
    op: str,
    model: nn.Module,
    example_inputs: Any,
    scope: Any,
    data: Any,
    each: Callable[[Any, Any], Report],
    *,
    max_batches: int | None = 16,
    batch_size: int | None = None,
    seed: int = 0,
) -> Report:
    """Run ``each(program inputs, program batches)`` on ``model`` whose forward is the program
    of the scopes (see :mod:`netsculpt.engine.joint`); all or nothing. Afterwards the whole
    model must give outputs of the same structure as before (the same nesting, keys and
    trailing dims), else it is restored and the call refused."""
    names = scope_names(op, model, scope)
    joint = trace(op, model, example_inputs, names)
    batches = None
    if data is not None:
        batches = _calibration(op, model, data, names, joint, max_batches, batch_size, seed)
    undo = checkpoint(model)
    with installed(model, joint):
        report = each(joint.inputs, batches)
    try:
        now = structure(run_model(model, example_inputs))
        if now != joint.output:
            raise InputError(f"{op}: scope={names}: the model's outputs changed structure after "
                             f"the edit ({joint.output} -> {now}); the outer code reads the width "
                             "of a scope output: name fewer scopes or pass ignore=[...]")  # fmt: skip
    except InputError:
        undo()
        raise
    except Exception as e:
        undo()
        raise InputError(
            f"{op}: scope={names}: the whole model no longer runs after the edit "
            f"({type(e).__name__}: {str(e).strip()[:200]}); name fewer scopes or pass ignore=[...]"
        ) from e
    return _annotated(report, names, joint)


def _calibration(op, model, data, names, joint: Joint, max_batches, batch_size, seed) -> list:
    """Each calibration batch run through the whole model: the program inputs it gives."""
    from netsculpt.engine.session import _seed_everything

    with torch.random.fork_rng(devices=[]):  # a shuffling loader draws the same batches
        _seed_everything(seed)
        read = read_batches(data, max_batches, batch_size or DEFAULT_BATCH_SIZE)
    out = []
    for i, b in enumerate(read):
        try:
            j = trace(op, model, b.inputs, names)
        except NetsculptError:
            raise
        except Exception as e:
            raise InputError(f"{op}: data batch {i}: the model does not run on it "
                             f"({type(e).__name__}: {str(e).strip()[:200]})") from e  # fmt: skip
        if j.signature() != joint.signature():
            raise InputError(
                f"{op}: data batch {i}: the scopes are called in another way than on the example "
                "inputs (other calls or links); give batches shaped like the example inputs"
            )
        out.append((j.inputs, None))
    return out


def _annotated(report: Report, names: list[str], joint: Joint) -> Report:
    report.config["scope"] = names
    if report.plan is not None:
        report.plan.config["scope"] = names
    report.details.update(
        scopes=names,
        macs_of="the scopes and the Linear / Conv modules they feed (the rest is not a graph)",
        links=joint.links,
        kept_whole=dict(joint.kept),
        adopted=joint.adopted,
    )
    report.notes.extend(
        f"{label} keeps its width: used by {why}"
        for label, why in joint.kept.items()
        if why != "no other scope reads it"
    )
    report.notes.extend(
        f"{p} (outside the scopes) loses the input channels of the scope output it reads"
        for p in joint.adopted
    )
    return report
