"""Reading calibration data: any iterable of batches, a DataLoader, or a Dataset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from netsculpt.errors import InputError


def iter_batches(data: Any, max_batches: int | None = None) -> Iterator[tuple[Any, Any]]:
    """Yield ``(inputs, target_or_None)`` from a DataLoader, a Dataset or an iterable.

    A batch may be a tensor, a ``(x, y)`` pair, or a dict of keyword inputs (an HF batch; a
    ``labels`` entry is taken as the target).
    """
    if data is None:
        raise InputError("this importance needs calibration data: pass data=<iterable of batches>")
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(
        data, torch.utils.data.IterableDataset
    ):
        data = torch.utils.data.DataLoader(data, batch_size=64, shuffle=False)
    for i, batch in enumerate(data):
        if max_batches is not None and i >= max_batches:
            break
        if isinstance(batch, dict):
            batch = dict(batch)
            yield batch, batch.pop("labels", None)
        elif isinstance(batch, (list, tuple)):
            yield batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            yield batch, None


def forward(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    return model(inputs)


def logits_of(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    if isinstance(out, (tuple, list)):
        return out[0]
    raise InputError(f"cannot find the logits in a model output of type {type(out).__name__}")


def task_loss(out: Any, target: Any) -> torch.Tensor:
    """Cross-entropy to the target, or to the model's own predictions when there is none."""
    logits = logits_of(out)
    if target is None:
        target = logits.detach().argmax(-1)
    if logits.dim() > 2:
        logits = logits.reshape(-1, logits.shape[-1])
        target = target.reshape(-1)
    if target.dtype.is_floating_point:
        return nn.functional.mse_loss(logits, target.reshape(logits.shape))
    return nn.functional.cross_entropy(logits, target)
