"""Every supported activation (as a layer and fused into Dense / Conv): prune -> save .keras ->
load_model -> same outputs."""

from __future__ import annotations

import pytest
from keras import layers as L
from kerashelp import roundtrip, sample, seq

ACTIVATIONS = ["relu", "relu6", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "silu",
               "softplus", "softsign", "hard_sigmoid", "hard_silu", "mish", "leaky_relu"]  # fmt: skip


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_layer(name, tmp_path):
    model = seq((6,), L.Dense(8), L.Activation(name), L.Dense(2))
    new, rep = roundtrip(model, sample(model), tmp_path)
    assert rep.after.params < rep.before.params
    assert new.layers[1].get_config()["activation"] == model.layers[1].get_config()["activation"]


@pytest.mark.parametrize("name", ["softmax", "gelu", "hard_silu"])
def test_fused_activation_on_channels(name, tmp_path):
    """Softmax over channels of a conv: the mirror holds the tensor channels-first."""
    model = seq((6, 6, 2), L.Conv2D(8, 3, activation=name), L.Conv2D(4, 1), L.Flatten(), L.Dense(2))
    new, rep = roundtrip(model, sample(model), tmp_path)
    assert new.layers[0].get_config()["activation"] == name
