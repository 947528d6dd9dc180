"""Masks bound to the parameters that train: the same object, the parameter of the same name
after a preparation replaced it, and a one-line refusal for a parameter that lost its shape
(FSDP1's flat parameters)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.errors import InputError
from netsculpt.heal.masks import HealMasks, fully_sharded


def _pruned():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    ns.prune(net, torch.randn(4, 8), sparsity=0.5, remove_dead=False)
    return net


def test_a_replaced_parameter_is_found_by_name():
    net = _pruned()
    masks = HealMasks(net)
    assert len(masks) == 2 and not fully_sharded(net)
    old = net[0].weight
    net[0].weight = nn.Parameter(torch.ones_like(old))  # what a wrapper may do in prepare
    masks.bind(net)
    masks.apply()
    assert torch.equal(net[0].weight != 0, net._netsculpt_masks["0.weight"])
    assert torch.all(old[~net._netsculpt_masks["0.weight"]] == 0)


def test_a_parameter_that_lost_its_shape_is_refused_in_one_line():
    net = _pruned()
    masks = HealMasks(net)
    net[2].weight = nn.Parameter(net[2].weight.detach().flatten()[:16])  # a flat shard
    with pytest.raises(InputError, match=r"2\.weight is \(16,\), its pruning mask \(2, 16\)") as e:
        masks.bind(net)
    assert "\n" not in str(e.value) and "fsdp_version 2" in str(e.value)
