"""prune: iterative rounds (steps=, between=), per-layer ratios (amount={glob: fraction}), and
the LAMP / FPGM channel criteria."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.errors import InputError
from netsculpt.graph import build_graph
from netsculpt.importance import score_groups


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3)
    ).eval()


X = torch.randn(4, 10)


def _widths(m):
    return m[0].out_features, m[2].out_features


def test_steps_reach_the_one_shot_widths_rescoring_every_round():
    calls, hooks = [], []

    def counting_l2(model, group):
        calls.append(group.size)
        return [float(v) for v in range(group.size)]

    one_shot, rounds = mlp(), mlp()
    ns.prune(one_shot, X, amount=0.5)
    rep = ns.prune(rounds, X, amount=0.5, steps=3, importance=counting_l2,
                   between=lambda model, i: hooks.append(i))  # fmt: skip
    assert _widths(rounds) == _widths(one_shot) == (16, 8)
    assert hooks == [1, 2]  # after every round but the last
    assert sorted(set(calls), reverse=True)[:1] == [32] and len(calls) == 6  # 2 groups × 3
    assert [r["round"] for r in rep.details["rounds"]] == [1, 2, 3]
    assert sorted({a.args["step"] for a in rep.plan.actions}) == [1, 2, 3]
    fresh = mlp()
    ns.apply(fresh, X, ns.Plan.from_json(rep.plan.to_json()))
    assert _widths(fresh) == (16, 8)


def test_steps_with_a_budget_and_global_ranking():
    m = mlp()
    rep = ns.prune(m, X, target_macs=0.5, steps=2)
    assert rep.after.macs <= 0.5 * rep.before.macs
    assert rep.details["rounds"][0]["macs"] > rep.details["rounds"][1]["macs"]
    g = mlp()
    ns.prune(g, X, amount=0.5, global_=True, steps=2)
    assert sum(_widths(g)) == 24  # half of the 48 channels, as one shot would


def test_per_layer_ratios_by_glob():
    m = mlp()
    ns.prune(m, X, amount={"0": 0.5})
    assert _widths(m) == (16, 16)  # the group of layer 0 only
    m = mlp()
    ns.prune(m, X, amount={"2": 0.75, "*": 0.25})  # the first matching pattern wins
    assert _widths(m) == (24, 4)
    m = mlp()
    rep = ns.prune(m, X, amount={"[02]": 0.5}, steps=2)
    assert _widths(m) == (16, 8) and rep.details["rounds"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"amount": {}}, "empty"),
        ({"amount": {"0": 1.5}}, r"amount\['0'\] must be in \(0, 1\)"),
        ({"amount": {3: 0.5}}, "must be a module name or glob"),
        ({"amount": {"0": 0.5}, "global_": True}, "not with global_="),
        ({"amount": {"0": 0.5}, "target_macs": 0.5}, "not with target_macs="),
        ({"amount": 0.5, "steps": 0}, "steps must be an integer ≥ 1"),
        ({"amount": 0.5, "between": 3}, "between must be a function"),
    ],
)
def test_bad_schedules_and_ratios_are_one_line_errors(kw, match):
    with pytest.raises(InputError, match=match) as e:
        ns.prune(mlp(), X, **kw)
    assert "\n" not in str(e.value)


def test_lamp_scores_follow_the_formula_and_rank_globally():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]))
        m[0].bias.zero_()
        m[2].weight.zero_()
    g = build_graph(m, torch.ones(1, 2))
    groups = g.prunable_groups()
    s = score_groups("lamp", m, g, groups)[groups[0].id]
    np.testing.assert_allclose(s, [1 / 14, 4 / 13, 1.0])  # norms² 1, 4, 9
    rep = ns.prune(mlp(), X, amount=0.5, global_=True, importance="lamp")
    assert rep.details["importance"] == "lamp"


def test_fpgm_scores_the_filter_nearest_the_others_lowest():
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0.0, 0, 0, 0]]))
        m[0].bias.zero_()
    g = build_graph(m, torch.ones(1, 4))
    groups = g.prunable_groups()
    s = score_groups("fpgm", m, g, groups)[groups[0].id]
    np.testing.assert_allclose(s, [3.0, 3.0, 2.0])  # Σ_j ||F_i − F_j||
    ns.prune(m, torch.ones(1, 4), amount=0.34, importance="fpgm")
    assert m[0].out_features == 2 and float(m[0].weight.abs().sum()) == 2.0  # the median went
