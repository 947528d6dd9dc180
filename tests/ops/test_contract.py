"""One contract over every op (docs/contributing.md §4): each row is (op, config, tiny model).

Every row checks: the model still runs with the same output shape; params / MACs move the way
the report says (and match a fresh count); ops that promise equal outputs keep them; a fixed
seed gives the same result; save → load into a fresh instance round-trips the outputs.
"""

import copy

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.measure import count_macs, count_params


def _calib(x, n=3):
    g = torch.Generator().manual_seed(1)
    if x.is_floating_point():
        return [
            (x + 0.1 * torch.randn(x.shape, generator=g), torch.zeros(x.shape[0]).long())
            for _ in range(n)
        ]
    return [(x, torch.zeros(x.shape[0]).long()) for _ in range(n)]


class BnNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _bn_net():
    torch.manual_seed(0)
    m = BnNet().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2)
    return m, torch.randn(2, 3, 8, 8)


def _residual_mlp():
    from netsculpt.data.models import ResidualMLP

    torch.manual_seed(0)
    return ResidualMLP(10, 16, 4, 3).eval(), torch.randn(4, 10)


def _tiny(name):
    def factory():
        from conftest import make_tiny  # the tests' conftest: pytest puts tests/ on sys.path

        return make_tiny()[name]

    return factory


# (id, op, config, model factory, exact: outputs must stay equal, direction of params)
ROWS = [
    ("prune-l2-mlp", "prune", {"amount": 0.5}, _tiny("mlp"), False, "down"),
    (
        "prune-taylor-cnn",
        "prune",
        {"amount": 0.5, "importance": "taylor"},
        _tiny("cnn"),
        False,
        "down",
    ),
    (
        "prune-global-transformer",
        "prune",
        {"amount": 0.3, "global_": True},
        _tiny("transformer"),
        False,
        "down",
    ),
    ("prune-budget-cnn", "prune", {"target_macs": 0.5}, _tiny("cnn"), False, "down"),
    ("prune-threshold-mlp", "prune", {"threshold": 0.05}, _tiny("mlp"), False, "same"),
    ("prune-2:4-transformer", "prune", {"pattern": "2:4"}, _tiny("transformer"), False, "same"),
    ("cut-count-resmlp", "cut", {"count": 1}, _residual_mlp, False, "down"),
    ("grow-deeper-mlp", "grow", {"kind": "deeper", "where": "auto"}, _tiny("mlp"), True, "up"),
    ("grow-wider-mlp", "grow", {"kind": "wider", "where": ["0"]}, _tiny("mlp"), True, "up"),
    ("merge-folds-bn", "merge", {}, _bn_net, True, "down"),
]


def _run(op, config, factory):
    model, x = factory()
    data = _calib(x) if op in ("cut", "grow") or config.get("importance") == "taylor" else None
    kwargs = dict(config)
    if data is not None:
        kwargs["data"] = data
    torch.manual_seed(0)
    ref = model(x).detach()
    report = getattr(ns, op)(model, x, **kwargs)
    return model, x, ref, report


@pytest.mark.parametrize(
    ("op", "config", "factory", "exact", "direction"),
    [r[1:] for r in ROWS],
    ids=[r[0] for r in ROWS],
)
def test_contract(op, config, factory, exact, direction, tmp_path):
    fresh = factory()[0]
    model, x, ref, report = _run(op, config, factory)

    out = model(x)
    assert out.shape == ref.shape
    params = count_params(model)
    assert report.after.params == params
    if report.after.macs is not None:
        assert report.after.macs == count_macs(model, x)
    sign = {
        "down": params < report.before.params,
        "up": params > report.before.params,
        "same": params == report.before.params,
    }
    assert sign[direction], (report.before.params, params)
    if exact:
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)

    again = _run(op, config, factory)[0]
    assert torch.equal(again(x), out), "a fixed seed must give the same model"

    ns.save(model, tmp_path / "m")
    reloaded = ns.load(tmp_path / "m", model=copy.deepcopy(fresh)).eval()
    assert torch.allclose(reloaded(x), out, atol=1e-6)
