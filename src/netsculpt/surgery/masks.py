"""Pruning masks that survive fine-tuning: zeros stay zero until the masks are made permanent.

Masks live in ``model._netsculpt_masks`` ({parameter name: bool tensor}). A forward pre-hook on
each masked module re-applies its masks before every forward, so any training loop — ours or the
user's — computes with the masked weights; ``heal`` also re-applies them after each step.
Surgery slices masks together with their parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from netsculpt.core.utils import masks_suspended


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    masks = getattr(model, "_netsculpt_masks", None)
    if masks is None:
        masks = {}
        model._netsculpt_masks = masks
    return masks


def sync_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Drop masks whose parameter is gone or was reshaped by a later edit (a cut block, a fold);
    returns the masks that still apply."""
    masks = masks_of(model)
    params = dict(model.named_parameters(remove_duplicate=False))
    for name in list(masks):
        p = params.get(name)
        if p is None or p.shape != masks[name].shape:
            del masks[name]
    return masks


def apply_masks(model: nn.Module) -> None:
    """Multiply every masked parameter by its mask (in place)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    with torch.no_grad():
        for name, mask in masks_of(model).items():
            p = params.get(name)
            if p is not None and p.device.type != "meta" and p.shape == mask.shape:
                p.mul_(mask.to(p.device, p.dtype))


def attach_masks(model: nn.Module) -> None:
    """Register the forward pre-hooks that keep masked weights at zero (idempotent)."""
    masks = masks_of(model)
    handles = getattr(model, "_netsculpt_mask_hooks", None)
    if handles is None:
        handles = {}
        model._netsculpt_mask_hooks = handles
    modules = dict(model.named_modules())
    for name in masks:
        path, _, attr = name.rpartition(".")
        mod = modules.get(path)
        if mod is None or path in handles:
            continue
        handles[path] = mod.register_forward_pre_hook(_hook(model, path))


def _hook(model: nn.Module, path: str):
    prefix = f"{path}." if path else ""
    seen: dict[tuple, int] = {}  # (attribute, parameter) -> its version when last masked

    def fn(mod, args):
        if masks_suspended.depth:
            return
        masks = getattr(model, "_netsculpt_masks", {})
        with torch.no_grad():
            for attr, p in mod._parameters.items():
                mask = masks.get(prefix + attr)
                usable = p is not None and mask is not None and p.shape == mask.shape
                # re-mask only after the weight changed (an optimizer step): inference is free
                key = (attr, id(p))
                if usable and p.device.type != "meta" and seen.get(key) != p._version:
                    p.mul_(mask.to(p.device, p.dtype))
                    seen[key] = p._version

    return fn


def make_permanent(model: nn.Module) -> int:
    """Apply the masks one last time and drop them (and their hooks); returns how many.

    >>> m = nn.Linear(2, 2); m._netsculpt_masks = {"weight": torch.eye(2, dtype=torch.bool)}
    >>> make_permanent(m)
    1
    """
    apply_masks(model)
    n = len(masks_of(model))
    for h in getattr(model, "_netsculpt_mask_hooks", {}).values():
        h.remove()
    model._netsculpt_mask_hooks = {}
    model._netsculpt_masks = {}
    return n


def zero_weights(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, int]:
    """Zero the weights outside each keep-mask ``{parameter name: bool tensor}`` and keep the
    masks (combined with earlier ones) so fine-tuning cannot revive them; returns the number of
    weights each mask newly zeroed. Writes new tensors (no in-place edit), so a checkpoint of
    the old ones restores them."""
    params = dict(model.named_parameters(remove_duplicate=False))
    store = masks_of(model)
    zeroed: dict[str, int] = {}
    with torch.no_grad():
        for name, mask in masks.items():
            w = params[name]
            old = store.get(name)
            mask = mask.bool() if old is None else (mask.bool() & old)
            zeroed[name] = int((w != 0).logical_and(~mask).sum())
            w.data = w.data * mask.to(w.device, w.dtype)
            store[name] = mask
    attach_masks(model)
    return zeroed


def add_to_bias(model: nn.Module, folds: list[tuple[str, torch.Tensor]]) -> None:
    """Add ``delta`` to the bias of the module at each path (a constant input folded in)."""
    mods = dict(model.named_modules())
    with torch.no_grad():
        for path, delta in folds:
            b = mods[path].bias
            b.data = b.data + delta.to(b.device, b.dtype)
