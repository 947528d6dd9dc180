"""Merge edits: exact folds (pure tensor math that turns two affine modules into one), module
replacement, and the writes of the approximate merges (Neuron Merging's consumer update,
LaCo's RDSC block collapse).

The fold functions return *new* modules (deep copies with folded tensors) and leave their
arguments untouched; :func:`apply_fold` puts them into a model. Every writer here replaces
tensors rather than writing into them, so a checkpoint that keeps references can put the
originals back. Math is done in float64 and cast back, which keeps folded models within ~1e-7
of the original. Formulas: docs/algorithms.md §2.

>>> conv, bn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8).eval()
>>> fused = fold_bn_after(conv, bn)
>>> x = torch.randn(1, 3, 8, 8)
>>> bool(torch.allclose(fused(x), bn(conv(x)), atol=1e-5))
True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.core.errors import InputError

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, t)`` in float64 with ``bn(x) == s * x + t`` per channel in eval mode.

    >>> s, t = bn_scale_shift(nn.BatchNorm1d(4).eval())
    >>> s.shape, t.shape
    (torch.Size([4]), torch.Size([4]))
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    mean = bn.running_mean.detach().double()
    s = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight.detach().double()
    t = -mean * s
    if bn.bias is not None:
        t = t + bn.bias.detach().double()
    return s, t


def _set_params(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A deep copy of ``layer`` holding ``weight`` and ``bias`` (a bias is added if it had none)."""
    new = copy.deepcopy(layer)
    ref = layer.weight
    new.weight = nn.Parameter(weight.to(ref.dtype), requires_grad=ref.requires_grad)
    if bias is not None:
        new.bias = nn.Parameter(bias.to(ref.dtype), requires_grad=ref.requires_grad)
    return new


def _bias64(layer: nn.Module, n: int) -> torch.Tensor:
    b = getattr(layer, "bias", None)
    if b is None:
        return torch.zeros(n, dtype=torch.float64, device=layer.weight.device)
    return b.detach().double()


