"""Turn a model argument (built-in name, torchvision name, save folder, .pt2) into a model."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.data.models import BUILTINS, build_builtin
from netsculpt.errors import InputError


def _torchvision_names() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(name: str) -> nn.Module:
    """A random-init torchvision model; inception_v3 without the aux head (plain tensor output)."""
    import torchvision

    kwargs = {"aux_logits": False, "init_weights": False} if name == "inception_v3" else {}
    try:
        return torchvision.models.get_model(name, weights=None, **kwargs)
    except ValueError as exc:
        raise InputError(f"unknown torchvision model {name!r}") from exc


def _image_input(name: str) -> torch.Tensor:
    size = 299 if name == "inception_v3" else 224
    return torch.randn(1, 3, size, size)


def example_inputs_for(source: str | None) -> Any:
    """Example inputs for a recorded source (``builtin:NAME`` / ``torchvision:NAME``), else None.

    >>> example_inputs_for("builtin:digits-mlp").shape
    torch.Size([1, 64])
    """
    kind, _, name = (source or "").partition(":")
    if kind == "builtin" and name in BUILTINS:
        return BUILTINS[name][1]()
    if kind == "torchvision":
        return _image_input(name)
    return None


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
        return build_builtin(name), BUILTINS[name][1](), f"builtin:{name}"
    path = Path(name)
    if path.exists():
        return _from_path(path)
    from netsculpt.io.outputs import interrupted_message

    left = interrupted_message(path)  # a save folder whose save was killed mid-swap
    if left:
        raise InputError(left)
    tv_names = _torchvision_names()
    if name in tv_names:
        model = torchvision_model(name)
        source = f"torchvision:{name}"
        model._netsculpt_source = source
        return model, _image_input(name), source
    close = difflib.get_close_matches(name, list(BUILTINS) + tv_names, n=4, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise InputError(
        f"unknown model {name!r}: not a built-in ({', '.join(BUILTINS)}), a torchvision "
        f"model name, a netsculpt folder or a .pt2 file{hint}"
    )


def _from_path(path: Path) -> tuple[nn.Module, Any, str | None]:
    if path.suffix == ".pt2":
        ep = _load_program(path)
        example = getattr(ep, "example_inputs", None)
        return ep.module(), example, None
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
