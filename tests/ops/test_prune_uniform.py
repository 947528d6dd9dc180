"""``uniform=True``: equal counts removed from groups of the same kind and size."""

from __future__ import annotations

import torch
from torch import nn

import netsculpt as ns


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, 2),
    )  # fmt: skip
    with torch.no_grad():  # layers of very different scale: a global ranking prunes unevenly
        m[0].weight.mul_(0.1)
        m[4].weight.mul_(10.0)
    return m


def _widths(m: nn.Sequential) -> list[int]:
    return [m[i].out_features for i in (0, 2, 4)]


def test_global_prune_is_uneven_without_uniform():
    m = _mlp()
    ns.prune(m, torch.randn(4, 8), amount=0.4, global_=True, importance="l1")
    assert len(set(_widths(m))) > 1


def test_uniform_equalizes_a_global_plan():
    m = _mlp()
    x = torch.randn(4, 8)
    rep = ns.prune(m, x, amount=0.4, global_=True, importance="l1", uniform=True)
    widths = _widths(m)
    assert len(set(widths)) == 1 and widths[0] < 32
    assert rep.config["uniform"] is True
    removed = sum(32 - w for w in widths)
    assert abs(removed - round(0.4 * 96)) <= 3  # the mean count, so about the same total


def test_uniform_respects_round_to():
    m = _mlp()
    ns.prune(m, torch.randn(4, 8), amount=0.3, global_=True, uniform=True, round_to=8)
    widths = _widths(m)
    assert len(set(widths)) == 1 and widths[0] % 8 == 0


def test_uniform_with_a_budget_meets_it():
    m = _mlp()
    rep = ns.prune(m, torch.randn(4, 8), target_params=0.6, global_=True, uniform=True)
    assert len(set(_widths(m))) == 1
    assert rep.after.params <= 0.6 * rep.before.params
