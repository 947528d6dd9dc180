"""Functional models: merges, concatenation, shared layers, several inputs and outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers as L
from kerashelp import out, roundtrip, sample

MERGES = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]


def two_branches(merge: str) -> keras.Model:
    inp = keras.Input((6,))
    a = L.Dense(8, activation="relu", name="a")(inp)
    b = L.Dense(8, activation="tanh", name="b")(inp)
    return keras.Model(inp, L.Dense(2, name="head")(getattr(L, merge)()([a, b])))


@pytest.mark.parametrize("merge", MERGES)
def test_merge_layers(merge, tmp_path):
    model = two_branches(merge)
    new, rep = roundtrip(model, sample(model), tmp_path)
    assert rep.after.params < rep.before.params
    a, b = new.get_layer("a"), new.get_layer("b")
    if merge != "Concatenate":
        assert a.units == b.units < 8  # coupled through the merge


def test_conv_residual_and_squeeze_excite(tmp_path):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = L.Conv2D(8, 3, padding="same")(x)
    y = L.BatchNormalization()(y)
    x = L.Add()([x, y])
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(4, 1, activation="relu")(s)
    s = L.Conv2D(8, 1, activation="sigmoid")(s)
    x = L.Multiply()([x, s])
    c = L.Concatenate()([x, L.Conv2D(4, 1)(inp)])
    o = L.Dense(3)(L.GlobalMaxPooling2D()(c))
    model = keras.Model(inp, o)
    new, rep = roundtrip(model, sample(model), tmp_path)
    assert rep.after.params < rep.before.params


def test_concatenate_on_a_sequence_axis(tmp_path):
    inp = keras.Input((4, 6))
    a, b = L.Dense(8, activation="relu")(inp), L.Dense(8, activation="relu")(inp)
    c = L.Concatenate(axis=1)([a, b])  # (None, 8, 8): the time axis, channels stay coupled
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(c)))
    roundtrip(model, sample(model), tmp_path)


def test_shared_layer_stays_shared(tmp_path):
    a_in, b_in = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    shared = L.Dense(8, activation="relu", name="shared")
    h = L.Concatenate()([shared(a_in), shared(b_in)])
    model = keras.Model([a_in, b_in], L.Dense(2, name="head")(h))
    x = [sample(model, seed=1), sample(model, seed=2)]
    new, rep = roundtrip(model, x, tmp_path)
    layer = new.get_layer("shared")
    assert layer.units < 8
    assert len(layer._inbound_nodes) == 2
    assert sum(1 for l in new.layers if l.name == "shared") == 1  # noqa: E741


def test_two_outputs(tmp_path):
    inp = keras.Input((6,))
    h = L.Dense(8, activation="relu", name="hidden")(inp)
    model = keras.Model(inp, [L.Dense(2, name="p")(h), L.Dense(1, name="q")(h)])
    x = sample(model)
    import netsculpt.keras as nk

    new, rep = nk.prune(model, x, amount=0.5)
    got, want = new(x), model(x)
    assert isinstance(got, list) and len(got) == 2
    assert [tuple(g.shape) for g in got] == [tuple(w.shape) for w in want]
    assert new.get_layer("hidden").units == 4
    path = tmp_path / "two.keras"
    new.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(loaded(x), got):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-6
        )


def test_functional_stays_functional_and_keeps_names(tmp_path):
    model = two_branches("Add")
    new, _ = roundtrip(model, sample(model), tmp_path)
    assert type(new).__name__ == "Functional"
    assert new.name == model.name
    assert [l.name for l in new.layers] == [l.name for l in model.layers]  # noqa: E741
    assert out(new, sample(model)).shape == (4, 2)
