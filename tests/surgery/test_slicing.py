import pytest
import torch
from torch import nn

from netsculpt.errors import VerificationError
from netsculpt.graph import build_graph
from netsculpt.surgery import (
    find_breaking_groups,
    remove_channels,
    remove_channels_safely,
)
from netsculpt.surgery.modules import PrunedMultiheadAttention


def test_slices_tensors_and_updates_attributes(tiny):
    model, x = tiny["cnn"]
    graph = build_graph(model, x)
    plan = {g.id: list(range(g.size // 2)) for g in graph.prunable_groups()}
    remove_channels(model, graph, plan, x)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.weight.shape[0] == m.out_channels
            assert m.weight.shape[1] * m.groups == m.in_channels
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_features == m.weight.shape[0] == m.running_mean.shape[0]
        if isinstance(m, nn.GroupNorm):
            assert m.num_channels == m.weight.shape[0]
    assert model(x).shape == (2, 5)


def test_failed_edit_restores_the_model_exactly():
    class Hardcoded(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.b(self.a(x).view(-1, 2, 4).flatten(1))  # the 2 is a constant

    torch.manual_seed(0)
    model, x = Hardcoded(), torch.randn(3, 4)
    ref = model(x)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    graph = build_graph(model, x)
    groups = [
        g for g in graph.groups if any(m.tensor == "a.weight" and m.dim == 0 for m in g.members)
    ]
    assert len(groups) == 2  # (2, 4) split: the count 2 is protected, the 4 looks prunable
    for g in groups:
        with pytest.raises(VerificationError, match="restored"):
            remove_channels(model, graph, {g.id: [0]}, x)
    edit, bad = remove_channels_safely(model, graph, {g.id: [0] for g in groups}, x)
    assert set(bad) == {g.id for g in groups}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert model.a.out_features == 8 and torch.equal(model(x), ref)


def test_groups_that_break_a_model_are_found_and_left_out():
    class Fixed(nn.Module):
        """A width hard-coded in forward: removing those channels must be refused."""

        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 8), nn.Linear(8, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = self.b(torch.relu(self.a(x)))
            return self.c(h + torch.ones(6))  # a constant: the 6-group cannot shrink

    model, x = Fixed(), torch.randn(3, 4)
    graph = build_graph(model, x)
    plan = {g.id: [0, 1] for g in graph.prunable_groups()}
    assert len(plan) == 1  # the constant already protects the 6-wide group
    bad = find_breaking_groups(model, graph, plan, x)
    assert bad == {}
    edit, bad = remove_channels_safely(model, graph, plan, x)
    assert model.a.out_features == 6 and not bad


def test_multihead_attention_heads_become_a_pruned_mha(tiny):
    model, x = tiny["transformer"]
    graph = build_graph(model, x)
    mha_heads = [
        g
        for g in graph.prunable_groups()
        if g.kind == "head" and any(m.module == "mha" for m in g.members)
    ]
    assert mha_heads
    remove_channels(model, graph, {mha_heads[0].id: [0]}, x)
    assert isinstance(model.mha, PrunedMultiheadAttention)
    assert model.mha.num_heads == 3 and model.mha.inner_dim == 24 and model.mha.embed_dim == 32
    assert model(x).shape == (2, 4)


def test_masks_are_sliced_with_their_parameters():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model._netsculpt_masks = {"0.weight": torch.ones(8, 4, dtype=torch.bool)}
    x = torch.randn(2, 4)
    graph = build_graph(model, x)
    (g,) = graph.prunable_groups()
    remove_channels(model, graph, {g.id: [1, 2]}, x)
    assert model._netsculpt_masks["0.weight"].shape == (6, 4)
