"""增加层 grow: add depth or width where the measured effect is large, function-preserving.

``ns.grow(model, example_inputs, where="auto", data=calib)`` picks the blocks with the largest
effect (``importance="kl"``, or ``"gradmax"``: the top singular value of ``sum g h^T``) and

- ``kind="deeper"``: inserts an identity layer after a plain layer ending in ReLU
  (Net2DeeperNet), or a copy of a residual block with its output projection zeroed (LLaMA-Pro);
- ``kind="wider"``: replicates the units of the block's own channel group and divides their
  outgoing weights (Net2WiderNet, through :func:`netsculpt.surgery.widen`).

The outputs are checked to equal the original within ``tol`` (reported); ``trainable="new"``
freezes the original parameters. The op only plans: the plan is a list of ``grow`` actions
(deepest first) that the session's backend applies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.calibration import first_tensor
from netsculpt.calibration import run as forward
from netsculpt.core.config import (
    OpConfig,
    finite,
    integer,
    non_negative,
    one_of,
    option,
    positive,
)
from netsculpt.core.errors import InputError, VerificationError
from netsculpt.core.plan import Action, Plan
from netsculpt.core.utils import eval_mode
from netsculpt.graph.blocks import IDEMPOTENT, Block, block_ignored, own_group
from netsculpt.graph.channels import group_anchor
from netsculpt.importance.blocks import CRITERIA, BlockScorer
from netsculpt.measure.params import saved_size_bytes
from netsculpt.report import Snapshot

KINDS = ("deeper", "wider")
TRAINABLE = ("all", "new")


def _importance(name: str, v: Any) -> None:
    if not callable(v) and v not in CRITERIA:
        raise InputError(
            f"{name}: unknown criterion {v!r}: one of {', '.join(CRITERIA)}, "
            "or fn(model, block) -> float"
        )


def _where(name: str, v: Any) -> None:
    if isinstance(v, str):
        if v != "auto":
            raise InputError(f"grow: where must be 'auto' or a list of block names, got {v!r}")
    elif not all(isinstance(n, str) for n in v):
        raise InputError(f"grow: where must be 'auto' or a list of block names, got {v!r}")


@dataclass(frozen=True)
class GrowConfig(OpConfig):
    """Where and how to grow. ``where``: ``"auto"`` or block names; with ``"auto"``, the
    ``count`` highest-scoring blocks, or every block scoring above ``threshold`` (its unit is
    the criterion's: KL in nats for ``kl``, the default; gradient × activation units for
    ``gradmax``). ``importance``: a block criterion of :mod:`netsculpt.importance.blocks` or a
    callable ``fn(model, block) -> float``; high = grow there. ``ignore``: blocks never grown."""

    kind: str = option("deeper", one_of(*KINDS), "deeper (identity layer / block copy) or wider")
    where: str | tuple[str, ...] = option("auto", _where, "'auto' (by score) or block names")
    count: int = option(1, integer(1), "auto: grow at the N highest-scoring blocks")
    threshold: float | None = option(
        None, finite(), "auto: grow every block scoring above this (the criterion's unit)"
    )
    importance: str | Callable = option(
        "kl", _importance, "block scores: kl, loss, influence, angular, taylor, gradmax, or "
        "fn(model, block) -> float (high = grow)"
    )  # fmt: skip
    factor: float = option(2.0, positive(), "wider: new width / old width of the grown group")
    noise: float = option(0.0, non_negative(), "wider: symmetry-breaking noise (0 keeps it exact)")
    trainable: str = option("all", one_of(*TRAINABLE), "new: freeze the original parameters")
    ignore: Any = option((), None, "blocks never grown: names, globs, modules, filter_fn")
    max_batches: int = option(8, integer(1), "calibration batches read")
    batch_size: int | None = option(None, integer(1), "batch size when data is a Dataset")
    seed: int = option(0, integer(0), "seed of every random choice (wider noise)")
    tol: float = option(1e-5, positive(), "largest output change allowed (relative)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trainable == "new" and self.kind == "wider":
            raise InputError(
                "grow: trainable='new' needs kind='deeper' (wider grows existing tensors)"
            )
        if self.kind == "wider" and not self.factor > 1:
            raise InputError(f"grow: factor must be > 1 for kind='wider', got {self.factor}")


CONFIGS = (GrowConfig,)


def prepare(cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """``criterion=`` is the old name of ``importance=``; ``where`` / ``ignore`` as tuples."""
    kw = dict(overrides)
    if "criterion" in kw:
        crit = kw.pop("criterion")
        if kw.get("importance", crit) != crit:
            raise InputError("grow: criterion= is the old name of importance=; pass only one")
        kw["importance"] = crit
    for k in ("where", "ignore"):
        if isinstance(kw.get(k), list):
            kw[k] = tuple(kw[k])
    if isinstance(kw.get("ignore"), str):
        kw["ignore"] = (kw["ignore"],)
    return kw


def deeper_refusal(model: nn.Module, block: Block) -> str | None:
    """Why ``block`` cannot be grown deeper function-preservingly (None: it can)."""
    if block.residual:
        if not block.out_params:
            return "found no output projection to zero"
        if block.index < 0 and block.kind == "branch":
            return "a residual branch outside a container"
        return None
    if block.how == "skip":  # a layer-list item that is not x + f(x), e.g. LN(x + f(x))
        return (
            "its output is not x + f(x) (a post-LN layer renormalises): no weights make an "
            "inserted copy the identity"
        )
    last = model.get_submodule(block.modules[-1])
    if len(block.modules) < 2 or not block.activation:
        return "it does not end in an activation (an identity layer after it would be linear)"
    if not isinstance(last, IDEMPOTENT):
        return (
            f"it ends in {type(last).__name__}, and phi(phi(x)) != phi(x) there, so an identity "
            f"layer would change the output (only ReLU / ReLU6 / Hardtanh allow it)"
        )
    return None


def _ignored(session: Any, block: Block) -> bool:
    """A block is kept whole when it, or any module inside it, is ignored."""
    return block_ignored(session.model, block, session.ignore)


def _snapshot(session: Any) -> Snapshot:
    snap = session.snapshot()
    snap.size_bytes = saved_size_bytes(session.model)
    return snap


def _label(importance: Any) -> str:
    return importance if isinstance(importance, str) else getattr(importance, "__name__", "fn")


def _scores(session: Any, cfg: GrowConfig, eligible: list[Block]) -> dict[str, float]:
    imp = cfg.importance
    if callable(imp):
        out = {}
        for b in eligible:
            v = imp(session.model, b)
            if isinstance(v, torch.Tensor):
                v = v.item()
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(
                    f"importance callable: block '{b.name}' needs a number, got {type(v).__name__}"
                )
            out[b.name] = float(v)
        return out
    data = session.batches() if session.has_data else None
    scorer = BlockScorer(session.model, session.example_inputs, data, eligible,
                         max_batches=cfg.max_batches)  # fmt: skip
    scores = scorer.score(imp, each=lambda bs: session.track(bs, f"score blocks ({imp})"))
    return {b.name: scores[b.name] for b in eligible}


def run(session: Any, cfg: GrowConfig) -> Any:
    """Grow the model in place (the seed's 增加层), function-preserving; returns a Report.

    ``where="auto"``: the ``count`` blocks with the highest ``importance`` (a block criterion,
    default ``kl``; or any ``fn(model, block) -> float``; ``criterion=`` is its old name), or
    every block scoring above ``threshold`` (unit: the criterion's, KL in nats by default).
    ``where=[names]``: those blocks. ``ignore``: blocks never grown. ``report.plan`` replays
    the growth on a fresh copy (``ns.apply``).

    Example::

        report = ns.grow(model, x, data=calib, threshold=0.01)          # effect > 0.01
        report = ns.grow(model, x, kind="wider", where=["blocks.3"], factor=1.5)
    """
    model = session.model
    blocks = session.blocks()
    by_name = {b.name: b for b in blocks}
    refusal = _refusals(session, cfg, blocks)
    scores: dict[str, float] = {}
    label = _label(cfg.importance)
    if cfg.where == "auto":
        eligible = [b for b in blocks if refusal[b.name] is None]
        if not eligible:
            reasons = "; ".join(f"{n}: {r}" for n, r in refusal.items())
            if cfg.threshold is not None:  # the seed's rule found no place: a no-op, said so
                snap = _snapshot(session)
                session.notes.append(f"nothing grown: no block can grow {cfg.kind} ({reasons})")
                plan = Plan("grow", [], cfg.to_dict())
                return session.report("grow", {}, plan, snap, snap, {"grown": [], "scores": {}})
            raise InputError(f"grow: no block can grow {cfg.kind} ({reasons})")
        scores = _scores(session, cfg, eligible)
        order = sorted(((s, n) for n, s in scores.items() if not math.isnan(s)), reverse=True)
        if not order:
            why = "; ".join(f"{b.name}: {b.reason or 'no ablation defined'}" for b in eligible)
            raise InputError(
                f"grow: criterion {label!r} is undefined for every block that can "
                f"grow {cfg.kind} ({why}); use importance='gradmax' or name blocks with where="
            )
        if cfg.threshold is not None:
            order = [(s, n) for s, n in order if s > cfg.threshold]
        chosen = [n for _, n in order[: cfg.count if cfg.threshold is None else None]]
    else:
        chosen = list(cfg.where)
        for n in chosen:
            if n not in by_name:
                raise InputError(f"grow: where names no block {n!r}; blocks are {sorted(by_name)}")
            if refusal[n] is not None:
                raise InputError(f"grow: cannot grow block '{n}' {cfg.kind}: {refusal[n]}")
    before = _snapshot(session)
    check_inputs = [session.example_inputs]
    if session.has_data:
        check_inputs.append(session.batches()[0].inputs)
    refs = [_out(model, x) for x in check_inputs]
    deepest = sorted(chosen, key=lambda n: blocks.index(by_name[n]), reverse=True)
    actions = [_action(session, by_name[n], cfg, scores.get(n)) for n in deepest]
    pos = len(session.notes)
    done = session.apply(Plan("grow", actions)) if actions else Plan("grow")
    diff = max(_diff(r, _out(model, x)) for r, x in zip(refs, check_inputs))
    scale = max(1.0, max(float(r.abs().max()) for r in refs))
    if not diff <= cfg.tol * scale:
        raise VerificationError(
            f"grow: outputs changed by {diff:.3g} (> {cfg.tol} x {scale:.3g}); restored"
        )
    grown = [_row(by_name[a.args["block"]], a) for a in done.actions]
    session.notes[pos:pos] = [g["note"] for g in grown]
    session.notes.append(f"function preserved: max |output change| = {diff:.2e}")
    if not grown:
        session.notes.insert(0, f"no block has {label} > {cfg.threshold}: nothing grown")
    after = _snapshot(session)
    details = {
        "grown": grown,
        "scores": scores,
        "criterion": label,
        "max_abs_diff": diff,
        "function_preserving": True,
    }
    return session.report("grow", {}, Plan("grow", done.actions, cfg.to_dict()), before, after,
                          details)  # fmt: skip


def _refusals(session: Any, cfg: GrowConfig, blocks: list[Block]) -> dict[str, str | None]:
    """Why each block cannot grow ``cfg.kind`` (None: it can)."""
    out: dict[str, str | None] = {}
    graph = session.graph if cfg.kind == "wider" else None
    for b in blocks:
        if _ignored(session, b):
            out[b.name] = "ignored (ignore=)"
        elif cfg.kind == "deeper":
            out[b.name] = deeper_refusal(session.model, b)
        else:
            out[b.name] = None if own_group(graph, b) is not None else (
                "no channel group of its own to widen"
            )  # fmt: skip
    return out


def _action(session: Any, block: Block, cfg: GrowConfig, score: Any) -> Action:
    args: dict[str, Any] = {"grow_kind": cfg.kind, "block": block.name, "trainable": cfg.trainable}
    if cfg.kind == "wider":
        group = own_group(session.graph, block)
        extra = max(1, round(group.size * (cfg.factor - 1)))
        args.update(anchor=group_anchor(group), size=group.size, factor=cfg.factor,
                    src=(np.arange(extra) % group.size).tolist(), noise=cfg.noise,
                    seed=cfg.seed)  # fmt: skip
    else:
        args["how"] = "block-expansion" if block.residual else "net2deeper"
    return Action("grow", args, None if score is None or score != score else float(score))


def _row(block: Block, a: Action) -> dict[str, Any]:
    """The report row of one applied ``grow`` action."""
    name = block.name
    if a.args["grow_kind"] == "wider":
        size, extra = a.args["size"], a.args["added_units"]
        note = f"{name}: widened {a.args.pop('_group')} from {size} to {size + extra}"
        return {"block": name, "how": "net2wider", "added_units": extra, "note": note}
    layer = a.args.pop("_layer", "layer")
    if a.args["how"] == "block-expansion":
        note = f"{name}: copy inserted after it, {', '.join(block.out_params)} zeroed"
    else:
        note = f"{name}: identity {layer} inserted after {block.activation}"
    return {"block": name, "how": a.args["how"], "params_added": a.args["params_added"],
            "note": note}  # fmt: skip


def _out(model: nn.Module, inputs: Any) -> torch.Tensor:
    with eval_mode(model), torch.no_grad():
        return first_tensor(forward(model, inputs)).detach().clone()


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    return float((a.double() - b.double()).abs().max())