def fold_bn_after(layer: nn.Module, bn: nn.Module) -> nn.Module:
    """``layer`` (Linear / Conv / ConvTranspose) with the eval-mode ``bn`` that follows it folded
    in: ``W'[o] = W[o]·s[o]``, ``b' = (b - mu)·s + beta``.

    >>> lin = fold_bn_after(nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3).eval())
    >>> lin.bias is not None
    True
    """
    s, t = bn_scale_shift(bn)
    w = layer.weight.detach().double()
    if isinstance(layer, _CONV_T):
        g = layer.groups
        cin, cout_g = w.shape[0], w.shape[1]
        ws = w.reshape(g, cin // g, cout_g, -1) * s.reshape(g, 1, cout_g, 1)
        w = ws.reshape(w.shape)
    else:  # Linear and Conv: output channels are dim 0
        w = w * s.reshape(-1, *([1] * (w.dim() - 1)))
    b = _bias64(layer, s.numel()) * s + t
    return _set_params(layer, w, b)


def fold_bn_before(bn: nn.Module, layer: nn.Module) -> nn.Module:
    """``layer`` (Linear or Conv without zero padding) with the eval-mode ``bn`` before it folded
    in: ``W'[o,i] = W[o,i]·s[i]``, ``b'[o] = b[o] + Σ W[o,i,...]·t[i]``.

    Raise ``ValueError`` with the reason where the fold is not exact.

    >>> conv = fold_bn_before(nn.BatchNorm2d(3).eval(), nn.Conv2d(3, 8, 3))
    >>> tuple(conv.weight.shape)
    (8, 3, 3, 3)
    """
    reason = bn_before_refusal(layer)
    if reason:
        raise ValueError(reason)
    s, t = bn_scale_shift(bn)
    w = layer.weight.detach().double()
    if isinstance(layer, nn.Linear):
        return _set_params(layer, w * s, _bias64(layer, w.shape[0]) + w @ t)
    g = layer.groups
    cout, cin_g = w.shape[0], w.shape[1]
    # input channel of weight[o, i] is group(o) * cin_g + i
    s_o = s.reshape(g, 1, cin_g).expand(g, cout // g, cin_g).reshape(cout, cin_g)
    t_o = t.reshape(g, 1, cin_g).expand(g, cout // g, cin_g).reshape(cout, cin_g)
    spatial = [1] * (w.dim() - 2)
    b = _bias64(layer, cout) + (w * t_o.reshape(cout, cin_g, *spatial)).flatten(1).sum(1)
    return _set_params(layer, w * s_o.reshape(cout, cin_g, *spatial), b)


def bn_before_refusal(layer: nn.Module) -> str | None:
    """Why a BatchNorm in front of ``layer`` cannot be folded exactly, or ``None`` if it can."""
    if isinstance(layer, nn.Linear):
        return None
    if isinstance(layer, _CONV_T):
        return "a transposed conv sums a different number of taps at the border"
    if not isinstance(layer, _CONV):
        return f"{type(layer).__name__} is not a Linear or Conv"
    if layer.padding_mode == "zeros" and any(layer._reversed_padding_repeated_twice):
        return (
            f"the conv pads with zeros (padding={layer.padding}); border outputs would see the "
            f"padded zeros instead of the BatchNorm shift"
        )
    return None


def compose_linear(first: nn.Linear, second: nn.Linear) -> nn.Linear:
    """One Linear equal to ``second(first(x))``: ``W = W2·W1``, ``b = W2·b1 + b2``.

    >>> compose_linear(nn.Linear(4, 8), nn.Linear(8, 2)).weight.shape
    torch.Size([2, 4])
    """
    w1, w2 = first.weight.detach().double(), second.weight.detach().double()
    b = w2 @ _bias64(first, w1.shape[0]) + _bias64(second, w2.shape[0])
    new = nn.Linear(w1.shape[1], w2.shape[0], device=w1.device, dtype=first.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(w2 @ w1)
        new.bias.copy_(b)
    new.train(second.training)
    return new


def is_pointwise(conv: nn.Module) -> bool:
    """A conv that mixes channels only: kernel 1, stride 1, no padding, one group."""
    return (
        isinstance(conv, _CONV)
        and conv.groups == 1
        and all(k == 1 for k in conv.kernel_size)
        and all(s == 1 for s in conv.stride)
        and not any(conv._reversed_padding_repeated_twice)
    )


def compose_conv_refusal(first: nn.Module, second: nn.Module) -> str | None:
    """Why ``second ∘ first`` (two convs, one of them pointwise) cannot be one exact conv."""
    if type(first) is not type(second) or not isinstance(first, _CONV):
        return "only two convs of the same dimensionality compose"
    if is_pointwise(second):
        return None if first.groups == 1 else "the first conv is grouped"
    if is_pointwise(first):
        if (
            first.bias is not None
            and second.padding_mode == "zeros"
            and any(second._reversed_padding_repeated_twice)
        ):
            return "the pointwise conv has a bias and the next conv pads with zeros"
        return None if second.groups == 1 else "the second conv is grouped"
    return "neither conv is pointwise (1x1, stride 1, no padding, one group)"


def compose_conv(first: nn.Module, second: nn.Module) -> nn.Module:
    """One conv equal to ``second(first(x))`` where one of the two is pointwise (see
    :func:`is_pointwise`): ``W[o,i,...] = Σ_c W2[o,c]·W1[c,i,...]``.

    >>> c = compose_conv(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 4, 1))
    >>> tuple(c.weight.shape), c.padding
    ((4, 3, 3, 3), (1, 1))
    """
    reason = compose_conv_refusal(first, second)
    if reason:
        raise ValueError(reason)
    w1, w2 = first.weight.detach().double(), second.weight.detach().double()
    if is_pointwise(second):  # keep first's geometry, second's output channels
        m2 = w2.flatten(1)  # [O, C]
        w = torch.einsum("oc,ci...->oi...", m2, w1)
        b = m2 @ _bias64(first, w1.shape[0]) + _bias64(second, w2.shape[0])
        geometry, cin, cout = first, w1.shape[1], w2.shape[0]
    else:  # first is pointwise: keep second's geometry, first's input channels
        m1 = w1.flatten(1)  # [C, I]
        w = torch.einsum("oc...,ci->oi...", w2, m1)
        b = _bias64(second, w2.shape[0]) + w2.sum(dim=tuple(range(2, w2.dim()))) @ _bias64(
            first, w1.shape[0]
        )
        geometry, cin, cout = second, w1.shape[1], w2.shape[0]
    new = copy.deepcopy(geometry)
    new.in_channels, new.out_channels = int(cin), int(cout)
    dtype = geometry.weight.dtype
    new.weight = nn.Parameter(w.to(dtype), requires_grad=geometry.weight.requires_grad)
    new.bias = nn.Parameter(b.to(dtype), requires_grad=geometry.weight.requires_grad)
    return new


def composed_conv_macs(first: nn.Module, second: nn.Module, out_positions: int) -> int:
    """Multiply-accumulates of :func:`compose_conv` ``(first, second)`` producing
    ``out_positions`` output positions, without building it."""
    geometry = first if is_pointwise(second) else second
    return second.out_channels * first.in_channels * math.prod(geometry.kernel_size) * out_positions


def linear_macs(layer: nn.Linear) -> int:
    """Multiply-accumulates of a Linear per input row."""
    return layer.in_features * layer.out_features


def conv_macs(conv: nn.Module, out_positions: int) -> int:
    """Multiply-accumulates of a conv producing ``out_positions`` output positions."""
    per = conv.weight.shape[1] * math.prod(conv.kernel_size)
    return conv.out_channels * per * out_positions


def fold_norm_gain(
    norm: nn.Module, consumers: list[nn.Linear]
) -> tuple[nn.Module, list[nn.Linear]]:
    """Move a LayerNorm / RMSNorm gain ``g`` (and bias ``beta``) into the Linears reading the
    norm's output: ``W' = W·diag(g)``, ``b' = b + W·beta``; the norm gets ``g = 1``, ``beta = 0``.

    >>> norm, (lin,) = fold_norm_gain(nn.LayerNorm(4), [nn.Linear(4, 2)])
    >>> bool((norm.weight == 1).all())
    True
    """
    g = norm.weight.detach().double()
    beta = getattr(norm, "bias", None)
    beta = beta.detach().double() if isinstance(beta, torch.Tensor) else None
    new_consumers = []
    for lin in consumers:
        w = lin.weight.detach().double()
        b = None
        if beta is not None or lin.bias is not None:
            b = _bias64(lin, w.shape[0]) + (w @ beta if beta is not None else 0.0)
        new_consumers.append(_set_params(lin, w * g, b))
    new_norm = copy.deepcopy(norm)
    with torch.no_grad():
        new_norm.weight.fill_(1.0)
        if beta is not None:
            new_norm.bias.zero_()
    return new_norm, new_consumers


def replace_module(model: nn.Module, path: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``path`` in ``model`` and return the module that was there.

    The replacement is recorded in the structure manifest (``netsculpt.core.edits``) so that
    ``ns.load(dir, model=fresh_instance)`` can replay it.

    >>> seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    >>> type(replace_module(seq, "1", nn.Identity())).__name__
    'ReLU'
    """
    from netsculpt.core.edits import record_module

    old = model.get_submodule(path)
    record_module(model, path, new)  # sets the module and records it for ns.load
    return old


# -- applying folds ------------------------------------------------------------------------------
FOLD_KINDS = ("bn_after", "bn_before", "linear_linear", "conv_conv", "affine", "norm_gain")


def _get(model: nn.Module, path: str, types: Any, what: str, where: str) -> nn.Module:
    try:
        mod = model.get_submodule(path)
    except AttributeError:
        raise InputError(f"{where}: the model has no module {path!r}") from None
    if not isinstance(mod, types):
        raise InputError(f"{where}: {path!r} is a {type(mod).__name__}, not a {what}")
    return mod


def fold_replacements(
    model: nn.Module, kind: str, modules: Sequence[str], where: str = "fold"
) -> dict[str, nn.Module]:
    """``{path: new module}`` for one fold of ``kind`` over ``modules`` (``Identity`` = gone):

    - ``bn_after`` (layer, bn) and ``bn_before`` (bn, layer): the layer with the BN folded in;
    - ``linear_linear`` / ``conv_conv`` / ``affine`` (first, second): one layer for both;
    - ``norm_gain`` (norm, linear, ...): the norm with unit gain, the Linears scaled.

    The model is not changed; ``InputError`` names a path that is missing or of the wrong type.
    """
    modules = [str(p) for p in modules]
    n = {"norm_gain": None}.get(kind, 2)
    if kind not in FOLD_KINDS:
        raise InputError(f"{where}: unknown fold_kind {kind!r} (one of {', '.join(FOLD_KINDS)})")
    if (n is not None and len(modules) != n) or len(modules) < 2:
        raise InputError(f"{where}: {kind} folds {n or 'at least 2'} modules, got {modules}")
    layers = (nn.Linear, *_CONV, *_CONV_T)
    if kind == "bn_after":
        layer = _get(model, modules[0], layers, "Linear / Conv", where)
        bn = _get(model, modules[1], _BN, "BatchNorm", where)
        return {modules[0]: fold_bn_after(layer, bn), modules[1]: nn.Identity()}
    if kind == "bn_before":
        bn = _get(model, modules[0], _BN, "BatchNorm", where)
        layer = _get(model, modules[1], (nn.Linear, *_CONV), "Linear / Conv", where)
        try:
            return {modules[1]: fold_bn_before(bn, layer), modules[0]: nn.Identity()}
        except ValueError as e:
            raise InputError(f"{where}: {modules[0]} -> {modules[1]}: {e}") from None
    if kind == "norm_gain":
        norm = _get(model, modules[0], nn.Module, "norm", where)
        lins = [_get(model, p, nn.Linear, "Linear", where) for p in modules[1:]]
        new_norm, new_lins = fold_norm_gain(norm, lins)
        return {modules[0]: new_norm, **dict(zip(modules[1:], new_lins))}
    first = _get(model, modules[0], (nn.Linear, *_CONV), "Linear / Conv", where)
    second = _get(model, modules[1], (nn.Linear, *_CONV), "Linear / Conv", where)
    if isinstance(first, nn.Linear) and isinstance(second, nn.Linear):
        new = compose_linear(first, second)
    else:
        try:
            new = compose_conv(first, second)
        except ValueError as e:
            raise InputError(f"{where}: {modules[0]} -> {modules[1]}: {e}") from None
    return {modules[0]: nn.Identity(), modules[1]: new}


def apply_fold(model: nn.Module, kind: str, modules: Sequence[str], where: str = "fold") -> None:
    """Fold ``modules`` of ``model`` in place (see :func:`fold_replacements`); each replaced
    module is recorded in the structure manifest.

    >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    >>> apply_fold(m, "bn_after", ["0", "1"])
    >>> type(m[1]).__name__
    'Identity'
    """
    for path, new in fold_replacements(model, kind, modules, where).items():
        replace_module(model, path, new)


# -- Neuron Merging ------------------------------------------------------------------------------
def _set_tensor(model: nn.Module, name: str, new: torch.Tensor) -> None:
    """Give the parameter / buffer ``name`` the values ``new`` (a new tensor, not written into
    the old one; a parameter keeps its identity)."""
    path, _, attr = name.rpartition(".")
    mod = model.get_submodule(path) if path else model
    if attr in mod._parameters:
        mod._parameters[attr].data = new
    else:
        mod._buffers[attr] = new


def merge_into_consumers(model: nn.Module, group: Any, merged: Sequence[tuple]) -> None:
    """Neuron Merging's consumer update for channel ``group``: for each ``(j, k, r)`` add
    ``r`` times the input columns of channel ``j`` to those of the kept channel ``k``
    (``W2[:, k] += r·W2[:, j]``) in every tensor that reads the group (``role == "in"``).
    Channel ``j`` itself is removed afterwards (``surgery.remove_channels``)."""
    named = dict(model.named_parameters()) | dict(model.named_buffers())
    with torch.no_grad():
        for m in group.members:
            if m.role != "in":
                continue
            t = named[m.tensor].detach().clone()
            for j, k, r in merged:
                pj, pk = m.positions(np.array([j])), m.positions(np.array([k]))
                if r == 0.0 or len(pj) != len(pk):
                    continue
                pj_t = torch.as_tensor(pj, device=t.device)
                pk_t = torch.as_tensor(pk, device=t.device)
                t.index_add_(m.dim, pk_t, t.index_select(m.dim, pj_t), alpha=r)
            _set_tensor(model, m.tensor, t)


# -- LaCo block collapse -------------------------------------------------------------------------
def rdsc(thetas: list[torch.Tensor]) -> torch.Tensor:
    """``θ_0 + Σ_{k≥1} (θ_k − θ_0)`` with the original ``θ_0`` (not updated in place).

    >>> a, b, c = (torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0]))
    >>> rdsc([a, b, c])
    tensor([5.])
    """
    base = thetas[0]
    out = base.clone()
    for t in thetas[1:]:
        out += t - base
    return out


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def collapse_blocks(model: nn.Module, blocks: Sequence[Any]) -> list[str]:
    """LaCo: write RDSC of ``blocks`` (adjacent blocks of one class, from
    :func:`netsculpt.graph.blocks.find_blocks`) into the first one, keeping its norms, and
    remove the others (highest index first, so that deleting from a ModuleList leaves the
    lower indices valid). Returns one line per removed block."""
    from netsculpt.surgery.depth import remove_block

    target = model.get_submodule(blocks[0].name)
    norms = {n for n, m in target.named_modules() if n and _is_norm(m)}
    others = [dict(model.get_submodule(b.name).named_parameters()) for b in blocks[1:]]
    with torch.no_grad():
        for name, p in target.named_parameters():
            if name.rpartition(".")[0] in norms:
                continue  # LaCo keeps the norms of block l
            if any(name not in o or o[name].shape != p.shape for o in others):
                raise InputError(
                    f"collapse_blocks: {blocks[0].name}.{name} has no match of the same shape "
                    f"in {', '.join(b.name for b in blocks[1:])}"
                )
            merged = rdsc([p.detach().double()] + [o[name].detach().double() for o in others])
            p.data = merged.to(p.dtype)
    return [remove_block(model, b) for b in sorted(blocks[1:], key=lambda b: -b.index)]
