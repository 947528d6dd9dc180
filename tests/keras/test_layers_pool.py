"""Every supported pooling / global pooling / zero padding layer: prune -> save .keras ->
load_model -> same outputs (uneven 'same' padding included)."""

from __future__ import annotations

import pytest
from keras import layers as L
from kerashelp import roundtrip, sample, seq

CASES = {
    "MaxPooling1D": lambda: seq((9, 3), L.Conv1D(8, 2, activation="relu"), L.MaxPooling1D(3, strides=2, padding="same"), L.Flatten(), L.Dense(2)),
    "MaxPooling2D": lambda: seq((9, 9, 3), L.Conv2D(8, 2, activation="relu"), L.MaxPooling2D(3, strides=2, padding="same"), L.MaxPooling2D(), L.Flatten(), L.Dense(2)),
    "MaxPooling3D": lambda: seq((4, 4, 4, 2), L.Conv3D(6, 1, activation="relu"), L.MaxPooling3D(), L.Flatten(), L.Dense(2)),
    "AveragePooling1D": lambda: seq((9, 3), L.Conv1D(8, 2, activation="relu"), L.AveragePooling1D(3, strides=2, padding="same"), L.Flatten(), L.Dense(2)),
    "AveragePooling2D": lambda: seq((9, 9, 3), L.Conv2D(8, 2, activation="relu"), L.AveragePooling2D(3, strides=2, padding="same"), L.AveragePooling2D(2, padding="same"), L.Flatten(), L.Dense(2)),
    "AveragePooling3D": lambda: seq((4, 4, 4, 2), L.Conv3D(6, 1, activation="relu"), L.AveragePooling3D(2), L.Flatten(), L.Dense(2)),
    "GlobalAveragePooling1D": lambda: seq((9, 3), L.Conv1D(8, 2, activation="relu"), L.GlobalAveragePooling1D(), L.Dense(2)),
    "GlobalAveragePooling2D keepdims": lambda: seq((6, 6, 3), L.Conv2D(8, 3, activation="relu"), L.GlobalAveragePooling2D(keepdims=True), L.Conv2D(4, 1), L.Flatten(), L.Dense(2)),
    "GlobalMaxPooling3D": lambda: seq((4, 4, 4, 2), L.Conv3D(6, 1, activation="relu"), L.GlobalMaxPooling3D(), L.Dense(2)),
    "ZeroPadding1D": lambda: seq((6, 3), L.Conv1D(8, 2, activation="relu"), L.ZeroPadding1D((1, 2)), L.Conv1D(4, 3), L.Flatten(), L.Dense(2)),
    "ZeroPadding2D": lambda: seq((6, 6, 3), L.Conv2D(8, 2, activation="relu"), L.ZeroPadding2D(((1, 0), (2, 1))), L.Conv2D(4, 3), L.Flatten(), L.Dense(2)),
    "ZeroPadding3D": lambda: seq((3, 3, 3, 2), L.Conv3D(6, 1, activation="relu"), L.ZeroPadding3D(1), L.Conv3D(4, 3), L.Flatten(), L.Dense(2)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_prune_save_load(case, tmp_path):
    model = CASES[case]()
    new, rep = roundtrip(model, sample(model), tmp_path)
    assert rep.after.params < rep.before.params
