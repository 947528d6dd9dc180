"""merge_models: soup, task arithmetic and TIES against hand-computed values; clear errors."""

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.errors import InputError
from netsculpt.ops.merge_models import ties_merge


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_average_is_the_mean_and_inputs_are_untouched():
    a, b = _net(0), _net(1)
    wa = a[0].weight.clone()
    soup = ns.merge_models([a, b])
    assert soup is not a and type(soup) is type(a)
    assert torch.allclose(soup[0].weight, (a[0].weight + b[0].weight) / 2)
    assert torch.allclose(soup[1].running_var, (a[1].running_var + b[1].running_var) / 2)
    assert torch.equal(a[0].weight, wa)


def test_task_arithmetic_adds_scaled_task_vectors():
    base, a, b = _net(0), _net(1), _net(2)
    m = ns.merge_models([a, b], base=base, method="task_arithmetic", lam=0.5)
    w0 = base[3].weight
    want = w0 + 0.5 * ((a[3].weight - w0) + (b[3].weight - w0))
    assert torch.allclose(m[3].weight, want, atol=1e-6)


def test_ties_trims_elects_sign_and_averages_agreeing_entries():
    tau = torch.tensor([[3.0, -1.0, 0.5, 2.0], [-1.0, -2.0, 0.1, 4.0]])
    # trim to top 50%: [3, 0, 0, 2] and [0, -2, 0, 4]; signs [+, -, +(majority), +]
    assert torch.equal(ties_merge(tau, 0.5), torch.tensor([3.0, -2.0, 0.0, 3.0]))


def test_ties_with_identical_models_returns_that_model():
    base, a = _net(0), _net(1)
    m = ns.merge_models([a, a], base=base, method="ties", trim=1.0)
    assert torch.allclose(m[0].weight, a[0].weight, atol=1e-6)


def test_mismatched_architectures_name_the_first_differing_parameter():
    a = _net(0)
    b = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 5))
    with pytest.raises(InputError, match=r"'3\.weight'"):
        ns.merge_models([a, b])


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"method": "ties"}, "needs base"),
        ({"method": "soup"}, "method must be"),
        ({"method": "ties", "trim": 0.0}, "trim"),
    ],
)
def test_bad_arguments_are_refused(kwargs, msg):
    base = _net(0) if kwargs.get("trim") == 0.0 else None
    with pytest.raises(InputError, match=msg):
        ns.merge_models([_net(1), _net(2)], base=base, **kwargs)
