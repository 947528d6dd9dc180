"""Turn what the user passed as data into a training iterable and an optional validation one."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, random_split

from netsculpt.core.errors import InputError


def _is_map_dataset(data: Any) -> bool:
    return isinstance(data, Dataset) and not isinstance(data, IterableDataset)


def _loader(ds: Dataset, batch_size: int, seed: int | None, collate: Any = None) -> DataLoader:
    """A loader that shuffles with its own seeded generator (``seed=None``: no shuffling)."""
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        ds, batch_size=batch_size, shuffle=seed is not None, generator=gen, collate_fn=collate
    )


def _split(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    n = len(ds)  # type: ignore[arg-type]
    n_val = int(math.ceil(n * fraction))
    if n < 2 or n_val < 1 or n_val >= n:
        return ds, None
    train, val = random_split(ds, [n - n_val, n_val], generator=torch.Generator().manual_seed(seed))
    return train, val


def make_loaders(
    data: Any,
    *,
    val_data: Any = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    batch_size: int = 32,
) -> tuple[Iterable, Iterable | None]:
    """``(train, val)``: holds out ``val_fraction`` of ``data`` when no ``val_data`` is given.

    A ``Dataset`` or a ``DataLoader`` over one is split by a seeded ``random_split`` (the loader's
    ``batch_size`` and ``collate_fn`` are kept); a list of batches loses its last batches; an
    iterator is read into a list first; any other iterable is used as is, without a split.

    Example::

        train, val = make_loaders(TensorDataset(x, y), val_fraction=0.1)
    """
    if data is None:
        raise InputError("heal: data is None; pass a DataLoader, a Dataset or a list of batches")
    if not 0 <= val_fraction < 1:
        raise InputError(f"heal: val_fraction={val_fraction} must be in [0, 1)")
    split = val_data is None and val_fraction > 0
    val = _as_val(val_data, batch_size)
    if isinstance(data, DataLoader) and _is_map_dataset(data.dataset) and split:
        bs = data.batch_size or batch_size
        train_ds, val_ds = _split(data.dataset, val_fraction, seed)
        val = None if val_ds is None else _loader(val_ds, bs, None, data.collate_fn)
        return _loader(train_ds, bs, seed, data.collate_fn), val
    if isinstance(data, DataLoader):
        return data, val
    if _is_map_dataset(data):
        train_ds, val_ds = _split(data, val_fraction, seed) if split else (data, None)
        val = val if val_ds is None else _loader(val_ds, batch_size, None)
        return _loader(train_ds, batch_size, seed), val
    if isinstance(data, Iterator):
        data = list(data)  # must be re-iterable for several epochs
    if isinstance(data, (list, tuple)):
        if not data:
            raise InputError("heal: data has no batches")
        n_val = int(math.ceil(len(data) * val_fraction)) if split else 0
        if n_val and len(data) > n_val:
            return list(data[:-n_val]), list(data[-n_val:])
        return data, val
    if not isinstance(data, Iterable):
        raise InputError(f"heal: data of type {type(data).__name__} is not iterable")
    return data, val


def _as_val(val_data: Any, batch_size: int) -> Iterable | None:
    if val_data is None:
        return None
    if _is_map_dataset(val_data):
        return _loader(val_data, batch_size, None)
    if isinstance(val_data, Iterator):
        return list(val_data)
    return val_data
