"""Reading batches and running a model on them — one place for every op that takes data.

Importance scores, block scores (cut / grow / merge), evaluation and healing all read data the
same way. A batch is ``(x, y)``, a bare ``x``, or a mapping of keyword arguments (Hugging Face
style, where ``labels`` is the target); ``x`` may itself be a tensor, a tuple of positional
inputs or a mapping of keyword inputs. Data is a ``Dataset`` (wrapped in a ``DataLoader``), a
``DataLoader`` or any iterable of batches.

>>> import torch
>>> [(tuple(x.shape), y) for x, y in iter_batches([torch.zeros(2, 3)])]
[((2, 3), None)]
>>> split_batch({"input_ids": torch.zeros(1, 4), "labels": 7})[1]
7
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from netsculpt.errors import InputError
from netsculpt.utils import normalize_inputs


def to_device(obj: Any, device: torch.device | str) -> Any:
    """Move every tensor inside ``obj`` (mappings, tuples, lists) to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        moved = {k: to_device(v, device) for k, v in obj.items()}
        return type(obj)(moved) if isinstance(obj, dict) else moved
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, target)`` from one batch; ``target`` is ``None`` when the batch has none."""
    if isinstance(batch, Mapping):
        return {k: v for k, v in batch.items() if k != "labels"}, batch.get("labels")
    if isinstance(batch, (list, tuple)):
        if len(batch) == 2:
            return batch[0], batch[1]
        if len(batch) == 1:
            return batch[0], None
        raise InputError(f"batch: expected (x, y), x or a dict, got a sequence of {len(batch)}")
    return batch, None


def loader(data: Any, batch_size: int = 64) -> Iterable:
    """An iterable of batches: a ``Dataset`` is wrapped in a ``DataLoader`` (in order)."""
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    if data is None:
        raise InputError(
            "no calibration data: pass data=<Dataset, DataLoader or iterable of batches>"
        )
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        return DataLoader(data, batch_size=batch_size)
    if isinstance(data, (torch.Tensor, Mapping)):
        return [data]  # one batch given directly
    return data


def iter_batches(
    data: Any, max_batches: int | None = None, batch_size: int = 64
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(inputs, target_or_None)`` for at most ``max_batches`` batches of ``data``."""
    for i, batch in enumerate(loader(data, batch_size)):
        if max_batches is not None and i >= max_batches:
            return
        yield split_batch(batch)


def run(model: nn.Module, inputs: Any) -> Any:
    """Call ``model`` on a tensor, a tuple of positional inputs or a mapping of keyword inputs
    (``use_cache=False`` added for a Hugging Face model)."""
    args, kwargs = normalize_inputs(inputs, model)
    return model(*args, **kwargs)


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The main tensor of an output: the tensor itself, ``.logits``, or the first tensor of a
    tuple / list / mapping (``last_hidden_state`` for a Hugging Face encoder)."""
    if isinstance(obj, torch.Tensor):
        return obj
    logits = obj.get("logits") if isinstance(obj, Mapping) else getattr(obj, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    vals = (
        obj.values() if isinstance(obj, Mapping) else obj if isinstance(obj, (list, tuple)) else ()
    )
    for v in vals:
        if isinstance(v, torch.Tensor):
            return v
    return None


def logits_of(output: Any) -> torch.Tensor:
    """:func:`first_tensor`, or a clear error when the output holds no tensor."""
    t = first_tensor(output)
    if t is None:
        raise InputError(f"model output: cannot find logits in a {type(output).__name__}")
    return t
