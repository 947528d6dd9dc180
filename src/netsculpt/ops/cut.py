"""剪切 cut: remove whole blocks whose measured effect on the output is small.

``ns.cut(model, example_inputs, threshold=0.01, data=calib)`` removes every block whose effect
(default: ablation KL to the original output) is below the threshold; ``count=n`` removes the
``n`` least important; ``iterative=True`` re-scores after each removal (SLEB). Residual blocks
go (the skip path remains); a shape-preserving layer becomes the identity; a shape-changing
layer becomes a bridge fitted by ridge least squares (``bridge="train"``: then distilled on the
calibration data), folded into the next Linear when it can be.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netsculpt.calibration import as_batches, first_tensor, run, span_replaced
from netsculpt.calibration.bn import batchnorms, recalibrate_bn, save_bn
from netsculpt.errors import InputError, VerificationError
from netsculpt.graph.blocks import Block, find_blocks
from netsculpt.graph.capture import Captured, capture
from netsculpt.importance.blocks import CRITERIA, BlockScorer, replacement
from netsculpt.report import Report, Snapshot
from netsculpt.surgery.depth import Undo, fold_bridge, make_bridge, remove_block
from netsculpt.utils import eval_mode

BRIDGES = ("lstsq", "train", "none")
BASELINES = ("random", "last")


@dataclass(frozen=True)
class CutConfig:
    """What to cut. Exactly one of ``threshold`` / ``count`` / ``blocks``.

    ``criterion``: a block criterion of :mod:`netsculpt.importance.blocks`, or the baselines
    ``"random"`` / ``"last"`` (drop the deepest removable blocks).
    ``recalibrate_bn``: with ``data``, re-estimate BatchNorm running statistics on it after the
    cut (and inside the ablations that score blocks, so scores measure that network).
    """

    threshold: float | None = None
    count: int | None = None
    blocks: tuple[str, ...] = ()
    criterion: str = "kl"
    iterative: bool = False
    bridge: str = "lstsq"
    protect: tuple[str, ...] = ()
    ridge: float = 1e-3
    max_batches: int = 8
    train_steps: int = 200
    seed: int = 0
    recalibrate_bn: bool = True


def cut(
    model: nn.Module,
    example_inputs: Any,
    *,
    data: Any = None,
    threshold: float | None = None,
    count: int | None = None,
    blocks: list[str] | tuple[str, ...] = (),
    criterion: str = "kl",
    iterative: bool = False,
    bridge: str = "lstsq",
    protect: list[str] | tuple[str, ...] = (),
    max_batches: int = 8,
    seed: int = 0,
    recalibrate_bn: bool = True,
) -> Report:
    """Remove blocks in place (the seed's 剪切) and return a Report of what went and how.

    With ``data``, BatchNorm running statistics are re-estimated on it after the cut
    (``recalibrate_bn=False`` keeps the old ones) and block scores are measured the same way.

    Example::

        report = ns.cut(model, x, data=calib, threshold=0.01)      # effect < 0.01 goes
        report = ns.cut(model, x, data=calib, count=2, iterative=True)
    """
    config = CutConfig(
        threshold=threshold, count=count, blocks=tuple(blocks), criterion=criterion,
        iterative=iterative, bridge=bridge, protect=tuple(protect), max_batches=max_batches,
        seed=seed, recalibrate_bn=recalibrate_bn,
    )  # fmt: skip
    return apply_cut(model, example_inputs, config, data)


def _check(config: CutConfig) -> None:
    chosen = [config.threshold is not None, config.count is not None, bool(config.blocks)]
    if sum(chosen) != 1:
        raise InputError("cut: pass exactly one of threshold=, count= or blocks=")
    if config.criterion not in (*CRITERIA, *BASELINES) or config.criterion == "gradmax":
        crit = ", ".join((*CRITERIA[:-1], *BASELINES))
        raise InputError(f"cut: unknown criterion {config.criterion!r}: one of {crit}")
    if config.bridge not in BRIDGES:
        raise InputError(f"cut: bridge must be one of {', '.join(BRIDGES)}, got {config.bridge!r}")
    if config.count is not None and config.count < 1:
        raise InputError(f"cut: count must be >= 1, got {config.count}")


def _candidates(blocks: list[Block], config: CutConfig) -> list[Block]:
    return [b for b in blocks if b.removable and b.name not in config.protect]


def _scores(scorer: BlockScorer | None, cands: list[Block], config: CutConfig) -> dict:
    if config.criterion == "random":
        rng = random.Random(config.seed)
        return {b.name: rng.random() for b in cands}
    if config.criterion == "last":
        return {b.name: -float(i) for i, b in enumerate(cands)}
    assert scorer is not None
    scores = scorer.score(config.criterion)
    return {b.name: scores[b.name] for b in cands}


def snapshot(model: nn.Module, cap: Captured) -> Snapshot:
    """Params, MACs (from an existing capture: no second export) and saved size."""
    from netsculpt.measure.macs import macs_from_program
    from netsculpt.measure.params import count_params, saved_size_bytes

    return Snapshot(
        params=count_params(model),
        macs=macs_from_program(cap.program),
        size_bytes=saved_size_bytes(model),
    )


def apply_cut(model: nn.Module, example_inputs: Any, config: CutConfig, data: Any = None) -> Report:
    """The cut engine: validate, score, pick, remove (all or nothing), report."""
    _check(config)
    cap = capture(model, example_inputs)
    blocks = find_blocks(model, example_inputs, cap)
    names = {b.name for b in blocks}
    cands = _candidates(blocks, config)
    unknown = [n for n in (*config.blocks, *config.protect) if n not in names]
    if unknown:
        raise InputError(f"cut: no block named {unknown[0]!r}; blocks are {sorted(names)}")
    not_removable = [b for b in blocks if b.name in config.blocks and b not in cands]
    if not_removable:
        b = not_removable[0]
        raise InputError(f"cut: block '{b.name}' cannot be removed: {b.reason or 'protected'}")
    if config.count is not None and config.count > len(cands):
        raise InputError(
            f"cut: count={config.count} but only {len(cands)} blocks can be removed "
            f"({', '.join(b.name for b in cands) or 'none'})"
        )
    # read the calibration data once: every scorer and the BatchNorm re-estimation see the same
    # batches, so a block's score is measured on the batches the delivered model is fitted to
    data = as_batches(data, None, config.max_batches) if data is not None else None
    before = snapshot(model, cap)
    undo = Undo(model)
    removed: list[dict[str, Any]] = []
    notes: list[str] = []
    all_scores: dict[str, float] = {}
    try:
        if config.iterative and config.criterion not in BASELINES and not config.blocks:
            _iterative(
                model, example_inputs, config, data, blocks, undo, removed, notes, all_scores
            )
        else:
            _one_shot(model, example_inputs, config, data, blocks, undo, removed, notes, all_scores)
        if removed:
            _recalibrate(model, config, data, undo, notes)
    except Exception:
        undo.restore()
        raise
    after = snapshot(model, capture(model, example_inputs))
    notes.extend(undo.notes)
    if not removed:
        notes.append(f"no block has {config.criterion} < {config.threshold}: nothing removed")
    return Report(
        op="cut",
        config=asdict(config),
        before=before,
        after=after,
        details={"removed": removed, "scores": all_scores, "criterion": config.criterion},
        notes=notes,
    )


def _pick(scores: dict[str, float], config: CutConfig, limit: int | None) -> list[str]:
    order = sorted((s, n) for n, s in scores.items() if s == s)  # NaN: not scorable
    if config.threshold is not None:
        order = [(s, n) for s, n in order if s < config.threshold]
    return [n for _, n in order[:limit]]


def _one_shot(model, example_inputs, config, data, blocks, undo, removed, notes, all_scores):
    cands = _candidates(blocks, config)
    scorer = None
    needs_data = config.criterion not in BASELINES or any(b.how.startswith("bridge") for b in cands)
    if needs_data:
        scorer = BlockScorer(model, example_inputs, data, blocks, max_batches=config.max_batches,
                             ridge=config.ridge, adapt_bn=config.recalibrate_bn)  # fmt: skip
    if config.blocks:
        chosen = list(config.blocks)
    else:
        scores = _scores(scorer, cands, config)
        all_scores.update(scores)
        chosen = _pick(scores, config, config.count)
    order = {b.name: i for i, b in enumerate(blocks)}
    for i, name in enumerate(sorted(chosen, key=order.__getitem__, reverse=True)):  # deepest first
        current = {b.name: b for b in (find_blocks(model, example_inputs) if i else blocks)}
        block = current.get(name)
        if block is None or not block.removable:
            notes.append(f"{name}: kept (no longer removable after the later removals)")
            continue
        line = _remove(model, example_inputs, block, scorer, config, undo)
        removed.append(_entry(block, all_scores.get(name), line))
        notes.append(line)


def _iterative(model, example_inputs, config, data, blocks, undo, removed, notes, all_scores):
    limit = config.count if config.count is not None else None
    while limit is None or len(removed) < limit:
        blocks = find_blocks(model, example_inputs) if removed else blocks
        cands = _candidates(blocks, config)
        if not cands:
            break
        scorer = BlockScorer(model, example_inputs, data, blocks, max_batches=config.max_batches,
                             ridge=config.ridge, adapt_bn=config.recalibrate_bn)  # fmt: skip
        scores = _scores(scorer, cands, config)
        if not removed:
            all_scores.update(scores)
        pick = _pick(scores, config, 1)
        if not pick:
            break
        block = next(b for b in cands if b.name == pick[0])
        line = _remove(model, example_inputs, block, scorer, config, undo)
        removed.append(_entry(block, scores[block.name], line))
        notes.append(f"round {len(removed)}: {line}")
        if limit is None or len(removed) < limit:  # the next round scores the network it gets
            _recalibrate(model, config, data, undo, None)


def _recalibrate(model: nn.Module, config: CutConfig, data: list | None, undo: Undo, notes) -> None:
    """Re-estimate BatchNorm statistics of the cut model on the calibration data (undoable)."""
    if not config.recalibrate_bn or data is None or not batchnorms(model):
        return
    undo.later(save_bn(model))
    n = recalibrate_bn(model, data)
    if notes is not None:
        notes.append(
            f"BatchNorm running statistics re-estimated on {len(data)} calibration batches "
            f"({n} layers; recalibrate_bn=False keeps the old ones)"
        )


def _entry(block: Block, score: float | None, line: str) -> dict[str, Any]:
    return {
        "block": block.name, "kind": block.kind, "how": block.how, "params": block.params,
        "score": score, "note": line,
    }  # fmt: skip


def _remove(model, example_inputs, block: Block, scorer, config: CutConfig, undo: Undo) -> str:
    """Remove one block and check the model now equals the ablated reference."""
    bridge, fn = None, None
    if block.how.startswith("bridge"):
        w, b = scorer.bridge(block)
        if config.bridge == "none":  # the naive baseline: keep / zero-pad the first channels
            w, b = torch.eye(w.shape[0], w.shape[1], dtype=w.dtype), torch.zeros_like(b)
        bridge = make_bridge(block, w, b, model.get_submodule(block.modules[0]))
        fn = _apply(bridge)
    else:
        fn = replacement(block)
    ref = None
    if fn is not None:
        with span_replaced(model, block.modules[0], block.modules[-1], fn):
            ref = _out(model, example_inputs)
    line = remove_block(model, block, bridge, fold=config.bridge != "train", undo=undo)
    out = _out(model, example_inputs)
    if ref is not None and (out.shape != ref.shape or not torch.allclose(out, ref, 1e-4, 1e-5)):
        raise VerificationError(f"cut: removing '{block.name}' did not give the ablated output")
    if config.bridge == "train" and bridge is not None:
        _train_bridge(model, block.modules[0], scorer, config.train_steps)
        if block.how == "bridge+fold":
            line = fold_bridge(model, block, undo)
        line += f" (trained {config.train_steps} steps)"
    if config.bridge == "none" and bridge is not None:
        line += " (bridge='none': the first channels, not fitted)"
    return line


def _apply(bridge: nn.Module):
    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return bridge(x)

    return fn


def _out(model: nn.Module, example_inputs: Any) -> torch.Tensor:
    with eval_mode(model), torch.no_grad():
        return first_tensor(run(model, example_inputs)).detach().clone()


def distill_loss(ref: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """KL(softmax(ref) || softmax(out)) for logits; MSE for a single (regression) output."""
    if ref.shape[-1] == 1:
        return F.mse_loss(out, ref)
    ref2, out2 = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
    return F.kl_div(F.log_softmax(out2, -1), F.log_softmax(ref2, -1), log_target=True,
                    reduction="batchmean")  # fmt: skip


def _train_bridge(model: nn.Module, path: str, scorer: BlockScorer, steps: int) -> None:
    """Distil the bridge at ``path`` (everything else frozen) towards the original outputs."""
    bridge = model.get_submodule(path)
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    for p in bridge.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(bridge.parameters(), lr=1e-3)
    try:
        with eval_mode(model):
            for step in range(steps):
                i = step % len(scorer.batches)
                loss = distill_loss(
                    scorer.ref[i], first_tensor(run(model, scorer.batches[i].inputs))
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
            p.grad = None
