"""合并 merge: fold layers into one, merge near-duplicate neurons, collapse similar blocks.

``ns.merge(model, example_inputs)`` applies the exact folds (BatchNorm into the neighbouring
Linear / Conv, Linear∘Linear, pointwise conv∘conv, norm gains into the next Linears), each checked
to 1e-5 relative on the example inputs. ``neurons=True`` and ``blocks=True`` add the approximate
merges (docs/algorithms.md §2); the report says what each one cost in output similarity.

The op only plans: the fold planner (:mod:`netsculpt.ops.merge_folds`), the neuron planner
(:mod:`netsculpt.ops.merge_neurons`) and the block planner (:mod:`netsculpt.ops.merge_blocks`)
turn what they read from the session's capture into ``fold``, ``merge_neurons`` and
``collapse_blocks`` actions, and the session's backend applies them through ``surgery``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from netsculpt.core.config import (
    OpConfig,
    between,
    fraction,
    integer,
    option,
    positive,
)
from netsculpt.core.errors import InputError, VerificationError
from netsculpt.core.plan import Plan
from netsculpt.graph.capture import run_model
from netsculpt.measure.outputs import output_tensors, relative_diff
from netsculpt.ops import merge_blocks as MB
from netsculpt.ops import merge_folds as MF
from netsculpt.ops import merge_neurons as MN

__all__ = [
    "BlockMergeConfig",
    "CONFIGS",
    "FoldConfig",
    "MergeConfig",
    "NeuronMergeConfig",
    "output_tensors",
    "relative_diff",
    "run",
]


def _names(name: str, v: Any) -> None:
    if v is None:
        return
    if isinstance(v, str) or not all(isinstance(n, str) for n in v) or not v:
        raise InputError(f"{name} must be a non-empty list of block names, got {v!r}")


@dataclass(frozen=True)
class FoldConfig(OpConfig):
    """Which exact folds to apply; ``tol`` is the largest allowed relative output change."""

    bn: bool = option(True, None, "fold a BatchNorm into the Linear / Conv before it")
    bn_before: bool = option(True, None, "fold a BatchNorm into the Linear / Conv after it")
    affine: bool = option(True, None, "compose Linear∘Linear and conv∘pointwise conv")
    norm_gain: bool = option(True, None, "move LayerNorm / RMSNorm gains into the next Linears")
    tol: float = option(1e-5, positive(), "largest relative output change (max|Δ| / max|y|)")


@dataclass(frozen=True)
class NeuronMergeConfig(OpConfig):
    """Merge a neuron into a kept one when their pre-activation maps have cosine
    ``>= 1 - threshold`` (the activation after them must be ReLU / LeakyReLU)."""

    threshold: float = option(
        0.01, fraction(lo_closed=True), "cosine distance in [0, 1) under which neurons merge"
    )


@dataclass(frozen=True)
class BlockMergeConfig(OpConfig):
    """LaCo layer collapse: ``span`` adjacent blocks become one when the model's output keeps
    cosine similarity ``> threshold`` to the original on the calibration data. ``names``:
    only these blocks may be collapsed (``None``: every run of identical residual blocks)."""

    threshold: float = option(
        0.9, between(-1, 1), "output cosine similarity in [-1, 1] a collapse must keep (>)"
    )
    span: int = option(2, integer(2), "adjacent blocks merged into one (≥ 2)")
    max_removed: int | None = option(None, integer(0), "most blocks removed in all")
    names: tuple[str, ...] | None = option(None, _names, "only these blocks may collapse")


def _stage(cls: type) -> Any:
    def check(name: str, v: Any) -> None:
        if v is not None and not isinstance(v, cls):
            raise InputError(f"{name} must be a {cls.__name__} or None, got {v!r}")

    return check


@dataclass(frozen=True)
class MergeConfig(OpConfig):
    """Everything ``merge`` does; ``None`` switches a stage off."""

    folds: FoldConfig | None = option(
        FoldConfig, _stage(FoldConfig), "exact folds (None: off)", factory=True
    )
    neurons: NeuronMergeConfig | None = option(
        None, _stage(NeuronMergeConfig), "near-duplicate neurons (None: off)"
    )
    blocks: BlockMergeConfig | None = option(
        None, _stage(BlockMergeConfig), "LaCo block collapse (None: off)"
    )
    ignore: Any = option((), None, "modules to leave alone: names, globs, modules, filter_fn")
    latency: bool = option(False, None, "also measure CPU latency before and after")
    max_batches: int = option(8, integer(1), "calibration batches read (block collapse)")
    batch_size: int | None = option(None, integer(1), "batch size when data is a Dataset")
    seed: int = option(0, integer(0), "seed of every random choice")


CONFIGS = (MergeConfig,)


def prepare(cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """The keyword forms of ``ns.merge``: ``folds`` / ``neurons`` as booleans, ``blocks`` as a
    boolean or a list of block names, one ``threshold`` for the stage switched on (a cosine
    distance for neurons, an output similarity for blocks), ``ignore`` as a tuple."""
    kw = dict(overrides)
    threshold = kw.pop("threshold", None)
    names = _block_names(kw.get("blocks"))
    neurons_on = kw.get("neurons") is True
    blocks_on = kw.get("blocks") is True or bool(names)
    if threshold is not None:
        if neurons_on and blocks_on:
            raise InputError(
                "merge: threshold means a cosine distance for neurons and a similarity for "
                "blocks; pass config=MergeConfig(neurons=..., blocks=...) to set both"
            )
        if not neurons_on and not blocks_on:
            raise InputError(
                "merge: threshold= applies with neurons=True (a cosine distance) or blocks= "
                "(an output similarity); with config= set it on NeuronMergeConfig / "
                "BlockMergeConfig"
            )
    extra = {} if threshold is None else {"threshold": threshold}
    if "folds" in kw:
        kw["folds"] = _as_stage(kw["folds"], FoldConfig, "folds", {})
    if "neurons" in kw:
        kw["neurons"] = _as_stage(
            kw["neurons"], NeuronMergeConfig, "neurons", extra if neurons_on else {}
        )
    if "blocks" in kw:
        extra = extra if blocks_on else {}
        if names:
            extra = {**extra, "names": names}
            kw["blocks"] = True
        kw["blocks"] = _as_stage(kw["blocks"], BlockMergeConfig, "blocks", extra)
    if isinstance(kw.get("ignore"), list):
        kw["ignore"] = tuple(kw["ignore"])
    return kw


def _block_names(v: Any) -> tuple[str, ...]:
    """``blocks=`` as a list of block names (a tuple; empty for a boolean or a config)."""
    if isinstance(v, str):
        return (v,)
    if isinstance(v, (list, tuple)):
        return tuple(v)
    return ()


def _as_stage(v: Any, cls: type, name: str, extra: dict) -> Any:
    if v is None or v is False or (isinstance(v, (list, tuple)) and not v):
        return None
    try:
        if v is True:
            return cls(**extra)
        if isinstance(v, dict):
            return cls(**{**v, **extra})
        if isinstance(v, cls):
            return v.replace(**extra) if extra else v
    except InputError as e:
        raise InputError(f"merge: {name}.{e}") from None
    except TypeError as e:  # a dict with a key the config does not have
        raise InputError(f"merge: {name}: {e}") from None
    raise InputError(f"merge: {name}= takes True / False or a {cls.__name__}, got {v!r}")


def run(session: Any, cfg: MergeConfig) -> Any:
    """Merge layers of ``model`` in place and return a ``Report`` (its ``plan`` replays with
    ``ns.apply``).

    By default only exact folds run (outputs preserved to 1e-5; a failed check restores the
    model and raises ``VerificationError``). ``neurons=True`` merges near-duplicate neurons
    (``threshold``: cosine distance, default 0.01). ``blocks=True`` collapses similar adjacent
    blocks (``threshold``: the output cosine similarity to keep, default 0.9; ``data``:
    calibration batches, default the example inputs); ``blocks=[names]`` restricts the
    collapse to those blocks. ``ignore``: modules that no fold or merge touches (names, globs,
    modules or a ``filter_fn(module, name)``). ``config=MergeConfig(...)`` sets every stage.

    >>> import torch, netsculpt as ns
    >>> from torch import nn
    >>> m = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).eval()
    >>> report = ns.merge(m, torch.randn(4, 8))
    >>> [type(x).__name__ for x in m], [a.kind for a in report.plan.actions]
    (['Identity', 'Identity', 'Linear'], ['fold', 'fold'])
    """
    t0 = time.perf_counter()
    model = session.model
    before = _snapshot(session, cfg.latency)
    plan = Plan("merge", [], cfg.to_dict())
    details: dict[str, Any] = {}
    if model.training:
        session.notes.append(
            "folds are exact in eval mode; BatchNorm statistics are frozen into weights"
        )
    if cfg.folds is not None:
        details["folds"] = _folds(session, cfg.folds, plan)
    if cfg.neurons is not None:
        details["neurons"] = _neurons(session, cfg.neurons, plan)
    if cfg.blocks is not None:
        actions, details["blocks"] = MB.collapse(session, cfg.blocks)
        plan.actions.extend(actions)
        session.notes.extend(details["blocks"].pop("notes", []))
    after = _snapshot(session, cfg.latency)
    details["seconds"] = round(time.perf_counter() - t0, 3)
    return session.report("merge", {}, plan, before, after, details)


def _snapshot(session: Any, latency: bool) -> Any:
    from netsculpt.measure import latency_ms, saved_size_bytes

    snap = session.snapshot()
    snap.size_bytes = saved_size_bytes(session.model)
    if latency:
        snap.latency_ms = latency_ms(session.model, session.example_inputs)["median"]
    return snap


def _outputs(session: Any) -> list:
    return output_tensors(run_model(session.model, session.example_inputs))


def _folds(session: Any, cfg: FoldConfig, plan: Plan) -> dict:
    """The exact folds pass by pass. Each pass that finds folds applies them and re-reads the
    capture (so chains fold too); each applied pass is verified, and a failed check raises
    ``VerificationError`` (the verb restores the model)."""
    ref = _outputs(session)
    done, notes, diffs = [], [], {}
    passes = [
        ("bn_after", cfg.bn, lambda m, c, i: (MF.plan_bn_after(m, c, i), [])),
        ("bn_before", cfg.bn_before, MF.plan_bn_before),
        ("affine", cfg.affine, MF.plan_affine),
        ("norm_gain", cfg.norm_gain, MF.plan_norm_gain),
    ]
    for name, enabled, find in passes:
        if not enabled:
            continue
        for _ in range(64):  # the affine pass repeats until chains are collapsed
            folds, why = find(session.model, session.captured, session.ignore)
            notes.extend(n for n in why if n not in notes)
            if not folds:
                break
            applied = session.apply(Plan("merge", [f.action() for f in folds]))
            diff = relative_diff(ref, _outputs(session))
            diffs[name] = max(diffs.get(name, 0.0), diff)
            if not diff <= cfg.tol:
                raise VerificationError(
                    f"merge: {name} fold of {folds[0].modules} and {len(folds) - 1} more "
                    f"changed the output by {diff:.2e} relative (> {cfg.tol:g}); model restored"
                )
            plan.extend(applied)
            done.extend(f.as_dict() for f in folds)
            if name != "affine":
                break
    session.notes.extend(notes)
    return {"folds": done, "max_rel_diff": diffs}


def _neurons(session: Any, cfg: NeuronMergeConfig, plan: Plan) -> dict:
    ref = _outputs(session)
    actions, layers = MN.plan(session.model, session.graph, cfg.threshold, session.ignore)
    if actions:
        plan.extend(session.apply(Plan("merge", actions)))
    diff = relative_diff(ref, _outputs(session))
    removed = sum(len(a.args["merged"]) for a in actions)
    return {"layers": layers, "removed": removed, "max_rel_diff": diff}
