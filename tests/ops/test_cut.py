"""ns.cut: removes blocks in place, bridges shape changes, refuses bad input unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.cli import main
from netsculpt.data.models import ResidualMLP, SeedMLP, TinyTransformer
from netsculpt.errors import InputError
from netsculpt.importance.blocks import block_table, fit_linear, plot_block_scores


def _data(n_in: int = 40, classes: int = 10, n: int = 64, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, n_in, generator=g), torch.randint(0, classes, (n,), generator=g))]


def _same_structure(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return ResidualMLP(40, 16, 6, 10)


def test_count_removes_the_least_important_residual_blocks(mlp):
    x = torch.randn(2, 40)
    rep = ns.cut(mlp, x, data=_data(), count=2)
    gone = [r["block"] for r in rep.details["removed"]]
    assert len(gone) == 2 and all(isinstance(mlp.get_submodule(n), nn.Identity) for n in gone)
    scores = rep.details["scores"]
    assert max(scores[n] for n in gone) <= min(s for n, s in scores.items() if n not in gone)
    per_block = 2 * 16 + 16 * 32 + 32 + 32 * 16 + 16
    assert rep.before.params - rep.after.params == 2 * per_block
    assert rep.after.macs < rep.before.macs
    assert mlp(x).shape == (2, 10)


def test_threshold_is_the_seed_rule(mlp):
    x = torch.randn(2, 40)
    none = ns.cut(copy.deepcopy(mlp), x, data=_data(), threshold=0.0)
    assert none.details["removed"] == [] and none.after.params == none.before.params
    rep = ns.cut(mlp, x, data=_data(), threshold=1e9)
    assert len(rep.details["removed"]) == 6


@pytest.mark.parametrize("criterion", ["loss", "kl", "influence", "angular", "taylor", "random"])
def test_every_criterion_cuts(mlp, criterion):
    rep = ns.cut(mlp, torch.randn(2, 40), data=_data(), count=1, criterion=criterion)
    assert len(rep.details["removed"]) == 1


@pytest.mark.slow
def test_iterative_rescoring_on_a_hf_model_fixes_its_config():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=50,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    x = torch.randint(0, 50, (2, 8))
    rep = ns.cut(model, x, count=2, iterative=True)
    assert len(model.model.layers) == 1 and model.config.num_hidden_layers == 1
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0]
    assert len(rep.details["removed"]) == 2
    assert model.generate(x, max_new_tokens=2, do_sample=False).shape == (2, 10)


def test_bridge_keeps_a_shape_changing_layer_close():
    torch.manual_seed(0)
    model = SeedMLP(64, 10)
    data = [torch.rand(256, 64)]
    ref = model(data[0])
    lstsq, none = copy.deepcopy(model), copy.deepcopy(model)
    rep = ns.cut(lstsq, torch.rand(1, 64), data=data, blocks=["2"])
    ns.cut(none, torch.rand(1, 64), data=data, blocks=["2"], bridge="none")
    assert "bridged" in rep.notes[0] and "folded into 4" in rep.notes[0]
    assert isinstance(lstsq[4], nn.Linear) and lstsq[4].in_features == 64
    assert rep.after.params == 64 * 64 + 64 + 64 * 10 + 10
    err = (lstsq(data[0]) - ref).pow(2).mean()
    assert err < (none(data[0]) - ref).pow(2).mean()


def test_trained_bridge_runs():
    torch.manual_seed(0)
    model = SeedMLP(64, 10)
    rep = ns.cut(model, torch.rand(1, 64), data=[torch.rand(64, 64)], blocks=["2"], bridge="train")
    assert "trained" in rep.notes[0] and model(torch.rand(3, 64)).shape == (3, 10)


def test_fit_linear_recovers_a_linear_map():
    x = torch.randn(200, 5, dtype=torch.float64)
    w0 = torch.randn(3, 5, dtype=torch.float64)
    w, b = fit_linear(x, x @ w0.T + 2, ridge=0.0)
    assert torch.allclose(w, w0) and torch.allclose(b, torch.full((3,), 2.0, dtype=b.dtype))


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(count=7), "only 6 blocks"),
        (dict(count=1, threshold=0.1), "exactly one"),
        (dict(count=1, criterion="nope"), "unknown criterion"),
        (dict(blocks=["stem.0"]), "cannot be removed"),
        (dict(blocks=["nothing"]), "no block named"),
        (dict(count=1, bridge="magic"), "bridge must be"),
    ],
)
def test_bad_input_is_refused_and_the_model_is_unchanged(mlp, bad, match):
    before = copy.deepcopy(mlp)
    with pytest.raises(InputError, match=match):
        ns.cut(mlp, torch.randn(2, 40), data=_data(), **bad)
    assert _same_structure(mlp, before) and str(mlp) == str(before)


def _vision_models() -> list:
    from torchvision.models import VisionTransformer, resnet18
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from torchvision.models.swin_transformer import SwinTransformer

    return [
        resnet18(num_classes=10),
        ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 2)], num_classes=10),
        VisionTransformer(32, 8, 2, 2, 32, 64, num_classes=10),
        SwinTransformer([4, 4], 16, [2, 2], [2, 2], [4, 4], num_classes=10),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(4), ids=["resnet", "convnext", "vit", "swin"])
def test_cut_torchvision(index):
    torch.manual_seed(0)
    model = _vision_models()[index]
    x = torch.randn(2, 3, 32, 32)
    rep = ns.cut(model, x, count=1)
    assert rep.after.params < rep.before.params and model.eval()(x).shape == (2, 10)


def test_cut_tiny_transformer():
    torch.manual_seed(0)
    model = TinyTransformer()
    x = torch.randint(0, 256, (2, 16))
    rep = ns.cut(model, x, count=1, data=[x])
    assert rep.after.params < rep.before.params and model(x).shape[:2] == (2, 16)


def test_save_load_round_trip(mlp, tmp_path):
    x = torch.randn(3, 40)
    ns.cut(mlp, x, data=_data(), count=2)
    ns.save(mlp, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=ResidualMLP(40, 16, 6, 10))
    assert torch.allclose(back.eval()(x), mlp.eval()(x))


def test_block_table_and_plot(mlp, tmp_path):
    rows = block_table(mlp, torch.randn(2, 40), _data(), criteria=("loss", "kl", "gradmax"))
    assert [r["block"] for r in rows][1:] == [f"blocks.{i}" for i in range(6)]
    assert all(r["kl"] >= 0 and r["gradmax"] > 0 for r in rows[1:])
    assert plot_block_scores(rows, tmp_path / "b.png").stat().st_size > 1000


def test_cli_cut(tmp_path):
    out = tmp_path / "out"
    assert main(["cut", "mnist1d-mlp", "--count", "3", "-o", str(out)]) == 0
    assert (out / "manifest.json").exists() or any(out.iterdir())
    bad = tmp_path / "bad"
    assert main(["cut", "seed-mlp", "--count", "9", "-o", str(bad)]) == 2
    assert not bad.exists()


def test_a_strided_conv_is_not_bridged_over_its_length():
    """A 1x1 bridge maps channels; a layer that only shortens the signal cannot be bridged."""
    from netsculpt.data.models import ConvNet1D
    from netsculpt.graph.blocks import find_blocks

    net = ConvNet1D()
    blocks = {b.name: b for b in find_blocks(net, torch.randn(1, 40))}
    assert not blocks["features.6"].removable
    assert "spatial" in blocks["features.6"].reason
    with pytest.raises(InputError, match="features.6"):
        ns.cut(net, torch.randn(1, 40), blocks=["features.6"])
    rep = ns.cut(net, torch.randn(1, 40), data=_data(), count=1)
    assert [r["block"] for r in rep.details["removed"]] == ["features.0"]
    assert net(torch.randn(3, 40)).shape == (3, 10)
