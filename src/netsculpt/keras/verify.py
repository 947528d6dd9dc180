"""The checks that tie a Keras model to its torch mirror: outputs agree on the example inputs.

``TOLERANCE``: the largest difference allowed, relative to the size of the outputs
(``max |keras - torch| <= TOLERANCE * max(1, max |torch|)``). Float32 on both sides; the
measured difference is in the Report (``details["keras"]["max_abs_diff"]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from netsculpt.errors import VerificationError
from netsculpt.keras.mirror import to_channels_last

TOLERANCE = 1e-5


def to_torch_inputs(xs: list[np.ndarray]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(x) for x in xs)


def keras_outputs(model: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    import keras

    struct = getattr(model, "_inputs_struct", None)
    out = model(
        list(xs) if isinstance(struct, (list, tuple)) or len(xs) > 1 else xs[0], training=False
    )
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(keras.ops.convert_to_numpy(o), dtype=np.float64) for o in outs]


def mirror_outputs(mirror: torch.nn.Module, xs: list[np.ndarray]) -> list[np.ndarray]:
    mirror.eval()
    with torch.no_grad():
        out = mirror(*to_torch_inputs(xs))
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [o.detach().double().cpu().numpy() for o in outs]


def difference(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    """``(max |a - b|, max(1, max |b|))`` over all outputs; inf when shapes differ."""
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return float("inf"), 1.0
    diff = max((float(np.max(np.abs(x - y))) if x.size else 0.0) for x, y in zip(a, b))
    scale = max([1.0] + [float(np.max(np.abs(y))) for y in b if y.size])
    return diff, scale


def check(model: Any, mirror: torch.nn.Module, xs: list[np.ndarray], what: str, mmap=None) -> float:
    """Raise a VerificationError unless ``model`` and ``mirror`` agree on ``xs``; returns the
    largest difference."""
    diff, scale = difference(keras_outputs(model, xs), mirror_outputs(mirror, xs))
    if not diff <= TOLERANCE * scale:
        where = first_mismatch(model, mirror, mmap, xs) if mmap is not None else None
        raise VerificationError(
            f"{what}: the Keras model and its torch mirror differ by {diff:.3g} on the example "
            f"inputs (allowed {TOLERANCE * scale:.3g})"
            + (f"; first at layer {where}" if where else "")
        )
    return diff


def first_mismatch(
    model: Any, mirror: torch.nn.Module, mmap: Any, xs: list[np.ndarray]
) -> str | None:
    """The first Keras layer call whose output the mirror does not reproduce (for the error)."""
    import keras

    from netsculpt.keras.build import nodes_of

    calls = nodes_of(model)
    with torch.no_grad():
        env = mirror.run(*to_torch_inputs(xs))
    if mmap.sequential:
        y = xs[0]
        outs = []
        for layer, _, _ in calls:
            y = layer(y, training=False)
            outs.append([y])
    else:
        tensors = [k for _, _, kouts in calls for k in kouts]
        sub = keras.Model(model.inputs, tensors)
        got = sub(list(xs), training=False)
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        it = iter(got)
        outs = [[next(it) for _ in kouts] for _, _, kouts in calls]
    for (layer, _, _), ks, ids, perms in zip(calls, outs, mmap.out_ids, mmap.out_perm):
        for k, tid, perm in zip(ks, ids, perms):
            t = env[tid]
            t = to_channels_last(t) if perm else t
            a = np.asarray(keras.ops.convert_to_numpy(k), dtype=np.float64)
            diff, scale = difference([a], [t.double().numpy()])
            if not diff <= TOLERANCE * scale:
                return f"'{layer.name}' ({type(layer).__name__}): {diff:.3g}"
    return None
