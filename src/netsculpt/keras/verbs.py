"""The Keras verbs: ``new_model, report = nk.prune(model, x, amount=0.5)``.

Each structural verb runs one pipeline::

    Keras model -> torch mirror (weights copied) -> check: same outputs on x
      -> netsculpt.<verb>(mirror, x, ...)            (the engine plans and edits the mirror)
      -> new Keras model from layer configs + the mirror's weights
      -> check: same outputs as the edited mirror on x -> compiled as the input was

The model passed in is never changed. The Report is the PyTorch verb's Report; its params and
size are counted on the Keras models (``count_params()``, which includes BatchNorm's moving
statistics), and ``details["keras"]`` holds the two measured differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from netsculpt.errors import InputError
from netsculpt.keras import data as D
from netsculpt.keras import verify as V


def _check_model(model: Any) -> None:
    import keras

    if not isinstance(model, keras.Model):
        raise InputError(f"expected a Keras 3 model (keras.Model), got {type(model).__name__}")
    if not model.built:
        raise InputError(
            f"Keras model '{model.name}' is not built: give it a keras.Input, or call it once "
            "on data, before netsculpt reads its weights"
        )


def mirror_of(model: Any, example_inputs: Any, ignore: Any = ()) -> tuple[Any, Any, list]:
    """``(mirror, map, example arrays)``: the checked torch mirror of ``model``."""
    from netsculpt.keras import torch_next_to_tensorflow
    from netsculpt.keras.build import to_torch

    torch_next_to_tensorflow()
    _check_model(model)
    xs = D.example_arrays(example_inputs)
    mirror, mmap = to_torch(model, xs, ignore)
    mmap.mirror_diff = V.check(model, mirror, xs, "mirror", mmap)
    return mirror, mmap, xs


def _ignored_paths(mmap: Any, names: set[str]) -> list[str]:
    return sorted({p for n in names | mmap.opaque for p in mmap.layer_paths(n)})


def run(verb: str, model: Any, example_inputs: Any, *, data: Any = None, ignore: Any = (),
        batch_size: int = 64, **kwargs: Any) -> tuple[Any, Any]:  # fmt: skip
    """``netsculpt.<verb>`` on the mirror of ``model``; the rebuilt Keras model and the Report."""
    import netsculpt as ns
    from netsculpt.keras.build import keep_patterns
    from netsculpt.keras.rebuild import to_keras

    mirror, mmap, xs = mirror_of(model, example_inputs, ignore)
    fn = getattr(ns, verb)
    paths = _ignored_paths(mmap, keep_patterns(model, ignore))
    x = V.to_torch_inputs(xs)
    x = x[0] if len(x) == 1 else x
    if paths:
        _pass_ignore(verb, fn, paths, kwargs, mirror, x)
    calib = D.batches(data, batch_size, kwargs.get("max_batches"))
    report = fn(mirror, x, data=calib, **kwargs)
    new = to_keras(model, mirror, mmap)
    diff = V.check(new, mirror, xs, f"{verb}: the rebuilt Keras model")
    compile_like(new, model)
    _keras_numbers(report, model, new, mmap.mirror_diff, diff)
    return new, report


def _pass_ignore(verb: str, fn: Any, paths: list[str], kwargs: dict, mirror: Any, x: Any) -> None:
    """Hand the kept layers' mirror paths to the op: as ``ignore=`` where it takes it, as
    ``protect=`` (blocks never removed) for a ``cut`` that has no ``ignore``."""
    import inspect

    params = inspect.signature(fn, follow_wrapped=False).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if "ignore" in params or takes_any:
        kwargs["ignore"] = sorted({*kwargs.get("ignore", ()), *paths})
    elif verb == "cut" and "protect" in params:
        from netsculpt.graph.blocks import find_blocks

        held = {b.name for b in find_blocks(mirror, x) if set(b.modules) & set(paths)}
        kwargs["protect"] = tuple(sorted({*kwargs.get("protect", ()), *held}))
    else:
        raise InputError(f"netsculpt.{verb} takes no ignore=: it cannot keep {paths[0]} whole")


def _keras_numbers(report: Any, before: Any, after: Any, diff0: float, diff1: float) -> None:
    torch_params = (report.before.params, report.after.params)
    report.before.params, report.after.params = before.count_params(), after.count_params()
    report.before.size_bytes, report.after.size_bytes = weight_bytes(before), weight_bytes(after)
    report.details["keras"] = {
        "backend": _backend(),
        "mirror_max_abs_diff": diff0,
        "max_abs_diff": diff1,
        "tolerance": V.TOLERANCE,
        "torch_params": list(torch_params),
        "sequential": type(after).__name__ == "Sequential",
    }


def _backend() -> str:
    import keras

    return keras.backend.backend()


def weight_bytes(model: Any) -> int:
    import keras

    return int(sum(np.asarray(keras.ops.convert_to_numpy(v)).nbytes for v in model.weights))


def compile_like(new: Any, model: Any) -> None:
    """Compile ``new`` as ``model`` was: the same optimizer class and config, loss, metrics."""
    if not getattr(model, "compiled", False):
        return
    config = model.get_compile_config()
    if config:
        new.compile_from_config(config)


# -- the verbs -----------------------------------------------------------------------------------
def prune(model: Any, example_inputs: Any, *, data: Any = None, **kwargs: Any) -> tuple[Any, Any]:
    """Remove units / filters (``amount=``, ``target_params=``, ...) or zero weights and drop
    the neurons that died (``threshold=``); keywords as :func:`netsculpt.prune`. Returns
    ``(new_model, report)``."""
    return run("prune", model, example_inputs, data=data, **kwargs)


def cut(model: Any, example_inputs: Any, *, data: Any = None, **kwargs: Any) -> tuple[Any, Any]:
    """Remove whole layers whose effect is small (``threshold=``, ``count=``, ``blocks=``);
    keywords as :func:`netsculpt.cut`. Returns ``(new_model, report)``."""
    return run("cut", model, example_inputs, data=data, **kwargs)


def merge(model: Any, example_inputs: Any, *, data: Any = None, **kwargs: Any) -> tuple[Any, Any]:
    """Merge near-duplicate neurons and fold what folds exactly; keywords as
    :func:`netsculpt.merge`. Returns ``(new_model, report)``."""
    return run("merge", model, example_inputs, data=data, **kwargs)


def grow(model: Any, example_inputs: Any, *, data: Any = None, **kwargs: Any) -> tuple[Any, Any]:
    """Add capacity where a layer matters (an identity layer: outputs unchanged); keywords as
    :func:`netsculpt.grow`. Returns ``(new_model, report)``."""
    return run("grow", model, example_inputs, data=data, **kwargs)


def analyze(model: Any, example_inputs: Any, *, data: Any = None, ignore: Any = (),
            batch_size: int = 64, **kwargs: Any) -> Any:  # fmt: skip
    """Channel groups (what is coupled to what, what is protected and why, importance) and,
    with ``data``, each layer's effect; keywords as :func:`netsculpt.analyze`. Returns the
    Report (the model is not changed)."""
    import netsculpt as ns
    from netsculpt.keras.build import keep_patterns

    mirror, mmap, xs = mirror_of(model, example_inputs, ignore)
    paths = _ignored_paths(mmap, keep_patterns(model, ignore))
    x = V.to_torch_inputs(xs)
    calib = D.batches(data, batch_size, kwargs.get("max_batches"))
    report = ns.analyze(mirror, x[0] if len(x) == 1 else x, data=calib, ignore=paths, **kwargs)
    report.before.params = report.after.params = model.count_params()
    report.details["keras"] = {"backend": _backend(), "mirror_max_abs_diff": mmap.mirror_diff}
    return report
