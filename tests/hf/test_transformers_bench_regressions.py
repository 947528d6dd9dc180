"""Regressions found while scaling up ``benchmarks/hf_llm.py``."""

from __future__ import annotations

import warnings

import pytest
import torch

import netsculpt.hf as nhf

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*token_id.*")


def test_activation_importance_prunes_gpt2_conv1d():
    """GPT-2's projections are HF ``Conv1D``: activation importance used to measure no inputs
    for them and pruned nothing ("heads: nothing prunable")."""
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=128, n_embd=48, n_layer=2, n_head=4, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    x = {"input_ids": torch.randint(0, 128, (2, 16))}
    data = [{"input_ids": torch.randint(0, 128, (4, 16))} for _ in range(2)]
    before = sum(p.numel() for p in model.parameters())
    nhf.prune(model, x, amount=0.5, targets=("heads", "mlp"), importance="activation", data=data)
    assert sum(p.numel() for p in model.parameters()) < before
    block = model.transformer.h[0]
    assert block.mlp.c_fc.nf == 96  # 192 MLP channels, half removed
    assert block.attn.c_attn.nf == 3 * 24  # 2 of 4 heads of 12 dims kept
    assert model(**x).logits.shape == (2, 16, 128)
