"""SparseGPT's weight reconstruction (Frantar & Alistarh 2023): prune a Linear's weight by the
optimal-brain-surgeon rule and update the kept weights to make up for what was removed.

For ``W`` (out × in) and the Hessian ``H = 2 X Xᵀ / n`` of the layer's inputs: damp ``H`` by
``percdamp`` × its mean diagonal, take the upper Cholesky factor ``U`` of ``H⁻¹`` and walk the
columns in blocks of ``blocksize``. In a block, the mask is chosen from ``w² / U_jj²`` (the
lowest ``sparsity`` fraction of the block, over all rows; or, for an N:M pattern, the lowest
M−N of every M columns in each row); column by column the pruned entries' error
``e = w_j / U_jj`` is taken out of the block's later columns (``W[:, j+1:] -= e · U[j, j+1:]``);
after the block the accumulated error goes to every later column at once (the lazy batch
update). This is the only place a weight's kept entries change: the op plans, this writes.

>>> torch.manual_seed(0); w = torch.randn(4, 8); x = torch.randn(64, 8)
>>> new, keep = obs_prune(w, 2 * x.t() @ x / 64, pattern=(2, 4))
>>> int(keep.sum()), bool((new[~keep] == 0).all())
(16, True)
"""

from __future__ import annotations

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.surgery.masks import attach_masks, masks_of

PERCDAMP = 0.01
BLOCKSIZE = 128


def _inverse_factor(h: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Upper Cholesky factor of the damped ``H⁻¹``."""
    h = h.clone()
    h += percdamp * torch.mean(torch.diag(h)) * torch.eye(h.shape[0], dtype=h.dtype)
    try:
        low = torch.linalg.cholesky(h)
    except RuntimeError:
        raise InputError(
            "SparseGPT: the damped Hessian is not positive definite (too little calibration "
            "data for this layer?); pass more data or a larger percdamp"
        ) from None
    return torch.linalg.cholesky(torch.cholesky_inverse(low), upper=True)


def obs_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    *,
    sparsity: float | None = None,
    pattern: tuple[int, int] | None = None,
    blocksize: int = BLOCKSIZE,
    percdamp: float = PERCDAMP,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(new weight, keep mask)`` for ``weight`` (out × in) pruned to ``sparsity`` or to the
    N:M ``pattern`` (keep N of every M inputs), with the kept weights reconstructed. Computes
    in fp32; the new weight has ``weight``'s dtype."""
    if (sparsity is None) == (pattern is None):
        raise InputError("obs_prune: give sparsity= or pattern=, not both")
    w = weight.detach().float().clone()
    cols = w.shape[1]
    if hessian.shape != (cols, cols):
        raise InputError(f"obs_prune: Hessian {tuple(hessian.shape)} for a weight {tuple(w.shape)}")
    h = hessian.detach().float().clone()
    dead = torch.diag(h) == 0  # inputs that are always zero: their weights do nothing
    h[dead, dead] = 1
    w[:, dead] = 0
    u = _inverse_factor(h, percdamp)
    pruned = torch.zeros_like(w, dtype=torch.bool)
    n_keep, m = pattern if pattern is not None else (0, 0)
    if pattern is not None and cols % m:
        raise InputError(f"obs_prune: input width {cols} is not a multiple of {m}")
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1 = w[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        d1 = torch.diag(u1)
        mask1 = torch.zeros_like(w1, dtype=torch.bool)  # True: pruned
        if pattern is None:
            score = w1.square() / d1.square().view(1, -1)
            k = int(score.numel() * sparsity)
            if k:
                mask1.view(-1)[score.flatten().topk(k, largest=False).indices] = True
        for i in range(i2 - i1):
            col = w1[:, i]
            if pattern is not None and i % m == 0:
                score = w1[:, i : i + m].square() / d1[i : i + m].square().view(1, -1)
                idx = score.topk(m - n_keep, dim=1, largest=False).indices
                mask1.scatter_(1, i + idx, True)
            q = col.clone()
            q[mask1[:, i]] = 0
            q1[:, i] = q
            e = (col - q) / u1[i, i]
            w1[:, i:] -= e.unsqueeze(1) @ u1[i, i:].unsqueeze(0)
            err1[:, i] = e
        w[:, i1:i2] = q1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
        pruned[:, i1:i2] = mask1
    if not torch.isfinite(w).all():
        raise InputError("SparseGPT: the reconstruction diverged (non-finite weights)")
    return w.to(weight.dtype), ~pruned


def reconstruct(model: nn.Module, edits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Write each ``{parameter name: (new weight, keep mask)}`` into ``model`` (new tensors,
    so a checkpoint of the old ones restores them) and keep the masks, combined with earlier
    ones, so fine-tuning cannot revive the zeros; returns the zeros each edit added."""
    params = dict(model.named_parameters(remove_duplicate=False))
    store = masks_of(model)
    zeroed: dict[str, int] = {}
    with torch.no_grad():
        for name, (new, keep) in edits.items():
            p = params[name]
            old = store.get(name)
            keep = keep.bool() if old is None else keep.bool() & old
            zeroed[name] = int((p != 0).logical_and(~keep).sum())
            p.data = (new * keep.to(new.dtype)).to(p.device, p.dtype)
            store[name] = keep
    attach_masks(model)
    return zeroed
