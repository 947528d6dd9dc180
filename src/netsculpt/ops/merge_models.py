"""Merge several trained models of one architecture in weight space: a uniform soup, task
arithmetic, or TIES (docs/algorithms.md §2). Returns a new model; the inputs are not changed.

Not a registry op (it takes several models, not one model and its inputs) and it imports no
other op. It has no Report and so no ``Plan``: a plan names edits of one model's structure that
replay on a fresh copy, and a weight-space merge of several models changes no structure (its
result is the new model's weights, which ``ns.save`` writes).

>>> import torch
>>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
>>> soup = merge_models([a, b])
>>> bool(torch.allclose(soup.weight, (a.weight + b.weight) / 2))
True
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from netsculpt.core.config import OpConfig, fraction, one_of, option
from netsculpt.core.errors import InputError

METHODS = ("average", "task_arithmetic", "ties")


def _finite(name: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{name} must be a finite number, got {v!r}")


@dataclass(frozen=True)
class ModelMergeConfig(OpConfig):
    """``lam`` scales the merged task vector; ``trim`` is the fraction of each task vector TIES
    keeps (its largest magnitudes, TIES' k = 20%)."""

    method: str = option("average", one_of(*METHODS), "average, task_arithmetic or ties")
    lam: float = option(1.0, _finite, "scale of the merged task vector")
    trim: float = option(0.2, fraction(hi_closed=True), "fraction of each task vector TIES keeps")


def check_same_architecture(models: list[nn.Module]) -> None:
    """Raise ``InputError`` naming the first parameter / buffer whose name or shape differs.

    >>> check_same_architecture([nn.Linear(2, 2), nn.Linear(2, 3)])
    Traceback (most recent call last):
    ...
    netsculpt.core.errors.InputError: merge_models: model 1 differs from model 0 at 'weight': shape (3, 2) vs (2, 2)
    """
    ref = models[0].state_dict()
    for i, m in enumerate(models[1:], start=1):
        if type(m) is not type(models[0]):
            raise InputError(
                f"merge_models: model {i} is a {type(m).__name__}, model 0 a "
                f"{type(models[0]).__name__}"
            )
        sd = m.state_dict()
        for (k0, v0), (k1, v1) in zip(ref.items(), sd.items()):
            if k0 != k1:
                raise InputError(
                    f"merge_models: model {i} differs from model 0 at '{k0}': it has '{k1}' there"
                )
            if v0.shape != v1.shape:
                raise InputError(
                    f"merge_models: model {i} differs from model 0 at '{k0}': shape "
                    f"{tuple(v1.shape)} vs {tuple(v0.shape)}"
                )
        if len(sd) != len(ref):
            longer, other = (sd, ref) if len(sd) > len(ref) else (ref, sd)
            extra = list(longer)[len(other)]
            raise InputError(
                f"merge_models: model {i} differs from model 0 at '{extra}': only one has it"
            )


def ties_merge(tau: torch.Tensor, trim: float) -> torch.Tensor:
    """TIES on stacked task vectors ``tau`` [T, N]: trim each to its top-``trim`` magnitudes,
    elect a sign per coordinate (zeros take the majority sign), average the agreeing entries.

    >>> ties_merge(torch.tensor([[1.0, -2.0], [3.0, 1.0]]), trim=1.0)
    tensor([ 2., -2.])
    """
    t, n = tau.shape
    keep = max(1, int(round(trim * n)))
    if keep < n:
        kth = tau.abs().kthvalue(n - keep + 1, dim=1, keepdim=True).values
        tau = torch.where(tau.abs() >= kth, tau, torch.zeros_like(tau))
    sign = torch.sign(tau.sum(0))
    sign[sign == 0] = torch.sign(sign.sum()) if sign.sum() != 0 else 1.0
    agree = torch.where(sign > 0, tau > 0, tau < 0)
    total = (tau * agree).sum(0)
    return total / agree.sum(0).clamp(min=1)


def merge_models(
    models: list[nn.Module],
    base: nn.Module | None = None,
    method: str = "average",
    lam: float = 1.0,
    trim: float = 0.2,
) -> nn.Module:
    """A new model merged from ``models`` (same architecture); the inputs are left unchanged
    (no Report, so no plan: see the module docstring).

    ``average``: uniform soup ``mean_i θ_i``. ``task_arithmetic``: ``θ0 + lam·Σ_i (θ_i − θ0)``.
    ``ties``: ``θ0 + lam·TIES(θ_i − θ0)``. The last two need ``base`` (θ0, the shared start).
    Floating-point buffers (BatchNorm statistics) are averaged; integer buffers come from
    ``models[0]``.

    >>> import netsculpt as ns
    >>> m = ns.merge_models([nn.Linear(2, 2), nn.Linear(2, 2)], base=nn.Linear(2, 2), method="ties")
    >>> type(m).__name__
    'Linear'
    """
    try:
        cfg = ModelMergeConfig(method=method, lam=lam, trim=trim)
    except InputError as e:
        raise InputError(f"merge_models: {e}") from None
    models = list(models)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise InputError("merge_models: pass a non-empty list of torch.nn.Module models")
    if cfg.method != "average" and base is None:
        raise InputError(f"merge_models: method={cfg.method!r} needs base= (the shared start θ0)")
    check_same_architecture(models + ([base] if base is not None else []))
    param_names = {n for n, _ in models[0].named_parameters()}
    sds = [m.state_dict() for m in models]
    merged = {}
    flat = []  # (name, tensors) of parameters for a global TIES trim
    for name, ref in sds[0].items():
        stack = torch.stack([sd[name].detach().to(torch.float64) for sd in sds])
        if not ref.is_floating_point():
            merged[name] = ref.clone()
        elif cfg.method == "average" or name not in param_names:
            merged[name] = stack.mean(0).to(ref.dtype)
        elif cfg.method == "task_arithmetic":
            theta0 = base.state_dict()[name].detach().to(torch.float64)
            merged[name] = (theta0 + cfg.lam * (stack - theta0).sum(0)).to(ref.dtype)
        else:
            flat.append((name, stack))
    if flat:  # TIES trims each task vector over all its parameters at once, as the paper does
        sd0 = base.state_dict()
        theta0 = torch.cat([sd0[n].detach().to(torch.float64).flatten() for n, _ in flat])
        tau = torch.cat([s.flatten(1) for _, s in flat], dim=1) - theta0
        out = theta0 + cfg.lam * ties_merge(tau, cfg.trim)
        offset = 0
        for name, stack in flat:
            n = stack[0].numel()
            merged[name] = out[offset : offset + n].reshape(stack.shape[1:]).to(sds[0][name].dtype)
            offset += n
    result = copy.deepcopy(models[0])
    result.load_state_dict(merged)
    return result
