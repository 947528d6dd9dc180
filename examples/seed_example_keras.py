"""The seed document's own program, in Keras 3, done for real.

The seed trains a ``Sequential`` MLP (Dense 64 relu, Dense 32 relu, Dense 1; Adam, MSE) for 100
epochs on random data ``x ∈ R^{100×10}``, ``y ∈ R^{100×1}``, then calls prune(model, 0.01),
cut(model, 0.01), merge(model) and add_layer(model, 0.01), which as written there do not work
(they flip weights to their absolute values, pop ``model.layers``, compare symbolic tensors).
Here each is one ``netsculpt.keras`` call with the seed's threshold; each returns a new, working
Keras model (compiled as the input was) and the Report of what changed.

Run: KERAS_BACKEND=torch python examples/seed_example_keras.py [--epochs 100]
(``NETSCULPT_SEED_EPOCHS`` also sets the epochs; the test runs it with a few.)
"""

import argparse
import os

import keras
import numpy as np

import netsculpt.keras as nk

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=int(os.environ.get("NETSCULPT_SEED_EPOCHS", 100)))
epochs = parser.parse_args().epochs

keras.utils.set_random_seed(0)
x = np.random.rand(100, 10).astype("float32")  # the seed's data
y = np.random.rand(100, 1).astype("float32")
model = keras.Sequential(
    [
        keras.Input((10,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(1),
    ]
)
model.compile(optimizer="adam", loss="mse")
model.fit(x, y, epochs=epochs, verbose=0)
print(f"trained {epochs} epochs: mse {model.evaluate(x, y, verbose=0):.4f}")

example = x[:1]

# 剪枝 prune: zero every weight with |w| < 0.01, then remove the neurons left without weights
model, report = nk.prune(model, example, threshold=0.01)
print(report)

# 剪切 cut: remove every layer whose effect on the prediction is below 0.01
model, report = nk.cut(model, example, data=(x, y), threshold=0.01)
print(report)

# 合并 merge: merge neurons whose weights are (near) duplicates, and fold what folds exactly
model, report = nk.merge(model, example, neurons=True, threshold=0.01)
print(report)

# 增加层 add_layer: insert an identity layer where the effect is above 0.01 (outputs unchanged)
model, report = nk.grow(model, example, data=(x, y), threshold=0.01)
print(report)

model.summary()
print(f"final: mse {model.evaluate(x, y, verbose=0):.4f}")
