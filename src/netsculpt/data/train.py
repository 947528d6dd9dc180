"""A tiny fit so that demos and tests start from a trained model in a few seconds."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from netsculpt.core.errors import InputError
from netsculpt.data.datasets import load_dataset, make_loader


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # LM logits (B, T, V) against targets (B, T) flatten to token classification
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Fraction of correct argmax predictions (per token for LM targets); model left in eval.

    >>> accuracy(model, make_loader(load_dataset("digits", "test"), 256))  # doctest: +SKIP
    0.95
    """
    model.eval()
    correct = total = 0
    for x, y in loader:
        pred = model(x).argmax(-1)
        correct += int((pred == y).sum())
        total += y.numel()
    return correct / max(total, 1)


def train_quick(
    model: nn.Module,
    dataset_name: str,
    *,
    epochs: int | None = None,
    seconds: float | None = None,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> float:
    """Fit ``model`` in place on a built-in data set (Adam, cross-entropy); returns test accuracy.

    Stops after ``epochs`` or ``seconds``, whichever comes first (default: 10 epochs).

    >>> model = SeedMLP(64, 10)                               # doctest: +SKIP
    >>> train_quick(model, "digits", epochs=20) > 0.9         # doctest: +SKIP
    True
    """
    if epochs is None and seconds is None:
        epochs = 10
    if (epochs is not None and epochs < 1) or (seconds is not None and seconds <= 0):
        raise InputError(f"train_quick: epochs={epochs} / seconds={seconds} must be positive")
    old_threads = torch.get_num_threads()
    # tiny models gain nothing from threads, and on a shared CPU spinning threads cost a lot
    torch.set_num_threads(1)
    try:
        return _fit(model, dataset_name, epochs, seconds, lr, batch_size, seed)
    finally:
        torch.set_num_threads(old_threads)


def _fit(
    model: nn.Module,
    dataset_name: str,
    epochs: int | None,
    seconds: float | None,
    lr: float,
    batch_size: int,
    seed: int,
) -> float:
    torch.manual_seed(seed)
    loader = make_loader(load_dataset(dataset_name, "train", seed), batch_size, True, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    deadline = time.monotonic() + seconds if seconds is not None else float("inf")
    epoch = 0
    model.train()
    while (epochs is None or epoch < epochs) and time.monotonic() < deadline:
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            _loss(model(x), y).backward()
            optimizer.step()
            if time.monotonic() >= deadline:
                break
        epoch += 1
    test = make_loader(load_dataset(dataset_name, "test", seed), 512)
    return accuracy(model, test)
