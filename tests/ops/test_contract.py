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
        from tinymodels import make_tiny  # tests/ is on sys.path (its conftest.py)

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
    (
        "merge-neurons-mlp",
        "merge",
        {"neurons": True, "threshold": 0.5},
        _tiny("mlp"),
        False,
        "down",
    ),
    (
        "merge-blocks-resmlp",
        "merge",
        {"blocks": True, "threshold": -1.0},
        _residual_mlp,
        False,
        "down",
    ),
    (
        "optimize-macs-cnn",
        "optimize",
        {"target_macs": 0.7, "heal": False, "progress": False},
        _tiny("cnn"),
        False,
        "down",
    ),
]
# ops whose verb leaves the model as it was (the report measures it)
MEASURING = [("analyze-cnn", "analyze", {}, _tiny("cnn"))]


def _run(op, config, factory):
    model, x = factory()
    data = _calib(x) if op in ("cut", "grow") or config.get("importance") == "taylor" else None
    if op == "merge" and config.get("blocks"):
        data = _calib(x)
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


# -- clauses every registered op keeps (one row per registry entry, by construction) ----------
def test_every_registered_op_has_a_row():
    from netsculpt.engine import registry

    covered = {r[1] for r in ROWS} | {r[1] for r in MEASURING}
    assert set(registry.names()) <= covered, set(registry.names()) - covered


def _architecture(model):
    return str(model), {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("op", "config", "factory", "exact", "direction"),
    [r[1:] for r in ROWS],
    ids=[r[0] for r in ROWS],
)
def test_plan_round_trips_and_replays_on_a_fresh_model(op, config, factory, exact, direction):
    model, x, _, report = _run(op, config, factory)
    assert isinstance(report.plan, ns.Plan) and report.plan.op == op
    saved = ns.Plan.from_json(report.plan.to_json())
    assert saved.to_dict() == report.plan.to_dict()
    fresh, _ = factory()
    data = _calib(x) if op in ("cut", "grow", "merge") else None
    ns.apply(fresh, x, saved, data=data)
    assert _architecture(fresh) == _architecture(model)


@pytest.mark.parametrize(
    ("op", "config", "factory", "exact", "direction"),
    [r[1:] for r in ROWS],
    ids=[r[0] for r in ROWS],
)
def test_refused_input_leaves_the_model_unchanged(op, config, factory, exact, direction):
    from netsculpt.errors import InputError

    model, x = factory()
    before = (repr(model), {k: v.clone() for k, v in model.state_dict().items()})
    for bad in ({"seed": -1}, {"no_such_option": 1}, {"max_batches": 2.5}):
        with pytest.raises(InputError):
            getattr(ns, op)(model, x, **config, **bad)
    assert repr(model) == before[0]
    assert all(torch.equal(v, before[1][k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("op", "config", "factory"), [r[1:] for r in MEASURING], ids=[r[0] for r in MEASURING]
)
def test_measuring_ops_leave_the_model_unchanged(op, config, factory):
    model, x = factory()
    ref = (repr(model), {k: v.clone() for k, v in model.state_dict().items()}, model(x))
    report = getattr(ns, op)(model, x, **config)
    assert repr(model) == ref[0]
    assert all(torch.equal(v, ref[1][k]) for k, v in model.state_dict().items())
    assert torch.equal(model(x), ref[2])
    assert report.before.params == report.after.params == count_params(model)
    assert isinstance(report.plan, ns.Plan) and not report.plan.actions
