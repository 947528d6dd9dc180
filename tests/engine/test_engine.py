"""The engine's public pieces: Plan data, Session rules, one config check, replay."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.engine import Session
from netsculpt.errors import InputError


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


X = torch.randn(2, 6)


def test_plan_json_round_trip_and_versions():
    rep = ns.prune(_mlp(), X, amount=0.5)
    d = json.loads(rep.plan.to_json())
    assert d["format"] == "netsculpt-plan" and d["version"] == 1
    assert ns.Plan.from_dict(d) == rep.plan
    d["version"] = 99
    with pytest.raises(InputError, match="version 99"):
        ns.Plan.from_dict(d)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"kind": "explode"}, "unknown action kind"),
        ({"kind": "remove_channels", "channels": [1]}, "needs anchor"),
        ({"kind": "remove_channels", "anchor": ["0.weight", 0, 0, 1], "channels": [1],
          "score": "high"}, "score must be a number"),
    ],
)  # fmt: skip
def test_hand_written_actions_are_checked(bad, match):
    with pytest.raises(InputError, match=match):
        ns.Plan.from_dict({"version": 1, "op": "prune", "actions": [bad]})


def test_a_hand_written_plan_removes_exactly_those_channels():
    m = _mlp()
    plan = {"version": 1, "op": "prune", "actions": [
        {"kind": "remove_channels", "anchor": ["0.weight", 0, 0, 1], "channels": [0, 5, 7]},
    ]}  # fmt: skip
    w = m[0].weight.detach().clone()
    ns.apply(m, X, plan)
    assert m[0].out_features == 13 and m[2].in_features == 13
    keep = [i for i in range(16) if i not in (0, 5, 7)]
    assert torch.equal(m[0].weight, w[keep])


def test_a_plan_for_another_architecture_is_refused_and_changes_nothing():
    plan = ns.prune(_mlp(), X, amount=0.5).plan
    other = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))
    before = repr(other)
    with pytest.raises(InputError, match="made for a group of 16 channels"):
        ns.apply(other, X, plan)
    assert repr(other) == before


def test_unstructured_replay_recomputes_masks_from_the_rule():
    a, b = _mlp(), _mlp()
    rep = ns.prune(a, X, sparsity=0.5, remove_dead=False)
    ns.apply(b, X, ns.Plan.from_json(rep.plan.to_json()))
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_report_json_replays_through_run(tmp_path):
    rep = ns.prune(_mlp(), X, amount=0.5)
    rep.to_json(tmp_path / "r.json")
    assert ns.Report.from_json(tmp_path / "r.json").plan == rep.plan
    fresh = _mlp()
    ns.run(str(tmp_path / "r.json"), model=fresh, example_inputs=X, progress=False)
    assert fresh[0].out_features == 8


def test_importance_accepts_a_callable():
    m = _mlp()
    rep = ns.prune(m, X, amount=0.5, importance=lambda model, g: np.arange(g.size))
    assert all(a.args["channels"] == list(range(len(a.args["channels"]))) for a in rep.plan.actions)
    with pytest.raises(InputError, match="finite scores"):
        ns.prune(_mlp(), X, amount=0.5, importance=lambda model, g: np.ones(1))


def test_ignore_accepts_a_filter_function():
    m = _mlp()
    ns.prune(m, X, amount=0.5, ignore=lambda mod, name: name == "2")
    assert m[2].out_features == 8 and m[0].out_features == 8


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"amount": float("nan")}, "amount must be in"),
        ({"target_macs": float("nan")}, "target_macs"),
        ({"amount": 0.5, "round_to": 2.5}, "round_to must be an integer"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": -1.0}, "threshold"),
        ({"amount": 0.5, "max_batches": 0}, "max_batches"),
    ],
)
def test_every_numeric_option_is_checked_once(kwargs, match):
    m = _mlp()
    with pytest.raises(InputError, match=match):
        ns.prune(m, X, **kwargs)


def test_empty_data_is_an_error_for_data_driven_scores():
    with pytest.raises(InputError, match="empty"):
        ns.prune(_mlp(), X, amount=0.5, importance="activation", data=[])


def test_a_batch_of_the_wrong_shape_is_named():
    data = [(torch.randn(4, 5), torch.zeros(4).long())]
    with pytest.raises(InputError, match=r"data batch 0: input has shape \(4, 5\)"):
        ns.prune(_mlp(), X, amount=0.5, importance="taylor", data=data)


def test_data_given_means_a_data_driven_default():
    data = [(torch.randn(4, 6), torch.zeros(4).long())]
    rep = ns.prune(_mlp(), X, amount=0.5, data=data)
    assert rep.details["importance"] == "activation"
    assert ns.prune(_mlp(), X, amount=0.5).details["importance"] == "l2"


def test_the_session_exports_once_and_reads_data_once():
    reads = []

    class Counting(list):
        def __iter__(self):
            reads.append(1)
            return super().__iter__()

    data = Counting([(torch.randn(4, 6), torch.zeros(4).long())] * 3)
    s = Session(_mlp(), X, data=data)
    s.graph, s.graph, s.captured  # noqa: B018
    s.batches(), s.batches()
    assert s.exports == 1 and len(reads) == 1
    rep = ns.prune(_mlp(), X, amount=0.5, data=data)
    assert rep.details["exports"] == 1


def test_a_failed_verb_restores_the_model_exactly(monkeypatch):
    from netsculpt.engine.backends import memory

    m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.MultiheadAttention(16, 4, batch_first=True))

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = m

        def forward(self, x):
            h = self.body[1](self.body[0](x))
            return self.body[2](h, h, h)[0]

    w = Wrap()
    x = torch.randn(2, 3, 6)
    before = (repr(w), {k: v.clone() for k, v in w.state_dict().items()},
              {n: dict(vars(mod)) for n, mod in w.named_modules()})  # fmt: skip

    def boom(*a, **k):
        raise RuntimeError("injected failure after the edit")

    real = memory.APPLIERS["remove_channels"]

    def edit_then_fail(session, actions, **kw):
        real(session, actions, **kw)
        boom()

    monkeypatch.setitem(memory.APPLIERS, "remove_channels", edit_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        ns.prune(w, x, amount=0.5)
    assert repr(w) == before[0]
    assert all(torch.equal(v, before[1][k]) for k, v in w.state_dict().items())
    for n, mod in w.named_modules():
        assert set(vars(mod)) == set(before[2][n]), n
    assert not hasattr(w, "_netsculpt_edits") or not w._netsculpt_edits


def test_a_meta_model_is_refused_in_one_line():
    with torch.device("meta"):
        m = _mlp()
    with pytest.raises(InputError, match="meta device"):
        ns.prune(m, torch.empty(2, 6, device="meta"), amount=0.5)


def test_heal_names_a_batch_that_does_not_fit_the_model():
    data = [(torch.randn(4, 5), torch.zeros(4).long())]
    with pytest.raises(InputError, match=r"heal: data batch 0 \(input \(4, 5\)\) does not fit"):
        ns.heal(_mlp(), data, epochs=1, progress=False)


@pytest.mark.parametrize("kw", [{"lr": float("nan")}, {"lr": -1.0}, {"weight_decay": -0.1}])
def test_heal_refuses_bad_numbers(kw):
    with pytest.raises(InputError, match="heal: "):
        ns.heal(_mlp(), [(torch.randn(4, 6), torch.zeros(4).long())], epochs=1, **kw)


@pytest.mark.parametrize("op, kw", [("cut", {"count": 1}), ("grow", {"kind": "deeper"})])
def test_cut_and_grow_name_a_batch_of_the_wrong_shape(op, kw):
    from netsculpt.data.models import ResidualMLP

    torch.manual_seed(0)
    model = ResidualMLP(10, 16, 4, 3).eval()
    data = [(torch.randn(4, 7), torch.zeros(4).long())]
    with pytest.raises(InputError, match=r"data batch 0: input has shape \(4, 7\)"):
        getattr(ns, op)(model, torch.randn(2, 10), data=data, **kw)
