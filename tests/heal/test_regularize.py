"""heal(regularize=...): sparsity penalties shrink the penalised groups before a prune."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from netsculpt.errors import InputError
from netsculpt.heal import heal
from netsculpt.heal.regularize import penalty


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    return TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())


def _mlp(bn: bool = False):
    torch.manual_seed(0)
    mid = [nn.BatchNorm1d(32)] if bn else []
    return nn.Sequential(nn.Linear(8, 32), *mid, nn.ReLU(), nn.Linear(32, 2))


def _train(model, **kw):
    heal(model, _data(), steps=60, lr=1e-2, val_fraction=0.0, progress=False, seed=0, **kw)
    return model


def test_group_lasso_shrinks_the_channel_groups():
    x = torch.randn(1, 8)
    plain = _train(_mlp())
    lasso = _train(_mlp(), regularize="group_lasso", reg=0.02)
    norm = lambda m: float(penalty(m, "group_lasso", 1.0, x)())  # noqa: E731
    assert norm(lasso) < 0.8 * norm(plain), (norm(lasso), norm(plain))
    # per channel: more of them end up near zero
    small = lambda m: int((m[0].weight.norm(dim=1) < 0.1).sum())  # noqa: E731
    assert small(lasso) > small(plain)


def test_bn_l1_shrinks_the_batchnorm_scales():
    plain = _train(_mlp(bn=True))
    slim = _train(_mlp(bn=True), regularize="bn_l1", reg=0.02)
    assert float(slim[1].weight.abs().sum()) < 0.8 * float(plain[1].weight.abs().sum())


def test_reg_zero_is_plain_training():
    a, b = _train(_mlp()), _train(_mlp(), regularize="group_lasso", reg=0.0)
    assert torch.allclose(a[0].weight, b[0].weight, atol=1e-6)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"regularize": "l0"}, "regularize='l0' is not one of group_lasso, bn_l1"),
        ({"regularize": "group_lasso", "reg": -1.0}, "reg must be a number ≥ 0"),
        ({"regularize": "bn_l1"}, "needs BatchNorm layers"),
        ({"regularize": "group_lasso", "lora": {"r": 2}}, "not with lora="),
    ],
)
def test_bad_regularizers_are_one_line_errors(kw, match):
    m = _mlp()
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(InputError, match=match):
        heal(m, _data(), steps=2, progress=False, **kw)
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
