"""Built-in data sets and models, all offline.

>>> from netsculpt.data import build_builtin, load_dataset, train_quick
>>> model = build_builtin("digits-mlp")
>>> acc = train_quick(model, "digits", epochs=5)          # doctest: +SKIP
"""

from __future__ import annotations

from netsculpt.data.datasets import DATASETS, load_dataset, make_loader
from netsculpt.data.models import (
    BUILTINS,
    ConvNet1D,
    DigitsCNN,
    ResidualMLP,
    SeedMLP,
    TinyTransformer,
    build_builtin,
)
from netsculpt.data.names import example_inputs_for, torchvision_model
from netsculpt.data.text import VOCAB_SIZE, decode, encode, text_corpus
from netsculpt.data.train import accuracy, train_quick

__all__ = [
    "BUILTINS",
    "DATASETS",
    "VOCAB_SIZE",
    "ConvNet1D",
    "DigitsCNN",
    "ResidualMLP",
    "SeedMLP",
    "TinyTransformer",
    "accuracy",
    "build_builtin",
    "decode",
    "encode",
    "example_inputs_for",
    "load_dataset",
    "make_loader",
    "torchvision_model",
    "text_corpus",
    "train_quick",
]
