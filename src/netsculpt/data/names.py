"""The names of built-in and torchvision models: builders and example inputs.

The bottom layer's registry of model names; :func:`netsculpt.io.resolve_model` reads it to turn
a model argument (a name, a save folder, a ``.pt2``) into a model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.data.models import BUILTINS, builtin_example


def torchvision_names() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(name: str) -> nn.Module:
    """A random-init torchvision model; inception_v3 without the aux head (plain tensor output)."""
    import torchvision

    kwargs = {"aux_logits": False, "init_weights": False} if name == "inception_v3" else {}
    try:
        with torch.random.fork_rng(devices=[]):  # one name, one initial model
            torch.manual_seed(0)
            return torchvision.models.get_model(name, weights=None, **kwargs)
    except ValueError as exc:
        raise InputError(f"unknown torchvision model {name!r}") from exc


def image_input(name: str) -> torch.Tensor:
    size = 299 if name == "inception_v3" else 224
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def example_inputs_for(source: str | None) -> Any:
    """Example inputs for a recorded source (``builtin:NAME`` / ``torchvision:NAME``), else None.

    >>> example_inputs_for("builtin:digits-mlp").shape
    torch.Size([1, 64])
    """
    kind, _, name = (source or "").partition(":")
    if kind == "builtin" and name in BUILTINS:
        return builtin_example(name)
    if kind == "torchvision":
        return image_input(name)
    return None
