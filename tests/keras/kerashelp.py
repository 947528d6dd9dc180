"""Helpers of the Keras tests (imported by the test modules of this folder)."""

from __future__ import annotations

import keras
import numpy as np


def out(model, x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def seq(shape, *layers, dtype="float32"):
    return keras.Sequential([keras.Input(shape, dtype=dtype), *layers])


def sample(model, n: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, *model.inputs[0].shape[1:])
    if "int" in str(model.inputs[0].dtype):
        return rng.integers(0, 10, size=shape).astype("int32")
    return rng.standard_normal(shape).astype("float32")


def roundtrip(model, x, tmp_path, verb: str = "prune", **kw):
    """Run a verb; check the contract (same kind of model, output shape, Report numbers,
    agreement with the mirror) and that the result saves as .keras and loads unchanged."""
    import netsculpt.keras as nk

    if verb == "prune" and not kw:
        kw = {"amount": 0.5}
    before = out(model, x)
    new, rep = getattr(nk, verb)(model, x, **kw)
    assert type(new) is type(model)
    after = out(new, x)
    assert after.shape == before.shape
    k = rep.details["keras"]
    assert k["max_abs_diff"] <= nk.TOLERANCE * max(1.0, float(np.abs(after).max()))
    assert rep.before.params == model.count_params()
    assert rep.after.params == new.count_params()
    np.testing.assert_array_equal(out(model, x), before)  # the input model is untouched
    path = tmp_path / "model.keras"
    new.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(out(loaded, x), after, rtol=1e-6, atol=1e-6)
    return new, rep
