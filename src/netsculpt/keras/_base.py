"""What every layer converter shares: the converter registry, tensor handles, the activation
table, and the one-line refusals.

A converter turns one Keras layer class into mirror items (:meth:`Converter.build`) and reads
the mirror's children back into a Keras layer (:meth:`Converter.rebuild`). It is registered for
exact Keras classes only: a subclass of ``Dense`` may compute something else, so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.errors import InputError

CONVERTERS: dict[str, Any] = {}


def converter(*class_names: str):
    """Register a converter object for the Keras layer classes ``class_names``."""

    def deco(cls):
        obj = cls()
        for name in class_names:
            CONVERTERS[name] = obj
        return cls

    return deco


@dataclass(frozen=True)
class T:
    """A tensor of the mirror under construction: its id, its Keras shape (batch first, None
    for unknown sizes) and whether the mirror holds it channels-first (``perm``)."""

    tid: int
    shape: tuple
    perm: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def channels(self) -> int:
        """The Keras channels-last size (the last dim)."""
        return int(self.shape[-1])


@dataclass(frozen=True)
class KT:
    """A Keras tensor of the model under reconstruction, and whether the mirror held it
    channels-first at this point (what a new conv or norm found there is applied to)."""

    tensor: Any
    perm: bool = False


def refuse(layer: Any, why: str) -> InputError:
    """The one-line refusal for a layer netsculpt.keras cannot mirror."""
    return InputError(
        f"Keras layer '{layer.name}' ({type(layer).__name__}): {why}; "
        f"pass ignore=['{layer.name}'] to keep it whole (KERAS_BACKEND=torch), or replace it "
        f"with standard layers (docs/keras.md lists them)"
    )


def weights_of(layer: Any) -> dict[str, np.ndarray]:
    """The layer's weights by their short name (``kernel``, ``bias``, ``gamma``, ...)."""
    import keras

    return {weight_name(layer, v): np.asarray(keras.ops.convert_to_numpy(v)) for v in layer.weights}


def weight_name(layer: Any, v: Any) -> str:
    """A weight's path inside its layer: ``kernel``, or ``query/kernel`` in a composite layer."""
    path = str(getattr(v, "path", v.name)).split(":")[0]
    prefix = f"{layer.name}/"
    return path[len(prefix) :] if path.startswith(prefix) else path.rsplit("/", 1)[-1]


def tensor(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32))


def numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


def keras_axis(axis: int, rank: int) -> int:
    """A Keras axis as a non-negative index."""
    return axis % rank


def mirror_dim(axis: int, rank: int, perm: bool) -> int:
    """Where Keras axis ``axis`` of a rank-``rank`` tensor lives in the mirror's tensor."""
    a = keras_axis(axis, rank)
    if not perm or a == 0:
        return a
    return 1 if a == rank - 1 else a + 1


# -- activations --------------------------------------------------------------------------------
# Keras activation name -> torch module factory (``dim``: the mirror's dim of the Keras last axis)
ACTIVATIONS: dict[str, Any] = {
    "relu": lambda dim: nn.ReLU(),
    "relu6": lambda dim: nn.ReLU6(),
    "sigmoid": lambda dim: nn.Sigmoid(),
    "tanh": lambda dim: nn.Tanh(),
    "softmax": lambda dim: nn.Softmax(dim=dim),
    "log_softmax": lambda dim: nn.LogSoftmax(dim=dim),
    "elu": lambda dim: nn.ELU(),
    "selu": lambda dim: nn.SELU(),
    "gelu": lambda dim: nn.GELU(),
    "silu": lambda dim: nn.SiLU(),
    "swish": lambda dim: nn.SiLU(),
    "softplus": lambda dim: nn.Softplus(),
    "softsign": lambda dim: nn.Softsign(),
    "hard_sigmoid": lambda dim: nn.Hardsigmoid(),
    "hard_silu": lambda dim: nn.Hardswish(),
    "hard_swish": lambda dim: nn.Hardswish(),
    "mish": lambda dim: nn.Mish(),
    "leaky_relu": lambda dim: nn.LeakyReLU(0.2),
}


def activation_name(value: Any) -> str:
    """The Keras name of an activation given as a name, a function or a config."""
    import keras

    if value is None:
        return "linear"
    try:
        name = keras.activations.serialize(keras.activations.get(value))
    except Exception:
        name = value if isinstance(value, str) else repr(value)
    return name if isinstance(name, str) else repr(name)


def activation_module(layer: Any, value: Any, dim: int) -> nn.Module | None:
    """The torch module of a Keras activation (None for ``linear``); refuses unknown ones."""
    name = activation_name(value)
    if name == "linear":
        return None
    if name not in ACTIVATIONS:
        raise refuse(layer, f"activation {name!r} has no torch counterpart here")
    return ACTIVATIONS[name](dim)


# torch activation class -> Keras activation name (for modules an op created)
TORCH_ACTIVATIONS: dict[type, str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.SiLU: "silu",
    nn.Softplus: "softplus",
    nn.Softsign: "softsign",
    nn.Hardsigmoid: "hard_sigmoid",
    nn.Hardswish: "hard_silu",
    nn.Mish: "mish",
}


def check_dtype(layer: Any) -> None:
    policy = getattr(layer, "dtype_policy", None)
    compute = getattr(policy, "compute_dtype", "float32")
    if compute not in ("float32", None) and type(layer).__name__ != "InputLayer":
        raise refuse(layer, f"compute dtype {compute} (only float32 layers are mirrored)")
