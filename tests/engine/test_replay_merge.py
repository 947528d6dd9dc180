"""A merge plan replays: ``ns.apply(fresh, x, report.plan)`` gives the same architecture (and,
for the exact folds, the same outputs), also after a JSON round trip."""

import copy

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.core.plan import Plan
from netsculpt.data.models import ResidualMLP
from netsculpt.errors import InputError


def _randomize_bn(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.uniform_(0.5, 2)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    return model.eval()


class BnCnn(nn.Module):
    """conv-BN-ReLU, conv-BN-pointwise conv, a BN before an unpadded conv, then two Linears."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.proj = nn.Conv2d(8, 4, 1)
        self.bn3 = nn.BatchNorm2d(4)
        self.conv3 = nn.Conv2d(4, 4, 3)
        self.fc1 = nn.Linear(4 * 6 * 6, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.proj(self.bn2(self.conv2(x)))
        x = self.conv3(self.bn3(torch.relu(x)))
        return self.fc2(self.fc1(x.flatten(1)))


def _architecture(model: nn.Module) -> list:
    mods = [(n, type(m).__name__) for n, m in model.named_modules()]
    return mods + [(n, tuple(p.shape)) for n, p in model.state_dict().items()]


def _replayed(original: nn.Module, x, plan: Plan) -> nn.Module:
    fresh = copy.deepcopy(original)
    report = ns.apply(fresh, x, Plan.from_json(plan.to_json()))
    assert report.plan.op == "merge" and len(report.plan) == len(plan)
    return fresh


def test_fold_plan_replays_with_the_same_architecture_and_outputs():
    model = _randomize_bn(BnCnn())
    original = copy.deepcopy(model)
    x = torch.randn(2, 3, 8, 8)
    report = ns.merge(model, x)
    kinds = {a.args["fold_kind"] for a in report.plan.of_kind("fold")}
    assert kinds == {"bn_after", "bn_before", "conv_conv", "linear_linear"}
    assert all(a.kind == "fold" for a in report.plan.actions)

    fresh = _replayed(original, x, report.plan)
    assert _architecture(fresh) == _architecture(model)
    rel = (fresh(x) - model(x)).abs().max() / model(x).abs().max()
    assert rel < 1e-5
    assert (original(x) - fresh(x)).abs().max() / original(x).abs().max() < 1e-5


def _with_duplicates() -> nn.Module:
    """16 hidden units (BN between), the last 8 positive multiples of the first 8 after BN."""
    model = _randomize_bn(
        nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    )
    bn = model[1]
    with torch.no_grad():
        a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        t = bn.bias - bn.running_mean * a
        for i in range(8):
            j, r = 8 + i, 0.5 + i / 4
            model[0].weight[j] = r * a[i] * model[0].weight[i] / a[j]
            model[0].bias[j] = (r * (a[i] * model[0].bias[i] + t[i]) - t[j]) / a[j]
    return model


def test_neuron_merge_plan_replays():
    model, x = _with_duplicates(), torch.randn(32, 8)
    original = copy.deepcopy(model)
    report = ns.merge(model, x, neurons=True, folds=False, threshold=1e-4)
    (action,) = report.plan.of_kind("merge_neurons")
    assert action.args["producer"] == "0" and len(action.args["merged"]) == 8
    assert all(r > 0 for _, _, r in action.args["merged"])

    fresh = _replayed(original, x, report.plan)
    assert fresh[0].out_features == 8 and fresh[3].in_features == 8
    assert _architecture(fresh) == _architecture(model)
    assert torch.allclose(fresh(x), model(x), atol=1e-5, rtol=1e-5)


def test_folds_then_neurons_replay_in_order():
    model, x = _with_duplicates(), torch.randn(32, 8)
    original = copy.deepcopy(model)
    report = ns.merge(model, x, neurons=True, threshold=1e-4)
    assert [a.kind for a in report.plan.actions] == ["fold", "merge_neurons"]
    fresh = _replayed(original, x, report.plan)
    assert _architecture(fresh) == _architecture(model)
    assert torch.allclose(fresh(x), model(x), atol=1e-5, rtol=1e-5)


def test_block_collapse_plan_replays():
    torch.manual_seed(0)
    model = ResidualMLP(40, 16, 6, 10).eval()
    original = copy.deepcopy(model)
    x = torch.randn(16, 40)
    report = ns.merge(model, x, blocks=True, threshold=-1.0, folds=False)
    assert len(report.plan.of_kind("collapse_blocks")) == report.details["blocks"]["removed"] == 5
    fresh = _replayed(original, x, report.plan)
    assert _architecture(fresh) == _architecture(model)
    assert torch.allclose(fresh(x), model(x), atol=1e-6)


def test_blocks_takes_a_list_of_names_to_restrict_the_collapse():
    torch.manual_seed(0)
    model = ResidualMLP(40, 16, 6, 10).eval()
    report = ns.merge(model, torch.randn(16, 40), blocks=["blocks.4", "blocks.5"], threshold=-1.0)
    assert report.details["blocks"]["removed"] == 1
    assert [type(b).__name__ for b in model.blocks] == ["ResidualMLPBlock"] * 5 + ["Identity"]
    with pytest.raises(InputError, match="no block 'blocks.9'"):
        ns.merge(model, torch.randn(16, 40), blocks=["blocks.9"])


def test_ignore_keeps_modules_out_of_folds_and_merges():
    model, x = _with_duplicates(), torch.randn(32, 8)
    report = ns.merge(model, x, neurons=True, threshold=1e-4, ignore=["3"])
    assert report.plan.of_kind("merge_neurons") == []  # its consumer is ignored
    assert report.plan.of_kind("fold")  # the BatchNorm still folds
    model = _randomize_bn(BnCnn())
    report = ns.merge(model, torch.randn(2, 3, 8, 8), ignore=lambda m, n: n == "bn1")
    assert isinstance(model.bn1, nn.BatchNorm2d) and isinstance(model.bn2, nn.Identity)
    assert not any("bn1" in a.args["modules"] for a in report.plan.actions)


def test_a_plan_for_another_architecture_is_refused_in_one_line():
    model = _randomize_bn(BnCnn())
    report = ns.merge(copy.deepcopy(model), torch.randn(2, 3, 8, 8))
    other = nn.Sequential(nn.Linear(3, 3)).eval()
    with pytest.raises(InputError, match=r"plan fold\[0\]"):
        ns.apply(other, torch.randn(2, 3), report.plan)
    assert isinstance(other[0], nn.Linear)


def test_analyze_reports_an_empty_plan_and_leaves_the_model():
    model = _randomize_bn(BnCnn())
    before = copy.deepcopy(model.state_dict())
    report = ns.analyze(model, torch.randn(2, 3, 8, 8), blocks=True, criteria=("kl",))
    assert report.plan == Plan("analyze", [], report.plan.config) and len(report.plan) == 0
    assert report.details["blocks"] and report.details["exports"] == 1
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
