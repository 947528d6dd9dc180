"""Exactness of each fold on random inputs, and the refusals where a fold is not exact."""

import pytest
import torch
from torch import nn

from netsculpt.surgery import fold as F


def _bn(n: int, dims: int = 2) -> nn.Module:
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](n)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    return bn.eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a - b).abs().max() / b.abs().max()) < 1e-5)


@pytest.mark.parametrize(
    "layer, x",
    [
        (nn.Linear(6, 5, bias=False), torch.randn(4, 6)),
        (nn.Conv2d(4, 6, 3, padding=1, bias=False), torch.randn(2, 4, 7, 7)),
        (nn.Conv2d(4, 6, 3, groups=2), torch.randn(2, 4, 7, 7)),
        (nn.Conv1d(4, 4, 3, groups=4), torch.randn(2, 4, 9)),
        (nn.ConvTranspose2d(4, 6, 3, stride=2), torch.randn(2, 4, 5, 5)),
        (nn.ConvTranspose2d(4, 6, 3, groups=2), torch.randn(2, 4, 5, 5)),
    ],
)
def test_bn_after_is_exact(layer, x):
    bn = _bn(layer.weight.shape[0] if not isinstance(layer, F._CONV_T) else layer.out_channels,
             1 if x.dim() <= 3 else 2)  # fmt: skip
    fused = F.fold_bn_after(layer, bn)
    assert fused is not layer and fused.bias is not None
    assert _close(fused(x), bn(layer(x)))


@pytest.mark.parametrize(
    "layer, x",
    [
        (nn.Linear(6, 5), torch.randn(4, 6)),
        (nn.Conv2d(4, 6, 3), torch.randn(2, 4, 7, 7)),
        (nn.Conv2d(4, 6, 3, groups=2, bias=False), torch.randn(2, 4, 7, 7)),
        (nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect"), torch.randn(2, 4, 7, 7)),
    ],
)
def test_bn_before_is_exact(layer, x):
    bn = _bn(x.shape[1], 1 if x.dim() == 2 else 2)
    assert _close(F.fold_bn_before(bn, layer)(x), layer(bn(x)))


def test_bn_before_refuses_zero_padding_and_says_why():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    assert "pads with zeros" in F.bn_before_refusal(conv)
    with pytest.raises(ValueError, match="zeros"):
        F.fold_bn_before(_bn(4), conv)


def test_compose_linear_is_exact():
    a, b, x = nn.Linear(6, 3), nn.Linear(3, 5), torch.randn(4, 2, 6)
    assert _close(F.compose_linear(a, b)(x), b(a(x)))


@pytest.mark.parametrize(
    "first, second",
    [
        (nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 4, 1)),
        (nn.Conv2d(3, 8, 1, bias=False), nn.Conv2d(8, 4, 3, padding=1)),
        (nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 3)),
        (nn.Conv1d(3, 8, 5, dilation=2), nn.Conv1d(8, 4, 1)),
    ],
)
def test_compose_conv_is_exact(first, second):
    x = torch.randn(2, 3, *([9] * (first.weight.dim() - 2)))
    assert _close(F.compose_conv(first, second)(x), second(first(x)))


def test_compose_conv_refuses_bias_into_zero_padding():
    reason = F.compose_conv_refusal(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 3, padding=1))
    assert reason and "bias" in reason
    assert F.compose_conv_refusal(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)) is not None


@pytest.mark.parametrize("norm", [nn.LayerNorm(6), nn.RMSNorm(6), nn.LayerNorm(6, bias=False)])
def test_norm_gain_is_exact(norm):
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        if getattr(norm, "bias", None) is not None:
            norm.bias.normal_()
    lins = [nn.Linear(6, 4), nn.Linear(6, 3, bias=False)]
    x = torch.randn(5, 6)
    new_norm, new_lins = F.fold_norm_gain(norm, lins)
    assert bool((new_norm.weight == 1).all())
    for old, new in zip(lins, new_lins):
        assert _close(new(new_norm(x)), old(norm(x)))


def test_replace_module_records_for_load():
    seq = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    old = F.replace_module(seq, "1", nn.Identity())
    assert isinstance(old, nn.BatchNorm1d) and isinstance(seq[1], nn.Identity)
    assert seq._netsculpt_edits[-1]["path"] == "1"
