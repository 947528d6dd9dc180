"""增加层 grow: add depth or width where the measured effect is large, function-preserving.

``ns.grow(model, example_inputs, where="auto", data=calib)`` picks the blocks with the largest
effect (``criterion="kl"``, or ``"gradmax"``: the top singular value of ``sum g h^T``) and

- ``kind="deeper"``: inserts an identity layer after a plain layer ending in ReLU
  (Net2DeeperNet), or a copy of a residual block with its output projection zeroed (LLaMA-Pro);
- ``kind="wider"``: replicates the units of the block's own channel group and divides their
  outgoing weights (Net2WiderNet, through :func:`netsculpt.surgery.widen`).

The outputs are checked to equal the original within ``tol`` (reported); ``trainable="new"``
freezes the original parameters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.calibration import as_batches, first_tensor, run
from netsculpt.errors import InputError, VerificationError
from netsculpt.graph.blocks import IDEMPOTENT, Block, find_blocks
from netsculpt.graph.capture import capture
from netsculpt.importance.blocks import CRITERIA, BlockScorer
from netsculpt.ops.cut import snapshot
from netsculpt.report import Report
from netsculpt.surgery.depth import Undo, expand_block, insert_identity_layer
from netsculpt.utils import eval_mode

KINDS = ("deeper", "wider")
TRAINABLE = ("all", "new")


@dataclass(frozen=True)
class GrowConfig:
    """Where and how to grow. ``where``: ``"auto"`` or block names; with ``"auto"``, the
    ``count`` highest-scoring blocks, or every block scoring above ``threshold``."""

    kind: str = "deeper"
    where: str | tuple[str, ...] = "auto"
    count: int = 1
    threshold: float | None = None
    criterion: str = "kl"
    factor: float = 2.0  # wider: new width / old width of the grown group
    noise: float = 0.0  # wider: symmetry-breaking noise (0 keeps the function exactly)
    trainable: str = "all"
    max_batches: int = 8
    tol: float = 1e-5


def grow(
    model: nn.Module,
    example_inputs: Any,
    *,
    kind: str = "deeper",
    where: str | list[str] | tuple[str, ...] = "auto",
    data: Any = None,
    count: int = 1,
    threshold: float | None = None,
    criterion: str = "kl",
    factor: float = 2.0,
    noise: float = 0.0,
    trainable: str = "all",
    max_batches: int = 8,
) -> Report:
    """Grow the model in place (the seed's 增加层), function-preserving; returns a Report.

    Example::

        report = ns.grow(model, x, data=calib, threshold=0.01)          # effect > 0.01
        report = ns.grow(model, x, kind="wider", where=["blocks.3"], factor=1.5)
    """
    where_t = where if isinstance(where, str) else tuple(where)
    config = GrowConfig(
        kind=kind, where=where_t, count=count, threshold=threshold, criterion=criterion,
        factor=factor, noise=noise, trainable=trainable, max_batches=max_batches,
    )  # fmt: skip
    return apply_grow(model, example_inputs, config, data)


def _check(config: GrowConfig) -> None:
    if config.kind not in KINDS:
        raise InputError(f"grow: kind must be one of {', '.join(KINDS)}, got {config.kind!r}")
    if config.trainable not in TRAINABLE:
        raise InputError(f"grow: trainable must be 'all' or 'new', got {config.trainable!r}")
    if config.trainable == "new" and config.kind == "wider":
        raise InputError("grow: trainable='new' needs kind='deeper' (wider grows existing tensors)")
    if config.criterion not in CRITERIA:
        raise InputError(f"grow: unknown criterion {config.criterion!r}: one of {CRITERIA}")
    if config.count < 1:
        raise InputError(f"grow: count must be >= 1, got {config.count}")
    if config.kind == "wider" and not config.factor > 1:
        raise InputError(f"grow: factor must be > 1 for kind='wider', got {config.factor}")
    if isinstance(config.where, str) and config.where != "auto":
        raise InputError(
            f"grow: where must be 'auto' or a list of block names, got {config.where!r}"
        )


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


def _wide_groups(model: nn.Module, example_inputs: Any, blocks: list[Block]) -> dict[str, Any]:
    """For each block, the largest prunable channel group produced only inside it."""
    from netsculpt.graph import build_graph

    graph = build_graph(model, example_inputs)
    out: dict[str, Any] = {"graph": graph}
    for b in blocks:
        prefixes = tuple(p + "." for p in b.modules)

        def inside(path: str, prefixes: tuple = prefixes, b: Block = b) -> bool:
            return path in b.modules or path.startswith(prefixes)

        best = None
        for g in graph.groups:
            outs = [m for m in g.members if m.role == "out"]
            if g.prunable and outs and all(inside(m.module) for m in outs):
                best = g if best is None or g.size > best.size else best
        if best is not None:
            out[b.name] = best
    return out


def apply_grow(
    model: nn.Module, example_inputs: Any, config: GrowConfig, data: Any = None
) -> Report:
    """The grow engine: validate, pick blocks, edit (all or nothing), check equality, report."""
    _check(config)
    cap = capture(model, example_inputs)
    blocks = find_blocks(model, example_inputs, cap)
    by_name = {b.name: b for b in blocks}
    wide = _wide_groups(model, example_inputs, blocks) if config.kind == "wider" else {}
    refusal = {
        b.name: (deeper_refusal(model, b) if config.kind == "deeper" else
                 None if b.name in wide else "no channel group of its own to widen")
        for b in blocks
    }  # fmt: skip
    scores: dict[str, float] = {}
    if config.where == "auto":
        eligible = [b for b in blocks if refusal[b.name] is None]
        if not eligible:
            reasons = "; ".join(f"{n}: {r}" for n, r in refusal.items())
            if config.threshold is not None:  # the seed's rule found no place: a no-op, said so
                snap = snapshot(model, cap)
                return Report(
                    op="grow",
                    config=asdict(config),
                    before=snap,
                    after=snap,
                    notes=[f"nothing grown: no block can grow {config.kind} ({reasons})"],
                )
            raise InputError(f"grow: no block can grow {config.kind} ({reasons})")
        scorer = BlockScorer(model, example_inputs, data, blocks, max_batches=config.max_batches)
        all_scores = scorer.score(config.criterion)
        scores = {b.name: all_scores[b.name] for b in eligible}
        order = sorted(((s, n) for n, s in scores.items() if not math.isnan(s)), reverse=True)
        if not order:
            why = "; ".join(f"{b.name}: {b.reason or 'no ablation defined'}" for b in eligible)
            raise InputError(
                f"grow: criterion {config.criterion!r} is undefined for every block that can "
                f"grow {config.kind} ({why}); use criterion='gradmax' or name blocks with where="
            )
        if config.threshold is not None:
            order = [(s, n) for s, n in order if s > config.threshold]
        chosen = [n for _, n in order[: config.count if config.threshold is None else None]]
    else:
        chosen = list(config.where)
        for n in chosen:
            if n not in by_name:
                raise InputError(f"grow: where names no block {n!r}; blocks are {sorted(by_name)}")
            if refusal[n] is not None:
                raise InputError(f"grow: cannot grow block '{n}' {config.kind}: {refusal[n]}")
    before = snapshot(model, cap)
    check_inputs = [example_inputs] + [b.inputs for b in as_batches(data, None, 1)] if data else [
        example_inputs
    ]  # fmt: skip
    refs = [_out(model, x) for x in check_inputs]
    old = {id(p) for p in model.parameters()}
    undo = Undo(model)
    grown: list[dict[str, Any]] = []
    try:
        for i, name in enumerate(sorted(chosen, key=lambda n: blocks.index(by_name[n]))[::-1]):
            if config.kind == "wider" and i:  # channel groups change with every widening
                wide = _wide_groups(model, example_inputs, [by_name[name]])
            grown.append(_grow_one(model, by_name[name], config, wide, undo))
        diff = max(_diff(r, _out(model, x)) for r, x in zip(refs, check_inputs))
        scale = max(1.0, max(float(r.abs().max()) for r in refs))
        if not diff <= config.tol * scale:
            raise VerificationError(
                f"grow: outputs changed by {diff:.3g} (> {config.tol} x {scale:.3g}); restored"
            )
    except Exception:
        undo.restore()
        raise
    if config.trainable == "new":
        for p in model.parameters():
            if id(p) in old:
                p.requires_grad_(False)
    after = snapshot(model, capture(model, example_inputs))
    notes = (
        [g["note"] for g in grown]
        + undo.notes
        + [f"function preserved: max |output change| = {diff:.2e}"]
    )
    if not grown:
        notes.insert(0, f"no block has {config.criterion} > {config.threshold}: nothing grown")
    return Report(
        op="grow",
        config=asdict(config),
        before=before,
        after=after,
        details={
            "grown": grown,
            "scores": scores,
            "criterion": config.criterion,
            "max_abs_diff": diff,
            "function_preserving": True,
        },  # fmt: skip
        notes=notes,
    )


def _grow_one(model: nn.Module, block: Block, config: GrowConfig, wide: dict, undo: Undo) -> dict:
    if config.kind == "wider":
        from netsculpt.surgery import widen

        group = wide[block.name]
        extra = max(1, round(group.size * (config.factor - 1)))
        src = np.arange(extra) % group.size
        edit = widen(model, wide["graph"], {group.id: src}, noise=config.noise)
        undo.later(edit.undo)
        note = f"{block.name}: widened {group.describe()} from {group.size} to {group.size + extra}"
        return {"block": block.name, "how": "net2wider", "added_units": extra, "note": note}
    if block.residual:
        new = expand_block(model, block, undo)
        added = sum(p.numel() for p in new.parameters())
        note = f"{block.name}: copy inserted after it, {', '.join(block.out_params)} zeroed"
        return {"block": block.name, "how": "block-expansion", "params_added": added, "note": note}
    new = insert_identity_layer(model, block, undo)
    added = sum(p.numel() for p in new.parameters())
    note = f"{block.name}: identity {type(new).__name__} inserted after {block.activation}"
    return {"block": block.name, "how": "net2deeper", "params_added": added, "note": note}


def _out(model: nn.Module, inputs: Any) -> torch.Tensor:
    with eval_mode(model), torch.no_grad():
        return first_tensor(run(model, inputs)).detach().clone()


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    return float((a.double() - b.double()).abs().max())
