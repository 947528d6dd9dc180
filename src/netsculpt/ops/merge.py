"""合并 merge: fold layers into one, merge near-duplicate neurons, collapse similar blocks.

``ns.merge(model, example_inputs)`` applies the exact folds (BatchNorm into the neighbouring
Linear / Conv, Linear∘Linear, pointwise conv∘conv, norm gains into the next Linears), each checked
to 1e-5 relative on the example inputs. ``neurons=True`` and ``blocks=True`` add the approximate
merges (docs/algorithms.md §2); the report says what each one cost in output similarity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from netsculpt.errors import InputError, VerificationError
from netsculpt.graph.capture import capture, run_model
from netsculpt.ops import merge_folds as MF


@dataclass(frozen=True)
class FoldConfig:
    """Which exact folds to apply; ``tol`` is the largest allowed relative output change."""

    bn: bool = True
    bn_before: bool = True
    affine: bool = True
    norm_gain: bool = True
    tol: float = 1e-5


@dataclass(frozen=True)
class NeuronMergeConfig:
    """Merge a neuron into a kept one when their pre-activation maps have cosine
    ``>= 1 - threshold`` (the activation after them must be ReLU / LeakyReLU)."""

    threshold: float = 0.01


@dataclass(frozen=True)
class BlockMergeConfig:
    """LaCo layer collapse: ``span`` adjacent blocks become one when the model's output keeps
    cosine similarity ``> threshold`` to the original on the calibration data."""

    threshold: float = 0.9
    span: int = 2
    max_removed: int | None = None
    calib_batches: int = 8


@dataclass(frozen=True)
class MergeConfig:
    """Everything ``merge`` does; ``None`` switches a stage off."""

    folds: FoldConfig | None = field(default_factory=FoldConfig)
    neurons: NeuronMergeConfig | None = None
    blocks: BlockMergeConfig | None = None


def output_tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor in a model output (tensor, tuple, dict, Hugging Face ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in output_tensors(o)]
    return []


def relative_diff(ref: list[torch.Tensor], out: list[torch.Tensor]) -> float:
    """``max |out - ref| / max |ref|`` over all output tensors (inf if the shapes differ)."""
    if len(ref) != len(out) or any(a.shape != b.shape for a, b in zip(ref, out)):
        return float("inf")
    num = max((float((a.double() - b.double()).abs().max()) for a, b in zip(ref, out)), default=0)
    den = max((float(a.double().abs().max()) for a in ref), default=0)
    return num / max(den, 1e-12)


def _apply(model: nn.Module, folds: list[MF.Fold], undo: list) -> None:
    from netsculpt.surgery.fold import replace_module

    for f in folds:
        for path, new in f.replacements.items():
            undo.append((path, replace_module(model, path, new)))


def _undo(model: nn.Module, undo: list, edits: list) -> None:
    model._netsculpt_edits = edits  # the manifest as it was before the folds
    for path, old in reversed(undo):
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, name, old)
    undo.clear()


def run_folds(model: nn.Module, example_inputs: Any, cfg: FoldConfig) -> dict:
    """Apply the exact folds pass by pass (re-capturing between passes, so chains fold too) and
    verify each pass; on a failed check restore the model and raise ``VerificationError``."""
    ref = output_tensors(run_model(model, example_inputs))
    undo: list = []
    edits = list(getattr(model, "_netsculpt_edits", []))
    done, notes, diffs = [], [], {}
    passes = [
        ("bn_after", cfg.bn, lambda m, c: (MF.plan_bn_after(m, c), [])),
        ("bn_before", cfg.bn_before, MF.plan_bn_before),
        ("affine", cfg.affine, MF.plan_affine),
        ("norm_gain", cfg.norm_gain, MF.plan_norm_gain),
    ]
    cap = None  # re-captured only after an edit: export is the slow part
    try:
        for name, enabled, plan in passes:
            if not enabled:
                continue
            for _ in range(64):  # the affine pass repeats until chains are collapsed
                cap = cap or capture(model, example_inputs)
                folds, why = plan(model, cap)
                notes.extend(n for n in why if n not in notes)
                if not folds:
                    break
                _apply(model, folds, undo)
                cap = None
                diff = relative_diff(ref, output_tensors(run_model(model, example_inputs)))
                diffs[name] = max(diffs.get(name, 0.0), diff)
                if not diff <= cfg.tol:
                    raise VerificationError(
                        f"merge: {name} fold of {folds[0].modules} and {len(folds) - 1} more "
                        f"changed the output by {diff:.2e} relative (> {cfg.tol:g}); model restored"
                    )
                done.extend(f.as_dict() for f in folds)
                if name != "affine":
                    break
    except Exception:
        _undo(model, undo, edits)
        raise
    return {"folds": done, "max_rel_diff": diffs, "notes": notes}


def _snapshot(model: nn.Module, example_inputs: Any, latency: bool):
    from netsculpt.report import Snapshot

    return Snapshot.of(model, example_inputs, latency=latency)


def merge(
    model: nn.Module,
    example_inputs: Any,
    *,
    neurons: bool = False,
    blocks: bool = False,
    threshold: float | None = None,
    data: Any = None,
    folds: bool = True,
    latency: bool = False,
    config: MergeConfig | None = None,
):
    """Merge layers of ``model`` in place and return a ``Report``.

    By default only exact folds run (outputs preserved to 1e-5). ``neurons=True`` merges
    near-duplicate neurons (``threshold``: cosine distance, default 0.01); ``blocks=True``
    collapses similar adjacent blocks (``threshold``: output similarity to keep, default 0.9;
    ``data``: calibration batches, default the example inputs). ``config`` overrides all of them.

    >>> import netsculpt as ns
    >>> m = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).eval()
    >>> report = ns.merge(m, torch.randn(4, 8))
    >>> [type(x).__name__ for x in m]
    ['Identity', 'Identity', 'Linear']
    """
    if config is None:
        if neurons and blocks and threshold is not None:
            raise InputError(
                "merge: threshold means a cosine distance for neurons and a similarity for "
                "blocks; pass config=MergeConfig(neurons=..., blocks=...) to set both"
            )
        kw = {} if threshold is None else {"threshold": float(threshold)}
        config = MergeConfig(
            folds=FoldConfig() if folds else None,
            neurons=NeuronMergeConfig(**kw) if neurons else None,
            blocks=BlockMergeConfig(**kw) if blocks else None,
        )
    _check(config)
    from netsculpt.report import Report

    before = _snapshot(model, example_inputs, latency)
    details: dict[str, Any] = {}
    notes: list[str] = []
    if model.training:
        notes.append("folds are exact in eval mode; BatchNorm statistics are frozen into weights")
    if config.folds is not None:
        res = run_folds(model, example_inputs, config.folds)
        notes.extend(res.pop("notes"))
        details["folds"] = res
    if config.neurons is not None:
        from netsculpt.ops.merge_neurons import merge_neurons

        details["neurons"] = merge_neurons(model, example_inputs, config.neurons)
        notes.extend(details["neurons"].pop("notes", []))
    if config.blocks is not None:
        from netsculpt.ops.merge_blocks import collapse_blocks

        details["blocks"] = collapse_blocks(model, example_inputs, config.blocks, data)
        notes.extend(details["blocks"].pop("notes", []))
    after = _snapshot(model, example_inputs, latency)
    return Report(
        op="merge", config=asdict(config), before=before, after=after, details=details, notes=notes
    )


def _check(config: MergeConfig) -> None:
    if config.folds is not None and not config.folds.tol > 0:
        raise InputError(f"merge: folds.tol must be > 0, got {config.folds.tol}")
    if config.neurons is not None and not 0 <= config.neurons.threshold < 1:
        raise InputError(
            f"merge: neuron threshold is a cosine distance in [0, 1), got {config.neurons.threshold}"
        )
    if config.blocks is not None:
        b = config.blocks
        if not -1 <= b.threshold <= 1:
            raise InputError(f"merge: block threshold is a cosine similarity, got {b.threshold}")
        if b.span < 2:
            raise InputError(
                f"merge: blocks.span must be >= 2 (blocks merged into one), got {b.span}"
            )


def restore(model: nn.Module, backup: nn.Module) -> None:
    """Make ``model`` (the same object) equal to ``backup`` again, a deep copy taken earlier
    (``backup`` is consumed: its modules become the model's)."""
    state = dict(backup.__dict__)
    model.__dict__.clear()
    model.__dict__.update(state)
