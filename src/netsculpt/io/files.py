"""Model files for the CLI: safe loading of .pt / .pt2 / netsculpt folders."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError, UnsafeFileError
from netsculpt.io.loading import load
from netsculpt.io.outputs import MANIFEST


def load_model_file(path: str | os.PathLike, *, arch: str | None = None) -> nn.Module:
    """Load a model from a netsculpt folder, a ``.pt2`` program or a ``.pt``/``.pth`` state dict.

    A state dict has no architecture: pass ``arch`` (a built-in or torchvision name). Pickled
    modules are refused: netsculpt only ever calls ``torch.load(..., weights_only=True)``.

    >>> load_model_file("out/")                            # doctest: +SKIP
    >>> load_model_file("w.pt", arch="resnet18")           # doctest: +SKIP
    """
    p = Path(path)
    if p.is_dir():
        if (p / MANIFEST).is_file():
            return load(p)
        if (p / "config.json").is_file():
            return _load_hf_folder(p)
        raise InputError(f"{p}: folder has no {MANIFEST} (netsculpt) or config.json (Hugging Face)")
    if not p.is_file():
        raise InputError(f"{p}: no such file or folder")
    if p.suffix == ".pt2":
        from netsculpt.io.program import load_program, program_example
        from netsculpt.io.unflatten import program_model

        program = load_program(p)  # refuses pickles that could run code
        return program_model(program, program_example(program), where=p)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        state = _safe_torch_load(p)
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise InputError(f"{p}: holds a {type(state).__name__}, not a model or a state dict")
    if arch is None:
        raise InputError(
            f"{p} is a state dict (weights without an architecture); pass --arch NAME "
            "(e.g. resnet18, digits-mlp) to say which model it belongs to"
        )
    from netsculpt.io import resolve_model

    model, _, _ = resolve_model(arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise InputError(f"{p}: state dict does not fit --arch {arch}: {detail}") from exc
    return model


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _load_hf_folder(p: Path) -> nn.Module:
    """A local Hugging Face model folder (``save_pretrained`` output); never touches the hub
    and only ever reads safetensors weights (a pickled ``pytorch_model.bin`` is refused)."""
    import json

    if not any(f.name.endswith((".safetensors", ".safetensors.index.json")) for f in p.iterdir()):
        pickles = sorted(f for f in p.iterdir() if f.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise UnsafeFileError(
                f"{pickles[0]}: Hugging Face weights as a pickle, which can run code on load; "
                "netsculpt reads only safetensors: re-save the model with "
                "save_pretrained(folder, safe_serialization=True) to get model.safetensors"
            )
        raise InputError(f"{p}: Hugging Face folder without model.safetensors weights")
    try:
        config = json.loads((p / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{p / 'config.json'}: not a readable JSON config ({exc})") from exc
    archs = config.get("architectures") if isinstance(config, dict) else None
    import transformers

    name = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else ""
    cls = getattr(transformers, name, None) if name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        cls = transformers.AutoModel
    try:
        return cls.from_pretrained(
            str(p), local_files_only=True, use_safetensors=True, trust_remote_code=False
        )
    except Exception as exc:  # noqa: BLE001 - transformers raises many types on bad folders
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(f"{p}: not a loadable Hugging Face model folder ({first})") from exc


def _safe_torch_load(p: Path) -> Any:
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise InputError(
                f"{p} contains pickled code; netsculpt never unpickles code. "
                "Save with netsculpt.save or torch.export"
            ) from exc
        raise InputError(f"{p}: not a PyTorch file ({exc})") from exc
    except Exception as exc:  # torch.load raises KeyError / RuntimeError on random bytes
        raise InputError(f"{p}: not a PyTorch model file ({type(exc).__name__})") from exc
