"""Keras model -> torch :class:`~netsculpt.keras.mirror.Mirror`, with the Keras weights copied in.

:func:`to_torch` walks the Keras graph in execution order (a ``Sequential`` is a chain), asks
each layer's converter for its torch items, and records in a :class:`MirrorMap` which mirror
paths belong to which Keras layer, so that :mod:`netsculpt.keras.rebuild` can read them back.

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu")])
>>> mirror, _ = to_torch(m, np.ones((1, 4), "float32"))
>>> mirror
Mirror(
  (dense): Linear(in_features=4, out_features=3, bias=True)
  (dense__act): ReLU()
)
"""

from __future__ import annotations

import fnmatch
import keyword
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from netsculpt.errors import InputError
from netsculpt.keras import (  # noqa: F401 (registration)
    layers_attention,
    layers_conv,
    layers_core,
    layers_norm,
    layers_rnn,
)
from netsculpt.keras._base import CONVERTERS, T, check_dtype, refuse
from netsculpt.keras.mirror import Mirror, Opaque, Step, to_channels_first, to_channels_last

_RESERVED = set(dir(nn.Module)) | {"program", "input_ids", "output_ids"}


@dataclass
class MirrorMap:
    """Which mirror paths hold which Keras layer's parts, and what they were at build time."""

    paths: dict[tuple[str, str], str] = field(default_factory=dict)  # (layer, role) -> path
    built: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> facts at build
    inputs: list[tuple[tuple, str]] = field(default_factory=list)  # (batch shape, dtype)
    out_perm: list[list[bool]] = field(default_factory=list)  # per layer call: held permuted
    out_ids: list[list[int]] = field(default_factory=list)  # per layer call: mirror tensor ids
    opaque: set[str] = field(default_factory=set)  # layers kept whole (``ignore=``)
    sequential: bool = False
    mirror_diff: float = 0.0  # measured: max |Keras - mirror| on the example inputs

    def layer_paths(self, name: str) -> list[str]:
        return [p for (layer, _), p in self.paths.items() if layer == name]


class Builder:
    """The state of one :func:`to_torch` call; converters call its methods."""

    def __init__(self, keep: set[str]) -> None:
        self.mirror = Mirror()
        self.map = MirrorMap()
        self.keep = keep
        self._next = 0
        self._names: set[str] = set()

    def new_id(self) -> int:
        self._next += 1
        return self._next

    # -- what converters call ------------------------------------------------------------------
    def module(self, layer: Any, role: str, make: Any, **facts: Any) -> str:
        """The path of ``layer``'s part ``role``; ``make()`` builds it on the layer's first call
        (a shared layer's later calls reuse it). ``facts`` are kept for the rebuild."""
        key = (layer.name, role)
        if key in self.map.paths:
            return self.map.paths[key]
        mod = make()
        path = self._path(layer.name if role == "main" else f"{layer.name}__{role}")
        self.mirror.add_module(path, mod)
        self.map.paths[key] = path
        self.map.built[path] = {"type": type(mod), **facts}
        return path

    def layout(self, t: T, perm: bool) -> T:
        """``t`` as the mirror holds it with channels first (``perm``) or in the Keras layout."""
        if t.rank < 3 or t.perm == perm:
            return t
        out = T(self.new_id(), t.shape, perm)
        fn = to_channels_first if perm else to_channels_last
        self.mirror.program.append(Step("", [t.tid], out.tid, [("fn", fn)]))
        return out

    def step(self, layer: Any, ins: list[T], items: list, shape: tuple, perm: bool) -> T:
        out = T(self.new_id(), tuple(shape), perm and len(shape) >= 3)
        self.mirror.program.append(Step(layer.name, [t.tid for t in ins], out.tid, list(items)))
        return out

    def _path(self, name: str) -> str:
        base = re.sub(r"\W", "_", name) or "layer"
        if base[0].isdigit() or keyword.iskeyword(base) or base in _RESERVED:
            base = f"k_{base}"
        path, i = base, 1
        while path in self._names:
            i += 1
            path = f"{base}_{i}"
        self._names.add(path)
        return path


class Inputs(list):
    """A layer call's input KerasTensors, with the call's keyword arguments (``.kwargs``)."""

    kwargs: dict = {}


def nodes_of(model: Any) -> list[tuple[Any, list, list]]:
    """``(layer, input KerasTensors, output KerasTensors)`` per layer call, in execution order."""
    import keras

    if isinstance(model, keras.Sequential):
        return [(layer, None, None) for layer in model.layers]
    if not hasattr(model, "_nodes_by_depth"):
        raise InputError(
            f"{type(model).__name__}: only Sequential and Functional Keras models can be mirrored "
            "(a subclassed Model has no layer graph to read)"
        )
    out = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            layer = node.operation
            if type(layer).__name__ == "InputLayer":
                continue
            ins = Inputs(node.arguments.keras_tensors)
            ins.kwargs = dict(node.arguments.kwargs or {})
            out.append((layer, ins, list(node.outputs)))
    return out


