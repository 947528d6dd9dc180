"""The contract suite's rows (tests/ops/test_contract.py) on Keras models: one table of
(verb, keywords, tiny Keras model) rows, each checked for the output shape, Report params equal
to a fresh ``count_params()``, the direction of the change, equal outputs where the op promises
them, the same result from a fixed seed, a refused input that leaves the model as it was, and
save ``.keras`` -> ``keras.saving.load_model`` -> same outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers as L
from kerashelp import out, sample, seq

import netsculpt.keras as nk
from netsculpt.errors import InputError


def _mlp():
    return seq((10,), L.Dense(32, activation="relu", name="d1"),
               L.Dense(16, activation="relu", name="d2"), L.Dense(3, name="d3"))  # fmt: skip


def _cnn():
    return seq((8, 8, 3), L.Conv2D(8, 3, padding="same", use_bias=False, name="c1"),
               L.BatchNormalization(name="bn1"), L.ReLU(name="r1"),
               L.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="c2"),
               L.GlobalAveragePooling2D(), L.Dense(3, name="head"))  # fmt: skip


def _lstm():
    return seq((6, 4), L.LSTM(12, return_sequences=True, name="lstm"), L.GRU(8, name="gru"),
               L.Dense(3, name="head"))  # fmt: skip


def _make(factory):
    keras.utils.set_random_seed(0)
    model = factory()
    rng = np.random.default_rng(5)
    for layer in model.layers:  # BatchNorm statistics that are not the identity
        if type(layer).__name__ == "BatchNormalization":
            c = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(0.5, 2, c), rng.uniform(-0.5, 0.5, c),
                               rng.uniform(-1, 1, c), rng.uniform(0.5, 2, c)])  # fmt: skip
    x = sample(model, 16)
    return model, x, (x, np.arange(16) % 3)


# (id, verb, keywords, model factory, needs data, outputs must stay equal, direction of params)
ROWS = [
    ("prune-l2-mlp", "prune", {"amount": 0.5}, _mlp, False, False, "down"),
    ("prune-taylor-cnn", "prune", {"amount": 0.5, "importance": "taylor"}, _cnn, True, False, "down"),
    ("prune-budget-cnn", "prune", {"target_macs": 0.5}, _cnn, False, False, "down"),
    ("prune-recurrent", "prune", {"amount": 0.5}, _lstm, False, False, "down"),
    ("cut-count-mlp", "cut", {"count": 1}, _mlp, True, False, "down"),
    ("merge-folds-bn", "merge", {}, _cnn, False, True, "down"),
    ("merge-neurons-mlp", "merge", {"neurons": True, "threshold": 0.5}, _mlp, False, False, "down"),
    ("grow-deeper-mlp", "grow", {"where": ["d1"]}, _mlp, False, True, "up"),
    ("grow-wider-mlp", "grow", {"kind": "wider", "where": ["d1"]}, _mlp, False, True, "up"),
]  # fmt: skip
IDS = [r[0] for r in ROWS]
PARAMS = ("verb", "kw", "factory", "needs_data", "exact", "direction")


def _run(verb, kw, factory, needs_data):
    model, x, data = _make(factory)
    extra = {"data": data} if needs_data else {}
    ref = out(model, x)
    new, report = getattr(nk, verb)(model, x, **kw, **extra)
    return model, new, x, ref, report


def _architecture(model):
    """Layer classes, widths and weight shapes (two builds differ only in automatic names)."""
    return [
        (type(layer).__name__, [tuple(w.shape) for w in layer.weights]) for layer in model.layers
    ]


def _state(model):
    return model.to_json(), [w.copy() for w in model.get_weights()]


@pytest.mark.parametrize(PARAMS, [r[1:] for r in ROWS], ids=IDS)
def test_contract(verb, kw, factory, needs_data, exact, direction, tmp_path):
    model, new, x, ref, report = _run(verb, kw, factory, needs_data)
    got = out(new, x)
    assert got.shape == ref.shape
    assert type(new) is type(model)
    params = new.count_params()
    assert report.before.params == model.count_params()
    assert report.after.params == params
    assert report.after.macs is None or report.after.macs > 0
    sign = {"down": params < report.before.params, "up": params > report.before.params}
    assert sign[direction], (report.before.params, params)
    if exact:
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(out(model, x), ref)  # the input model is untouched

    again = _run(verb, kw, factory, needs_data)[1]
    assert _architecture(again) == _architecture(new)
    for a, b in zip(again.get_weights(), new.get_weights()):
        np.testing.assert_array_equal(a, b)  # a fixed seed gives the same model

    path = tmp_path / "model.keras"
    new.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(new)
    np.testing.assert_allclose(out(loaded, x), got, rtol=1e-6, atol=1e-6)


BAD = [{"seed": -1}, {"no_such_option": 1}, {"max_batches": 2.5}]


@pytest.mark.parametrize(PARAMS, [r[1:] for r in ROWS], ids=IDS)
def test_refused_input_leaves_the_model_unchanged(verb, kw, factory, needs_data, exact,
                                                  direction):  # fmt: skip
    model, x, data = _make(factory)
    before = _state(model)
    for bad in BAD:
        with pytest.raises(InputError):
            getattr(nk, verb)(model, x, data=data if needs_data else None, **kw, **bad)
    after = _state(model)
    assert after[0] == before[0]
    for a, b in zip(after[1], before[1]):
        np.testing.assert_array_equal(a, b)


def test_every_structural_verb_has_a_row():
    assert {r[1] for r in ROWS} == {"prune", "cut", "merge", "grow"}


@pytest.mark.parametrize("factory", [_mlp, _cnn, _lstm], ids=["mlp", "cnn", "recurrent"])
def test_analyze_measures_and_leaves_the_model_unchanged(factory):
    model, x, data = _make(factory)
    before, ref = _state(model), out(model, x)
    report = nk.analyze(model, x, data=data)
    assert report.before.params == report.after.params == model.count_params()
    assert report.details["groups"], "analyze lists the channel groups"
    assert report.details["keras"]["mirror_max_abs_diff"] <= nk.TOLERANCE * max(
        1.0, float(np.abs(ref).max())
    )
    assert _state(model)[0] == before[0]
    for a, b in zip(_state(model)[1], before[1]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out(model, x), ref)
    again = nk.analyze(model, x, data=data)
    assert again.details["groups"] == report.details["groups"]  # a fixed seed: the same table
    for bad in BAD:
        with pytest.raises(InputError):
            nk.analyze(model, x, data=data, **bad)
    assert _state(model)[0] == before[0]
