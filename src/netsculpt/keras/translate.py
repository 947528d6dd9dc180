"""Torch modules an op put into the mirror -> standard Keras layers.

``cut`` leaves ``nn.Identity`` (the layer is gone) or a bridge (a ``Linear`` / 1x1 conv),
``grow`` inserts ``nn.Sequential(relu, Linear, relu)``, ``merge`` folds a norm away. Each module
becomes the Keras layer that computes the same on the Keras tensor at that point: a conv on a
tensor the mirror holds channels-first is a ``channels_last`` Keras conv. A module with no
standard Keras counterpart is a one-line error naming it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from netsculpt.errors import VerificationError
from netsculpt.keras import mirror as M
from netsculpt.keras._base import KT, TORCH_ACTIVATIONS, numpy


def translate(r: Any, module: nn.Module, x: KT, owner: str) -> KT:
    """``module`` applied to ``x`` as Keras layers (see the module docstring)."""
    import keras
    from keras import layers

    rank = len(x.tensor.shape)
    if isinstance(module, nn.Identity) or type(module).__name__ == "Skip":
        return x
    if isinstance(module, nn.Sequential):
        for child in module:
            x = translate(r, child, x, owner)
        return x
    if type(module) is nn.Linear:
        if x.perm and rank >= 3:
            raise _no_layer(module, owner, "a Linear on a channels-first tensor")
        new = r.new(owner, layers.Dense, {"units": module.out_features, "use_bias": module.bias is not None},
                    {"kernel": numpy(module.weight).T, "bias": numpy(module.bias)})  # fmt: skip
        return r.call(new, [x], False)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not isinstance(
        module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    ):
        return _conv(r, module, x, owner)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
        axis = -1 if (x.perm or rank == 2) else 1
        cfg = {"axis": axis, "epsilon": module.eps, "momentum": 1.0 - (module.momentum or 0.1)}
        w = {"gamma": module.weight, "beta": module.bias, "moving_mean": module.running_mean,
             "moving_variance": module.running_var}  # fmt: skip
        return r.call(r.new(owner, layers.BatchNormalization, cfg, w), [x], x.perm)
    if type(module) is nn.LayerNorm and not x.perm and module.elementwise_affine:
        n = len(module.normalized_shape)
        cfg = {"axis": list(range(rank - n, rank)) if n > 1 else -1, "epsilon": module.eps}
        w = {"gamma": module.weight, "beta": module.bias}
        return r.call(r.new(owner, layers.LayerNormalization, cfg, w), [x], False)
    if type(module) in TORCH_ACTIVATIONS:
        cfg = {"activation": TORCH_ACTIVATIONS[type(module)]}
        return r.call(r.new(owner, layers.Activation, cfg), [x], x.perm)
    if type(module) is nn.LeakyReLU:
        cfg = {"negative_slope": module.negative_slope}
        return r.call(r.new(owner, layers.LeakyReLU, cfg), [x], x.perm)
    if type(module) is nn.GELU and module.approximate == "none":
        return r.call(r.new(owner, layers.Activation, {"activation": "gelu"}), [x], x.perm)
    if type(module) is nn.Dropout:
        return r.call(r.new(owner, layers.Dropout, {"rate": module.p}), [x], x.perm)
    del keras
    raise _no_layer(module, owner, "no standard Keras layer computes it")


def _no_layer(module: nn.Module, owner: str, why: str) -> VerificationError:
    return VerificationError(
        f"the edited model has a {type(module).__name__} where Keras layer '{owner}' was, and "
        f"{why}; the Keras model cannot be rebuilt (pass ignore=['{owner}'] to leave it)"
    )


def _conv(r: Any, conv: nn.Module, x: KT, owner: str) -> KT:
    from keras import layers

    nd = conv.weight.dim() - 2
    fmt = "channels_last" if x.perm else "channels_first"
    if isinstance(conv.padding, str):
        raise _no_layer(conv, owner, f"padding={conv.padding!r}")
    pads = [(p, p) for p in conv.padding]
    if isinstance(conv, (M.PaddedConv1d, M.PaddedConv2d, M.PaddedConv3d)):
        flat = list(conv.pads)
        pads = [(flat[2 * i], flat[2 * i + 1]) for i in range(nd)][::-1]
    k, s, d = conv.kernel_size, conv.stride, conv.dilation
    same = all(si == 1 and a + b == di * (ki - 1) and a == (a + b) // 2
               for (a, b), ki, si, di in zip(pads, k, s, d))  # fmt: skip
    padding = "valid"
    if any(a or b for a, b in pads):
        if same:
            padding = "same"
        else:
            zp = getattr(layers, f"ZeroPadding{nd}D")
            arg = tuple(pads) if nd > 1 else pads[0]
            x = r.call(r.new(owner, zp, {"padding": arg, "data_format": fmt}), [x], x.perm)
    w = numpy(conv.weight)
    bias = numpy(conv.bias)
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels
    common = {"kernel_size": k, "strides": s, "dilation_rate": d, "padding": padding,
              "data_format": fmt, "use_bias": conv.bias is not None}  # fmt: skip
    if depthwise and nd <= 2:
        cls = getattr(layers, f"DepthwiseConv{nd}D")
        mult = conv.out_channels // conv.groups
        kernel = np.transpose(w.reshape(conv.groups, mult, *k), (*range(2, 2 + nd), 0, 1))
        new = r.new(
            owner, cls, {**common, "depth_multiplier": mult}, {"kernel": kernel, "bias": bias}
        )
    else:
        cls = getattr(layers, f"Conv{nd}D")
        kernel = np.transpose(w, (*range(2, 2 + nd), 1, 0))
        cfg = {**common, "filters": conv.out_channels, "groups": conv.groups}
        new = r.new(owner, cls, cfg, {"kernel": kernel, "bias": bias})
    return r.call(new, [x], x.perm)
