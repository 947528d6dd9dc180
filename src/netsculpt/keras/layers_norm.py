"""Converters for BatchNormalization, LayerNormalization and GroupNormalization.

The torch norms always have both affine tensors; a Keras norm built with ``center=False`` /
``scale=False`` gets ``beta = 0`` / ``gamma = 1`` there, and is rebuilt without them unless an op
changed them (a BatchNorm folded into it, say).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from netsculpt.keras._base import converter, keras_axis, numpy, refuse, tensor, weights_of

BN = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


def _affine(mod: nn.Module, w: dict, c_shape: tuple) -> None:
    gamma = w.get("gamma", np.ones(c_shape, np.float32))
    beta = w.get("beta", np.zeros(c_shape, np.float32))
    mod.weight, mod.bias = tensor(gamma), tensor(beta)


def _flags(layer, mod: nn.Module) -> dict:
    """``center`` / ``scale`` of the rebuilt layer: kept off while the tensor is still trivial."""
    w, b = numpy(mod.weight), numpy(mod.bias)
    return {
        "center": bool(layer.center or np.any(b != 0)),
        "scale": bool(layer.scale or np.any(w != 1)),
    }


def _axis(layer) -> int:
    axis = layer.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise refuse(layer, f"normalizes over axes {list(axis)} (one channel axis only)")
        axis = axis[0]
    return int(axis)


@converter("BatchNormalization")
class BatchNorm:
    def build(self, b, layer, ins, shape):
        if getattr(layer, "renorm", False):
            raise refuse(layer, "renorm=True")
        x = ins[0]
        axis = keras_axis(_axis(layer), x.rank)
        if axis == x.rank - 1:
            x = b.layout(x, x.rank >= 3)
        elif axis == 1:
            x = b.layout(x, False)
        else:
            raise refuse(layer, f"axis {layer.axis} is neither the first nor the last feature axis")
        c = shape[axis]
        w = weights_of(layer)
        mod = BN[x.rank](c, eps=float(layer.epsilon), momentum=1.0 - float(layer.momentum))
        _affine(mod, w, (c,))
        mod.running_mean = torch.as_tensor(w["moving_mean"], dtype=torch.float32)
        mod.running_var = torch.as_tensor(w["moving_variance"], dtype=torch.float32)
        mod.eval()
        return b.step(layer, [x], [("mod", b.module(layer, "main", lambda: mod))], shape, x.perm)

    def rebuild(self, r, layer, ins, perms):
        mod = r.mod(layer)
        if not r.same_type(layer):
            return r.translate(mod, ins[0], layer.name)
        cfg = {**layer.get_config(), **_flags(layer, mod)}

        def weights():
            return {
                "gamma": mod.weight,
                "beta": mod.bias,
                "moving_mean": mod.running_mean,
                "moving_variance": mod.running_var,
            }

        return r.call(r.layer(layer, cfg, weights), ins, perms[0])


@converter("LayerNormalization")
class LayerNorm:
    def build(self, b, layer, ins, shape):
        if getattr(layer, "rms_scaling", False):
            raise refuse(layer, "rms_scaling=True")
        x = b.layout(ins[0], False)
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        axes = sorted(keras_axis(int(a), x.rank) for a in axes)
        if axes != list(range(x.rank - len(axes), x.rank)):
            raise refuse(layer, f"axis {layer.axis}: only the trailing axes can be normalized")
        dims = tuple(int(shape[a]) for a in axes)
        w = weights_of(layer)
        mod = nn.LayerNorm(dims, eps=float(layer.epsilon))
        _affine(mod, w, dims)
        return b.step(layer, [x], [("mod", b.module(layer, "main", lambda: mod))], shape, False)

    def rebuild(self, r, layer, ins, perms):
        mod = r.mod(layer)
        if not r.same_type(layer):
            return r.translate(mod, ins[0], layer.name)
        cfg = {**layer.get_config(), **_flags(layer, mod)}
        return r.call(
            r.layer(layer, cfg, lambda: {"gamma": mod.weight, "beta": mod.bias}), ins, False
        )


@converter("GroupNormalization")
class GroupNorm:
    def build(self, b, layer, ins, shape):
        x = ins[0]
        axis = keras_axis(_axis(layer), x.rank)
        if axis == x.rank - 1:
            x = b.layout(x, x.rank >= 3)
        elif axis == 1:
            x = b.layout(x, False)
        else:
            raise refuse(layer, f"axis {layer.axis} is neither the first nor the last feature axis")
        c = int(shape[axis])
        w = weights_of(layer)
        mod = nn.GroupNorm(int(layer.groups), c, eps=float(layer.epsilon))
        _affine(mod, w, (c,))
        return b.step(layer, [x], [("mod", b.module(layer, "main", lambda: mod))], shape, x.perm)

    def rebuild(self, r, layer, ins, perms):
        mod = r.mod(layer)
        if not r.same_type(layer):
            return r.translate(mod, ins[0], layer.name)
        cfg = {**layer.get_config(), **_flags(layer, mod), "groups": mod.num_groups}
        return r.call(
            r.layer(layer, cfg, lambda: {"gamma": mod.weight, "beta": mod.bias}), ins, perms[0]
        )
