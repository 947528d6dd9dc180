"""Tiny models that exercise every coupling the structure graph must get right (imported by
``tests/conftest.py`` for the ``tiny`` fixture, and by tests as ``from tinymodels import ...``;
a module of its own because ``conftest`` names several modules in this tree)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3)
    )


class SE(nn.Module):
    def __init__(self, c: int, r: int = 4):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // r, 1)
        self.fc2 = nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class CNN(nn.Module):
    """Residual add, concat, depthwise and grouped conv, BatchNorm, GroupNorm, SE, layer scale."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU())
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.branch = nn.Conv2d(16, 8, 1)
        self.grouped = nn.Conv2d(24, 24, 3, padding=1, groups=3)
        self.bn = nn.BatchNorm2d(24)
        self.se = SE(24)
        self.gamma = nn.Parameter(torch.ones(24, 1, 1))
        self.head = nn.Linear(24, classes)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.a(x)  # residual
        y = torch.cat([self.dw(x), self.branch(x)], dim=1)  # concat: 16 + 8
        y = self.se(F.relu(self.bn(self.grouped(y))))
        y = y * self.gamma
        return self.head(y.mean((2, 3)))


class Attention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.num_heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (z.view(b, t, -1, self.head_dim).transpose(1, 2) for z in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(o.transpose(1, 2).reshape(b, t, -1))


class Block(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    """Token + position embeddings, a class token, pre-norm blocks, nn.MultiheadAttention too."""

    def __init__(self, vocab: int = 50, dim: int = 32, layers: int = 2, classes: int = 4):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(1, 9, dim))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(Block(dim) for _ in range(layers))
        self.mha = nn.MultiheadAttention(dim, 4, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, ids):
        x = self.tok(ids)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        x = x + self.mha(x, x, x, need_weights=False)[0]
        return self.head(self.norm(x)[:, 0])


torch.set_num_threads(1)


def make_tiny() -> dict[str, tuple]:
    """name -> (model, example input), fixed seeds."""
    torch.manual_seed(0)
    return {
        "mlp": (mlp().eval(), torch.randn(4, 10)),
        "cnn": (CNN().eval(), torch.randn(2, 3, 16, 16)),
        "transformer": (Transformer().eval(), torch.randint(0, 50, (2, 8))),
    }
