"""Converters for convolutions (plain, depthwise, separable, transposed), pooling and padding.

Channels-last layers run on channels-first tensors in the mirror. Keras ``padding="same"`` is
TensorFlow's rule (the extra row / column goes after); where that is uneven the mirror module
pads explicitly (:class:`~netsculpt.keras.mirror.PaddedConv2d` and friends), and a transposed
convolution crops its output per side as Keras does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from netsculpt.keras import mirror as M
from netsculpt.keras._base import T, converter, refuse, tensor, weights_of
from netsculpt.keras.layers_core import main_and_activation, with_activation

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
PADDED = {1: M.PaddedConv1d, 2: M.PaddedConv2d, 3: M.PaddedConv3d}
CROPPED = {1: M.CroppedConvTranspose1d, 2: M.CroppedConvTranspose2d, 3: M.CroppedConvTranspose3d}


def pads_for(layer: Any, padding: str, sizes, kernel, strides, dilation) -> list[tuple[int, int]]:
    """``(before, after)`` per spatial dim for Keras ``padding`` (TensorFlow's ``same`` rule)."""
    out = []
    for n, k, s, d in zip(sizes, kernel, strides, dilation):
        ek = (k - 1) * d + 1
        if padding == "valid":
            out.append((0, 0))
        elif padding == "causal":
            out.append((ek - 1, 0))
        else:
            if s == 1:
                total = ek - 1
            elif n is None:
                raise refuse(layer, "padding='same' with strides > 1 needs a known input size")
            else:
                total = max((math.ceil(n / s) - 1) * s + ek - n, 0)
            out.append((total // 2, total - total // 2))
    return out


def flat_pads(pads: list[tuple[int, int]]) -> tuple[int, ...]:
    """``F.pad`` order: last dim first."""
    return tuple(v for pair in reversed(pads) for v in pair)


def geometry(mod: nn.Module) -> tuple:
    """What makes a conv / pool the same kind of layer (not its widths)."""
    keys = ("kernel_size", "stride", "dilation", "padding", "pads", "crops", "output_padding")
    depthwise = getattr(mod, "groups", 1) > 1 and mod.groups == getattr(mod, "in_channels", 0)
    return (*(getattr(mod, k, None) for k in keys), depthwise)


def conv_module(nd, cin, cout, kernel, strides, dilation, groups, bias, pads) -> nn.Module:
    if all(a == b for a, b in pads):
        return CONV[nd](
            cin, cout, kernel, strides, tuple(a for a, _ in pads), dilation, groups, bias
        )
    mod = PADDED[nd](cin, cout, kernel, strides, 0, dilation, groups, bias)
    mod.pads = flat_pads(pads)
    return mod


def _spatial(x: T, channels_last: bool) -> tuple[int, tuple]:
    return (x.shape[-1], x.shape[1:-1]) if channels_last else (x.shape[1], x.shape[2:])


def _same(r, layer, role="main") -> bool:
    facts = r.built(layer, role)
    return r.same_type(layer, role) and geometry(r.mod(layer, role)) == facts.get("geometry")


def _module(b, layer, role, mod) -> str:
    return b.module(layer, role, lambda: mod, geometry=geometry(mod))


def _kernel_to_torch(kernel: np.ndarray, nd: int) -> np.ndarray:
    """Keras ``(*k, in, out)`` -> torch ``(out, in, *k)``."""
    return np.transpose(kernel, (nd + 1, nd, *range(nd)))


def _kernel_to_keras(w: torch.Tensor) -> np.ndarray:
    nd = w.dim() - 2
    return np.transpose(w.detach().cpu().numpy(), (*range(2, 2 + nd), 1, 0))


@converter("Conv1D", "Conv2D", "Conv3D")
class Conv:
    def build(self, b, layer, ins, shape):
        cl = layer.data_format == "channels_last"
        x = b.layout(ins[0], cl)
        nd, (cin, sizes) = x.rank - 2, _spatial(x, cl)
        k, s, d = layer.kernel_size, layer.strides, layer.dilation_rate
        pads = pads_for(layer, layer.padding, sizes, k, s, d)
        w = weights_of(layer)
        mod = conv_module(nd, cin, layer.filters, k, s, d, layer.groups, layer.use_bias, pads)
        mod.weight = tensor(_kernel_to_torch(w["kernel"], nd))
        if layer.use_bias:
            mod.bias = tensor(w["bias"])
        items = with_activation(
            b, layer, [("mod", _module(b, layer, "main", mod))], layer.activation, 1
        )
        return b.step(layer, [x], items, shape, cl)

    def rebuild(self, r, layer, ins, perms):
        main = r.mod(layer)

        def make(act):
            cfg = {**layer.get_config(), "filters": main.out_channels, "activation": act}
            cfg.update(use_bias=main.bias is not None, groups=main.groups)

            def weights():
                return {"kernel": _kernel_to_keras(main.weight), "bias": main.bias}

            return r.layer(layer, cfg, weights)

        return main_and_activation(r, layer, ins[0], _same(r, layer), make, perms[0])


def _depthwise_to_torch(kernel: np.ndarray, nd: int) -> np.ndarray:
    """Keras ``(*k, C, mult)`` -> torch ``(C * mult, 1, *k)`` (output ``c * mult + m``)."""
    c, mult = kernel.shape[-2:]
    return np.transpose(kernel, (nd, nd + 1, *range(nd))).reshape(c * mult, 1, *kernel.shape[:nd])


def _depthwise_keras(w: torch.Tensor, groups: int) -> np.ndarray:
    nd = w.dim() - 2
    a = w.detach().cpu().numpy().reshape(groups, w.shape[0] // groups, *w.shape[2:])
    return np.transpose(a, (*range(2, 2 + nd), 0, 1))


def _depthwise(layer, x: T, cl: bool, kernel: np.ndarray, bias) -> nn.Module:
    nd, (cin, sizes) = x.rank - 2, _spatial(x, cl)
    k, s, d = layer.kernel_size, layer.strides, layer.dilation_rate
    pads = pads_for(layer, layer.padding, sizes, k, s, d)
    mult = kernel.shape[-1]
    mod = conv_module(nd, cin, cin * mult, k, s, d, cin, bias is not None, pads)
    mod.weight = tensor(_depthwise_to_torch(kernel, nd))
    if bias is not None:
        mod.bias = tensor(bias)
    return mod


@converter("DepthwiseConv1D", "DepthwiseConv2D")
class Depthwise:
    def build(self, b, layer, ins, shape):
        cl = layer.data_format == "channels_last"
        x = b.layout(ins[0], cl)
        w = weights_of(layer)
        mod = _depthwise(layer, x, cl, w["kernel"], w.get("bias"))
        items = with_activation(
            b, layer, [("mod", _module(b, layer, "main", mod))], layer.activation, 1
        )
        return b.step(layer, [x], items, shape, cl)

    def rebuild(self, r, layer, ins, perms):
        main = r.mod(layer)

        def make(act):
            mult = main.out_channels // main.groups
            cfg = {**layer.get_config(), "depth_multiplier": mult, "activation": act}
            cfg["use_bias"] = main.bias is not None

            def weights():
                return {
                    "kernel": _depthwise_keras(main.weight, main.groups),
                    "bias": main.bias,
                }

            return r.layer(layer, cfg, weights)

        return main_and_activation(r, layer, ins[0], _same(r, layer), make, perms[0])


@converter("SeparableConv1D", "SeparableConv2D")
class Separable:
    def build(self, b, layer, ins, shape):
        cl = layer.data_format == "channels_last"
        x = b.layout(ins[0], cl)
        nd = x.rank - 2
        w = weights_of(layer)
        dw = _depthwise(layer, x, cl, w["depthwise_kernel"], None)
        pw_k = w["pointwise_kernel"]
        pw = CONV[nd](pw_k.shape[-2], pw_k.shape[-1], 1, bias=layer.use_bias)
        pw.weight = tensor(_kernel_to_torch(pw_k, nd))
        if layer.use_bias:
            pw.bias = tensor(w["bias"])
        items = [
            ("mod", _module(b, layer, "main", dw)),
            ("mod", _module(b, layer, "pointwise", pw)),
        ]
        items = with_activation(b, layer, items, layer.activation, 1)
        return b.step(layer, [x], items, shape, cl)

    def rebuild(self, r, layer, ins, perms):
        dw, pw = r.mod(layer), r.mod(layer, "pointwise")
        x = ins[0]
        if _same(r, layer) and _same(r, layer, "pointwise"):

            def make(act):
                cfg = {**layer.get_config(), "filters": pw.out_channels, "activation": act}
                cfg.update(
                    depth_multiplier=dw.out_channels // dw.groups, use_bias=pw.bias is not None
                )

                def weights():
                    return {
                        "depthwise_kernel": _depthwise_keras(dw.weight, dw.groups),
                        "pointwise_kernel": _kernel_to_keras(pw.weight),
                        "bias": pw.bias,
                    }

                return r.layer(layer, cfg, weights)

            return main_and_activation(r, layer, x, True, make, perms[0])
        y = r.translate(pw, r.translate(dw, x, layer.name), layer.name)
        return r.translate(r.mod(layer, "act"), y, layer.name)


def transpose_crops(kernel, strides, dilation, padding, output_padding) -> tuple:
    """Per spatial dim ``(crop before, crop after)`` of a padding-0 transposed conv's output that
    give Keras's output (a negative crop extends with zeros)."""
    out = []
    for i, (k, s, d) in enumerate(zip(kernel, strides, dilation)):
        op = output_padding[i] if isinstance(output_padding, (list, tuple)) else output_padding
        ek = (k - 1) * d + 1
        if padding == "valid":
            op = max(ek, s) - ek if op is None else op
            left, right = ek - 1, ek - 1 + op
        else:
            total = s + ek - 2 if op is None else ek + ek % 2 - 2 + op
            left = min(total // 2 + total % 2, ek - 1)
            right = total - left
        out.append(((ek - 1) - left, (ek - 1) - right))
    return tuple(out)


@converter("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
class ConvTranspose:
    def build(self, b, layer, ins, shape):
        cl = layer.data_format == "channels_last"
        x = b.layout(ins[0], cl)
        nd, (cin, _) = x.rank - 2, _spatial(x, cl)
        k, s, d = layer.kernel_size, layer.strides, layer.dilation_rate
        if any(v != 1 for v in d) and any(v != 1 for v in s):
            raise refuse(layer, "dilation and strides > 1 together")
        w = weights_of(layer)
        mod = CROPPED[nd](cin, layer.filters, k, s, 0, 0, 1, layer.use_bias, d)
        mod.crops = transpose_crops(k, s, d, layer.padding, layer.output_padding)
        mod.weight = tensor(_kernel_to_torch(w["kernel"], nd))
        if layer.use_bias:
            mod.bias = tensor(w["bias"])
        items = with_activation(
            b, layer, [("mod", _module(b, layer, "main", mod))], layer.activation, 1
        )
        return b.step(layer, [x], items, shape, cl)

    def rebuild(self, r, layer, ins, perms):
        main = r.mod(layer)

        def make(act):
            cfg = {**layer.get_config(), "filters": main.out_channels, "activation": act}
            cfg["use_bias"] = main.bias is not None
            return r.layer(
                layer, cfg, lambda: {"kernel": _kernel_to_keras(main.weight), "bias": main.bias}
            )

        return main_and_activation(r, layer, ins[0], _same(r, layer), make, perms[0])


def _pool_module(layer, mode: str, x: T, cl: bool) -> nn.Module:
    nd, (_, sizes) = x.rank - 2, _spatial(x, cl)
    k, s = tuple(layer.pool_size), tuple(layer.strides)
    pads = pads_for(layer, layer.padding, sizes, k, s, (1,) * nd)
    if all(a == b for a, b in pads):
        p = tuple(a for a, _ in pads)
        if mode == "max":
            return getattr(nn, f"MaxPool{nd}d")(k, s, p)
        return getattr(nn, f"AvgPool{nd}d")(k, s, p, count_include_pad=False)
    import keras

    share, replicate = None, keras.backend.backend() == "torch"
    if mode == "avg" and not replicate:
        if any(n is None for n in sizes):
            raise refuse(layer, "uneven 'same' average pooling needs a known input size")
        ones = F.pad(torch.ones(1, 1, *sizes), flat_pads(pads))
        share = getattr(F, f"avg_pool{nd}d")(ones, k, s)
    return M.PaddedPool(mode, k, s, flat_pads(pads), share, replicate)


class _Pool:
    mode = "max"

    def build(self, b, layer, ins, shape):
        cl = layer.data_format == "channels_last"
        x = b.layout(ins[0], cl)
        mod = _pool_module(layer, self.mode, x, cl)
        return b.step(layer, [x], [("mod", b.module(layer, "main", lambda: mod))], shape, cl)

    def rebuild(self, r, layer, ins, perms):
        if r.same_type(layer):
            return r.call(r.clone(layer), ins, perms[0])
        return r.translate(r.mod(layer), ins[0], layer.name)


@converter("MaxPooling1D", "MaxPooling2D", "MaxPooling3D")
class MaxPool(_Pool):
    mode = "max"


@converter("AveragePooling1D", "AveragePooling2D", "AveragePooling3D")
class AvgPool(_Pool):
    mode = "avg"


class _GlobalPool(_Pool):
    def build(self, b, layer, ins, shape):
        cl = layer.data_format == "channels_last"
        x = b.layout(ins[0], cl)
        mod = M.GlobalPool(self.mode, x.rank - 2, bool(layer.keepdims))
        perm = cl and bool(layer.keepdims)
        return b.step(layer, [x], [("mod", b.module(layer, "main", lambda: mod))], shape, perm)


@converter("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D")
class GlobalMax(_GlobalPool):
    mode = "max"


@converter("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D")
class GlobalAvg(_GlobalPool):
    mode = "avg"


@converter("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
class ZeroPadding:
    def build(self, b, layer, ins, shape):
        cl = getattr(layer, "data_format", "channels_last") == "channels_last"
        x = b.layout(ins[0], cl)
        pad = layer.padding
        pairs = [tuple(pad)] if isinstance(pad[0], int) else [tuple(p) for p in pad]
        return b.step(layer, [x], [("fn", M.Pad(flat_pads(pairs)))], shape, cl)

    def rebuild(self, r, layer, ins, perms):
        return r.call(r.clone(layer), ins, perms[0])
