"""Calibration: run a model on data with hooks that collect module inputs, outputs and output
gradients, or temporarily replace module outputs (ablation)."""

from netsculpt.calibration.hooks import (
    Batch,
    Record,
    as_batches,
    collect,
    first_tensor,
    outputs,
    replaced,
    run,
    span_replaced,
    task_loss,
)

__all__ = [
    "Batch",
    "Record",
    "as_batches",
    "collect",
    "first_tensor",
    "outputs",
    "replaced",
    "run",
    "span_replaced",
    "task_loss",
]
