"""MultiHeadAttention: whole heads are pruned; self- and cross-attention; a tiny transformer."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers as L
from kerashelp import roundtrip, sample

import netsculpt.keras as nk
from netsculpt.errors import InputError


def encoder(tokens: bool = False) -> keras.Model:
    inp = keras.Input((5,), dtype="int32") if tokens else keras.Input((5, 6))
    h = L.Embedding(20, 16, name="emb")(inp) if tokens else L.Dense(16, name="proj")(inp)
    a = L.MultiHeadAttention(4, 4, name="mha")(h, h)
    h = L.LayerNormalization(name="ln1")(L.Add()([h, a]))
    f = L.Dense(32, activation="gelu", name="ff1")(h)
    h = L.LayerNormalization(name="ln2")(L.Add()([h, L.Dense(16, name="ff2")(f)]))
    return keras.Model(inp, L.Dense(2, name="head")(L.GlobalAveragePooling1D()(h)))


@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "embedding"])
def test_transformer_block_heads_and_width(tokens, tmp_path):
    model = encoder(tokens)
    new, rep = roundtrip(model, sample(model), tmp_path)
    assert new.get_layer("mha").num_heads == 2
    assert new.get_layer("mha").key_dim == 4  # the head size sets the softmax scale: kept
    assert new.get_layer("ff1").units == 16
    assert rep.after.params < rep.before.params


def test_cross_attention_with_key_and_output_shape(tmp_path):
    q_in, v_in, k_in = keras.Input((4, 6)), keras.Input((3, 5)), keras.Input((3, 7))
    mha = L.MultiHeadAttention(2, 3, value_dim=5, output_shape=(7,), name="cross")
    out = mha(L.Dense(8, name="q")(q_in), v_in, key=k_in)
    model = keras.Model([q_in, v_in, k_in], L.Dense(2)(L.Flatten()(out)))
    rng = np.random.default_rng(0)
    x = [rng.standard_normal((2, *s)).astype("float32") for s in ((4, 6), (3, 5), (3, 7))]
    new, rep = roundtrip(model, x, tmp_path)
    shape = new.get_layer("cross").get_config()["output_shape"]
    assert shape is not None and tuple(shape) == (new.get_layer("cross").output.shape[-1],)


def test_masks_are_refused():
    inp = keras.Input((5, 6))
    out = L.MultiHeadAttention(2, 3, name="causal")(inp, inp, use_causal_mask=True)
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(out)))
    with pytest.raises(InputError, match="'causal'.*use_causal_mask"):
        nk.prune(model, sample(model), amount=0.5)
