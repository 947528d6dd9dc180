"""Sparsity-inducing penalties, added to the training loss before a structured prune
(docs/algorithms.md §7): whole channel groups are driven towards zero, so removing the
smallest ones later costs little.

- ``"group_lasso"``: ``reg · Σ_groups Σ_channels ||W_c||₂``, ``W_c`` every parameter slice of
  the channel across the coupled layers (producer rows, consumer columns, norm scales), the
  groups of the structure graph (:func:`netsculpt.graph.build_graph`);
- ``"bn_l1"``: ``reg · Σ |γ|`` over the BatchNorm scales (network slimming).

>>> import torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> pen = penalty(m, "group_lasso", 0.1, torch.ones(1, 4))
>>> bool(pen() > 0), pen().requires_grad
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from netsculpt.errors import InputError

REGULARIZERS = ("group_lasso", "bn_l1")


def check(regularize: str | None, reg: float, lora: Any) -> None:
    from netsculpt.core.config import non_negative

    if regularize is None:
        return
    if regularize not in REGULARIZERS:
        raise InputError(
            f"heal: regularize={regularize!r} is not one of {', '.join(REGULARIZERS)} (or None)"
        )
    non_negative()("heal: reg", reg)
    if lora:
        raise InputError("heal: regularize= penalises the model's own weights; not with lora=")


def example_of(train: Any) -> Any:
    """Inputs of one training sample (read from a loader's dataset, so that the loader's
    shuffling draws stay those of a run without a penalty)."""
    from torch.utils.data import DataLoader

    from netsculpt.calibration.batches import split_batch

    if isinstance(train, DataLoader) and hasattr(train.dataset, "__getitem__"):
        batch = train.collate_fn([train.dataset[0]])
    else:
        batch = next(iter(train))
    return split_batch(batch)[0]


def penalty(
    model: nn.Module, kind: str, strength: float, example_inputs: Any
) -> Callable[[], torch.Tensor]:
    """A function returning the penalty of ``model``'s weights now (differentiable)."""
    if kind == "bn_l1":
        gammas = [
            m.weight
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
        ]
        if not gammas:
            raise InputError("heal: regularize='bn_l1' needs BatchNorm layers with a scale")
        return lambda: strength * sum(g.abs().sum() for g in gammas)
    from netsculpt.graph import build_graph

    graph = build_graph(model, example_inputs)
    params = dict(model.named_parameters(remove_duplicate=False))
    terms = []
    for g in graph.prunable_groups():
        slices = []
        for m in g.members:
            p = params.get(m.tensor)
            if m.kind != "param" or p is None or not p.requires_grad:
                continue
            pos = torch.as_tensor((m.index_map >= 0).nonzero()[0], device=p.device)
            ch = torch.as_tensor(m.index_map[pos.cpu().numpy()], device=p.device)
            slices.append((p, m.dim, pos, ch))
        if slices:
            terms.append((g.size, slices))
    if not terms:
        raise InputError("heal: regularize='group_lasso' found no prunable channel group")

    def value() -> torch.Tensor:
        total = 0.0
        for size, slices in terms:
            sq = None
            for p, dim, pos, ch in slices:
                rows = p.movedim(dim, 0).index_select(0, pos).pow(2).reshape(len(pos), -1).sum(1)
                add = torch.zeros(size, dtype=rows.dtype, device=rows.device).index_add(0, ch, rows)
                sq = add if sq is None else sq + add
            total = total + (sq + 1e-12).sqrt().sum()
        return strength * total

    return value
