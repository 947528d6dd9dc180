"""Data forms (NumPy pair, PyDataset, list of batches, tf.data), heal and evaluate, and that
``import netsculpt`` does not import Keras."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers as L
from kerashelp import seq

import netsculpt.keras as nk
from netsculpt.errors import InputError


def model_and_data(compiled=True):
    model = seq((10,), L.Dense(16, activation="relu", name="d1"), L.Dense(1, name="d2"))
    if compiled:
        model.compile("adam", "mse", metrics=["mae"])
    rng = np.random.default_rng(0)
    return model, rng.random((64, 10), dtype=np.float32), rng.random((64, 1), dtype=np.float32)


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, **kw):
        super().__init__(**kw)
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // 16

    def __getitem__(self, i):
        return self.x[16 * i : 16 * (i + 1)], self.y[16 * i : 16 * (i + 1)]


def _forms(x, y):
    forms = {
        "pair": (x, y),
        "pydataset": Batches(x, y),
        "list": [(x[:32], y[:32]), (x[32:], y[32:])],
    }
    try:
        import tensorflow as tf

        forms["tf.data"] = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    except ImportError:
        pass
    return forms


def test_every_data_form_gives_the_same_prune():
    model, x, y = model_and_data()
    units = {}
    for name, d in _forms(x, y).items():
        new, _ = nk.prune(model, x[:4], amount=0.5, importance="taylor", data=d, max_batches=4)
        units[name] = [w.tolist() for w in new.get_weights()]
    first = next(iter(units.values()))
    assert all(v == first for v in units.values()), list(units)


def test_heal_fits_a_copy_with_the_compiled_loss():
    model, x, y = model_and_data()
    before = [w.copy() for w in model.get_weights()]
    new, rep = nk.heal(model, (x, y), epochs=3, batch_size=16)
    assert rep.op == "heal" and rep.before.metric_name == "loss"
    assert rep.after.metric < rep.before.metric
    assert len(rep.details["history"]["loss"]) == 3
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)  # the input is not trained
    assert type(new.optimizer) is type(model.optimizer)
    new2, _ = nk.heal(model, Batches(x, y), epochs=1)
    assert new2.count_params() == model.count_params()


def test_evaluate_reports_keras_metrics_and_size():
    model, x, y = model_and_data()
    res = nk.evaluate(model, (x, y), example_inputs=x[:1])
    assert set(res) >= {"loss", "mae", "params", "size_bytes", "macs"}
    assert res["params"] == model.count_params()
    assert res["macs"] == 10 * 16 + 16 * 1


def test_heal_and_evaluate_need_a_compiled_model():
    model, x, y = model_and_data(compiled=False)
    for fn in (nk.heal, nk.evaluate):
        with pytest.raises(InputError, match="not compiled"):
            fn(model, (x, y))


def test_import_netsculpt_does_not_import_keras():
    code = "import sys, netsculpt, netsculpt.keras; print('keras' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
