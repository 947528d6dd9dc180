"""cut and grow as registry verbs: their plans replay on fresh copies, one option vocabulary
(ignore=, importance=), target_params=, validated configs."""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netsculpt as ns
from netsculpt.data.models import ResidualMLP, SeedMLP
from netsculpt.errors import InputError
from netsculpt.measure import count_macs, count_params


def _data(n_in: int = 40, n: int = 64) -> list:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, n_in, generator=g), torch.randint(0, 10, (n,), generator=g))]


def _mlp(depth: int = 6) -> nn.Module:
    torch.manual_seed(0)
    return ResidualMLP(40, 16, depth, 10)


def _shapes(m: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def _replay(plan, fresh: nn.Module, x, **kw):
    """Replay through JSON, as a saved plan would be."""
    return ns.apply(fresh, x, ns.Plan.from_json(plan.to_json()), **kw)


def test_cut_and_grow_are_registry_verbs():
    for verb in (ns.cut, ns.grow):
        params = inspect.signature(verb).parameters
        assert list(params)[:3] == ["model", "example_inputs", "config"]
        assert params["data"].kind is inspect.Parameter.KEYWORD_ONLY
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        assert "ignore" in verb.__doc__ and "importance" in verb.__doc__


def test_cut_count_replays_to_the_same_architecture():
    x, data = torch.randn(2, 40), _data()
    model, fresh = _mlp(), _mlp()
    rep = ns.cut(model, x, data=data, count=2)
    acts = rep.plan.of_kind("remove_block")
    assert [a.args["block"] for a in acts] == [r["block"] for r in rep.details["removed"]]
    assert all(a.args["how"] == "skip" and a.score is not None for a in acts)
    done = _replay(rep.plan, fresh, x, data=data)
    assert str(fresh) == str(model) and _shapes(fresh) == _shapes(model)
    assert torch.equal(fresh(x), model(x)) and done.after.params == rep.after.params


@pytest.mark.parametrize("bridge", ["lstsq", "train"])
def test_cut_bridge_replays_to_the_same_outputs(bridge):
    torch.manual_seed(0)
    model = SeedMLP(64, 10)
    fresh = copy.deepcopy(model)
    x, data = torch.rand(1, 64), [torch.rand(256, 64)]
    rep = ns.cut(model, x, data=data, blocks=["2"], bridge=bridge, train_steps=5)
    (act,) = rep.plan.of_kind("remove_block")
    assert act.args["how"] == "bridge+fold"
    w = torch.tensor(act.args["weight"])
    assert w.shape == (32, 64) and torch.tensor(act.args["bias"]).shape == (32,)
    if bridge == "train":
        assert act.args["trained"] is True  # a replay rebuilds the trained bridge, no training
    assert rep.after.macs == count_macs(model, x)  # predicted without a second export
    _replay(rep.plan, fresh, x)  # no data needed: the bridge is in the plan
    assert str(fresh) == str(model) and _shapes(fresh) == _shapes(model)
    assert torch.allclose(fresh(data[0]), model(data[0]), atol=1e-6)


def test_unfolded_conv_bridge_and_bn_recalibration_replay():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()  # fmt: skip
    fresh = copy.deepcopy(net)
    x = torch.randn(2, 3, 8, 8)
    data = [torch.randn(8, 3, 8, 8) * 2 + 1 for _ in range(2)]
    rep = ns.cut(net, x, data=data, blocks=["3"])
    assert [a.kind for a in rep.plan.actions] == ["remove_block", "recalibrate_bn"]
    assert rep.plan.actions[0].args["how"] == "bridge" and "bridge" in rep.notes[0]
    assert rep.after.macs == count_macs(net, x)
    _replay(rep.plan, fresh, x, data=data)
    assert str(fresh) == str(net) and torch.allclose(fresh(x), net(x), atol=1e-6)
    assert torch.equal(fresh[6].running_mean, net[6].running_mean)


def test_iterative_cut_replays_round_by_round():
    x, data = torch.randn(2, 40), _data()
    model, fresh = _mlp(), _mlp()
    rep = ns.cut(model, x, data=data, count=3, iterative=True)
    assert rep.notes[0].startswith("round 1: ") and len(rep.plan.of_kind("remove_block")) == 3
    assert rep.after.macs == count_macs(model, x)
    _replay(rep.plan, fresh, x, data=data)
    assert str(fresh) == str(model) and torch.equal(fresh(x), model(x))


def test_a_plan_for_another_model_is_refused_and_the_model_is_unchanged():
    x = torch.randn(2, 40)
    rep = ns.cut(_mlp(), x, data=_data(), count=1)
    other = _mlp(depth=2)
    before = copy.deepcopy(other)
    plan = rep.plan.to_dict()
    plan["actions"][0]["block"] = "blocks.7"
    with pytest.raises(InputError, match=r"remove_block\[0\]: no block named 'blocks.7'"):
        ns.apply(other, x, plan)
    assert str(other) == str(before) and _shapes(other) == _shapes(before)


@pytest.mark.parametrize(
    "kw", [dict(where=["0"]), dict(where=["blocks.1"]), dict(kind="wider", where=["0", "2"])]
)
def test_grow_replays_to_the_same_architecture(kw):
    torch.manual_seed(0)
    model = ResidualMLP(40, 16, 3, 10) if kw["where"] == ["blocks.1"] else SeedMLP(40, 10)
    fresh = copy.deepcopy(model)
    x = torch.randn(4, 40)
    rep = ns.grow(model, x, **kw)
    acts = rep.plan.of_kind("grow")
    assert {a.args["block"] for a in acts} == set(kw["where"])
    assert all(a.args["grow_kind"] == kw.get("kind", "deeper") for a in acts)
    _replay(rep.plan, fresh, x)
    assert str(fresh) == str(model) and _shapes(fresh) == _shapes(model)
    assert torch.allclose(fresh(x), model(x), atol=1e-6)


def test_grow_auto_plan_replays_and_trainable_new_freezes_on_replay():
    x, data = torch.randn(2, 40), _data()
    model, fresh = _mlp(4), _mlp(4)
    rep = ns.grow(model, x, data=data, count=2, trainable="new")
    assert len(rep.plan.of_kind("grow")) == 2
    _replay(rep.plan, fresh, x)
    assert str(fresh) == str(model) and _shapes(fresh) == _shapes(model)
    flags = [p.requires_grad for p in fresh.parameters()]
    assert flags == [p.requires_grad for p in model.parameters()] and 0 < sum(flags) < len(flags)


def test_a_failed_grow_restores_the_requires_grad_flags(monkeypatch):
    import netsculpt.ops.grow as grow_mod

    model = ResidualMLP(40, 16, 3, 10)
    monkeypatch.setattr(grow_mod, "_diff", lambda a, b: math.inf)  # the check always fails
    with pytest.raises(ns.NetsculptError, match="outputs changed"):
        ns.grow(model, torch.randn(2, 40), where=["blocks.1"], trainable="new")
    assert all(p.requires_grad for p in model.parameters()) and len(model.blocks) == 3


# -- target_params ------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [0.8, 5000])
def test_target_params_removes_the_lowest_scoring_until_reached(target):
    x, data = torch.randn(2, 40), _data()
    model = _mlp()
    total = count_params(model)
    goal = target * total if target <= 1 else target
    rep = ns.cut(model, x, data=data, target_params=target)
    gone = [r["block"] for r in rep.details["removed"]]
    scores = rep.details["scores"]
    assert sorted(gone, key=scores.get) == sorted(scores, key=scores.get)[: len(gone)]
    assert (
        rep.after.params
        <= goal
        < rep.after.params + min(r["params"] for r in rep.details["removed"])
    )
    assert rep.after.params == count_params(model) and rep.after.macs == count_macs(model, x)
    assert not any("budget" in n for n in rep.notes)


def test_target_params_out_of_reach_removes_what_it_can_and_says_so():
    x, data = torch.randn(2, 40), _data()
    model = _mlp()
    rep = ns.cut(model, x, data=data, target_params=100)
    assert len(rep.details["removed"]) == 6
    assert any(n.startswith("params budget not reached") for n in rep.notes)


def test_target_params_iterative_and_already_reached():
    x, data = torch.randn(2, 40), _data()
    model = _mlp()
    goal = 0.8 * count_params(model)
    rep = ns.cut(model, x, data=data, target_params=0.8, iterative=True)
    assert rep.after.params <= goal and rep.notes[0].startswith("round 1: ")
    same = ns.cut(model, x, data=data, target_params=count_params(model) + 10)
    assert same.details["removed"] == [] and "already at or below" in same.notes[0]


# -- one vocabulary ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ignore",
    [
        ["blocks.5", "blocks.4"],
        "blocks.[45]",
        lambda module, name: name in ("blocks.4", "blocks.5.fc1"),
        "modules",
    ],
    ids=["names", "glob", "filter_fn", "modules"],
)
def test_cut_ignore_takes_names_globs_modules_and_filters(ignore):
    x, data = torch.randn(2, 40), _data()
    model = _mlp()
    if ignore == "modules":
        ignore = [model.blocks[4], model.blocks[5]]
    rep = ns.cut(model, x, data=data, importance="last", count=2, ignore=ignore)
    assert [r["block"] for r in rep.details["removed"]] == ["blocks.3", "blocks.2"]


