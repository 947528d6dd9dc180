"""LSTM, GRU and SimpleRNN: prune -> save .keras -> load_model -> same outputs; hidden units go
with every gate's rows; what torch has no counterpart for is refused."""

from __future__ import annotations

import numpy as np
import pytest
from keras import layers as L
from kerashelp import out, roundtrip, sample, seq

import netsculpt.keras as nk
from netsculpt.errors import InputError

CASES = {
    "LSTM": lambda: seq((5, 3), L.LSTM(8), L.Dense(2)),
    "LSTM sequences": lambda: seq((5, 3), L.LSTM(8, return_sequences=True), L.LSTM(6), L.Dense(2)),
    "LSTM no bias": lambda: seq((5, 3), L.LSTM(8, use_bias=False, return_sequences=True), L.Flatten(), L.Dense(2)),
    "GRU": lambda: seq((5, 3), L.GRU(8), L.Dense(2)),
    "GRU sequences": lambda: seq((5, 3), L.Dense(6, activation="relu"), L.GRU(8, return_sequences=True), L.GlobalAveragePooling1D(), L.Dense(2)),
    "SimpleRNN": lambda: seq((5, 3), L.SimpleRNN(8, return_sequences=True), L.SimpleRNN(6, activation="relu"), L.Dense(2)),
    "Conv1D then LSTM": lambda: seq((7, 3), L.Conv1D(8, 3, activation="relu"), L.LSTM(6), L.Dense(2)),
    "Embedding then GRU": lambda: seq((5,), L.Embedding(10, 8), L.GRU(6), L.Dense(2), dtype="int32"),
}  # fmt: skip


def _random_biases(model):
    """Non-zero biases, so that a gate order or bias split mistake shows in the outputs."""
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if type(layer).__name__ in ("LSTM", "GRU", "SimpleRNN") and layer.use_bias:
            w = layer.get_weights()
            w[-1] = rng.standard_normal(w[-1].shape).astype("float32")
            layer.set_weights(w)


@pytest.mark.parametrize("case", sorted(CASES))
def test_prune_save_load(case, tmp_path):
    model = CASES[case]()
    _random_biases(model)
    new, rep = roundtrip(model, sample(model), tmp_path)
    assert rep.after.params < rep.before.params
    assert rep.details["keras"]["mirror_max_abs_diff"] <= 1e-5


def test_units_follow_the_plan_and_config_is_kept(tmp_path):
    model = CASES["GRU sequences"]()
    _random_biases(model)
    new, _ = roundtrip(model, sample(model), tmp_path)
    gru, old = new.get_layer(model.layers[1].name), model.layers[1]
    assert gru.units == 4
    assert tuple(gru.get_weights()[-1].shape) == (2, 12)  # reset_after: input and recurrent bias
    for key in ("return_sequences", "activation", "recurrent_activation", "reset_after"):
        assert gru.get_config()[key] == old.get_config()[key]


def test_ignore_keeps_the_lstm_whole(tmp_path):
    model = seq((5, 3), L.LSTM(8, name="rnn"), L.Dense(6, activation="relu"), L.Dense(2))
    new, _ = nk.prune(model, sample(model), amount=0.5, ignore=["rnn"])
    assert new.get_layer("rnn").units == 8
    assert out(new, sample(model)).shape == (4, 2)


@pytest.mark.parametrize(
    ("layer", "match"),
    [
        (lambda: L.LSTM(4, return_state=True), "return_state"),
        (lambda: L.LSTM(4, go_backwards=True), "go_backwards"),
        (lambda: L.LSTM(4, activation="relu"), "activation 'relu'"),
        (lambda: L.GRU(4, reset_after=False), "reset_after=False"),
        (lambda: L.SimpleRNN(4, activation="sigmoid"), "activation 'sigmoid'"),
    ],
    ids=["return_state", "go_backwards", "lstm-relu", "gru-reset-before", "rnn-sigmoid"],
)
def test_refusals(layer, match):
    import keras

    inp = keras.Input((5, 3))
    h = layer()(inp)
    h = h[0] if isinstance(h, (list, tuple)) else h
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(h) if len(h.shape) == 3 else h))
    with pytest.raises(InputError, match=match):
        nk.prune(model, sample(model), amount=0.5)


def _stack(last: int):
    return seq((5, 8), L.LSTM(8, return_sequences=True, name="a"),
               L.LSTM(last, return_sequences=last == 8, name="b"), L.Flatten(name="flat"), L.Dense(2, name="head"))  # fmt: skip


def test_cut_drops_a_recurrent_layer_that_keeps_the_shape(tmp_path):
    model = _stack(8)
    x = sample(model, 16)
    new, rep = roundtrip(model, x[:4], tmp_path, "cut", data=(x, np.arange(16) % 2), blocks=["a"])
    assert [layer.name for layer in new.layers] == ["b", "flat", "head"]


def test_cut_of_a_last_step_layer_is_refused_and_the_model_kept():
    model = _stack(6)
    x = sample(model, 16)
    ref = out(model, x)
    with pytest.raises(InputError, match="'b' returns only its last step"):
        nk.cut(model, x[:4], data=(x, np.arange(16) % 2), blocks=["b"])
    np.testing.assert_array_equal(out(model, x), ref)
    new, _ = nk.cut(model, x[:4], data=(x, np.arange(16) % 2), count=1, ignore=["b"])
    assert [layer.name for layer in new.layers] == ["b", "flat", "head"]
