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
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.utils import normalize_inputs

DEFAULT_BATCH_SIZE = 64  # a Dataset is read in batches of this size, everywhere


@dataclass
class Batch:
    """One calibration batch: model inputs (tensor / tuple / dict) and an optional target."""

    inputs: Any
    target: Any = None


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


def loader(data: Any, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterable:
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
    data: Any, max_batches: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(inputs, target_or_None)`` for at most ``max_batches`` batches of ``data``."""
    for i, batch in enumerate(loader(data, batch_size)):
        if max_batches is not None and i >= max_batches:
            return
        if isinstance(batch, Batch):
            yield batch.inputs, batch.target
        else:
            yield split_batch(batch)


def read_batches(
    data: Any, max_batches: int | None = 8, batch_size: int = DEFAULT_BATCH_SIZE
) -> list[Batch]:
    """The one batch rule: at most ``max_batches`` batches of ``data`` (a Dataset is read in
    batches of ``batch_size``), materialised once so every reader sees the same batches.
    Empty data is an error."""
    if max_batches is not None and (isinstance(max_batches, bool) or max_batches < 1):
        raise InputError(f"max_batches must be a positive integer, got {max_batches!r}")
    out = [Batch(x, y) for x, y in iter_batches(data, max_batches, batch_size)]
    if not out:
        raise InputError("calibration data is empty: it gave no batch")
    return out


def _named_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return {prefix or "input": obj}
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_named_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(_named_tensors(v, f"{prefix}[{i}]" if prefix else f"input[{i}]"))
    return out


def _feature_dim(t: torch.Tensor) -> int | None:
    """The dim whose size a model's weights fix: features / channels (dim 1), or the last dim
    of a (N, T, F) sequence; None for token ids and scalars."""
    if not t.is_floating_point() or t.dim() < 2:
        return None
    return t.dim() - 1 if t.dim() == 3 else 1


def check_batch(inputs: Any, example_inputs: Any, index: int = 0) -> None:
    """A calibration batch must look like the example inputs: for every input they share, the
    same number of dims, the same kind of dtype (floating / integer) and the same feature or
    channel size. Raises a one-line InputError naming the batch, the input and both shapes."""
    if example_inputs is None:
        return
    want, got = _named_tensors(example_inputs), _named_tensors(inputs)
    if isinstance(example_inputs, torch.Tensor) or not isinstance(inputs, Mapping):
        want, got = dict(list(want.items())[:1]), dict(list(got.items())[:1])
    for name in want.keys() & got.keys() or list(zip(want, got))[:1]:
        w, g = (want[name], got[name]) if isinstance(name, str) else (want[name[0]], got[name[1]])
        label = name if isinstance(name, str) else name[0]
        fd = _feature_dim(w)
        bad = w.dim() != g.dim() or w.is_floating_point() != g.is_floating_point()
        bad = bad or (fd is not None and w.shape[fd] != g.shape[fd])
        if bad:
            raise InputError(
                f"data batch {index}: {label} has shape {tuple(g.shape)} and dtype {g.dtype}; "
                f"the example inputs have {tuple(w.shape)} {w.dtype} (batch size may differ)"
            )


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


def probe_batch(model: nn.Module, data: Any, where: str) -> None:
    """Run ``model`` once on the first batch of ``data`` (no grad): a batch the model cannot
    take is a one-line InputError that names the batch, its input shapes and the model's
    complaint, instead of a raw ``mat1 and mat2`` error deep inside training."""
    first = next(iter(data), None)
    if first is None:
        raise InputError(f"{where}: the data is empty (no batch)")
    x, _ = (first.inputs, first.target) if isinstance(first, Batch) else split_batch(first)
    try:
        with torch.no_grad():
            run(model, x)
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        shapes = {k: tuple(t.shape) for k, t in _named_tensors(x).items()}
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(
            f"{where}: data batch 0 ({', '.join(f'{k} {v}' for k, v in shapes.items())}) does "
            f"not fit the model: {msg}"
        ) from None
