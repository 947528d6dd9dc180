"""Every supported conv and norm-after-conv layer: prune -> save .keras -> load_model -> same
outputs (uneven 'same' padding and strides included)."""

from __future__ import annotations

import pytest
from keras import layers as L
from kerashelp import roundtrip, sample, seq

CASES = {
    "Conv1D": lambda: seq((10, 3), L.Conv1D(8, 3, padding="causal", activation="relu"), L.Conv1D(6, 3, strides=2, padding="same"), L.Flatten(), L.Dense(2)),
    "Conv2D": lambda: seq((9, 9, 3), L.Conv2D(8, 3, strides=2, padding="same", activation="relu"), L.Conv2D(6, 3, dilation_rate=2, use_bias=False), L.Flatten(), L.Dense(2)),
    "Conv2D grouped": lambda: seq((6, 6, 4), L.Conv2D(8, 3, groups=2, activation="relu"), L.Conv2D(4, 1), L.Flatten(), L.Dense(2)),
    "Conv3D": lambda: seq((5, 5, 5, 2), L.Conv3D(6, 3, padding="same", activation="relu"), L.Conv3D(4, 2), L.GlobalAveragePooling3D(), L.Dense(2)),
    "DepthwiseConv1D": lambda: seq((10, 3), L.Conv1D(8, 1), L.DepthwiseConv1D(3, depth_multiplier=2, padding="same", activation="relu"), L.Conv1D(4, 1), L.GlobalMaxPooling1D(), L.Dense(2)),
    "DepthwiseConv2D": lambda: seq((8, 8, 3), L.Conv2D(8, 1), L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu"), L.Conv2D(4, 1), L.GlobalMaxPooling2D(), L.Dense(2)),
    "SeparableConv1D": lambda: seq((10, 3), L.Conv1D(8, 3), L.SeparableConv1D(8, 3, padding="same", activation="relu"), L.Conv1D(4, 1), L.Flatten(), L.Dense(2)),
    "SeparableConv2D": lambda: seq((8, 8, 3), L.Conv2D(8, 3), L.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, activation="relu"), L.SeparableConv2D(6, 3, strides=2, padding="same"), L.Flatten(), L.Dense(2)),
    "Conv1DTranspose": lambda: seq((5, 3), L.Conv1D(8, 3, padding="same", activation="relu"), L.Conv1DTranspose(6, 3, strides=2, padding="same"), L.Flatten(), L.Dense(2)),
    "Conv2DTranspose": lambda: seq((5, 5, 3), L.Conv2D(8, 3, padding="same", activation="relu"), L.Conv2DTranspose(6, 3, strides=2, padding="same", activation="relu"), L.Conv2DTranspose(4, 2, strides=2), L.Flatten(), L.Dense(2)),
    "Conv3DTranspose": lambda: seq((3, 3, 3, 2), L.Conv3D(6, 1, activation="relu"), L.Conv3DTranspose(4, 2, strides=2), L.Flatten(), L.Dense(2)),
    "BatchNormalization (conv)": lambda: seq((6, 6, 3), L.Conv2D(8, 3, use_bias=False), L.BatchNormalization(), L.ReLU(), L.Conv2D(4, 1), L.Flatten(), L.Dense(2)),
    "GroupNormalization": lambda: seq((6, 6, 3), L.Conv2D(8, 3), L.GroupNormalization(4), L.ReLU(), L.Conv2D(4, 1), L.Flatten(), L.Dense(2)),
    "PReLU (conv, shared axes)": lambda: seq((6, 6, 3), L.Conv2D(8, 3), L.PReLU(shared_axes=[1, 2]), L.Conv2D(4, 1), L.Flatten(), L.Dense(2)),
    "channels_first Conv2D": lambda: seq((3, 6, 6), L.Conv2D(8, 3, data_format="channels_first", activation="relu"), L.MaxPooling2D(data_format="channels_first"), L.Flatten(data_format="channels_first"), L.Dense(2)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_prune_save_load(case, tmp_path):
    model = CASES[case]()
    if case.startswith("channels_first"):
        import keras

        if keras.backend.backend() == "tensorflow":
            pytest.skip("TensorFlow's CPU convolutions are channels-last only")
    new, rep = roundtrip(model, sample(model), tmp_path)
    assert rep.after.params < rep.before.params


def test_conv_keeps_its_config(tmp_path):
    model = CASES["Conv2D"]()
    new, _ = roundtrip(model, sample(model), tmp_path)
    old_cfg, new_cfg = model.layers[0].get_config(), new.layers[0].get_config()
    assert new_cfg["filters"] < old_cfg["filters"]
    for key in ("kernel_size", "strides", "padding", "activation", "dilation_rate", "name"):
        assert new_cfg[key] == old_cfg[key]
