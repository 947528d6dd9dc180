"""Per-layer config fields follow depth edits: Qwen2's ``max_window_layers`` and
``layer_types`` after a cut in memory (``drop_layers``, ``ns.cut``), shard by shard
(``cut_pretrained``) and after ``ns.grow``; the saved config reloads to the same model."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import netsculpt as ns
import netsculpt.hf as nhf
from netsculpt.hf.layers import drop_layers, layer_scores
from netsculpt.surgery.hf import layer_fields

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*token_id.*")

V = 128
FULL, SLIDING = "full_attention", "sliding_attention"


def _qwen2(layers: int = 6):
    """Layers >= 3 use a 4-token window: shorter than the 8-token inputs, so it matters."""
    cfg = transformers.Qwen2Config(
        vocab_size=V, hidden_size=64, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
        use_sliding_window=True, sliding_window=4, max_window_layers=3,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    assert cfg.layer_types == [FULL] * 3 + [SLIDING] * 3
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(cfg).eval()


def _x():
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(3, V, (2, 8), generator=g)}


def _logits(model, x):
    with torch.no_grad():
        return model(**x).logits


def _reload(path):
    model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    return model


def _cut_in_memory(model, how: str) -> None:
    if how == "drop_layers":
        drop_layers(model, [1, 4])
    else:
        ns.cut(model, _x(), blocks=["model.layers.1", "model.layers.4"])


@pytest.mark.parametrize("how", ["drop_layers", "ns.cut"])
def test_in_memory_cut_renumbers_max_window_layers(tmp_path, how):
    model = _qwen2()
    _cut_in_memory(model, how)
    # kept layers 0, 2 | 3, 5: two of them were below max_window_layers=3
    assert model.config.max_window_layers == 2
    assert model.config.layer_types == [FULL, FULL, SLIDING, SLIDING]
    model.save_pretrained(tmp_path)
    got = _reload(tmp_path)
    assert got.config.max_window_layers == 2 and got.config.num_hidden_layers == 4
    assert got.config.layer_types == [FULL, FULL, SLIDING, SLIDING]
    x = _x()
    assert torch.allclose(_logits(got, x), _logits(model, x), atol=1e-5, rtol=0)


def test_cut_pretrained_renumbers_max_window_layers_like_in_memory(tmp_path):
    _qwen2().save_pretrained(tmp_path / "src", max_shard_size="100KB")
    rep = nhf.cut_pretrained(tmp_path / "src", tmp_path / "dst", layers=[1, 4])
    assert "max_window_layers" in rep.details["config_changes"]
    cfg = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert cfg["max_window_layers"] == 2 and cfg["layer_types"] == [FULL, FULL, SLIDING, SLIDING]
    got = _reload(tmp_path / "dst")
    assert got.config.max_window_layers == 2
    ref = _qwen2()
    drop_layers(ref, [1, 4])
    x = _x()
    assert torch.allclose(_logits(got, x), _logits(ref, x), atol=1e-5, rtol=0)


def test_grow_counts_the_copy_of_a_full_attention_layer():
    model = _qwen2()
    ns.grow(model, _x(), where=["model.layers.1"])
    assert model.config.num_hidden_layers == 7 and model.config.max_window_layers == 4
    assert model.config.layer_types == [FULL] * 4 + [SLIDING] * 3


def test_ppl_scoring_leaves_the_config_as_it_was():
    model = _qwen2()
    before = model.config.to_dict()
    layer_scores(model, [_x()], "ppl")
    assert model.config.to_dict() == before
    assert [m.self_attn.layer_idx for m in model.model.layers] == list(range(6))


def test_layer_fields_keeps_lists_renumbers_indices_and_leaves_other_lists():
    cfg = transformers.Qwen2MoeConfig(
        num_hidden_layers=4, mlp_only_layers=[1, 3], use_sliding_window=True,
        max_window_layers=2, eos_token_id=[5, 6, 7, 8],
    )  # fmt: skip
    # Qwen2-MoE derives sliding window for even layers *below* max_window_layers: [S, F, F, F]
    assert cfg.layer_types == [SLIDING, FULL, FULL, FULL]
    fields = layer_fields(cfg, [0, 2, 3], 4)
    assert fields == {
        "max_window_layers": 1,
        "mlp_only_layers": [2],
        "layer_types": [SLIDING, FULL, FULL],
    }
    # a list of the depth's length that is not per layer (token ids, image size) stays
    vit = transformers.ViTConfig(num_hidden_layers=2, image_size=[32, 32])
    assert layer_fields(vit, [0, 0, 1], 2) == {}
