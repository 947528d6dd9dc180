"""``ns.prune(uniform=True)`` on HF models, and width growth (Net2Wider) on every family."""

from __future__ import annotations

import pytest
import torch

import netsculpt as ns
import netsculpt.hf as nhf
from netsculpt.errors import InputError
from netsculpt.graph.blocks import find_blocks
from netsculpt.hf.config import hf_compatible, layer_widths

from .conftest import FAMILIES, main_output, make


def _reload(model, x, tmp_path, pretrained: bool) -> torch.Tensor:
    if pretrained:
        nhf.save_pretrained(model, tmp_path / "hf")
        again = type(model).from_pretrained(tmp_path / "hf")
    else:
        ns.save(model, tmp_path / "ns")
        again = ns.load(tmp_path / "ns")
    return main_output(again.eval(), x)


@pytest.mark.parametrize("name", FAMILIES)
def test_ns_prune_uniform_global_keeps_layers_equal_and_round_trips(name, tmp_path):
    model, x, _ = make(name, layers=3)
    rep = ns.prune(model, x, amount=0.3, global_=True, uniform=True)
    assert rep.after.params < rep.before.params
    rows = layer_widths(model)["layers"]
    assert len({tuple(sorted(r.items())) for r in rows}) == 1, rows
    ok, why = hf_compatible(model)
    assert ok, why
    ref = main_output(model, x)
    assert torch.allclose(_reload(model, x, tmp_path, pretrained=True), ref, atol=1e-5)


def test_ns_prune_uniform_budget_is_still_uniform():
    model, x, _ = make("llama", layers=3)
    # round_to=8: LLaMA configs want hidden_size % heads == 0 (hf_compatible checks it)
    rep = ns.prune(model, x, target_params=0.8, uniform=True, round_to=8)
    rows = layer_widths(model)["layers"]
    assert len({r["intermediate"] for r in rows}) == 1
    assert rep.after.params <= 0.85 * rep.before.params
    assert hf_compatible(model)[0]


def test_uniform_refused_for_unstructured():
    model, x, _ = make("llama")
    with pytest.raises(InputError, match="uniform"):
        ns.prune(model, x, sparsity=0.5, uniform=True)


@pytest.mark.parametrize("name", FAMILIES)
def test_grow_wider_is_function_preserving_and_reloads(name, tmp_path):
    model, x, data = make(name)
    ref = main_output(model, x)
    first = find_blocks(model, x)[0].name
    inter0 = layer_widths(model)["layers"][0]["intermediate"]
    rep = ns.grow(model, x, data=data, kind="wider", where=[first])
    assert rep.details["function_preserving"]
    assert layer_widths(model)["layers"][0]["intermediate"] == 2 * inter0
    out = main_output(model, x)
    assert torch.allclose(out, ref, atol=1e-5)
    if hasattr(model, "generate"):
        model.generate(x["input_ids"], max_new_tokens=2, do_sample=False)
    assert torch.allclose(_reload(model, x, tmp_path, pretrained=False), out, atol=1e-5)


def test_grow_wider_auto_on_post_ln_encoder():
    model, x, data = make("bert")
    ref = main_output(model, x)
    rep = ns.grow(model, x, data=data, kind="wider")  # kl: each layer ablated by deletion
    assert len(rep.details["grown"]) == 1
    assert torch.allclose(main_output(model, x), ref, atol=1e-5)


def test_ns_cut_deletes_a_post_ln_encoder_layer_and_round_trips(tmp_path):
    model, x, data = make("bert", layers=3)
    rep = ns.cut(model, x, data=data, count=1, criterion="kl")
    assert len(model.encoder.layer) == 2 and model.config.num_hidden_layers == 2
    assert "deleted from encoder.layer" in rep.details["removed"][0]["note"]
    ref = main_output(model, x)
    assert torch.allclose(_reload(model, x, tmp_path, pretrained=True), ref, atol=1e-5)


def test_grow_criterion_undefined_everywhere_is_a_clear_error():
    from torch import nn

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)

        def forward(self, x, scale):
            return self.fc2(torch.relu(self.fc1(x))) * scale

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = TwoInputs(), nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.body(x, x.abs().mean(-1, keepdim=True)))

    model, x = Net(), torch.randn(4, 8)
    with pytest.raises(InputError, match="undefined for every block.*gradmax"):
        ns.grow(model, x, data=[x], kind="wider")
    rep = ns.grow(model, x, data=[x], kind="wider", criterion="gradmax")
    assert model.body.fc1.out_features == 32 and rep.details["function_preserving"]


def test_grow_deeper_refused_on_post_ln_encoder_model_unchanged():
    model, x, data = make("bert")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InputError, match="post-LN"):
        ns.grow(model, x, data=data, kind="deeper")
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_config_the_family_rejects_is_not_hf_compatible(tmp_path):
    """LLaMA validates hidden_size % heads == 0 on load: 12 heads of 4 in a 64-wide model
    cannot be saved for from_pretrained even though head_dim is explicit."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=16,
                      num_key_value_heads=4, head_dim=4, intermediate_size=128)  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    x = {"input_ids": torch.randint(3, 128, (2, 8))}
    rep = nhf.prune(model, x, amount=0.25, targets=("heads",))
    assert model.config.num_attention_heads == 12
    ok, why = hf_compatible(model)
    assert not ok and "not a multiple" in why[0]
    assert rep.details["hf_compatible"] is False
    with pytest.raises(InputError):
        nhf.save_pretrained(model, tmp_path / "hf")
    ref = main_output(model, x)
    assert torch.allclose(_reload(model, x, tmp_path, pretrained=False), ref, atol=1e-5)
