"""Tiny models and data for the optimize tests (kept small: a search runs many forwards)."""

from __future__ import annotations

import pytest
import torch

from netsculpt.data.models import DigitsCNN


def make_net(width: int = 32) -> torch.nn.Module:
    torch.manual_seed(0)
    net = DigitsCNN(width=width).eval()
    with torch.no_grad():  # BatchNorms with statistics of their own, as after training
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net


def make_data(n: int = 8, batch: int = 16) -> list:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.rand(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(n)
    ]


@pytest.fixture
def net():
    return make_net()


@pytest.fixture
def x():
    return torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))


@pytest.fixture
def data():
    return make_data()


def architecture(model: torch.nn.Module) -> tuple:
    return str(model), {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.fixture
def arch():
    return architecture


@pytest.fixture
def fresh():
    return make_net


@pytest.fixture
def fast():
    """Options that keep a search short: no heals, no progress lines, 4 + 4 batches."""
    return {"heal": False, "progress": False, "max_batches": 4, "eval_batches": 4}
