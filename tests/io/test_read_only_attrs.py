"""Modules whose widths are read-only properties derived from a child (timm's ConvNormAct)."""

from __future__ import annotations

import torch
from torch import nn

import netsculpt as ns
from netsculpt.io.manifest import structural_attrs
from netsculpt.surgery.attrs import read_only


class ConvNormAct(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = ConvNormAct(3, 8), ConvNormAct(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.b(self.a(x)).mean((2, 3)))


def test_read_only_property_is_derived_not_recorded():
    m = ConvNormAct(3, 8)
    assert read_only(m, "in_channels") and not read_only(m.conv, "in_channels")
    assert "in_channels" not in structural_attrs(m)


def test_prune_then_reload_by_class(tmp_path):
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(2, 3, 8, 8)
    ns.prune(model, x, amount=0.5)
    assert model.a.out_channels == 4 and model.b.in_channels == 4
    y = model(x)
    ns.save(model, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=Net()).eval()
    assert back.a.out_channels == 4
    assert torch.allclose(back(x), y, atol=1e-6)


class StageDims(Net):
    """A model's own attributes named like layer sizes that hold something else (timm's LeViT /
    RepViT keep per-stage ``embed_dim`` tuples, an encoder may have ``out_features = 0``)."""

    def __init__(self):
        super().__init__()
        self.embed_dim, self.out_features = (8, 8), 0


def test_attributes_named_like_sizes_that_are_not_sizes_are_not_recorded(tmp_path):
    assert structural_attrs(StageDims()) == {}
    torch.manual_seed(0)
    model, x = StageDims().eval(), torch.randn(2, 3, 8, 8)
    ns.prune(model, x, amount=0.5)
    ns.save(model, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=StageDims()).eval()
    assert back.embed_dim == (8, 8) and torch.allclose(back(x), model(x), atol=1e-6)
