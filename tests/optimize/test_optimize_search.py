"""optimize: budgets met or an honest stop, determinism, replay, bad budgets, time budget."""

from __future__ import annotations

import math

import pytest
import torch

import netsculpt as ns
from netsculpt.errors import InputError
from netsculpt.measure import count_macs, count_params


def test_macs_budget_is_met_and_the_plan_replays_on_a_fresh_copy(net, x, data, fast, fresh, arch):
    rep = ns.optimize(net, x, data=data, target_macs=0.6, **fast)
    assert rep.details["stop"] == "target", rep.notes
    assert rep.after.macs <= 0.6 * rep.before.macs
    assert rep.after.macs == count_macs(net, x) and rep.after.params == count_params(net)
    kinds = [a.kind for a in rep.plan.actions]
    assert kinds[0] == "fold" and "remove_channels" in kinds  # BatchNorms fold once, first
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    # every kept width is a multiple of 8 / 16
    widths = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths), widths
    trace = rep.details["trace"]
    assert len(trace) == rep.details["steps"] + 1 >= 2
    assert all(a["macs"] > b["macs"] for a, b in zip(trace, trace[1:]))
    assert {"macs", "params", "proxy_kl", "accuracy", "drop"} <= set(trace[-1])
    # the plan is data: JSON round trip, then a replay gives the same architecture
    other = fresh()
    ns.apply(other, x, ns.Plan.from_json(rep.plan.to_json()))
    assert arch(other) == arch(net)


def test_same_seed_same_plan(x, data, fast, fresh):
    plans = [ns.optimize(fresh(), x, data=data, target_macs=0.5, **fast).plan for _ in range(2)]
    assert plans[0] == plans[1]


def test_params_target_as_an_absolute_count(net, x, data, fast):
    goal = int(0.7 * count_params(net))
    rep = ns.optimize(net, x, data=data, target_params=goal, **fast)
    assert rep.after.params <= goal and rep.details["budgets"][0]["limit"] == goal


def test_max_drop_stops_honestly_and_keeps_the_model_before_that_step(net, x, data, fast):
    rep = ns.optimize(net, x, data=data, target_macs=0.2, metric="kl", max_drop=1e-9, **fast)
    assert rep.details["stop"] == "max_drop"
    assert rep.after.macs > 0.2 * rep.before.macs  # not reached, and said so
    assert any("stopped before the target" in n and "max_drop" in n for n in rep.notes)
    assert [a.kind for a in rep.plan.actions] == ["fold"] * len(rep.plan.actions)
    assert rep.after.macs == count_macs(net, x) == rep.details["trace"][-1]["macs"]


def test_time_budget_returns_the_best_plan_so_far(net, x, data, fast):
    rep = ns.optimize(net, x, data=data, target_macs=0.1, time_budget=1e-3, **fast)
    assert rep.details["stop"] == "time"
    assert any("time_budget" in n for n in rep.notes)
    assert net(x).shape == (1, 10)


def test_without_data_the_proxy_reads_the_example_inputs(net, x):
    rep = ns.optimize(net, x, target={"macs": 0.7}, progress=False)
    assert rep.details["metric"] == "kl" and rep.after.macs <= 0.7 * rep.before.macs
    assert any("no data" in n for n in rep.notes)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"target_macs": 0}, "target_macs must be > 0"),
        ({"target_macs": -0.5}, "target_macs must be > 0"),
        ({"target_latency": math.nan}, "target_latency must be"),
        ({"target_params": math.inf}, "target_params must be"),
        ({"target": {"macs": 0.5}, "target_macs": 0.4}, "two macs targets"),
        ({"target": {"memory": 0.5}}, "peak inference memory target is not supported"),
        ({"target": {"speed": 2}}, "unknown target metric 'speed'"),
        ({"target": 0.5}, "target= must be a mapping"),
        ({"target": {"latency": 0}}, "target latency must be > 0"),
        ({}, "optimize needs a target"),
        ({"target_macs": 0.5, "max_drop": -1}, "max_drop must be a number ≥ 0"),
        ({"target_macs": 0.5, "step": 1.5}, r"step must be in \(0, 1\)"),
        ({"target_macs": 0.5, "metric": "f1"}, "metric must be one of"),
    ],
)
def test_bad_budgets_are_one_line_errors(net, x, kw, match):
    with pytest.raises(InputError, match=match) as e:
        ns.optimize(net, x, **kw)
    assert "\n" not in str(e.value)


def test_accuracy_metric_needs_labels(net, x):
    data = [torch.rand(8, 1, 8, 8) for _ in range(4)]
    with pytest.raises(InputError, match="needs labelled data"):
        ns.optimize(net, x, data=data, target_macs=0.5, metric="accuracy", progress=False)
