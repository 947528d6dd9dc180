from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset


class MLP(nn.Module):
    def __init__(self, d_in: int = 8, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.act = nn.ReLU()
        self.blocks = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(self.blocks(self.act(self.fc1(x))))


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 13, dim: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask=None):
        h = torch.tanh(self.proj(self.emb(input_ids)))
        return {"logits": self.head(h), "last_hidden_state": h}


def make_data(n: int = 240, d_in: int = 8, classes: int = 3, seed: int = 0) -> TensorDataset:
    w = torch.randn(d_in, classes, generator=torch.Generator().manual_seed(99))
    x = torch.randn(n, d_in, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(x, (x @ w).argmax(1))


@pytest.fixture
def data() -> TensorDataset:
    return make_data()


@pytest.fixture
def mlp() -> MLP:
    torch.manual_seed(0)
    return MLP()
