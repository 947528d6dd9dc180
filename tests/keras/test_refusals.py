"""What netsculpt.keras refuses, in one line naming the layer, its class and the remedy; and
``ignore=`` keeping an unsupported layer whole (torch backend)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers as L
from kerashelp import out, sample, seq

import netsculpt.keras as nk
from netsculpt.errors import InputError


class Scale(L.Layer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.w


class MyDense(L.Dense):
    pass


def _refused(model, *words):
    with pytest.raises(InputError) as e:
        nk.prune(model, sample(model), amount=0.5)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg
    return msg


def test_lambda_is_refused_with_the_remedy():
    model = seq((6,), L.Dense(8), L.Lambda(lambda t: t * 2.0, name="twice"), L.Dense(2))
    _refused(model, "'twice'", "(Lambda)", "ignore=['twice']")


def test_custom_layer_and_subclass_are_refused():
    _refused(seq((6,), L.Dense(8), Scale(name="scale"), L.Dense(2)), "'scale'", "(Scale)", "custom")
    _refused(seq((6,), MyDense(8, name="mine"), L.Dense(2)), "'mine'", "(MyDense)")


def test_nested_model_and_subclassed_model_are_refused():
    inner = seq((6,), L.Dense(8))
    _refused(keras.Sequential([keras.Input((6,)), inner, L.Dense(2)]), "nested model")

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 6), np.float32))
    with pytest.raises(InputError, match="subclassed Model"):
        nk.prune(net, np.zeros((1, 6), np.float32), amount=0.5)


def test_not_a_keras_model():
    import torch

    with pytest.raises(InputError, match="Keras 3 model"):
        nk.prune(torch.nn.Linear(2, 2), np.zeros((1, 2), np.float32), amount=0.5)


def test_unbuilt_model_is_refused():
    model = keras.Sequential([L.Dense(8), L.Dense(2)])
    with pytest.raises(InputError, match="not built"):
        nk.prune(model, np.zeros((2, 6), np.float32), amount=0.5)
    model(np.zeros((1, 6), np.float32))  # built by a call: no Input layer needed
    new, _ = nk.prune(model, np.zeros((2, 6), np.float32), amount=0.5)
    assert [layer.units for layer in new.layers] == [4, 2]


def test_example_inputs_must_fit():
    model = seq((6,), L.Dense(8), L.Dense(2))
    with pytest.raises(InputError, match="does not fit"):
        nk.prune(model, np.zeros((2, 5), np.float32), amount=0.5)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="runs the layer in the mirror")
def test_ignore_keeps_an_unsupported_layer_whole():
    model = seq((6,), L.Dense(8, activation="relu", name="d1"), Scale(name="scale"),
                L.Dense(8, activation="relu", name="d2"), L.Dense(2, name="d3"))  # fmt: skip
    model.get_layer("scale").set_weights([np.linspace(0.5, 2.0, 8).astype("float32")])
    x = sample(model)
    new, rep = nk.prune(model, x, amount=0.5, ignore=["scale"])
    assert new.get_layer("d1").units == 8  # feeds the kept layer: left whole
    assert new.get_layer("d2").units == 4
    assert type(new.get_layer("scale")) is Scale
    np.testing.assert_array_equal(
        new.get_layer("scale").get_weights()[0], model.get_layer("scale").get_weights()[0]
    )
    assert out(new, x).shape == (4, 2)


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="other backends only")
def test_ignore_of_an_unsupported_layer_needs_the_torch_backend():
    model = seq((6,), L.Dense(8), Scale(name="scale"), L.Dense(2))
    with pytest.raises(InputError, match="KERAS_BACKEND=torch"):
        nk.prune(model, sample(model), amount=0.5, ignore=["scale"])
