"""Every HF family × prune / cut / merge / grow: runs, generates, config synced, reloads."""

from __future__ import annotations

import pytest
import torch

import netsculpt as ns
import netsculpt.hf as nhf
from netsculpt.hf.config import layer_widths
from netsculpt.hf.layers import collapse_layers, cut_layers

from .conftest import DECODERS, FAMILIES, main_output, make, with_head


def _generates(model, x) -> None:
    if hasattr(model, "generate") and isinstance(x, dict):
        out = model.generate(x["input_ids"], max_new_tokens=3, do_sample=False)
        assert out.shape == (2, 11)


def _reload_same(model, x, tmp_path, pretrained: bool) -> None:
    ref = main_output(model, x)
    if pretrained:
        nhf.save_pretrained(model, tmp_path / "hf")
        again = type(model).from_pretrained(tmp_path / "hf").eval()
    else:
        ns.save(model, tmp_path / "ns")
        again = ns.load(tmp_path / "ns").eval()  # no fresh instance: config + manifest
    assert torch.allclose(main_output(again, x), ref, atol=1e-5)
    _generates(again, x)


@pytest.mark.parametrize("name", FAMILIES)
def test_prune_uniform_heads_mlp_roundtrips_through_from_pretrained(name, tmp_path):
    model, x, _ = make(name)
    inter0 = layer_widths(model)["layers"][0]["intermediate"]
    rep = nhf.prune(model, x, amount=0.5, targets=("heads", "mlp"), uniform=True)
    widths = layer_widths(model)["layers"]
    assert rep.after.params < rep.before.params
    assert len({(r["heads"], r["intermediate"]) for r in widths}) == 1
    assert widths[0]["intermediate"] == inter0 // 2 and widths[0]["heads"] == 2
    assert model.config.num_attention_heads in (2, 4)  # BERT/GPT-2 keep a buildable template
    inter = getattr(model.config, "n_inner", None) or model.config.intermediate_size
    assert inter == inter0 // 2
    _generates(model, x)
    compatible = rep.details["hf_compatible"]
    assert compatible == (name not in ("bert", "gpt2"))  # they derive head_dim from hidden
    _reload_same(model, x, tmp_path, pretrained=compatible)


@pytest.mark.parametrize("name", ["llama", "mistral"])
def test_gqa_kv_head_leaves_with_its_query_group(name):
    model, x, _ = make(name)
    nhf.prune(model, x, amount=0.5, targets=("heads",))
    attn = model.model.layers[0].self_attn
    assert attn.k_proj.out_features == 16 and attn.v_proj.out_features == 16  # 1 KV head
    assert attn.q_proj.out_features == 32  # its 2 query heads
    assert attn.o_proj.in_features == 32
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (2, 1)
    assert model.config.head_dim == 16
    _generates(model, x)


@pytest.mark.parametrize("name", FAMILIES)
def test_prune_non_uniform_with_hidden_reloads_with_ns_load(name, tmp_path):
    model, x, _ = make(name)
    rep = ns.prune(model, x, amount=0.3, global_=True)
    assert rep.after.params < rep.before.params
    _generates(model, x)
    _reload_same(model, x, tmp_path, pretrained=False)


def test_hidden_size_pruning_updates_config_and_lm_head(tmp_path):
    model, x, _ = make("llama")
    nhf.prune(model, x, amount=0.25, targets=("hidden",))
    assert model.config.hidden_size == 48
    assert model.lm_head.in_features == 48 and model.model.norm.weight.shape == (48,)
    _reload_same(model, x, tmp_path, pretrained=True)


@pytest.mark.parametrize("name", FAMILIES)
def test_hidden_size_pruning_every_family_reloads(name, tmp_path):
    model, x, _ = make(name)
    if name in ("bert", "vit"):  # base encoders: the hidden states are the model's output
        rep = nhf.prune(model, x, amount=0.25, targets=("hidden",))
        assert rep.details["removed"]["hidden"] == 0
        assert rep.notes == ["hidden: nothing prunable (model output)"]
        model, x = with_head(name)  # with a task head the hidden size is internal
    rep = nhf.prune(model, x, amount=0.25, targets=("hidden",))
    assert rep.details["removed"]["hidden"] == 16
    hidden = getattr(model.config, "n_embd", None) or model.config.hidden_size
    assert hidden == 48
    _generates(model, x)
    # GPT-2 and BERT derive head_dim = hidden // heads, which no longer holds (heads keep
    # width 16): the config cannot say it, ns.save / ns.load carry head_dim and the scale instead
    assert rep.details["hf_compatible"] == (name not in ("gpt2", "bert"))
    _reload_same(model, x, tmp_path, pretrained=rep.details["hf_compatible"])


@pytest.mark.parametrize("name", FAMILIES)
def test_unstructured_nm_wanda_on_every_linear(name):
    model, x, data = make(name)
    ns.prune(model, x, pattern="2:4", importance="activation", data=data, remove_dead=False)
    w = model.model.layers[0].mlp.up_proj.weight if name == "llama" else None
    if w is not None:
        assert torch.all((w.reshape(-1, 4) != 0).sum(-1) <= 2)
    assert torch.isfinite(main_output(model, x)).all()
    _generates(model, x)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("criterion", ["influence", "angular", "ppl"])
def test_cut_layers_fixes_config_and_roundtrips(name, criterion, tmp_path):
    model, x, data = make(name, layers=3)
    removed = cut_layers(model, data, 1, criterion)
    assert len(removed) == 1
    assert layer_widths(model)["layers"].__len__() == 2
    depth = getattr(model.config, "n_layer", None) or model.config.num_hidden_layers
    assert depth == 2
    _generates(model, x)
    if criterion == "influence":
        _reload_same(model, x, tmp_path, pretrained=True)


@pytest.mark.parametrize("name", FAMILIES)
def test_laco_collapse(name, tmp_path):
    model, x, _ = make(name, layers=3)
    collapse_layers(model, 0, 2)
    assert len(layer_widths(model)["layers"]) == 2
    _generates(model, x)
    _reload_same(model, x, tmp_path, pretrained=True)


@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "bert"])
def test_grow_llama_pro_is_function_preserving(name, tmp_path):
    model, x, data = make(name)
    ref = main_output(model, x)
    ns.grow(model, x, data=data, count=1)
    assert len(layer_widths(model)["layers"]) == 3
    assert torch.allclose(main_output(model, x), ref, atol=1e-5)
    _generates(model, x)
    _reload_same(model, x, tmp_path, pretrained=True)


def test_ns_cut_on_decoder_fixes_num_hidden_layers():
    model, x, data = make("qwen2", layers=3)
    ns.cut(model, x, data=data, count=1, criterion="influence")
    assert model.config.num_hidden_layers == 2 and len(model.config.layer_types) == 2
    _generates(model, x)


@pytest.mark.parametrize("name", DECODERS[1:2])
def test_failed_edit_restores_config(name):
    model, x, _ = make(name)
    before = model.config.to_dict()
    from netsculpt.errors import VerificationError
    from netsculpt.graph import build_graph
    from netsculpt.surgery import remove_channels

    graph = build_graph(model, x)
    head = next(g for g in graph.prunable_groups() if g.kind == "head")
    with pytest.raises(VerificationError):
        remove_channels(model, graph, {head.id: [0]}, x, check=lambda a, b: "refuse")
    assert model.config.to_dict() == before