def test_cut_refuses_ignored_and_unknown_names():
    x = torch.randn(2, 40)
    with pytest.raises(InputError, match=r"'blocks.2' cannot be removed: ignored"):
        ns.cut(_mlp(), x, blocks=["blocks.2"], ignore=["blocks.2"])
    with pytest.raises(InputError, match="ignore names no module 'nope'"):
        ns.cut(_mlp(), x, count=1, ignore=["nope"])
    with pytest.raises(InputError, match="protect= is now ignore="):
        ns.cut(_mlp(), x, count=1, protect=["blocks.2"])


def test_grow_ignore():
    x, data = torch.randn(2, 40), _data()
    model = _mlp(4)
    rep = ns.grow(model, x, data=data, count=4, ignore="blocks.[01]")
    assert sorted(g["block"] for g in rep.details["grown"]) == ["blocks.2", "blocks.3"]
    with pytest.raises(InputError, match="ignored"):
        ns.grow(_mlp(4), x, where=["blocks.1"], ignore=["blocks.1"])


def test_importance_callable_and_the_criterion_alias():
    x, data = torch.randn(2, 40), _data()
    rep = ns.cut(_mlp(), x, count=2, importance=lambda model, block: -block.params - block.index)
    assert [r["block"] for r in rep.details["removed"]] == ["blocks.5", "blocks.4"]
    a = ns.cut(_mlp(), x, data=data, count=2, criterion="influence")
    b = ns.cut(_mlp(), x, data=data, count=2, importance="influence")
    assert a.details["removed"] == b.details["removed"] and a.details["criterion"] == "influence"
    with pytest.raises(InputError, match="old name of importance"):
        ns.cut(_mlp(), x, count=1, criterion="kl", importance="loss")
    grown = ns.grow(_mlp(4), x, importance=lambda model, block: float(block.index == 2))
    assert [g["block"] for g in grown.details["grown"]] == ["blocks.2"]


