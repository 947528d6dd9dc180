"""Converters for Dense, Embedding, activations, Dropout, Flatten / Reshape / Permute, merges."""

from __future__ import annotations

from typing import Any

from torch import nn

from netsculpt.keras import mirror as M
from netsculpt.keras._base import (
    KT,
    T,
    activation_module,
    converter,
    mirror_dim,
    refuse,
    tensor,
    weights_of,
)


def with_activation(b: Any, layer: Any, items: list, value: Any, dim: int) -> list:
    """``items`` plus the layer's fused activation as a child ``<name>__act`` (if not linear)."""
    act = activation_module(layer, value, dim)
    if act is not None:
        items.append(("mod", b.module(layer, "act", lambda: act)))
    return items


def main_and_activation(r: Any, layer: Any, x: KT, original: bool, make: Any, perm: bool) -> KT:
    """The rebuild of a layer made of a main module and a fused activation: ``make(activation)``
    gives the new layer when the main module is still the layer's kind (``original``)."""
    if original:
        keep, tail = r.activation(layer)
        cfg_act = layer.get_config().get("activation", "linear") if keep else "linear"
        y = r.call(make(cfg_act), [x], perm)
    else:
        y = r.translate(r.mod(layer), x, layer.name)
        tail = [r.mod(layer, "act")]
    for m in tail:
        y = r.translate(m, y, layer.name)
    return y


@converter("Dense")
class Dense:
    def build(self, b, layer, ins, shape):
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            raise refuse(layer, "LoRA / quantized Dense layers are not mirrored")
        x = b.layout(ins[0], False)
        w = weights_of(layer)

        def make():
            lin = nn.Linear(x.channels, layer.units, bias=layer.use_bias)
            lin.weight = tensor(w["kernel"].T)
            if layer.use_bias:
                lin.bias = tensor(w["bias"])
            return lin

        items = [("mod", b.module(layer, "main", make))]
        items = with_activation(b, layer, items, layer.activation, -1)
        return b.step(layer, [x], items, shape, False)

    def rebuild(self, r, layer, ins, perms):
        main = r.mod(layer)

        def make(act):
            cfg = {**layer.get_config(), "units": main.out_features, "activation": act}
            cfg["use_bias"] = main.bias is not None
            return r.layer(layer, cfg, lambda: {"kernel": main.weight.T, "bias": main.bias})

        return main_and_activation(r, layer, ins[0], r.same_type(layer), make, False)


@converter("Embedding")
class Embedding:
    def build(self, b, layer, ins, shape):
        if layer.mask_zero:
            raise refuse(layer, "mask_zero=True (masks are not mirrored)")
        w = weights_of(layer)["embeddings"]

        def make():
            emb = nn.Embedding(*w.shape)
            emb.weight = tensor(w)
            return emb

        return b.step(layer, ins, [("mod", b.module(layer, "main", make))], shape, False)

    def rebuild(self, r, layer, ins, perms):
        emb = r.mod(layer)
        if not r.same_type(layer):
            return r.translate(emb, ins[0], layer.name)
        n, d = emb.weight.shape
        cfg = {**layer.get_config(), "input_dim": int(n), "output_dim": int(d)}
        return r.call(r.layer(layer, cfg, lambda: {"embeddings": emb.weight}), ins, False)


class _Elementwise:
    """A layer computed by one torch module, in whatever layout its input is held."""

    def module(self, layer, dim: int) -> nn.Module | None:
        raise NotImplementedError

    def build(self, b, layer, ins, shape):
        x = ins[0]
        dim = mirror_dim(-1, x.rank, x.perm)
        mod = self.module(layer, dim)
        items = [] if mod is None else [("mod", b.module(layer, "main", lambda: mod))]
        return b.step(layer, [x], items, shape, x.perm)

    def rebuild(self, r, layer, ins, perms):
        x = ins[0]
        if r.mod(layer) is None or r.same_type(layer):
            return r.call(r.clone(layer), [x], x.perm)
        return r.translate(r.mod(layer), x, layer.name)


@converter("Activation")
class Activation(_Elementwise):
    def module(self, layer, dim):
        return activation_module(layer, layer.activation, dim)


@converter("ReLU")
class ReLU(_Elementwise):
    def module(self, layer, dim):
        top, slope, th = layer.max_value, float(layer.negative_slope), float(layer.threshold)
        if th != 0.0 or (top is not None and slope != 0.0):
            raise refuse(layer, "threshold / clipped leaky ReLU has no torch module here")
        if top is None:
            return nn.ReLU() if slope == 0.0 else nn.LeakyReLU(slope)
        if float(top) == 6.0:
            return nn.ReLU6()
        return nn.Hardtanh(0.0, float(top))


