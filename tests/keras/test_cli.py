"""The commands accept .keras files: netsculpt prune model.keras -o out.keras, and the others."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers as L
from kerashelp import out, seq

from netsculpt.cli import main


@pytest.fixture
def files(tmp_path):
    model = seq((10,), L.Dense(16, activation="relu", name="d1"),
                L.Dense(8, activation="relu", name="d2"), L.Dense(1, name="d3"))  # fmt: skip
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 10), dtype=np.float32), rng.random((64, 1), dtype=np.float32)
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return tmp_path, x


def test_prune_a_keras_file(files, capsys):
    d, x = files
    assert (
        main(["prune", str(d / "model.keras"), "--amount", "0.5", "-o", str(d / "out.keras")]) == 0
    )
    assert "netsculpt prune" in capsys.readouterr().out
    new = keras.saving.load_model(d / "out.keras")  # no custom objects
    assert [layer.units for layer in new.layers] == [8, 4, 1]
    assert new.compiled and type(new.optimizer).__name__ == "Adam"
    assert out(new, x).shape == (64, 1)


@pytest.mark.parametrize(
    "argv",
    [
        ["cut", "{m}", "--data", "{d}", "--count", "1", "-o", "{o}"],
        ["merge", "{m}", "--neurons", "-o", "{o}"],
        ["grow", "{m}", "--where", "d1", "-o", "{o}"],
        ["heal", "{m}", "--data", "{d}", "--epochs", "1", "-o", "{o}"],
    ],
)
def test_other_commands_write_keras_files(files, argv):
    d, x = files
    paths = {"m": d / "model.keras", "d": d / "data.npz", "o": d / "new.keras"}
    assert main([a.format(**paths) for a in argv]) == 0
    assert out(keras.saving.load_model(paths["o"]), x).shape == (64, 1)


def test_analyze_and_evaluate_print(files, capsys):
    d, _ = files
    assert main(["analyze", str(d / "model.keras")]) == 0
    assert "d1, d2" in capsys.readouterr().out
    assert main(["evaluate", str(d / "model.keras"), "--data", str(d / "data.npz")]) == 0
    text = capsys.readouterr().out
    assert "loss" in text and "params" in text


def test_keras_errors_are_one_line(files, capsys):
    d, _ = files
    rc = main(["prune", str(d / "model.keras"), "--amount", "0.5", "-o", str(d / "out.pt")])
    assert rc == 2
    assert "must end in .keras" in capsys.readouterr().err
    rc = main(
        [
            "cut",
            str(d / "model.keras"),
            "--data",
            "digits",
            "--count",
            "1",
            "-o",
            str(d / "o.keras"),
        ]
    )
    assert rc == 2
    assert ".npz" in capsys.readouterr().err
    assert main(["prune", str(d / "missing.keras"), "--amount", "0.5"]) == 2
