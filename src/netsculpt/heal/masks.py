"""Pruning masks while healing: zeros stay zero on whole, DDP-wrapped and FSDP2-sharded
parameters.

The masks are taken from ``model._netsculpt_masks`` before training (:class:`HealMasks`),
each with its parameter. Preparing the model for several processes may replace parameters:
``accelerate`` with FSDP2 (``fully_shard``) turns each into a ``DTensor`` holding this
process's shard. :meth:`HealMasks.bind` therefore looks every mask's parameter up again after
preparation (the same object, or the parameter of the same name) and, for a DTensor, shards
the mask the same way (``distribute_tensor`` with the parameter's mesh and placements, cut
locally, no communication), so re-applying it after each optimizer step multiplies each shard
by its own part of the mask. FSDP1's flat parameters do not keep their shapes; a mask that no
longer fits its parameter is refused in one line.

>>> import torch
>>> from torch import nn
>>> lin = nn.Linear(2, 2)
>>> lin._netsculpt_masks = {"weight": torch.tensor([[True, False], [False, True]])}
>>> masks = HealMasks(lin)
>>> masks.bind(lin); masks.apply(); int((lin.weight == 0).sum())
2
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor`` (FSDP2's sharded parameter)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed
        return False
    return isinstance(t, DTensor)


def fully_sharded(model: nn.Module) -> bool:
    """Whether ``model`` was sharded with FSDP2's ``fully_shard`` (its parameters are DTensors):
    it trains as it is, without another wrapper."""
    return any(is_dtensor(p) for p in model.parameters())


class HealMasks:
    """The masks of ``model`` (``(name, parameter, bool mask)``), bound to the parameters that
    train (:meth:`bind`) and re-applied after every step (:meth:`apply`)."""

    def __init__(self, model: nn.Module) -> None:
        from netsculpt.surgery.masks import sync_masks

        params = dict(model.named_parameters())
        self.entries = [(n, params[n], m) for n, m in sync_masks(model).items() if n in params]
        self.bound: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def bind(self, model: nn.Module) -> None:
        """Pair each mask with the parameter of ``model`` that trains now (after ``prepare``),
        sharded as that parameter is."""
        now = dict(model.named_parameters())
        ids = {id(p) for p in now.values()}
        bound = []
        for name, p, mask in self.entries:
            if id(p) not in ids:  # replaced by the preparation: the parameter of that name
                p = now.get(name)
                if p is None:
                    raise InputError(f"heal: the masked parameter {name} is gone once the "
                                     "model is prepared for training")  # fmt: skip
            bound.append((p, local_mask(name, p, mask)))
        self.bound = bound

    @torch.no_grad()
    def apply(self) -> None:
        """Multiply every bound parameter (or its shard) by its mask."""
        for p, m in self.bound:
            p.mul_(m if m.dtype == p.dtype else m.to(p.dtype))


def local_mask(name: str, p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask`` in the form ``p`` has: a DTensor sharded like ``p``, or a tensor on its device."""
    mask = mask.to(dtype=p.dtype)
    if is_dtensor(p):
        from torch.distributed.tensor import distribute_tensor

        if tuple(p.shape) != tuple(mask.shape):
            raise InputError(f"heal: parameter {name} is {tuple(p.shape)}, its pruning mask "
                             f"{tuple(mask.shape)}")  # fmt: skip
        device = p.device_mesh.device_type
        return distribute_tensor(mask.to(device), p.device_mesh, p.placements, src_data_rank=None)
    if p.shape != mask.shape:
        raise InputError(
            f"heal: parameter {name} is {tuple(p.shape)}, its pruning mask {tuple(mask.shape)}; "
            "masks follow whole or DTensor-sharded (FSDP2) parameters: with FSDP use "
            "fsdp_version 2"
        )
    return mask.to(p.device)