@converter("LeakyReLU")
class LeakyReLU(_Elementwise):
    def module(self, layer, dim):
        return nn.LeakyReLU(float(layer.negative_slope))


@converter("ELU")
class ELU(_Elementwise):
    def module(self, layer, dim):
        return nn.ELU(float(layer.alpha))


@converter("Softmax")
class Softmax(_Elementwise):
    def build(self, b, layer, ins, shape):
        x = ins[0]
        axis = layer.axis if isinstance(layer.axis, int) else None
        if axis is None and len(layer.axis) == 1:
            axis = layer.axis[0]
        if axis is None:
            raise refuse(layer, "softmax over several axes")
        mod = nn.Softmax(dim=mirror_dim(axis, x.rank, x.perm))
        return b.step(layer, [x], [("mod", b.module(layer, "main", lambda: mod))], shape, x.perm)


@converter("Dropout")
class Dropout(_Elementwise):
    def module(self, layer, dim):
        return nn.Dropout(float(layer.rate))


@converter("PReLU")
class PReLU:
    def build(self, b, layer, ins, shape):
        alpha = weights_of(layer)["alpha"]
        x = ins[0]
        c = x.channels
        if alpha.shape[-1] != c or alpha.size != c:
            raise refuse(layer, "alpha is not one value per channel (set shared_axes)")
        x = b.layout(x, x.rank >= 3)

        def make():
            mod = nn.PReLU(c)
            mod.weight = tensor(alpha.reshape(c))
            return mod

        return b.step(layer, [x], [("mod", b.module(layer, "main", make))], shape, x.perm)

    def rebuild(self, r, layer, ins, perms):
        mod = r.mod(layer)
        if not r.same_type(layer):
            return r.translate(mod, ins[0], layer.name)
        shape = (1,) * (len(ins[0].tensor.shape) - 2)
        return r.call(
            r.layer(
                layer,
                layer.get_config(),
                lambda: {"alpha": mod.weight.detach().reshape(*shape, -1)},
            ),
            ins,
            ins[0].perm,
        )


class _Function:
    """A weightless layer computed by a plain function (no child module)."""

    perm_in: bool | None = False  # the layout the function needs (None: any, all the same)

    def fn(self, layer, ins: list[T]) -> Any:
        raise NotImplementedError

    def build(self, b, layer, ins, shape):
        perm = self.perm_in
        if perm is None:
            perm = next((t.perm for t in ins if t.rank >= 3), False)
            if perm and len({t.rank for t in ins}) > 1:
                raise refuse(layer, "inputs of different ranks on channels-last tensors")
        ins = [b.layout(t, perm) for t in ins]
        return b.step(layer, ins, [("fn", self.fn(layer, ins))], shape, perm)

    def rebuild(self, r, layer, ins, perms):
        return r.call(r.clone(layer), ins, perms[0])


@converter("Flatten")
class Flatten(_Function):
    def fn(self, layer, ins):
        return M.Flatten()

    def build(self, b, layer, ins, shape):
        x = b.layout(ins[0], False)
        items = [("fn", M.Flatten())]
        if getattr(layer, "data_format", "channels_last") == "channels_first" and x.rank > 2:
            items.insert(0, ("fn", M.to_channels_last))
        return b.step(layer, [x], items, shape, False)


@converter("Reshape")
class Reshape(_Function):
    def fn(self, layer, ins):
        return M.Reshape(layer.target_shape)


@converter("Permute")
class Permute(_Function):
    def fn(self, layer, ins):
        return M.Permute(layer.dims)


@converter("Identity")
class Identity(_Function):
    perm_in = None

    def build(self, b, layer, ins, shape):
        return b.step(layer, ins, [], shape, ins[0].perm)


def _merge_converter(name: str, fn: Any) -> None:
    cls = type(name, (_Function,), {"perm_in": None, "fn": lambda self, layer, ins: fn})
    converter(name)(cls)


for _name, _fn in (
    ("Add", M.add),
    ("Subtract", M.subtract),
    ("Multiply", M.multiply),
    ("Average", M.average),
    ("Maximum", M.maximum),
    ("Minimum", M.minimum),
):
    _merge_converter(_name, _fn)


@converter("Concatenate")
class Concatenate(_Function):
    perm_in = None

    def fn(self, layer, ins):
        return M.Cat(mirror_dim(layer.axis, ins[0].rank, ins[0].perm))
