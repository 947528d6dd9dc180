"""Phi-3: fused ``qkv_proj`` (GQA) sliced into q / k / v and ``gate_up_proj`` chunked in two."""

from __future__ import annotations

import pytest
import torch

import netsculpt as ns
import netsculpt.hf as nhf
from netsculpt.hf.config import layer_widths

transformers = pytest.importorskip("transformers")


def make():
    cfg = transformers.Phi3Config(
        vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=8,
        num_key_value_heads=4, intermediate_size=128, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Phi3ForCausalLM(cfg).eval()
    return model, {
        "input_ids": torch.randint(3, 128, (2, 8), generator=torch.Generator().manual_seed(1))
    }


def _logits(model, x):
    with torch.no_grad():
        return model(**x).logits


def test_uniform_heads_and_mlp_round_trip_through_from_pretrained(tmp_path):
    model, x = make()
    assert layer_widths(model)["layers"][0] == {
        "heads": 8, "kv_heads": 4, "head_dim": 8, "intermediate": 128,
    }  # fmt: skip
    rep = nhf.prune(model, x, amount=0.5, targets=("heads", "mlp"), uniform=True)
    attn = model.model.layers[0].self_attn
    assert attn.qkv_proj.out_features == (4 + 2 + 2) * 8 and attn.o_proj.in_features == 32
    assert model.model.layers[0].mlp.gate_up_proj.out_features == 2 * 64
    cfg = model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size) == (4, 2, 64)
    assert rep.details["hf_compatible"]
    out = model.generate(x["input_ids"], max_new_tokens=3, do_sample=False)
    assert out.shape == (2, 11)
    ref = _logits(model, x)
    nhf.save_pretrained(model, tmp_path / "hf")
    again = transformers.Phi3ForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert torch.allclose(_logits(again, x), ref, atol=1e-5)


def test_global_prune_generates_and_reloads_with_ns_load(tmp_path):
    model, x = make()
    rep = ns.prune(model, x, amount=0.3, global_=True)
    assert rep.after.params < rep.before.params
    assert model.generate(x["input_ids"], max_new_tokens=3, do_sample=False).shape == (2, 11)
    ref = _logits(model, x)
    ns.save(model, tmp_path / "ns")
    again = ns.load(tmp_path / "ns").eval()
    assert torch.allclose(_logits(again, x), ref, atol=1e-5)
