import numpy as np
import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.errors import CaptureError, InputError
from netsculpt.measure import count_macs


def _data(x, n=4):
    return [
        (
            x + 0.1 * torch.randn_like(x.float()) if x.is_floating_point() else x,
            torch.zeros(x.shape[0], dtype=torch.long),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("importance", ["l1", "l2", "random", "taylor", "activation"])
def test_structured_amount_halves_every_group(tiny, importance):
    model, x = tiny["mlp"]
    rep = ns.prune(model, x, amount=0.5, importance=importance, data=_data(x))
    assert (model[0].out_features, model[2].out_features) == (16, 8)
    assert model(x).shape == (4, 3)
    assert rep.after.params < rep.before.params and rep.after.macs == count_macs(model, x)


def test_bn_scale_scores_only_groups_with_batchnorm(tiny):
    model, x = tiny["cnn"]
    rep = ns.prune(model, x, amount=0.5, importance="bn_scale")
    assert rep.after.macs < rep.before.macs
    assert any("no 'bn_scale' score" in n for n in rep.notes)


def test_global_ranking_and_round_to(tiny):
    model, x = tiny["transformer"]
    rep = ns.prune(model, x, amount=0.4, global_=True, round_to=8)
    assert rep.after.macs < rep.before.macs
    for blk in model.blocks:
        assert blk.mlp[0].out_features % 8 == 0
    assert model(x).shape == (2, 4)


@pytest.mark.parametrize("target", [0.5, 0.3])
def test_macs_budget_is_met(tiny, target):
    model, x = tiny["cnn"]
    before = count_macs(model, x)
    rep = ns.prune(model, x, target_macs=target)
    assert count_macs(model, x) <= target * before
    assert rep.after.macs == count_macs(model, x)
    assert count_macs(model, x) > 0.5 * target * before  # not pruned far past the budget


def test_params_budget_as_absolute_count(tiny):
    model, x = tiny["mlp"]
    ns.prune(model, x, target_params=400)
    assert sum(p.numel() for p in model.parameters()) <= 400


def test_unstructured_threshold_keeps_zeros_through_training(tiny):
    model, x = tiny["mlp"]
    rep = ns.prune(model, x, threshold=0.1, remove_dead=False)
    zero = model[0].weight == 0
    assert zero.any() and rep.details["weights_zeroed"] > 0
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()
        model(x)  # the next forward re-applies the masks
    assert (model[0].weight[zero] == 0).all()
    assert ns.make_permanent(model) >= 3
    assert not model._netsculpt_masks


@pytest.mark.parametrize("global_", [False, True])
def test_unstructured_sparsity_layerwise_and_global(tiny, global_):
    model, x = tiny["mlp"]
    rep = ns.prune(model, x, sparsity=0.6, global_=global_, remove_dead=False)
    assert abs(rep.details["sparsity"] - 0.6) < 0.02
    per_layer = rep.details["per_layer_sparsity"].values()
    if not global_:
        assert all(abs(s - 0.6) < 0.05 for s in per_layer)


def test_two_four_pattern(tiny):
    model, x = tiny["mlp"]
    ns.prune(model, x, pattern="2:4", remove_dead=False)
    w = model[2].weight.detach().reshape(16, -1, 4)
    assert ((w != 0).sum(-1) <= 2).all()


def test_wanda_scores_need_data(tiny):
    model, x = tiny["mlp"]
    with pytest.raises(InputError, match="calibration data"):
        ns.prune(model, x, sparsity=0.5, importance="activation")
    ns.prune(model, x, sparsity=0.5, importance="activation", data=_data(x), remove_dead=False)
    assert (model[0].weight == 0).float().mean() > 0.45


def test_high_threshold_gives_a_smaller_dense_model_with_the_same_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)
    )
    with torch.no_grad():  # dead units: 20 neurons with no outgoing, 8 with no incoming weight
        model[2].weight[:, :20] = 0
        model[2].weight[:8] = 0
    x = torch.randn(16, 10)
    ref = model(x)
    rep = ns.prune(model, x, threshold=1e-6)
    assert rep.details["dead_channels_removed"] == 28
    assert (model[0].out_features, model[2].out_features) == (44, 24)
    assert torch.allclose(model(x), ref, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"amount": 1.5}, "amount must be in"),
        ({"amount": 0.0}, "amount must be in"),
        ({"amount": 0.5, "importance": "magic"}, "unknown importance"),
        ({"sparsity": 1.0}, "sparsity must be in"),
        ({"pattern": "4:2"}, "N:M"),
        ({}, "nothing to prune"),
        ({"amount": 0.5, "ignore": [nn.Linear(2, 2)]}, "not part of this model"),
    ],
)
def test_bad_arguments_are_refused_before_any_change(tiny, kwargs, match):
    model, x = tiny["mlp"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InputError, match=match):
        ns.prune(model, x, **kwargs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_wrong_example_input_shape_is_a_capture_error(tiny):
    model, _ = tiny["mlp"]
    with pytest.raises(CaptureError, match="example input"):
        ns.prune(model, torch.randn(2, 7), amount=0.5)


def test_report_lists_groups_and_protection(tiny):
    model, x = tiny["transformer"]
    rep = ns.prune(model, x, amount=0.5)
    kinds = {row["kind"] for row in rep.details["groups"]}
    assert kinds == {"channel", "head"}
    assert "model input" in rep.details["protected"]
    assert np.isclose(rep.details["fraction"], 0.5)
