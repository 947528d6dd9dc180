"""Turn a model argument (built-in name, torchvision name, save folder, .pt2) into a model."""

from __future__ import annotations

import difflib
import types
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
        return program_module(ep), program_example(ep), None
    from netsculpt.io import load_model_file

    model = load_model_file(path)
    source = getattr(model, "_netsculpt_source", None)
    example = example_inputs_for(source)
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if example is None and isinstance(vocab, int):  # a Hugging Face text model
        example = {"input_ids": torch.randint(0, vocab, (1, 16), generator=_seeded())}
    return model, example, source


def program_module(program: torch.export.ExportedProgram) -> nn.Module:
    """The runnable module of a loaded torch.export program, usable like any model.

    ``program.module()`` raises on ``eval()`` / ``train()``; here both are no-ops that return
    the module (the program was traced in eval mode and keeps that behaviour), so evaluate,
    measure and export work on it.
    """
    module = program.module()

    def _fixed_mode(self: nn.Module, mode: bool = True) -> nn.Module:
        return self

    for m in module.modules():
        m.training = False
    module.train = types.MethodType(_fixed_mode, module)
    module.eval = types.MethodType(lambda self: self, module)
    return module


def program_example(program: torch.export.ExportedProgram) -> Any:
    """The program's recorded example inputs; cut to batch 1 when its batch dim is dynamic
    (netsculpt exports trace a batch-1 example at batch 2), so MACs read per sample."""
    example = getattr(program, "example_inputs", None)
    val = _first_user_input(program)
    if example is None or val is None or not val.ndim or isinstance(val.shape[0], int):
        return example
    args, kwargs = example
    size = next((t.shape[0] for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)), 0)

    def first(t: Any) -> Any:
        return t[:1] if isinstance(t, torch.Tensor) and t.ndim and t.shape[0] == size else t

    return tuple(first(a) for a in args), {k: first(v) for k, v in kwargs.items()}


def _first_user_input(program: torch.export.ExportedProgram) -> Any:
    """The fake tensor of the program's first user input (its shape tells what is dynamic)."""
    from torch.export.graph_signature import InputKind

    specs = program.graph_signature.input_specs
    name = next(
        (getattr(s.arg, "name", None) for s in specs if s.kind == InputKind.USER_INPUT), None
    )
    node = next((n for n in program.graph.nodes if n.op == "placeholder" and n.name == name), None)
    return None if node is None else node.meta.get("val")


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _load_program(path: Path) -> torch.export.ExportedProgram:
    try:
        return torch.export.load(str(path))
    except Exception as exc:
        raise InputError(f"{path}: not a torch.export program ({type(exc).__name__})") from exc
