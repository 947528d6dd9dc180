"""Turn a model argument (built-in name, torchvision name, save folder, .pt2) into a model."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.data.models import BUILTINS, build_builtin, builtin_example
from netsculpt.data.names import (
    example_inputs_for,
    image_input,
    torchvision_model,
    torchvision_names,
)


def resolve_model(name_or_path: str) -> tuple[nn.Module, Any, str | None]:
    """``(model, example_inputs, source)`` for a built-in name, a torchvision classification
    model name (random init), a netsculpt save folder or a ``.pt2`` program.

    ``example_inputs`` is None when it cannot be known (e.g. a saved HF model).

    >>> model, x, source = resolve_model("digits-mlp")
    >>> source, tuple(model(x).shape)
    ('builtin:digits-mlp', (1, 10))
    """
    name = str(name_or_path)
    if name in BUILTINS:
        return build_builtin(name), builtin_example(name), f"builtin:{name}"
    path = Path(name)
    if path.exists():
        from netsculpt.core import progress

        with progress.step(f"load {path.name or path}"):
            return _from_path(path)
    from netsculpt.io.outputs import interrupted_message

    left = interrupted_message(path)  # a save folder whose save was killed mid-swap
    if left:
        raise InputError(left)
    tv_names = torchvision_names()
    if name in tv_names:
        model = torchvision_model(name)
        source = f"torchvision:{name}"
        model._netsculpt_source = source
        return model, image_input(name), source
    close = difflib.get_close_matches(name, list(BUILTINS) + tv_names, n=4, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise InputError(
        f"unknown model {name!r}: not a built-in ({', '.join(BUILTINS)}), a torchvision "
        f"model name, a netsculpt folder or a .pt2 file{hint}"
    )


def _from_path(path: Path) -> tuple[nn.Module, Any, str | None]:
    if path.suffix == ".pt2":
        from netsculpt.io.program import program_example
        from netsculpt.io.unflatten import program_model

        ep = _load_program(path)
        example = program_example(ep)
        return program_model(ep, example, where=path), example, None
    from netsculpt.io import load_model_file

    model = load_model_file(path)
    source = getattr(model, "_netsculpt_source", None)
    example = example_inputs_for(source)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if example is None and isinstance(vocab, int):  # a Hugging Face text model
        from netsculpt.hf.io import example_inputs

        example = example_inputs(model)  # the shape the shard path measures MACs on
    if source is None and (path / "config.json").is_file() and hasattr(model, "config"):
        source = "hf"  # a Hugging Face folder: the CLI applies the HF prune defaults
    return model, example, source


def _load_program(path: Path) -> torch.export.ExportedProgram:
    from netsculpt.io.program import load_program

    return load_program(path)  # never runs the pickles a crafted archive may hold
