"""A BatchNorm with its activation inside (timm's BatchNormAct2d) folds as BN, then its act."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.surgery.fold import bn_remainder, fold_bn_after, replace_module

timm_layers = pytest.importorskip("timm.layers")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = timm_layers.ConvNormAct(3, 8, 3, act_layer=nn.SiLU)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.stem(x).mean((2, 3)))


def _net() -> Net:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # non-trivial running statistics
        net.stem.bn.running_mean.uniform_(-1, 1)
        net.stem.bn.running_var.uniform_(0.5, 2)
        net.stem.bn.weight.uniform_(0.5, 2)
    return net.eval()


def test_plain_and_other_batchnorms():
    assert isinstance(bn_remainder(nn.BatchNorm2d(4)), nn.Identity)

    class Odd(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) * 2

    with pytest.raises(ValueError, match="overrides BatchNorm.forward"):
        bn_remainder(Odd(4))


def test_batchnorm_act_folds_exactly_and_reloads(tmp_path):
    net, x = _net(), torch.randn(2, 3, 8, 8)
    ref = net(x)
    bn = net.stem.bn
    assert isinstance(bn, timm_layers.BatchNormAct2d) and not isinstance(bn.act, nn.Identity)
    tail = bn_remainder(bn)
    assert [type(m) for m in tail] == [nn.SiLU]  # its drop is Identity: left out
    replace_module(net, "stem.conv", fold_bn_after(net.stem.conv, bn))
    replace_module(net, "stem.bn", tail)
    assert torch.allclose(net(x), ref, atol=1e-5)
    ns.save(net, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=Net()).eval()
    assert torch.allclose(back(x), ref, atol=1e-5)


def test_merge_folds_batchnorm_act_through_the_planner(tmp_path):
    net, x = _net(), torch.randn(2, 3, 8, 8)
    ref = net(x)
    rep = ns.merge(net, x)
    kinds = [(a.args["fold_kind"], a.args["modules"]) for a in rep.plan.of_kind("fold")]
    assert ("bn_after", ["stem.conv", "stem.bn"]) in kinds
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert isinstance(net.stem.bn.act, nn.SiLU)  # the activation stays where the norm was
    assert torch.allclose(net(x), ref, atol=1e-5)
    ns.save(net, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=Net()).eval()
    assert torch.allclose(back(x), ref, atol=1e-5)