@pytest.mark.parametrize(
    "op, bad, match",
    [
        ("cut", dict(threshold=float("nan")), "threshold must be a finite number"),
        ("cut", dict(count=2.0), r"count must be an integer, got 2.0 \(write 2\)"),
        ("cut", dict(count=1, ridge=-1.0), "ridge must be a number ≥ 0"),
        ("cut", dict(target_params=-0.5), "target_params must be > 0"),
        ("cut", dict(count=1, importance="gradmax"), "unknown criterion 'gradmax'"),
        ("cut", dict(count=1, target_params=0.5), "exactly one"),
        ("grow", dict(factor=float("inf"), kind="wider"), "factor must be a number > 0"),
        ("grow", dict(kind="wider", factor=1.0), "factor must be > 1"),
        ("grow", dict(noise=-0.1), "noise must be a number ≥ 0"),
        ("grow", dict(where="0"), "where must be 'auto' or a list"),
    ],
)
def test_options_are_validated_in_one_place(op, bad, match):
    model = _mlp()
    before = copy.deepcopy(model)
    with pytest.raises(InputError, match=match) as e:
        getattr(ns, op)(model, torch.randn(2, 40), **bad)
    assert "\n" not in str(e.value) and str(model) == str(before)


def test_kl_threshold_is_in_nats():
    """The default criterion's unit: the mean KL in nats, as F.kl_div computes it."""
    x, data = torch.randn(2, 40), _data()
    model = _mlp()
    rep = ns.cut(copy.deepcopy(model), x, data=data, count=1, recalibrate_bn=False)
    name = rep.details["removed"][0]["block"]
    cut = copy.deepcopy(model)
    ns.cut(cut, x, blocks=[name])
    xs = data[0][0]
    with torch.no_grad():
        ref, out = F.log_softmax(model.eval()(xs), -1), F.log_softmax(cut.eval()(xs), -1)
        kl = F.kl_div(out, ref, log_target=True, reduction="batchmean")
    assert rep.details["scores"][name] == pytest.approx(float(kl), rel=1e-4, abs=1e-7)


def test_a_removal_that_changes_an_earlier_block_is_re_read():
    """Deepest first keeps earlier names valid, but a bridge folds into the next Linear: when
    the layer after it went in the same cut, the blocks are read again (the bridge now folds
    past the new identities), also on replay."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, 10),
    )  # fmt: skip
    fresh = copy.deepcopy(net)
    x = torch.randn(4, 8)
    rep = ns.cut(net, x, data=[torch.randn(64, 8)], blocks=["2", "4"])
    assert [r["block"] for r in rep.details["removed"]] == ["4", "2"]
    assert rep.notes[1] == "2: bridged (Linear(64->32)) and folded into 6"
    assert rep.details["exports"] == 3  # the first read, the re-read, the MACs after
    assert rep.after.macs == count_macs(net, x)
    _replay(rep.plan, fresh, x)
    assert str(fresh) == str(net) and torch.allclose(fresh(x), net(x), atol=1e-6)
