"""The verbs' contract on Keras models: a new model of the same kind, compiled as it came in,
the input untouched, Report numbers that match Keras's own count, same seed -> same result."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers as L
from kerashelp import out, roundtrip, sample, seq

import netsculpt.keras as nk
from netsculpt.errors import InputError


def seed_mlp(compiled: bool = True) -> keras.Sequential:
    model = seq((10,), L.Dense(64, activation="relu", name="d1"),
                L.Dense(32, activation="relu", name="d2"), L.Dense(1, name="d3"))  # fmt: skip
    if compiled:
        model.compile(keras.optimizers.Adam(learning_rate=3e-3), "mse", metrics=["mae"])
    return model


def data(n: int = 64):
    rng = np.random.default_rng(0)
    return rng.random((n, 10), dtype=np.float32), rng.random((n, 1), dtype=np.float32)


def test_compiled_as_it_came_in(tmp_path):
    model = seed_mlp()
    x, y = data()
    new, _ = roundtrip(model, x[:8], tmp_path)
    assert type(new.optimizer) is type(model.optimizer)
    assert new.optimizer.get_config() == model.optimizer.get_config()
    assert new.get_compile_config()["loss"] == "mse"
    assert new.get_compile_config()["metrics"] == ["mae"]
    new.fit(x, y, epochs=1, verbose=0)  # it trains as it is
    assert not seed_mlp(compiled=False).compiled
    new2, _ = nk.prune(seed_mlp(compiled=False), x[:8], amount=0.5)
    assert not new2.compiled


def test_same_seed_same_model():
    model = seed_mlp()
    x, y = data()
    runs = [nk.prune(model, x[:8], amount=0.3, importance="taylor", data=(x, y), seed=3)[0]
            for _ in range(2)]  # fmt: skip
    for a, b in zip(runs[0].get_weights(), runs[1].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_threshold_prune_removes_dead_neurons(tmp_path):
    model = seed_mlp()
    w = model.get_layer("d1").get_weights()
    w[0][:, :5] = 0.001  # five neurons whose weights all fall under the threshold
    w[1][:5] = 0.0
    model.get_layer("d1").set_weights(w)
    new, rep = roundtrip(model, data()[0][:8], tmp_path, threshold=0.01)
    assert new.get_layer("d1").units == 59
    assert rep.details["dead_channels_removed"] >= 5


def test_cut_removes_a_layer(tmp_path):
    model = seed_mlp()
    x, y = data()
    new, rep = roundtrip(model, x[:8], tmp_path, "cut", data=(x, y), count=1)
    assert len(new.layers) == 2
    assert type(new) is keras.Sequential


def test_grow_inserts_an_identity_layer(tmp_path):
    model = seed_mlp()
    x, _ = data()
    new, rep = roundtrip(model, x[:8], tmp_path, "grow", where=["d1"])
    names = [layer.name for layer in new.layers]
    assert len(new.layers) == len(model.layers) + 2  # a Dense and its ReLU after d1
    assert names[0] == "d1" and names[-1] == "d3"
    np.testing.assert_allclose(out(new, x), out(model, x), atol=1e-5)  # function-preserving


def test_grow_wider(tmp_path):
    model = seed_mlp()
    x, _ = data()
    new, _ = roundtrip(model, x[:8], tmp_path, "grow", kind="wider", where=["d1"], factor=1.5)
    assert new.get_layer("d1").units == 96
    np.testing.assert_allclose(out(new, x), out(model, x), atol=1e-4)


def test_merge_folds_batchnorm_into_the_conv(tmp_path):
    model = seq((6, 6, 3), L.Conv2D(8, 3, use_bias=False, name="c"),
                L.BatchNormalization(name="bn"), L.ReLU(), L.Flatten(), L.Dense(2))  # fmt: skip
    x = sample(model)
    model.get_layer("bn").set_weights([np.full(8, v, np.float32) for v in (1.5, 0.2, 0.1, 2.0)])
    new, rep = roundtrip(model, x, tmp_path, "merge")
    assert "bn" not in [layer.name for layer in new.layers]
    assert new.get_layer("c").use_bias
    np.testing.assert_allclose(out(new, x), out(model, x), atol=1e-5)


def test_ignore_keeps_a_layer_whole():
    model = seed_mlp()
    new, rep = nk.prune(model, data()[0][:8], amount=0.5, ignore=["d1"])
    assert new.get_layer("d1").units == 64
    assert new.get_layer("d2").units == 16
    with pytest.raises(InputError, match="no layer"):
        nk.prune(model, data()[0][:8], amount=0.5, ignore=["nope"])


def test_analyze_names_keras_layers():
    rep = nk.analyze(seed_mlp(), data()[0][:8])
    coupled = {m for row in rep.details["groups"] for m in row["coupled"]}
    assert {"d1", "d2"} <= coupled
    assert rep.before.params == seed_mlp().count_params()


def test_ignore_in_cut_protects_the_layer_and_other_verbs_say_so():
    model = seed_mlp()
    x, y = data()
    new, _ = nk.cut(model, x[:8], data=(x, y), count=1, ignore=["d1"])
    assert "d1" in [layer.name for layer in new.layers]
    assert len(new.layers) == 2


def _cnn():
    return seq((8, 8, 3), L.Conv2D(8, 3, padding="same", activation="relu", name="c1"),
               L.Conv2D(8, 3, padding="same", name="c2"), L.BatchNormalization(name="bn2"),
               L.ReLU(name="r2"), L.Conv2D(12, 3, strides=2, padding="same", name="c3"),
               L.GlobalAveragePooling2D(), L.Dense(3))  # fmt: skip


def test_cnn_cut_removes_conv_norm_and_activation(tmp_path):
    model = _cnn()
    x = sample(model, 16)
    y = np.arange(16) % 3
    new, rep = roundtrip(model, x[:4], tmp_path, "cut", data=(x, y), blocks=["c2"])
    assert [layer.name for layer in new.layers][:2] == ["c1", "c3"]


def test_cnn_grow_inserts_a_same_padded_conv(tmp_path):
    model = _cnn()
    x = sample(model)
    new, _ = roundtrip(model, x, tmp_path, "grow", where=["c1"])
    added = new.get_layer("c1_added_conv2d").get_config()
    assert (added["filters"], added["padding"], tuple(added["kernel_size"])) == (8, "same", (3, 3))
    np.testing.assert_allclose(out(new, x), out(model, x), atol=1e-5)
