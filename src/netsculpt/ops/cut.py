"""剪切 cut: remove whole blocks whose measured effect on the output is small.

``ns.cut(model, example_inputs, threshold=0.01, data=calib)`` removes every block whose effect
(default: ablation KL to the original output) is below the threshold; ``count=n`` removes the
``n`` least important; ``target_params=`` removes the least important until the model is that
small; ``iterative=True`` re-scores after each removal (SLEB). Residual blocks go (the skip
path remains); a shape-preserving layer becomes the identity; a shape-changing layer becomes a
bridge fitted by ridge least squares (``bridge="train"``: then distilled), folded when it can be.

The op only plans: scores come from :mod:`netsculpt.importance.blocks`, the plan is a list of
``remove_block`` actions (deepest first, each bridge with its fitted weights) and, with data on
a BatchNorm model, a ``recalibrate_bn`` action; the session's backend applies it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from netsculpt.calibration.bn import batchnorms
from netsculpt.core.config import (
    OpConfig,
    budget,
    finite,
    integer,
    non_negative,
    one_of,
    option,
)
from netsculpt.core.errors import InputError
from netsculpt.core.plan import Action, Plan
from netsculpt.core.select import is_ignored
from netsculpt.graph.blocks import Block, block_ignored
from netsculpt.importance.blocks import CRITERIA, BlockScorer
from netsculpt.measure.blocks import blocks_to_budget, bridge_dims, mac_delta
from netsculpt.measure.params import count_params, saved_size_bytes
from netsculpt.report import Snapshot

BRIDGES = ("lstsq", "train", "none")
BASELINES = ("random", "last")


def _importance(name: str, v: Any) -> None:
    if callable(v):
        return
    if v not in (*CRITERIA, *BASELINES) or v == "gradmax":
        crit = ", ".join((*CRITERIA[:-1], *BASELINES))
        raise InputError(
            f"{name}: unknown criterion {v!r}: one of {crit}, or fn(model, block) -> float"
        )


@dataclass(frozen=True)
class CutConfig(OpConfig):
    """What to cut. Exactly one of ``threshold`` / ``count`` / ``blocks`` / ``target_params``.

    ``importance``: a block criterion of :mod:`netsculpt.importance.blocks` (``kl``, ``loss``,
    ``influence``, ``angular``, ``taylor``), the baselines ``"random"`` / ``"last"`` (drop the
    deepest removable blocks), or a callable ``fn(model, block) -> float``; low = removable.
    ``threshold``: blocks scoring below it go; its unit is the criterion's: KL in nats per
    sample / token for ``kl`` (the default; relative MSE for a single regression output), the
    loss change in nats for ``loss``, ``1 - cos`` for ``influence``, a fraction of π for
    ``angular``, loss units for ``taylor``. ``target_params``: the lowest-scoring blocks go, in
    order, until the parameters are at or below it (a fraction ≤ 1 of the original, or an
    absolute count > 1). ``recalibrate_bn``: with ``data``, re-estimate BatchNorm running
    statistics on it after the cut (and inside the ablations that score blocks, so scores
    measure that network).
    """

    threshold: float | None = option(
        None, finite(), "remove blocks scoring below this (the criterion's unit; kl: nats)"
    )
    count: int | None = option(None, integer(1), "remove the N lowest-scoring blocks")
    blocks: tuple[str, ...] = option((), None, "remove these blocks, by name")
    target_params: float | None = option(
        None, budget(), "remove the lowest-scoring blocks until params ≤ this (fraction or count)"
    )
    importance: str | Callable = option(
        "kl", _importance, "block scores: kl, loss, influence, angular, taylor, random, last, "
        "or fn(model, block) -> float (low = removable)"
    )  # fmt: skip
    iterative: bool = option(False, None, "re-score after each removal (SLEB)")
    bridge: str = option("lstsq", one_of(*BRIDGES), "shape-changing layers: lstsq, train, none")
    ignore: Any = option((), None, "blocks never to remove: names, globs, modules, filter_fn")
    ridge: float = option(1e-3, non_negative(), "ridge of the bridge fit (relative)")
    train_steps: int = option(200, integer(1), "bridge='train': distillation steps")
    recalibrate_bn: bool = option(True, None, "re-estimate BatchNorm statistics on the data")
    max_batches: int = option(8, integer(1), "calibration batches read")
    batch_size: int | None = option(None, integer(1), "batch size when data is a Dataset")
    seed: int = option(0, integer(0), "seed of every random choice")

    def __post_init__(self) -> None:
        super().__post_init__()
        chosen = [
            self.threshold is not None,
            self.count is not None,
            bool(self.blocks),
            self.target_params is not None,
        ]
        if sum(chosen) != 1:
            raise InputError(
                "cut: pass exactly one of threshold=, count=, blocks= or target_params="
            )


CONFIGS = (CutConfig,)


def prepare(cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """``criterion=`` is the old name of ``importance=``; ``blocks`` / ``ignore`` as tuples."""
    kw = dict(overrides)
    if "criterion" in kw:
        crit = kw.pop("criterion")
        if kw.get("importance", crit) != crit:
            raise InputError("cut: criterion= is the old name of importance=; pass only one")
        kw["importance"] = crit
    if "protect" in kw:
        raise InputError("cut: protect= is now ignore= (block names, globs, modules, filter_fn)")
    for k in ("blocks", "ignore"):
        v = kw.get(k)
        if isinstance(v, str):
            kw[k] = (v,)
        elif isinstance(v, list):
            kw[k] = tuple(v)
    if kw.get("blocks") is None:
        kw.pop("blocks", None)
    return kw


def run(session: Any, cfg: CutConfig) -> Any:
    """Remove blocks in place (the seed's 剪切) and return a Report of what went and how.

    Exactly one of ``threshold`` (blocks scoring below it go; unit: the criterion's, KL in nats
    by default), ``count`` (the ``n`` lowest-scoring), ``blocks`` (by name) or
    ``target_params`` (the lowest-scoring, in order, until the parameters are at or below it:
    a fraction ≤ 1 of the original or an absolute count). ``importance``: a block criterion
    (``kl``, ``loss``, ``influence``, ``angular``, ``taylor``), ``random`` / ``last``, or any
    ``fn(model, block) -> float``; ``criterion=`` is its old name. ``ignore``: blocks never to
    remove (names, globs, modules or ``filter_fn(module, name)``).

    With ``data``, BatchNorm running statistics are re-estimated on it after the cut
    (``recalibrate_bn=False`` keeps the old ones) and block scores are measured the same way.
    ``report.plan`` replays the cut on a fresh copy (``ns.apply``).

    Example::

        report = ns.cut(model, x, data=calib, threshold=0.01)      # effect < 0.01 goes
        report = ns.cut(model, x, data=calib, count=2, iterative=True)
        report = ns.cut(model, x, data=calib, target_params=0.8)   # at most 80% of the params
    """
    blocks = session.blocks()
    names = {b.name for b in blocks}
    _check_ignore(session, names)
    cands = _candidates(session, blocks)
    unknown = [n for n in cfg.blocks if n not in names]
    if unknown:
        raise InputError(f"cut: no block named {unknown[0]!r}; blocks are {sorted(names)}")
    for b in blocks:
        if b.name in cfg.blocks and b not in cands:
            why = b.reason or ("ignored (ignore=)" if b.removable else "protected")
            raise InputError(f"cut: block '{b.name}' cannot be removed: {why}")
    if cfg.count is not None and cfg.count > len(cands):
        raise InputError(
            f"cut: count={cfg.count} but only {len(cands)} blocks can be removed "
            f"({', '.join(b.name for b in cands) or 'none'})"
        )
    before = _snapshot(session)
    state = _State(before)
    if cfg.target_params is not None:
        t = cfg.target_params
        state.goal = int(t * before.params) if t <= 1 else int(t)
    if cfg.iterative and cfg.importance not in BASELINES and not cfg.blocks:
        _iterative(session, cfg, state)
    else:
        _one_shot(session, cfg, blocks, cands, state)
    if state.recalibrated:
        layers, batches = state.recalibrated
        session.notes.append(
            f"BatchNorm running statistics re-estimated on {batches} calibration batches "
            f"({layers} layers; recalibrate_bn=False keeps the old ones)"
        )
    label = _label(cfg.importance)
    if not state.removed:
        if state.goal is None:
            session.notes.append(f"no block has {label} < {cfg.threshold}: nothing removed")
        elif before.params <= state.goal:
            session.notes.append(
                f"params {before.params:,} are already at or below the target {state.goal:,}: "
                "nothing removed"
            )
    after = _snapshot(session, None if state.reread else state.macs)
    if state.goal is not None and after.params > state.goal:
        session.notes.append(
            f"params budget not reached: {after.params:,} > {state.goal:,} (no block that can "
            "be removed is left)"
        )
    plan = Plan("cut", state.actions, cfg.to_dict())
    details = {"removed": state.removed, "scores": state.scores, "criterion": label}
    return session.report("cut", {}, plan, before, after, details)


class _State:
    """What a cut has done so far: the applied actions, report rows, and the predicted MACs."""

    def __init__(self, before: Snapshot) -> None:
        self.actions: list[Action] = []
        self.removed: list[dict[str, Any]] = []
        self.scores: dict[str, float] = {}
        self.macs: int | None = before.macs
        self.goal: int | None = None
        self.reread = False  # the backend had to re-export: measure the MACs afresh
        self.recalibrated: tuple[int, int] | None = None


def _label(importance: Any) -> str:
    return importance if isinstance(importance, str) else getattr(importance, "__name__", "fn")


def _snapshot(session: Any, macs: int | None = None) -> Snapshot:
    """Params, MACs and saved size; with ``macs`` (predicted from the captures the removals
    were planned on), without a new export."""
    if macs is None:
        snap = session.snapshot()
    else:
        snap = Snapshot(params=count_params(session.model), macs=macs)
    snap.size_bytes = saved_size_bytes(session.model)
    return snap


def _check_ignore(session: Any, names: set[str]) -> None:
    paths = [n for n, _ in session.model.named_modules() if n]
    for p in session.ignore:
        if not any(is_ignored(q, [p]) for q in paths):
            raise InputError(f"cut: ignore names no module {p!r}; blocks are {sorted(names)}")


def _ignored(session: Any, block: Block) -> bool:
    """A block is kept whole when it, or any module inside it, is ignored."""
    return block_ignored(session.model, block, session.ignore)


def _candidates(session: Any, blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.removable and not _ignored(session, b)]


def _scorer(session: Any, cfg: CutConfig, blocks: list[Block]) -> BlockScorer:
    data = session.batches() if session.has_data else None
    return BlockScorer(session.model, session.example_inputs, data, blocks,
                       max_batches=cfg.max_batches, ridge=cfg.ridge,
                       adapt_bn=cfg.recalibrate_bn)  # fmt: skip


def _needs_scorer(cfg: CutConfig, blocks: list[Block]) -> bool:
    scored = isinstance(cfg.importance, str) and cfg.importance not in BASELINES and not cfg.blocks
    fitted = cfg.bridge != "none" and any(b.how.startswith("bridge") for b in blocks)
    return scored or fitted


def _scores(session: Any, scorer: BlockScorer | None, cands: list[Block], cfg: CutConfig) -> dict:
    imp = cfg.importance
    if callable(imp):
        out = {}
        for b in cands:
            v = imp(session.model, b)
            if isinstance(v, torch.Tensor):
                v = v.item()
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(
                    f"importance callable: block '{b.name}' needs a number, got {type(v).__name__}"
                )
            out[b.name] = float(v)
        return out
    if imp == "random":
        rng = random.Random(cfg.seed)
        return {b.name: rng.random() for b in cands}
    if imp == "last":
        return {b.name: -float(i) for i, b in enumerate(cands)}
    assert scorer is not None
    scores = scorer.score(imp, each=lambda bs: session.track(bs, f"score blocks ({imp})"))
    return {b.name: scores[b.name] for b in cands}


def _pick(scores: dict[str, float], cfg: CutConfig, limit: int | None) -> list[str]:
    order = sorted((s, n) for n, s in scores.items() if s == s)  # NaN: not scorable
    if cfg.threshold is not None:
        order = [(s, n) for s, n in order if s < cfg.threshold]
    return [n for _, n in order[:limit]]


def _action(block: Block, scorer: BlockScorer | None, cfg: CutConfig, score: Any) -> Action:
    """The ``remove_block`` action for ``block`` (a bridge with its fitted weights)."""
    args: dict[str, Any] = {
        "block": block.name, "how": block.how, "block_kind": block.kind, "params": block.params,
    }  # fmt: skip
    if block.how.startswith("bridge"):
        in_f, out_f = bridge_dims(block)
        if cfg.bridge == "none":  # the naive baseline: keep / zero-pad the first channels
            w = torch.eye(out_f, in_f, dtype=torch.float64)
            b = torch.zeros(out_f, dtype=torch.float64)
        else:
            assert scorer is not None
            w, b = scorer.bridge(block)
        args.update(weight=w.tolist(), bias=b.tolist(), bridge=cfg.bridge, fold=True)
        if cfg.bridge == "train":
            args.update(train_steps=cfg.train_steps, trained=False)
    return Action("remove_block", args, None if score is None or score != score else float(score))


def _recalibrates(session: Any, cfg: CutConfig) -> bool:
    return cfg.recalibrate_bn and session.has_data and bool(batchnorms(session.model))


def _remove(session: Any, cfg: CutConfig, actions: list[Action]) -> Plan:
    """Apply one removal step: its ``remove_block`` actions, then (with data, on a BatchNorm
    model) the ``recalibrate_bn`` action. Returns what was applied."""
    done = session.apply(Plan("cut", list(actions)))
    if done.of_kind("remove_block") and _recalibrates(session, cfg):
        done.extend(session.apply(Plan("cut", [Action("recalibrate_bn", {})])))
    return done


def _record(session: Any, state: _State, done: Plan, by_name: dict, deltas: dict, prefix: str):
    """Note each applied removal (in the order the backend applied them) and keep its row."""
    lines = []
    for a in done.actions:
        if a.kind == "recalibrate_bn":
            state.recalibrated = (a.args.get("layers", 0), a.args.get("batches", 0))
        elif a.kind == "remove_block":
            name = a.args["block"]
            b = by_name[name]
            line = prefix + a.args.pop("_note", f"{name}: removed")
            if state.macs is not None:
                state.macs += deltas[name]
            state.removed.append({
                "block": name, "kind": b.kind, "how": b.how, "params": b.params,
                "score": a.score, "note": line,
            })  # fmt: skip
            lines.append(line)
        state.actions.append(a)
    return lines


def _apply_step(session: Any, cfg: CutConfig, state: _State, blocks: list, actions, prefix=""):
    by_name = {b.name: b for b in blocks}
    prog = session.captured.program
    deltas = {
        a.args["block"]: mac_delta(session.model, prog, by_name[a.args["block"]]) for a in actions
    }
    pos, exports = len(session.notes), session.exports
    done = _remove(session, cfg, actions)
    # the backend re-read the blocks (an edit renamed one): the predicted MACs may not hold
    state.reread = state.reread or session.exports > exports
    session.notes[pos:pos] = _record(session, state, done, by_name, deltas, prefix)


def _one_shot(session: Any, cfg: CutConfig, blocks: list, cands: list, state: _State) -> None:
    model = session.model
    if cfg.blocks:
        chosen = list(cfg.blocks)
        named = [b for b in cands if b.name in cfg.blocks]
        scorer = _scorer(session, cfg, named) if _needs_scorer(cfg, named) else None
    else:
        scorer = _scorer(session, cfg, cands) if _needs_scorer(cfg, cands) else None
        state.scores = _scores(session, scorer, cands, cfg)
        if state.goal is not None:
            chosen = blocks_to_budget(model, state.scores, cands, state.goal)
        else:
            chosen = _pick(state.scores, cfg, cfg.count)
    if not chosen:
        return
    order = {b.name: i for i, b in enumerate(blocks)}
    by_name = {b.name: b for b in blocks}
    deepest = sorted(chosen, key=order.__getitem__, reverse=True)  # earlier names stay valid
    actions = [_action(by_name[n], scorer, cfg, state.scores.get(n)) for n in deepest]
    _apply_step(session, cfg, state, blocks, actions)


def _iterative(session: Any, cfg: CutConfig, state: _State) -> None:
    model = session.model
    while cfg.count is None or len(state.removed) < cfg.count:
        if state.goal is not None and count_params(model) <= state.goal:
            break
        blocks = session.blocks()  # the network the previous round left
        cands = _candidates(session, blocks)
        if not cands:
            break
        scorer = _scorer(session, cfg, cands) if _needs_scorer(cfg, cands) else None
        scores = _scores(session, scorer, cands, cfg)
        if not state.removed:
            state.scores = dict(scores)
        pick = _pick(scores, cfg, 1)
        if not pick:
            break
        block = next(b for b in cands if b.name == pick[0])
        action = _action(block, scorer, cfg, scores[block.name])
        _apply_step(session, cfg, state, blocks, [action], f"round {len(state.removed) + 1}: ")
