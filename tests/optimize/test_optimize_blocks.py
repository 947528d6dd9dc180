"""Block removals as proposals: active once this install's cut plans remove_block actions."""

from __future__ import annotations

import copy

import pytest
import torch

import netsculpt as ns
from netsculpt.data.models import ResidualMLP
from netsculpt.optimize.candidates import can_remove_blocks


def _weak_blocks_net():
    torch.manual_seed(0)
    m = ResidualMLP(40, 32, 4, 10).eval()
    with torch.no_grad():  # two blocks that barely change the stream
        for i in (1, 2):
            m.blocks[i].fc2.weight.mul_(1e-3)
            m.blocks[i].fc2.bias.zero_()
    return m


def _data():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 40, generator=g), torch.randint(0, 10, (16,), generator=g))
            for _ in range(4)]  # fmt: skip


def test_block_removals_are_proposed_and_replay(fast, arch):
    if not can_remove_blocks():
        m = _weak_blocks_net()
        rep = ns.optimize(m, torch.randn(1, 40), data=_data(), target_params=0.7, **fast)
        assert any("block removal not proposed" in n for n in rep.notes)
        pytest.skip("this install's cut plans no remove_block actions yet")
    m = _weak_blocks_net()
    fresh = copy.deepcopy(m)
    x = torch.randn(1, 40)
    fast = {**fast, "max_batches": 2, "eval_batches": 2}
    rep = ns.optimize(m, x, data=_data(), target_params=0.6, step=0.2, **fast)
    kinds = [a.kind for a in rep.plan.actions]
    assert "remove_block" in kinds, kinds
    assert rep.after.params <= 0.6 * rep.before.params
    ns.apply(fresh, x, ns.Plan.from_json(rep.plan.to_json()))
    assert arch(fresh) == arch(m)
