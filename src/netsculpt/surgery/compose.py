"""Exact compositions of two affine layers into one (Linear∘Linear, conv∘pointwise conv) and
the multiply-accumulates they cost; :mod:`netsculpt.surgery.fold` applies them. Math in float64,
cast back. Formulas: docs/algorithms.md §2.

>>> a, b = nn.Linear(4, 8), nn.Linear(8, 2)
>>> x = torch.randn(3, 4)
>>> bool(torch.allclose(compose_linear(a, b)(x), b(a(x)), atol=1e-6))
True
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _bias64(layer: nn.Module, n: int) -> torch.Tensor:
    b = getattr(layer, "bias", None)
    if b is None:
        return torch.zeros(n, dtype=torch.float64, device=layer.weight.device)
    return b.detach().double()


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
