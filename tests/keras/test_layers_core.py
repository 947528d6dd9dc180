"""Every supported dense-side layer: prune -> save .keras -> load_model -> same outputs."""

from __future__ import annotations

import pytest
from keras import layers as L
from kerashelp import roundtrip, sample, seq

CASES = {
    "Dense": lambda: seq((6,), L.Dense(8, activation="relu"), L.Dense(6, use_bias=False), L.Dense(2)),
    "Dense on a sequence": lambda: seq((5, 6), L.Dense(8, activation="tanh"), L.Dense(3)),
    "BatchNormalization": lambda: seq(
        (6,), L.Dense(8), L.BatchNormalization(momentum=0.9, epsilon=1e-3), L.ReLU(), L.Dense(2)
    ),
    "BatchNormalization center=False": lambda: seq(
        (6,), L.Dense(8), L.BatchNormalization(center=False), L.Dense(2)
    ),
    "LayerNormalization": lambda: seq((5, 6), L.Dense(8), L.LayerNormalization(), L.Dense(2)),
    "ReLU": lambda: seq((6,), L.Dense(8), L.ReLU(), L.Dense(2)),
    "ReLU max_value=6": lambda: seq((6,), L.Dense(8), L.ReLU(max_value=6.0), L.Dense(2)),
    "LeakyReLU": lambda: seq((6,), L.Dense(8), L.LeakyReLU(negative_slope=0.1), L.Dense(2)),
    "PReLU": lambda: seq((6,), L.Dense(8), L.PReLU(alpha_initializer="random_uniform"), L.Dense(2)),
    "ELU": lambda: seq((6,), L.Dense(8), L.ELU(alpha=0.5), L.Dense(2)),
    "Softmax": lambda: seq((6,), L.Dense(8), L.Softmax(), L.Dense(2)),
    "Dropout": lambda: seq((6,), L.Dense(8, activation="relu"), L.Dropout(0.3), L.Dense(2)),
    "Flatten": lambda: seq((3, 4), L.Dense(8, activation="relu"), L.Flatten(), L.Dense(2)),
    "Reshape": lambda: seq((6,), L.Dense(8, activation="relu"), L.Reshape((1, 8)), L.Dense(4), L.Flatten(), L.Dense(2)),
    "Permute": lambda: seq((3, 4), L.Dense(8, activation="relu"), L.Permute((2, 1)), L.Flatten(), L.Dense(2)),
    "Identity": lambda: seq((6,), L.Dense(8, activation="relu"), L.Identity(), L.Dense(2)),
    "Embedding": lambda: seq((5,), L.Embedding(10, 8), L.Dense(6, activation="relu"), L.Flatten(), L.Dense(2), dtype="int32"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_prune_save_load(case, tmp_path):
    model = CASES[case]()
    x = sample(model)
    new, rep = roundtrip(model, x, tmp_path)
    assert rep.after.params < rep.before.params


def test_dense_widths_follow_the_plan(tmp_path):
    model = CASES["Dense"]()
    new, rep = roundtrip(model, sample(model), tmp_path)
    assert [layer.units for layer in new.layers] == [4, 3, 2]
    assert new.layers[0].get_config()["activation"] == "relu"
    assert new.layers[1].use_bias is False
    assert [layer.name for layer in new.layers] == [layer.name for layer in model.layers]
