"""ns.grow: function-preserving at insertion for every kind, where=auto, clear refusals."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import netsculpt as ns
import netsculpt.surgery as surgery
from netsculpt.cli import main
from netsculpt.data.models import ResidualMLP, SeedMLP, TinyTransformer
from netsculpt.errors import InputError


def _data(n_in: int, n: int = 64) -> list:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(n, n_in, generator=g), torch.randint(0, 10, (n,), generator=g))]


def _preserved(model: nn.Module, x, **kw) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    ref = model.eval()(x) if not isinstance(x, dict) else model.eval()(**x)
    rep = ns.grow(model, x, **kw)
    out = model.eval()(x)
    assert torch.allclose(getattr(out, "logits", out), getattr(ref, "logits", ref), atol=1e-5)
    assert rep.details["function_preserving"] and rep.details["max_abs_diff"] <= 1e-5
    assert rep.after.params > rep.before.params
    return model, rep


def test_deeper_plain_layer_inserts_an_identity_linear():
    model, rep = _preserved(SeedMLP(10, 1), torch.randn(4, 10), where=["0"])
    assert rep.after.params - rep.before.params == 64 * 64 + 64
    assert isinstance(model[1][1], nn.Linear) and torch.equal(model[1][1].weight, torch.eye(64))


def test_deeper_conv_layer_inserts_a_dirac_conv():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    model, rep = _preserved(net, torch.randn(2, 3, 6, 6), where=["0"])
    assert isinstance(model[1][1], nn.Conv2d) and rep.details["grown"][0]["how"] == "net2deeper"


def test_deeper_residual_block_is_expanded_and_trainable_new_freezes_the_rest():
    model = ResidualMLP(40, 16, 3, 10)
    old = {id(p) for p in model.parameters()}
    model, rep = _preserved(model, torch.randn(2, 40), where=["blocks.1"], trainable="new")
    assert len(model.blocks) == 4 and torch.count_nonzero(model.blocks[2].fc2.weight) == 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(id(p) not in old for p in trainable)


@pytest.mark.parametrize("criterion", ["kl", "gradmax"])
def test_where_auto_grows_at_the_highest_score(criterion):
    model = ResidualMLP(40, 16, 4, 10)
    _, rep = _preserved(model, torch.randn(2, 40), data=_data(40), criterion=criterion, count=2)
    scores = {n: s for n, s in rep.details["scores"].items() if s == s}  # NaN: not scorable
    top = sorted(scores, key=scores.get, reverse=True)[:2]
    assert sorted(g["block"] for g in rep.details["grown"]) == sorted(top)


def test_threshold_rule_grows_where_the_effect_is_large():
    model = ResidualMLP(40, 16, 4, 10)
    rep = ns.grow(model, torch.randn(2, 40), data=_data(40), threshold=1e9)
    assert rep.details["grown"] == [] and rep.after.params == rep.before.params


def test_deeper_after_gelu_is_refused_and_the_model_is_unchanged():
    net = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 2))
    before = copy.deepcopy(net)
    with pytest.raises(InputError, match="GELU"):
        ns.grow(net, torch.randn(2, 4), where=["2"])
    assert str(net) == str(before)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(where=["nope"]), "names no block"),
        (dict(kind="taller"), "kind must be"),
        (dict(where=["4"]), "does not end in an activation"),
        (dict(kind="wider", trainable="new"), "trainable='new'"),
        (dict(count=0), "count must be"),
    ],
)
def test_bad_input_is_refused(bad, match):
    model = SeedMLP(10, 1)
    before = copy.deepcopy(model)
    with pytest.raises(InputError, match=match):
        ns.grow(model, torch.randn(2, 10), **bad)
    assert str(model) == str(before)


@pytest.mark.skipif(not hasattr(surgery, "widen"), reason="surgery.widen not available yet")
@pytest.mark.parametrize("where", [["2"], ["0"]])
def test_wider_is_function_preserving(where):
    model, rep = _preserved(SeedMLP(10, 1), torch.randn(4, 10), kind="wider", where=where)
    assert rep.details["grown"][0]["how"] == "net2wider"


@pytest.mark.slow
def test_deeper_on_real_architectures():
    from torchvision.models import VisionTransformer, resnet18
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    from torchvision.models.swin_transformer import SwinTransformer
    from transformers import LlamaConfig, LlamaForCausalLM

    x = torch.randn(2, 3, 32, 32)
    _preserved(resnet18(num_classes=10), x, where=["layer1.1"])
    _preserved(ConvNeXt([CNBlockConfig(16, 32, 2), CNBlockConfig(32, None, 1)]), x)
    _preserved(VisionTransformer(32, 8, 2, 2, 32, 64, num_classes=10), x)
    _preserved(SwinTransformer([4, 4], 16, [2], [2], [4, 4], num_classes=10), x)
    _preserved(TinyTransformer(), torch.randint(0, 256, (2, 16)))
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=50,
    )  # fmt: skip
    llama, _ = _preserved(
        LlamaForCausalLM(cfg), torch.randint(0, 50, (2, 8)), where=["model.layers.0"]
    )
    assert llama.config.num_hidden_layers == 3
    assert [layer.self_attn.layer_idx for layer in llama.model.layers] == [0, 1, 2]


def test_save_load_after_grow(tmp_path):
    model = SeedMLP(10, 1)
    x = torch.randn(3, 10)
    ns.grow(model, x, where=["2"])
    ns.save(model, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=SeedMLP(10, 1))
    assert torch.allclose(back.eval()(x), model.eval()(x))


def test_cli_grow(tmp_path):
    assert main(["grow", "seed-mlp", "--where", "0", "-o", str(tmp_path / "g")]) == 0
    assert main(["grow", "seed-mlp", "--where", "4", "-o", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
