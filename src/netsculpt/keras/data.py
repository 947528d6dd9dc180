"""Keras-side inputs and data -> what the torch mirror reads.

Example inputs are NumPy arrays or backend tensors (one, or a list for a multi-input model).
Data is a NumPy ``(x, y)`` pair, a ``tf.data.Dataset``, a ``keras.utils.PyDataset``, or a list
of ``(x, y)`` batches; it becomes a list of ``(x, y)`` torch batches for the netsculpt op, and
is handed to ``model.fit`` / ``model.evaluate`` as it is for :func:`netsculpt.keras.heal`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from netsculpt.errors import InputError


def as_array(x: Any) -> np.ndarray:
    """A NumPy array of ``x`` (an array, a backend tensor, a list of numbers): floats as
    float32, integers as int64."""
    if not isinstance(x, np.ndarray):
        if hasattr(x, "numpy") and not isinstance(x, (list, tuple)):
            try:
                import keras

                x = keras.ops.convert_to_numpy(x)
            except Exception:
                x = x.numpy() if not isinstance(x, torch.Tensor) else x.detach().cpu().numpy()
        x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    if np.issubdtype(x.dtype, np.integer) or x.dtype == bool:
        return x.astype(np.int64, copy=False)
    raise InputError(f"example input: arrays of numbers only, got dtype {x.dtype}")


def example_arrays(example_inputs: Any) -> list[np.ndarray]:
    """The example inputs as a list of arrays (one per model input)."""
    if isinstance(example_inputs, dict):
        raise InputError("example inputs: pass one array, or a list in the model's input order")
    items = list(example_inputs) if isinstance(example_inputs, (list, tuple)) else [example_inputs]
    arrays = [as_array(x) for x in items]
    if any(a.ndim == 0 for a in arrays):
        raise InputError("example inputs: each needs a batch dimension")
    return arrays


def _torch(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return tuple(torch.as_tensor(as_array(v)) for v in x)
    return torch.as_tensor(as_array(x))


def _pair(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, dict):
        raise InputError("data: batches are (x, y) or (x, y, sample_weight), not dicts")
    if isinstance(batch, (list, tuple)) and len(batch) in (2, 3):
        return batch[0], batch[1]
    if isinstance(batch, (list, tuple)) and len(batch) == 1:
        return batch[0], None
    return batch, None


def is_array_pair(data: Any) -> bool:
    """A NumPy ``(x, y)`` pair (whole arrays, not a list of batches)."""
    if not isinstance(data, tuple) or len(data) != 2:
        return False
    x = data[0][0] if isinstance(data[0], (list, tuple)) and data[0] else data[0]
    return hasattr(x, "shape") and hasattr(x, "ndim") and not isinstance(x, torch.Tensor)


def batches(data: Any, batch_size: int = 64, max_batches: int | None = None) -> list | None:
    """``data`` (see the module docstring) as a list of ``(x, y)`` torch batches."""
    if data is None:
        return None
    out: list[tuple[Any, Any]] = []
    if is_array_pair(data):
        x, y = data
        n = len(x[0]) if isinstance(x, (list, tuple)) else len(x)
        for i in range(0, n, batch_size):
            xb = (
                [v[i : i + batch_size] for v in x]
                if isinstance(x, (list, tuple))
                else x[i : i + batch_size]
            )
            out.append((_torch(xb), None if y is None else _torch(y[i : i + batch_size])))
            if max_batches is not None and len(out) >= max_batches:
                break
        return out
    if hasattr(data, "as_numpy_iterator"):  # tf.data.Dataset
        items = data.as_numpy_iterator()
    elif (
        hasattr(data, "__getitem__") and hasattr(data, "__len__") and hasattr(data, "on_epoch_end")
    ):
        items = (data[i] for i in range(len(data)))  # keras.utils.PyDataset
    elif isinstance(data, list):
        items = iter(data)
    else:
        raise InputError(
            f"data: a NumPy (x, y) pair, a tf.data.Dataset, a keras.utils.PyDataset or a list "
            f"of (x, y) batches, got {type(data).__name__}"
        )
    for batch in items:
        x, y = _pair(batch)
        out.append((_torch(x), None if y is None else _torch(y)))
        if max_batches is not None and len(out) >= max_batches:
            break
    if not out:
        raise InputError("data: no batches")
    return out


def fit_arguments(data: Any, batch_size: int) -> tuple[tuple, dict]:
    """``model.fit`` / ``model.evaluate`` positional and keyword arguments for ``data``."""
    if is_array_pair(data):
        return (data[0], data[1]), {"batch_size": batch_size}
    if isinstance(data, list):
        raise InputError("heal / evaluate: pass a NumPy (x, y) pair or a dataset, not a list")
    return (data,), {}
