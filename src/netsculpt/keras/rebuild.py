"""Torch mirror (as an op left it) -> a new Keras model of standard layers.

:func:`to_keras` replays the original Keras graph, layer call by layer call. For each layer its
converter reads the mirror's children at the layer's paths: a child of the type it built (an
``nn.Linear`` for a ``Dense``) gives the layer back from its own ``get_config()`` with the new
width (``units``, ``filters``) and the mirror's weights; anything an op put there instead (an
``nn.Identity``, a bridge, an inserted ``nn.Sequential``) is translated into standard layers by
:mod:`netsculpt.keras.translate`. Weights are set once the model is built; a shared layer stays
one layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from netsculpt.errors import VerificationError
from netsculpt.keras._base import CONVERTERS, KT, numpy, weight_name
from netsculpt.keras.build import MirrorMap, nodes_of


class Rebuilder:
    """The state of one :func:`to_keras` call; converters call its methods."""

    def __init__(self, model: Any, mirror: nn.Module, mmap: MirrorMap) -> None:
        self.model, self.mirror, self.map = model, mirror, mmap
        self.cache: dict[tuple[str, str], Any] = {}
        self.pending: list[tuple[Any, Callable[[], dict]]] = []
        self.applied: list[Any] = []
        self.names = {layer.name for layer, _, _ in nodes_of(model)}

    # -- reading the mirror --------------------------------------------------------------------
    def mod(self, layer: Any, role: str = "main") -> nn.Module | None:
        path = self.map.paths.get((layer.name, role))
        return None if path is None else self.mirror.get_submodule(path)

    def built(self, layer: Any, role: str = "main") -> dict[str, Any]:
        return self.map.built.get(self.map.paths.get((layer.name, role), ""), {})

    def same_type(self, layer: Any, role: str = "main") -> bool:
        m = self.mod(layer, role)
        return m is not None and type(m) is self.built(layer, role).get("type")

    def activation(self, layer: Any, role: str = "act") -> tuple[bool, list[nn.Module]]:
        """``(keep, tail)``: whether the layer keeps its fused activation, and the modules an op
        put after it (``grow`` turns ``relu`` into ``Sequential(relu, Linear, relu)``)."""
        m = self.mod(layer, role)
        if m is None:
            return True, []
        want = self.built(layer, role).get("type")
        if type(m) is want:
            return True, []
        if isinstance(m, nn.Sequential) and len(m) and type(m[0]) is want:
            return True, list(m)[1:]
        if _passes(m):
            return False, []
        return False, [m]

    # -- making layers -------------------------------------------------------------------------
    def layer(
        self,
        layer: Any,
        config: dict,
        weights: Callable[[], dict] | None = None,
        cls: type | None = None,
        key: str = "main",
    ) -> Any:
        """A new Keras layer from ``config`` (cached per original layer: shared stays shared);
        ``weights()`` gives its weights by name once the model is built."""
        k = (layer.name, key)
        if k not in self.cache:
            new = (cls or type(layer)).from_config(config)
            self.cache[k] = new
            if weights is not None:
                self.pending.append((new, weights))
        return self.cache[k]

    def clone(self, layer: Any) -> Any:
        """The layer as it was: its config and its own weights (in their order)."""
        w = layer.get_weights()
        return self.layer(layer, layer.get_config(), (lambda: w) if w else None)

    def new(self, owner: str, cls: type, config: dict, weights: dict | None = None) -> Any:
        """A layer an op added (no Keras original): named after its owner, unique."""
        snake = re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", cls.__name__).lower()
        base = f"{owner}_added_{snake}"
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        layer = cls(name=name, **config)
        if weights:
            self.pending.append((layer, lambda: weights))
        return layer

    def call(self, new_layer: Any, ins: list[KT], perm: bool, **kwargs: Any) -> KT:
        xs = [k.tensor for k in ins]
        y = new_layer(xs[0] if len(xs) == 1 else xs, **kwargs)
        self.applied.append(new_layer)
        return KT(y, perm)

    def translate(self, module: nn.Module | None, x: KT, owner: str) -> KT:
        from netsculpt.keras.translate import translate

        return x if module is None else translate(self, module, x, owner)

    def set_weights(self) -> None:
        for layer, fn in self.pending:
            got = fn()
            if isinstance(got, list):  # a clone: the same class, the weights in their order
                layer.set_weights(got)
                continue
            arrays = {k: _np(v) for k, v in got.items() if v is not None}
            for v in layer.weights:
                name = weight_name(layer, v)
                if name not in arrays:
                    raise VerificationError(f"rebuilt layer '{layer.name}': no value for {name}")
                a = arrays[name].astype(np.float32)
                if tuple(a.shape) != tuple(v.shape):
                    raise VerificationError(
                        f"rebuilt layer '{layer.name}': {name} is {tuple(v.shape)}, "
                        f"the mirror has {tuple(a.shape)}"
                    )
                v.assign(a)


def _np(v: Any) -> np.ndarray:
    return v if isinstance(v, np.ndarray) else numpy(v)


def _passes(m: nn.Module) -> bool:
    """A module that returns its input: what ``cut`` leaves where a layer was."""
    return isinstance(m, nn.Identity) or type(m).__name__ == "Skip"


def to_keras(model: Any, mirror: nn.Module, mmap: MirrorMap) -> Any:
    """A new Keras model (Sequential stays Sequential) equal to ``mirror`` (see module doc)."""
    import keras

    r = Rebuilder(model, mirror, mmap)
    calls = nodes_of(model)
    if mmap.sequential:
        shape, dtype = mmap.inputs[0]
        x = KT(keras.Input(batch_shape=shape, dtype=dtype))
        for i, (layer, _, _) in enumerate(calls):
            x = _rebuild(r, layer, [x], mmap.out_perm[i])[0]
        out = keras.Sequential(
            [keras.Input(batch_shape=shape, dtype=dtype), *r.applied], name=model.name
        )
        r.set_weights()
        return out
    env: dict[int, KT] = {}
    inputs = []
    for t in model.inputs:
        inp = keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=_input_name(t))
        inputs.append(inp)
        env[id(t)] = KT(inp)
    for i, (layer, kins, kouts) in enumerate(calls):
        got = _rebuild(r, layer, [env[id(k)] for k in kins], mmap.out_perm[i])
        for k, y in zip(kouts, got):
            env[id(k)] = y
    outputs = [env[id(t)].tensor for t in model.outputs]
    single = not isinstance(getattr(model, "_outputs_struct", None), (list, tuple))
    new = keras.Model(
        inputs if len(inputs) > 1 else inputs[0],
        outputs[0] if single and len(outputs) == 1 else outputs,
        name=model.name,
    )
    r.set_weights()
    return new


def _rebuild(r: Rebuilder, layer: Any, ins: list[KT], perms: list[bool]) -> list[KT]:
    if layer.name in r.map.opaque:
        new = r.clone(layer)
        return [r.call(new, ins, False)]
    out = CONVERTERS[type(layer).__name__].rebuild(r, layer, ins, perms)
    return out if isinstance(out, list) else [out]


def _input_name(t: Any) -> str | None:
    hist = getattr(t, "_keras_history", None)
    return getattr(hist[0], "name", None) if hist else None
