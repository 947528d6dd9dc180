"""Derived widths kept in plain attributes (timm's ``Attention.attn_dim``) follow head pruning."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import netsculpt as ns


class Attention(nn.Module):
    """timm's Attention: ``attn_dim = num_heads * head_dim`` is computed once in __init__."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.attn_dim = heads * self.head_dim
        self.qkv, self.proj = nn.Linear(dim, 3 * self.attn_dim), nn.Linear(self.attn_dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, self.attn_dim))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.head = Attention(), nn.Linear(32, 2)

    def forward(self, x):
        return self.head((x + self.attn(x)).mean(1))


def test_attn_dim_follows_heads_and_reloads(tmp_path):
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(2, 5, 32)
    rep = ns.prune(model, x, amount=0.5)
    assert not rep.details["skipped"]
    assert model.attn.num_heads == 2 and model.attn.attn_dim == 16
    y = model(x)
    ns.save(model, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=Net()).eval()
    assert back.attn.attn_dim == 16 and torch.allclose(back(x), y, atol=1e-6)
