"""ns.merge: exact folds read from the graph, near-duplicate neurons, LaCo block collapse."""

import copy

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.data.models import ResidualMLP
from netsculpt.errors import InputError, VerificationError
from netsculpt.ops import merge_folds
from netsculpt.ops.merge import relative_diff
from netsculpt.ops.merge_blocks import rdsc


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


class Mixed(nn.Module):
    """BN declared before its conv in __init__; every fold kind occurs once in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3)  # no padding: the BN before it folds exactly
        self.proj = nn.Conv2d(8, 4, 1)  # pointwise after conv2: composes into one conv
        self.bn_pad = nn.BatchNorm2d(4)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)  # zero padding: refused
        self.ln = nn.LayerNorm(4 * 6 * 6)
        self.fc1 = nn.Linear(4 * 6 * 6, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.proj(self.conv2(self.bn0(x)))
        x = self.conv3(self.bn_pad(torch.relu(x)))
        return self.fc2(self.fc1(self.ln(x.flatten(1))))


@pytest.fixture()
def mixed() -> Mixed:
    model = _randomize_bn(Mixed())
    with torch.no_grad():
        model.ln.weight.uniform_(0.5, 2)
        model.ln.bias.normal_()
    return model


def test_default_merge_folds_everything_exactly_and_reports_it(mixed):
    x = torch.randn(2, 3, 8, 8)
    ref = mixed(x)
    report = ns.merge(mixed, x)
    kinds = sorted(f["kind"] for f in report.details["folds"]["folds"])
    assert kinds == ["bn_after", "bn_before", "conv_conv", "linear_linear", "norm_gain"]
    assert relative_diff([ref], [mixed(x)]) < 1e-5
    assert all(d < 1e-5 for d in report.details["folds"]["max_rel_diff"].values())
    assert isinstance(mixed.bn1, nn.Identity) and isinstance(mixed.bn0, nn.Identity)
    assert isinstance(mixed.fc1, nn.Identity) and mixed.fc2.in_features == 4 * 6 * 6
    assert isinstance(mixed.bn_pad, nn.BatchNorm2d)  # refused, with the reason
    assert any("bn_pad" in n and "zeros" in n for n in report.notes)
    assert report.after.params < report.before.params
    assert report.after.macs <= report.before.macs


def test_consecutive_means_the_graph_not_module_order():
    class Gap(nn.Module):  # conv and bn adjacent in __init__, a ReLU between them in forward
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(torch.relu(self.conv(x)))

    model = _randomize_bn(Gap())
    report = ns.merge(model, torch.randn(1, 3, 8, 8))
    assert report.details["folds"]["folds"] == [] and isinstance(model.bn, nn.BatchNorm2d)


def test_a_module_called_twice_is_not_folded():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            return self.bn(self.fc(self.fc(x)))

    model = _randomize_bn(Twice())
    assert ns.merge(model, torch.randn(3, 4)).details["folds"]["folds"] == []


def test_a_composition_that_costs_more_macs_is_refused():
    model = nn.Sequential(nn.Linear(64, 4), nn.Linear(4, 64)).eval()
    report = ns.merge(model, torch.randn(2, 64))
    assert isinstance(model[0], nn.Linear) and any("more MACs" in n for n in report.notes)


def test_torchvision_resnet_folds_every_batchnorm():
    torchvision = pytest.importorskip("torchvision")
    model = _randomize_bn(torchvision.models.resnet18(num_classes=10))
    x = torch.randn(2, 3, 32, 32)
    ref = model(x)
    report = ns.merge(model, x)
    assert len(report.details["folds"]["folds"]) == 20
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert relative_diff([ref], [model(x)]) < 1e-5


def test_a_failed_check_restores_the_model(mixed, monkeypatch):
    x = torch.randn(2, 3, 8, 8)
    ref, before = mixed(x), copy.deepcopy(mixed.state_dict())

    def wrong(layer, bn):
        bad = copy.deepcopy(layer)
        bad.weight.data.mul_(2)
        return bad

    monkeypatch.setattr(merge_folds.F, "fold_bn_after", wrong)
    with pytest.raises(VerificationError, match="bn_after"):
        ns.merge(mixed, x)
    assert isinstance(mixed.bn1, nn.BatchNorm2d) and getattr(mixed, "_netsculpt_edits", []) == []
    assert torch.equal(mixed(x), ref)
    assert all(torch.equal(v, before[k]) for k, v in mixed.state_dict().items())


def test_folded_model_saves_and_loads(mixed, tmp_path):
    x = torch.randn(2, 3, 8, 8)
    ns.merge(mixed, x)
    ns.save(mixed, tmp_path / "m")
    loaded = ns.load(tmp_path / "m", model=Mixed())
    assert torch.allclose(loaded.eval()(x), mixed(x), atol=1e-6)


def _with_duplicates() -> nn.Module:
    """16 hidden units (BN between), the last 8 positive multiples of the first 8 after BN."""
    torch.manual_seed(0)
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


def test_duplicate_neurons_merge_exactly_through_batchnorm():
    model, x = _with_duplicates(), torch.randn(32, 8)
    ref = model(x)
    report = ns.merge(model, x, neurons=True, folds=False, threshold=1e-4)
    assert model[0].out_features == 8 and model[3].in_features == 8
    assert report.details["neurons"]["removed"] == 8
    assert relative_diff([ref], [model(x)]) < 1e-5


def test_neuron_threshold_zero_leaves_distinct_neurons():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    report = ns.merge(model, torch.randn(4, 8), neurons=True, threshold=0.0, folds=False)
    assert report.details["neurons"]["removed"] == 0 and model[0].out_features == 16


def test_rdsc_uses_the_original_base_not_the_notebook_in_place_update():
    a, b, c = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])
    assert rdsc([a, b, c]).item() == 5.0  # 1 + (2-1) + (4-1); the in-place bug gives 4
    assert a.item() == 1.0


def _collapse(model: nn.Module, x: torch.Tensor, max_removed: int | None):
    blocks = ns.ops.merge.BlockMergeConfig(threshold=-1.0, max_removed=max_removed)
    return ns.merge(model, x, config=ns.ops.merge.MergeConfig(folds=None, blocks=blocks))


def test_block_collapse_merges_parameters_and_replaces_blocks():
    torch.manual_seed(0)
    model = ResidualMLP(40, 16, 6, 10).eval()
    original = copy.deepcopy(model)
    x = torch.randn(16, 40)
    report = _collapse(model, x, max_removed=1)
    assert report.details["blocks"]["removed"] == 1
    assert [type(b).__name__ for b in model.blocks] == ["ResidualMLPBlock"] * 5 + ["Identity"]
    # LaCo goes top-down: block 5 merges into block 4; span 2 gives θ_4 + (θ_5 − θ_4)
    assert torch.allclose(model.blocks[4].fc1.weight, original.blocks[5].fc1.weight)
    assert torch.equal(model.blocks[4].ln.weight, original.blocks[4].ln.weight)  # norms kept
    assert report.after.params < report.before.params and model(x).shape == (16, 10)


def test_block_collapse_continues_down_the_run():
    torch.manual_seed(0)
    model = ResidualMLP(40, 16, 6, 10).eval()
    report = _collapse(model, torch.randn(16, 40), max_removed=None)
    assert report.details["blocks"]["removed"] == 5
    assert [type(b).__name__ for b in model.blocks].count("Identity") == 5


def test_block_collapse_below_threshold_is_reverted():
    torch.manual_seed(0)
    model = ResidualMLP(40, 16, 4, 10).eval()
    before = copy.deepcopy(model.state_dict())
    report = ns.merge(model, torch.randn(16, 40), blocks=True, threshold=1.0, folds=False)
    assert report.details["blocks"]["removed"] == 0 and report.notes
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"neurons": True, "blocks": True, "threshold": 0.1},
        {"neurons": True, "threshold": 1.5},
        {"blocks": True, "threshold": 2.0},
    ],
)
def test_bad_thresholds_are_refused_before_any_edit(kwargs):
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    with pytest.raises(InputError):
        ns.merge(model, torch.randn(2, 4), **kwargs)
    assert isinstance(model[1], nn.BatchNorm1d)