def input_shapes(model: Any, examples: list[np.ndarray]) -> list[tuple]:
    inputs = getattr(model, "inputs", None)
    try:
        shapes = [tuple(t.shape) for t in inputs] if inputs else None
    except (AttributeError, ValueError):
        shapes = None
    if shapes is None:  # a Sequential built from data: the example inputs give the shapes
        shapes = [(None, *x.shape[1:]) for x in examples]
    if len(shapes) != len(examples):
        raise InputError(
            f"the model takes {len(shapes)} inputs, got {len(examples)} example inputs"
        )
    for s, x in zip(shapes, examples):
        want = tuple(s[1:])
        if len(want) != x.ndim - 1 or any(w not in (None, g) for w, g in zip(want, x.shape[1:])):
            raise InputError(f"example input of shape {x.shape} does not fit the input {s}")
    return shapes


def keep_patterns(model: Any, ignore: Any) -> set[str]:
    """The Keras layer names ``ignore`` names (names or fnmatch patterns)."""
    if ignore is None:
        return set()
    items = [ignore] if isinstance(ignore, str) else list(ignore)
    names = [layer.name for layer in _all_layers(model)]
    out: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"ignore= takes Keras layer names or patterns, got {item!r}")
        hits = [n for n in names if n == item or fnmatch.fnmatch(n, item)]
        if not hits:
            raise InputError(f"ignore: no layer of the model is named {item!r}")
        out.update(hits)
    return out


def _dtype(x: np.ndarray) -> str:
    return "float32" if np.issubdtype(x.dtype, np.floating) else "int32"


def _all_layers(model: Any) -> list:
    return [layer for layer, _, _ in nodes_of(model)]


def to_torch(model: Any, examples: Any, ignore: Any = ()) -> tuple[Mirror, MirrorMap]:
    """The torch mirror of ``model`` and its map (see :class:`MirrorMap`). ``examples``: the
    example inputs as NumPy arrays (one or a list), used for shapes only."""
    import keras

    xs = list(examples) if isinstance(examples, (list, tuple)) else [examples]
    xs = [np.asarray(x) for x in xs]
    b = Builder(keep_patterns(model, ignore))
    b.map.sequential = isinstance(model, keras.Sequential)
    env: dict[int, T] = {}
    shapes = input_shapes(model, xs)
    b.map.inputs = [(s, _dtype(x)) for s, x in zip(shapes, xs)]
    ins = [T(b.new_id(), s) for s in shapes]
    b.mirror.input_ids = [t.tid for t in ins]
    if b.map.sequential:
        cur = ins[0]
        for layer in model.layers:
            cur = _call(b, layer, [cur], None)[0]
            b.map.out_perm.append([cur.perm])
            b.map.out_ids.append([cur.tid])
        outs = [cur]
    else:
        for kt, t in zip(model.inputs, ins):
            env[id(kt)] = t
        for layer, kins, kouts in nodes_of(model):
            b.call_kwargs = kins.kwargs
            got = _call(b, layer, [env[id(k)] for k in kins], kouts)
            for k, t in zip(kouts, got):
                env[id(k)] = t
            b.map.out_perm.append([t.perm for t in got])
            b.map.out_ids.append([t.tid for t in got])
        outs = [env[id(k)] for k in model.outputs]
    outs = [b.layout(t, False) for t in outs]
    b.mirror.output_ids = [t.tid for t in outs]
    b.mirror.eval()
    return b.mirror, b.map


def _call(b: Builder, layer: Any, ins: list[T], kouts: list | None) -> list[T]:
    import keras

    name = type(layer).__name__
    conv = CONVERTERS.get(name)
    is_keras = type(layer).__module__.startswith("keras.")
    if isinstance(layer, keras.Model):
        raise refuse(layer, "a nested model (call its layers directly in one model)")
    if layer.name in b.keep and (conv is None or not is_keras):
        return _opaque(b, layer, ins, kouts)
    if conv is None or not is_keras:
        what = "a custom layer" if not is_keras else "not a layer netsculpt.keras mirrors"
        raise refuse(layer, what)
    check_dtype(layer)
    shape = _out_shape(layer, ins, kouts)
    out = conv.build(b, layer, ins, shape)
    return out if isinstance(out, list) else [out]


def _out_shape(layer: Any, ins: list[T], kouts: list | None) -> tuple:
    if kouts is not None:
        return tuple(kouts[0].shape)
    import keras

    specs = [keras.KerasTensor(t.shape) for t in ins]
    out = layer.compute_output_spec(specs[0] if len(specs) == 1 else specs)
    return tuple(out.shape)


def _opaque(b: Builder, layer: Any, ins: list[T], kouts: list | None) -> list[T]:
    import keras

    if keras.backend.backend() != "torch":
        raise InputError(
            f"Keras layer '{layer.name}' ({type(layer).__name__}) is kept whole by ignore=, "
            "which runs the layer itself inside the torch mirror: that needs KERAS_BACKEND=torch"
        )
    ins = [b.layout(t, False) for t in ins]
    path = b.module(layer, "main", lambda: Opaque(layer), opaque=True)
    b.map.opaque.add(layer.name)
    shape = _out_shape(layer, ins, kouts)
    return [b.step(layer, ins, [("mod", path)], shape, False)]
