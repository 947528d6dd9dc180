"""The tensorflow-model-optimization side of ``keras_digits.py``, run in its own process.

tfmot's ``prune_low_magnitude`` needs Keras 2 (``tf-keras``, with ``TF_USE_LEGACY_KERAS=1`` set
before TensorFlow is imported), which cannot share a process with the Keras 3 models of the
benchmark. ``keras_digits.py`` therefore writes the trained weights and the data to an ``.npz``
file, and runs this script twice:

- ``keras3``: ``import tensorflow_model_optimization`` and ``prune_low_magnitude`` on the Keras 3
  CNN, as a Keras 3 user would; the first error line is the finding;
- ``tf_keras``: the same CNN in tf-keras with the trained weights, pruned to the given sparsity
  with each of tfmot's schedules (``ConstantSparsity``, ``PolynomialDecay``), fine-tuned with
  ``fit`` and ``UpdatePruningStep`` for the heal epochs, then ``strip_pruning``.

It writes ``result.json`` (accuracies, non-zero weights, its own ``.keras`` file size, or the
error) and ``<schedule>.npz`` with the stripped weights, which ``keras_digits.py`` loads into a
Keras 3 copy of the CNN to time it beside the other models.

    python benchmarks/_keras_tfmot.py {keras3,tf_keras} IN.npz OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


def cnn(k):
    """The benchmark's CNN, in Keras 3 (``keras``) or Keras 2 (``tf_keras``)."""
    L = k.layers
    return k.Sequential([
        k.Input((8, 8, 1)),
        L.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
        L.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
        L.MaxPooling2D(name="pool"),
        L.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
        L.GlobalAveragePooling2D(name="gap"),
        L.Dense(64, activation="relu", name="fc"),
        L.Dense(10, name="logits"),
    ])  # fmt: skip


def compile_cnn(k, model, lr: float) -> None:
    loss = k.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(k.optimizers.Adam(learning_rate=lr), loss, metrics=["accuracy"])


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    logits = np.asarray(model.predict(x, batch_size=256, verbose=0))
    return float((logits.argmax(-1) == y).mean())


def first_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return text.splitlines()[0][:300]


def keras3(data, args, out: Path) -> dict:
    try:
        import keras
        import tensorflow_model_optimization as tfmot

        model = cnn(keras)
        tfmot.sparsity.keras.prune_low_magnitude(model)
    except Exception as e:  # noqa: BLE001 - the error is the finding
        return {"error": first_line(e)}
    return {"error": None}


def tf_keras(data, args, out: Path) -> dict:
    try:
        import tensorflow as tf
        import tensorflow_model_optimization as tfmot
        import tf_keras as k
    except Exception as e:  # noqa: BLE001 - the error is the finding
        return {"error": first_line(e)}
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sp = tfmot.sparsity.keras
    weights = [data[f"w{i}"] for i in range(int(args["n_weights"]))]
    xtr, ytr = data["x_train"], data["y_train"]
    s, epochs, batch = float(args["sparsity"]), int(args["heal_epochs"]), int(args["batch_size"])
    steps = epochs * -(-len(ytr) // batch)
    schedules = {
        # frequency=1: with the default (every 100 steps) a short heal can end before any mask
        "ConstantSparsity": lambda: sp.ConstantSparsity(s, begin_step=0, frequency=1),
        "PolynomialDecay": lambda: sp.PolynomialDecay(0.0, s, begin_step=0,
                                                      end_step=int(0.7 * steps), frequency=10),
    }  # fmt: skip
    base = cnn(k)
    base.set_weights(weights)
    result = {"error": None, "copied_test_accuracy": accuracy(base, data["x_test"], data["y_test"])}
    for name, schedule in schedules.items():
        k.utils.set_random_seed(int(args["seed"]))
        model = cnn(k)
        model.set_weights(weights)
        pruned = sp.prune_low_magnitude(model, pruning_schedule=schedule())
        compile_cnn(k, pruned, float(args["lr"]))
        pruned.fit(xtr, ytr, epochs=epochs, batch_size=batch, verbose=0,
                   callbacks=[sp.UpdatePruningStep()])  # fmt: skip
        stripped = sp.strip_pruning(pruned)
        kernels = [w for w in stripped.weights if "kernel" in w.name]
        path = out / f"{name}.keras"
        stripped.save(path)
        np.savez(out / f"{name}.npz", *stripped.get_weights())
        result[name] = {
            "val_accuracy": accuracy(stripped, data["x_val"], data["y_val"]),
            "test_accuracy": accuracy(stripped, data["x_test"], data["y_test"]),
            "nonzero": int(sum(np.count_nonzero(w.numpy()) for w in stripped.weights)),
            "kernel_sparsity": float(
                1
                - sum(np.count_nonzero(w.numpy()) for w in kernels)
                / sum(int(np.prod(w.shape)) for w in kernels)
            ),
            "own_keras_bytes": path.stat().st_size,
        }
    return result


def main() -> None:
    mode, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if mode == "tf_keras":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras is tf-keras: what tfmot needs
    else:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with np.load(src, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    args = json.loads((src.with_suffix(".json")).read_text())
    result = {"keras3": keras3, "tf_keras": tf_keras}[mode](data, args, out)
    try:
        import importlib.metadata as md

        result["versions"] = {
            n: md.version(n) for n in ("tensorflow-cpu", "tensorflow-model-optimization", "tf-keras")
            if _installed(n)
        }  # fmt: skip
    except Exception:  # noqa: BLE001 - versions are a courtesy
        pass
    (out / f"{mode}.json").write_text(json.dumps(result, indent=1))


def _installed(name: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
