"""BatchNorm statistics after a cut: re-estimated on the calibration data (and in the scores)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

import netsculpt as ns
from netsculpt.calibration import Batch
from netsculpt.calibration.bn import adapted_bn, batchnorms, recalibrate_bn
from netsculpt.cli import main
from netsculpt.importance.blocks import BlockScorer


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.bn(self.conv(x)))


class BNNet(nn.Module):
    def __init__(self, c: int = 8, depth: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, c, 3, padding=1)
        self.blocks = nn.Sequential(*(Block(c) for _ in range(depth)))
        self.norm = nn.BatchNorm1d(c)
        self.head = nn.Linear(c, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x.unsqueeze(1)))
        return self.head(F.relu(self.norm(h)).mean(-1))


def _data(n: int = 4, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(32, 20, generator=g) * 2 + 1, torch.randint(0, 5, (32,), generator=g))
            for _ in range(n)]  # fmt: skip


def _net() -> BNNet:
    """A BNNet whose statistics are those of the data (as after training)."""
    torch.manual_seed(0)
    net = BNNet()
    with torch.no_grad():
        for blk in net.blocks:
            blk.conv.weight.mul_(3.0)  # branches large enough that a cut shifts the statistics
    recalibrate_bn(net, [Batch(x) for x, _ in _data()])
    return net.eval()


def _kl(ref: torch.Tensor, out: torch.Tensor) -> float:
    lp, lq = F.log_softmax(ref, -1), F.log_softmax(out, -1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


def test_recalibrate_is_the_plain_average_over_batches_and_keeps_momentum():
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, momentum=0.3), nn.Dropout(0.5))
    batches = [Batch(torch.randn(16, 4) + i) for i in range(3)]
    assert recalibrate_bn(net, batches) == 1
    with torch.no_grad():
        means = torch.stack([net[0](b.inputs).mean(0) for b in batches])
    torch.testing.assert_close(net[1].running_mean, means.mean(0))
    assert net[1].momentum == 0.3 and net.training  # flags and momentum put back


def test_adapted_bn_restores_the_statistics_exactly():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    other = [Batch(torch.randn(32, 20) * 5 - 3)]
    with adapted_bn(net, other) as n:
        assert n == len(batchnorms(net)) == 5
        assert not torch.equal(net.norm.running_mean, before["norm.running_mean"])
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_cut_reestimates_statistics_and_is_closer_to_the_original():
    data = _data()
    x = torch.randn(2, 20)
    base = _net()
    stale, fresh = copy.deepcopy(base), copy.deepcopy(base)
    ns.cut(stale, x, data=data, blocks=["blocks.1", "blocks.2"], recalibrate_bn=False)
    rep = ns.cut(fresh, x, data=data, blocks=["blocks.1", "blocks.2"])
    assert any("BatchNorm running statistics re-estimated on 4" in n for n in rep.notes)
    assert torch.equal(stale.norm.running_mean, base.norm.running_mean)  # untouched
    assert not torch.equal(fresh.norm.running_mean, base.norm.running_mean)
    xs = torch.cat([b for b, _ in data])
    with torch.no_grad():
        ref = base(xs)
        assert _kl(ref, fresh(xs)) < _kl(ref, stale(xs))
    # what cut delivers equals the block-free network re-estimated by hand
    by_hand = copy.deepcopy(stale)
    recalibrate_bn(by_hand, [Batch(b) for b, _ in data])
    torch.testing.assert_close(fresh(xs), by_hand(xs))


def test_without_data_the_statistics_are_kept():
    base = _net()
    net = copy.deepcopy(base)
    rep = ns.cut(net, torch.randn(2, 20), blocks=["blocks.0"])
    assert not any("BatchNorm" in n for n in rep.notes)
    assert torch.equal(net.norm.running_mean, base.norm.running_mean)


def test_scores_measure_the_network_cut_delivers():
    data, x = _data(), torch.randn(2, 20)
    base = _net()
    adapted = BlockScorer(base, x, data).score("kl")
    stale = BlockScorer(base, x, data, adapt_bn=False).score("kl")
    assert adapted != stale
    # the adapted score of a block is the KL of the delivered one-block cut
    name = "blocks.2"
    cut = copy.deepcopy(base)
    ns.cut(cut, x, data=data, blocks=[name])
    with torch.no_grad():
        kls = [_kl(base(b), cut(b)) for b, _ in data]
    assert abs(adapted[name] - sum(kls) / len(kls)) < 1e-5
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in _net().state_dict().items())


def test_iterative_cut_undoes_the_statistics_when_it_fails(monkeypatch):
    import netsculpt.ops.cut as cut_mod

    base = _net()
    net = copy.deepcopy(base)
    real, calls = cut_mod._remove, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(cut_mod, "_remove", flaky)
    try:
        ns.cut(net, torch.randn(2, 20), data=_data(), count=2, iterative=True)
    except RuntimeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the second removal should have failed")
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in net.state_dict().items())


def test_models_without_batchnorm_are_unaffected():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(),
                        nn.Linear(20, 5))  # fmt: skip
    data, x = _data(), torch.randn(2, 20)
    adapted = BlockScorer(net, x, data).score("kl")
    assert adapted == BlockScorer(net, x, data, adapt_bn=False).score("kl")


def test_cli_keep_bn_stats(tmp_path):
    out = tmp_path / "out"
    args = ["cut", "mnist1d-cnn", "--data", "mnist1d", "--count", "1", "-o", str(out)]
    assert main([*args, "--keep-bn-stats"]) == 0
    assert any(out.iterdir())


def test_calibration_data_is_read_once():
    """Scores and the re-estimation use the same batches, even from a one-pass iterable."""

    class OnePass:
        def __init__(self, items: list) -> None:
            self.items, self.passes = items, 0

        def __iter__(self):
            self.passes += 1
            return iter(self.items)

    data = OnePass(_data())
    rep = ns.cut(_net(), torch.randn(2, 20), data=data, count=2, iterative=True)
    assert data.passes == 1 and len(rep.details["removed"]) == 2
