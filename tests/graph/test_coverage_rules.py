"""Rules and walk cases met on timm / Hugging Face models, each on a tiny model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import netsculpt as ns
from netsculpt.graph import build_graph
from netsculpt.graph.layout import Atoms, Prod


def _prunable_modules(graph) -> set[str]:
    return {m for g in graph.prunable_groups() for m in g.modules}


def test_factor_meets_the_same_class_twice():
    # (a × b, a × c) factored into blocks of 8: the class of ``a`` is refined at its first use
    atoms = Atoms()
    a, b, c = atoms.new(2), atoms.new(4), atoms.new(4)
    outer, inner = atoms.factor((Prod(a, (b,)), Prod(a, (c,))), 8)
    assert atoms.layout_size(inner) == 8 and atoms.layout_size(outer) == 2


class Unbound(nn.Module):
    """unbind over the last dim, and an empty slice (a full rotary leaves no pass-through)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = self.a(x)
        pair = torch.stack([h, h], dim=-1)
        u, v = pair.unbind(-1)
        rest = h[..., 8:]  # empty
        return self.b(torch.cat([u + v, rest], dim=-1))


def test_unbind_last_dim_and_empty_slice():
    model, x = Unbound().eval(), torch.randn(3, 4)
    rep = ns.prune(model, x, amount=0.5)
    assert model.a.out_features == 4 and rep.after.params < rep.before.params


class Autocast(nn.Module):
    """A region under ``torch.autocast(enabled=False)``: export keeps it as a subgraph call."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        with torch.autocast("cpu", enabled=False):
            h = torch.relu(self.b(h.float()))
        return self.c(h)


def test_autocast_region_is_walked_inline():
    model, x = Autocast().eval(), torch.randn(3, 4)
    graph = build_graph(model, x)
    assert any("wrap_with_autocast" in str(n.target) for n in graph.captured.graph.nodes)
    assert {"a", "b", "c"} <= _prunable_modules(graph)
    ref_shape = model(x).shape
    ns.prune(model, x, amount=0.5)
    assert model.b.in_features == 4 and model.b.out_features == 4
    assert model(x).shape == ref_shape


class SliceShortcut(nn.Module):
    """rexnet's partial shortcut: ``cat([y[:, :in_channels] + x, y[:, in_channels:]])``."""

    def __init__(self):
        super().__init__()
        self.in_channels = 4
        self.conv = nn.Conv2d(4, 6, 1)

    def forward(self, x):
        y = self.conv(x)
        return torch.cat([y[:, 0 : self.in_channels] + x, y[:, self.in_channels :]], dim=1)


class WithShortcut(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.block, self.head = nn.Conv2d(3, 4, 3), SliceShortcut(), nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.block(F.relu(self.stem(x))).mean((2, 3)))


def test_slice_bound_attribute_follows_the_channels(tmp_path):
    torch.manual_seed(0)
    model, x = WithShortcut().eval(), torch.randn(2, 3, 8, 8)
    graph = build_graph(model, x)
    assert ("block", "in_channels") in {(p, a) for p, a, _, _ in graph.bound_attrs}
    rep = ns.prune(model, x, amount=0.5)
    assert not rep.details["skipped"]
    assert model.stem.out_channels == 2 and model.block.in_channels == 2
    y = model(x)
    ns.save(model, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=WithShortcut()).eval()
    assert back.block.in_channels == 2
    assert torch.allclose(back(x), y, atol=1e-6)


class Brittle(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_a_rule_that_fails_protects_instead_of_crashing(monkeypatch):
    from netsculpt.graph import rules as R

    def broken(t, node):
        raise IndexError("tuple index out of range")

    monkeypatch.setitem(R.RULES, "relu", broken)
    graph = build_graph(Brittle().eval(), torch.randn(2, 4))
    (g,) = [
        g for g in graph.groups if any(m.tensor == "a.weight" and m.dim == 0 for m in g.members)
    ]
    assert not g.prunable and "relu rule could not follow" in g.reason and "IndexError" in g.reason


class Windows(nn.Module):
    """nn.Unfold (im2col: channel c is the block c·9 … c·9 + 8), Tensor.unfold, meshgrid."""

    def __init__(self):
        super().__init__()
        self.a, self.lin, self.head = nn.Conv2d(3, 4, 1), nn.Linear(4 * 9, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = self.a(x)
        cols = F.unfold(h, 3, padding=1)  # (N, 36, L)
        gy, gx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
        y = self.lin(cols.transpose(1, 2)) + (gy + gx).flatten().float()[:, None]
        return self.head(y.mean(1)) + h.unfold(2, 2, 2).mean()


class Fold(nn.Module):
    """nn.Fold (col2im): 16 = 4 channels × 2·2 kernel positions."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Conv2d(3, 16, 1), nn.Conv2d(4, 8, 1), nn.Linear(8, 2)

    def forward(self, x):
        img = F.fold(self.a(x).flatten(2), (16, 16), 2, stride=2)
        return self.head(self.b(img).mean((2, 3)))


def test_unfold_fold_and_meshgrid(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    model = Windows().eval()
    ns.prune(model, x, amount=0.5)
    assert model.a.out_channels == 2 and model.lin.in_features == 18
    model = Fold().eval()
    ns.prune(model, x, amount=0.5)
    assert model.a.out_channels == 8 and model.b.in_channels == 2
    y = model(x)
    ns.save(model, tmp_path / "m")
    assert torch.allclose(ns.load(tmp_path / "m", model=Fold()).eval()(x), y, atol=1e-6)
