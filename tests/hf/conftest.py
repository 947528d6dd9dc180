"""Tiny Hugging Face models of every family the hf package supports (random init, offline)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*token_id.*")

H, V = 64, 128


def _configs() -> dict:
    t = transformers
    gqa = dict(
        vocab_size=V, hidden_size=H, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    return {
        "bert": (t.BertModel, t.BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=128, max_position_embeddings=64)),
        "gpt2": (t.GPT2LMHeadModel, t.GPT2Config(vocab_size=V, n_embd=H, n_layer=2, n_head=4,
                 n_positions=64, bos_token_id=1, eos_token_id=2)),
        "llama": (t.LlamaForCausalLM, t.LlamaConfig(**gqa)),
        "qwen2": (t.Qwen2ForCausalLM, t.Qwen2Config(**gqa)),
        "mistral": (t.MistralForCausalLM, t.MistralConfig(**gqa)),
        "vit": (t.ViTModel, t.ViTConfig(image_size=32, patch_size=8, hidden_size=H,
                num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)),
    }  # fmt: skip


FAMILIES = list(_configs())
DECODERS = ("gpt2", "llama", "qwen2", "mistral")


def make(name: str, layers: int = 2):
    """``(model, example_inputs, calibration batches)`` for a family, seeded."""
    cls, cfg = _configs()[name]
    cfg = copy.deepcopy(cfg)
    key = "n_layer" if name == "gpt2" else "num_hidden_layers"
    setattr(cfg, key, layers)
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = None
        cfg = type(cfg).from_dict(cfg.to_dict() | {"layer_types": None})
    torch.manual_seed(0)
    model = cls(cfg).eval()
    g = torch.Generator().manual_seed(1)
    if name == "vit":
        x = torch.randn(2, 3, 32, 32, generator=g)
        data = [torch.randn(2, 3, 32, 32, generator=g) for _ in range(2)]
    else:
        x = {"input_ids": torch.randint(3, V, (2, 8), generator=g)}
        data = [{"input_ids": torch.randint(3, V, (2, 8), generator=g)} for _ in range(2)]
    return model, x, data


def with_head(name: str):
    """``(model, example_inputs)``: the encoder family with a classification head."""
    cls, cfg = _configs()[name]
    head = {"bert": transformers.BertForSequenceClassification,
            "vit": transformers.ViTForImageClassification}[name]  # fmt: skip
    torch.manual_seed(0)
    model = head(copy.deepcopy(cfg)).eval()
    g = torch.Generator().manual_seed(1)
    if name == "vit":
        return model, torch.randn(2, 3, 32, 32, generator=g)
    return model, {"input_ids": torch.randint(3, V, (2, 8), generator=g)}


def main_output(model, x) -> torch.Tensor:
    with torch.no_grad():
        out = model(x) if isinstance(x, torch.Tensor) else model(**x)
    for name in ("logits", "last_hidden_state"):
        if getattr(out, name, None) is not None:
            return getattr(out, name)
    return out[0]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)
