"""The search's two quality readings: the proxy on the calibration batches (which proposals are
compared by) and the metric on the held-out batches (what ``max_drop`` is checked against).

The proxy is the mean ``KL(p_original || p_candidate)`` of the outputs (relative MSE for a single
regression output, :func:`netsculpt.importance.blocks.output_divergence`), with every BatchNorm's
statistics re-estimated on the calibration batches first where the model has any (EagleEye:
ranks edits the way they rank after fine-tuning).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from netsculpt.calibration.batches import Batch, first_tensor, run
from netsculpt.calibration.bn import adapted_bn, batchnorms
from netsculpt.importance.blocks import output_divergence
from netsculpt.measure.evaluate import task_loss
from netsculpt.utils import eval_mode


def split(batches: list[Batch], calib: int) -> tuple[list[Batch], list[Batch], str | None]:
    """``(calibration, held-out, note)``: the first ``calib`` batches and the rest; with too few
    batches for both, a proportional split, or one batch used for both (with a note)."""
    if len(batches) == 1:
        return batches, batches, "held-out = calibration data (the data gave one batch)"
    if len(batches) > calib:
        return batches[:calib], batches[calib:], None
    k = max(1, len(batches) // 2)
    note = f"the data gave {len(batches)} batches: {k} for calibration, the rest held out"
    return batches[:k], batches[k:], note


@torch.no_grad()
def outputs(model: nn.Module, batches: list[Batch]) -> list[torch.Tensor]:
    with eval_mode(model):
        return [first_tensor(run(model, b.inputs)).detach() for b in batches]


def divergence(refs: list[torch.Tensor], outs: list[torch.Tensor]) -> float:
    """Sample-weighted mean :func:`output_divergence` over batches."""
    total = n = 0.0
    for r, o in zip(refs, outs):
        w = float(r.shape[0]) if r.dim() else 1.0
        total += w * output_divergence(r, o)
        n += w
    return total / max(n, 1.0)


def proxy(model: nn.Module, batches: list[Batch], refs: list[torch.Tensor]) -> float:
    """KL of ``model``'s outputs to ``refs`` on ``batches``, BatchNorms re-estimated on them."""
    if batchnorms(model):
        with adapted_bn(model, batches):
            return divergence(refs, outputs(model, batches))
    return divergence(refs, outputs(model, batches))


def metric_kind(requested: str, batches: list[Batch]) -> str:
    """``auto``: accuracy when the held-out batches carry integer labels, else kl."""
    if requested != "auto":
        return requested
    t = batches[0].target
    labelled = isinstance(t, torch.Tensor) and not t.is_floating_point()
    return "accuracy" if labelled else "kl"


@torch.no_grad()
def held_out(model: nn.Module, batches: list[Batch], refs: list[torch.Tensor], kind: str) -> float:
    """The held-out metric: accuracy (higher is better), or mean loss / KL (lower is better)."""
    if kind == "kl":
        return divergence(refs, outputs(model, batches))
    loss_sum = correct = count = 0.0
    with eval_mode(model):
        for b in batches:
            loss, n, c = task_loss(run(model, b.inputs), b.inputs, b.target, "classification")
            loss_sum, count, correct = loss_sum + float(loss) * n, count + n, correct + c
    if not count:
        return float("nan")
    return correct / count if kind == "accuracy" else loss_sum / count


def drop(kind: str, base: float, now: float) -> float:
    """How much worse ``now`` is than ``base`` (positive: worse)."""
    return base - now if kind == "accuracy" else now - base


def needs_labels(kind: str, batches: list[Batch]) -> str | None:
    """Why ``kind`` cannot be measured on ``batches`` (None: it can)."""
    if kind in ("accuracy", "loss") and batches[0].target is None:
        return f"metric={kind!r} needs labelled data ((x, y) batches); use metric='kl'"
    return None


def describe(kind: str, value: float) -> str:
    return f"{kind} {value:.4f}" if kind != "accuracy" else f"accuracy {value:.2%}"


def as_pairs(batches: list[Batch]) -> list[tuple[Any, Any]]:
    return [(b.inputs, b.target) for b in batches]
