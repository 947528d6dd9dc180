"""Model files for the CLI: safe loading of .pt / .pt2 / netsculpt folders, and export."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.errors import InputError
from netsculpt.io.saving import MANIFEST, load
from netsculpt.utils import eval_mode, normalize_inputs


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
        try:
            return torch.export.load(str(p)).module()
        except Exception as exc:
            raise InputError(f"{p}: not a torch.export program ({type(exc).__name__})") from exc
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
    from netsculpt.data import resolve_model

    model, _, _ = resolve_model(arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise InputError(f"{p}: state dict does not fit --arch {arch}: {detail}") from exc
    return model


def _load_hf_folder(p: Path) -> nn.Module:
    """A local Hugging Face model folder (``save_pretrained`` output); never touches the hub."""
    import json

    import transformers

    archs = json.loads((p / "config.json").read_text()).get("architectures") or []
    cls = getattr(transformers, archs[0], None) if archs else None
    cls = cls or transformers.AutoModel
    try:
        return cls.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: not a loadable Hugging Face model folder ({exc})") from exc


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


def export(model: nn.Module, path: str | os.PathLike, example_inputs: Any) -> Path:
    """Export ``model`` to ``.pt2`` (torch.export) or ``.onnx`` (dynamo exporter); returns the path.

    >>> export(model, "model.onnx", torch.zeros(1, 3, 224, 224))   # doctest: +SKIP
    """
    p = Path(path)
    if p.suffix not in (".pt2", ".onnx"):
        raise InputError(f"export: {p} must end in .pt2 or .onnx")
    args, kwargs = normalize_inputs(example_inputs, model)
    p.parent.mkdir(parents=True, exist_ok=True)
    with eval_mode(model), torch.no_grad():
        if p.suffix == ".pt2":
            ep = torch.export.export(model, args, kwargs, strict=False)
            torch.export.save(ep, str(p))
        else:
            try:
                import onnxscript  # noqa: F401  (the dynamo exporter needs it)
            except ImportError as exc:
                raise InputError(
                    "export: .onnx needs onnxscript: pip install netsculpt[export]"
                ) from exc
            torch.onnx.export(model, args, str(p), kwargs=kwargs, dynamo=True, verbose=False)
    return p
