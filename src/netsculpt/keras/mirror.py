"""The torch mirror of a Keras model: an ``nn.Module`` that computes what the Keras graph computes.

A :class:`Mirror` holds one child module per Keras layer part (a ``Dense`` becomes an
``nn.Linear`` named like the layer, and its activation a second child ``<name>__act``) and a
program: one step per call of a Keras layer, in the order Keras runs them. A step reads tensors
by id, runs its items (child modules by path, or plain functions) and writes one tensor.

Spatial tensors of channels-last layers are held channels-first inside the mirror (a step that
needs the Keras layout gets a permute first), so that every conv, norm and pool is the plain
torch module the engine's rules know. The program names modules by path only: an op that
replaces a child (``cut`` puts an ``nn.Identity`` there, ``grow`` an ``nn.Sequential``) changes
what the step runs, and :mod:`netsculpt.keras.rebuild` reads the children back into layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Step:
    """One call of a Keras layer: ``items`` are ``("mod", path)`` or ``("fn", callable)``; the
    first item gets every input, each later one the previous result."""

    layer: str  # the Keras layer's name ("" for a layout permute)
    ins: list[int]
    out: int
    items: list[tuple[str, Any]] = field(default_factory=list)


class Mirror(nn.Module):
    """A Keras graph as a torch module (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.program: list[Step] = []
        self.input_ids: list[int] = []
        self.output_ids: list[int] = []

    def forward(self, *xs: torch.Tensor) -> Any:
        env = self.run(*xs)
        outs = [env[i] for i in self.output_ids]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def run(self, *xs: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every tensor of the program, by id."""
        env = dict(zip(self.input_ids, xs))
        for step in self.program:
            args = [env[i] for i in step.ins]
            y = args[0]
            for n, (kind, what) in enumerate(step.items):
                fn = self.get_submodule(what) if kind == "mod" else what
                y = fn(*args) if n == 0 else fn(y)
            env[step.out] = y
        return env


# -- functions the program calls (module-level: a deep copy of the mirror keeps them) ----------
def to_channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, x.dim() - 1, *range(1, x.dim() - 1))


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, *range(2, x.dim()), 1)


def add(*xs: torch.Tensor) -> torch.Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def subtract(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a - b


def multiply(*xs: torch.Tensor) -> torch.Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = out * x
    return out


def average(*xs: torch.Tensor) -> torch.Tensor:
    return add(*xs) / len(xs)


def maximum(*xs: torch.Tensor) -> torch.Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = torch.maximum(out, x)
    return out


def minimum(*xs: torch.Tensor) -> torch.Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = torch.minimum(out, x)
    return out


class Cat:
    def __init__(self, dim: int) -> None:
        self.dim = dim

    def __call__(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


class Flatten:
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class Reshape:
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class Permute:
    def __init__(self, dims: tuple[int, ...]) -> None:
        self.dims = tuple(dims)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, *self.dims)


class Pad:
    """Zero padding: ``pads`` in ``F.pad`` order (last dim first)."""

    def __init__(self, pads: tuple[int, ...], value: float = 0.0) -> None:
        self.pads, self.value = tuple(pads), value

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads, value=self.value)


# -- modules -----------------------------------------------------------------------------------
class GlobalPool(nn.Module):
    """Global average / max pooling over the spatial dims of a channels-first tensor."""

    def __init__(self, mode: str, ndim: int, keepdim: bool) -> None:
        super().__init__()
        self.mode, self.ndim, self.keepdim = mode, ndim, keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, 2 + self.ndim))
        if self.mode == "avg":
            return x.mean(dim=dims, keepdim=self.keepdim)
        return x.amax(dim=dims, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"{self.mode}, {self.ndim}d, keepdim={self.keepdim}"


class PaddedPool(nn.Module):
    """Keras ``padding="same"`` pooling whose padding is uneven (more after than before).

    Max pooling pads with -inf. Average pooling follows the Keras backend the model came from:
    ``share`` (the fraction of each window that is real input, a constant of the static input
    shape) divides zero-padded windows as TensorFlow does; ``replicate`` pads with the edge
    values, as Keras's torch backend does.
    """

    def __init__(self, mode: str, kernel, stride, pads, share=None, replicate=False) -> None:
        super().__init__()
        self.mode, self.kernel, self.stride, self.pads = mode, tuple(kernel), tuple(stride), pads
        self.replicate = replicate
        if share is not None:
            self.register_buffer("share", share, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.kernel)
        if self.mode == "max":
            x = F.pad(x, self.pads, value=float("-inf"))
            return getattr(F, f"max_pool{n}d")(x, self.kernel, self.stride)
        if self.replicate:
            return getattr(F, f"avg_pool{n}d")(
                F.pad(x, self.pads, mode="replicate"), self.kernel, self.stride
            )
        x = F.pad(x, self.pads)
        return getattr(F, f"avg_pool{n}d")(x, self.kernel, self.stride) / self.share

    def extra_repr(self) -> str:
        return f"{self.mode}, kernel={self.kernel}, stride={self.stride}, pads={self.pads}"


def _padded(base: type) -> type:
    class Padded(base):
        """A conv with uneven padding (Keras ``same`` with stride > 1, or ``causal``): ``pads`` in
        ``F.pad`` order, applied before the convolution."""

        pads: tuple[int, ...] = ()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(F.pad(x, self.pads))

        def extra_repr(self) -> str:
            return f"{super().extra_repr()}, pads={self.pads}"

    Padded.__name__ = Padded.__qualname__ = f"Padded{base.__name__}"
    return Padded


PaddedConv1d, PaddedConv2d, PaddedConv3d = (_padded(c) for c in (nn.Conv1d, nn.Conv2d, nn.Conv3d))


def _cropped(base: type) -> type:
    class Cropped(base):
        """A transposed conv (padding 0) whose output is then cropped (or zero-extended) per side,
        as Keras does: ``crops`` = ``((before, after), ...)`` per spatial dim."""

        crops: tuple[tuple[int, int], ...] = ()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = super().forward(x)
            pads: list[int] = []
            for before, after in reversed(self.crops):
                pads += [-before, -after]
            return F.pad(y, pads) if any(pads) else y

        def extra_repr(self) -> str:
            return f"{super().extra_repr()}, crops={self.crops}"

    Cropped.__name__ = Cropped.__qualname__ = f"Cropped{base.__name__}"
    return Cropped


CroppedConvTranspose1d, CroppedConvTranspose2d, CroppedConvTranspose3d = (
    _cropped(c) for c in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
)


class Opaque(nn.Module):
    """A layer kept whole (``ignore=``) that has no torch equivalent: the Keras layer itself,
    called on torch tensors (``KERAS_BACKEND=torch`` only), in the Keras layout."""

    def __init__(self, layer: Any) -> None:
        super().__init__()
        self.__dict__["layer"] = layer  # not a registered child: its weights stay Keras's

    def forward(self, *xs: torch.Tensor) -> Any:
        return self.layer(*xs)

    def extra_repr(self) -> str:
        return f"{type(self.layer).__name__} {self.layer.name!r}"
