"""Save a (surgically edited) model as safetensors + a structure manifest, atomically.

No pickle anywhere: the manifest is JSON, the weights are safetensors. Loading is
:mod:`netsculpt.io.loading`; where and how files are written is :mod:`netsculpt.io.outputs`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.utils import qualified_name, unique_state_dict
from netsculpt.io.manifest import FORMAT, init_kwargs, structural_attrs
from netsculpt.io.outputs import (
    MANIFEST,
    WEIGHTS,
    check_save_target,
    dir_mode,
    file_mode,
    fsync_path,
    recover,
    remove_own,
)
from netsculpt.io.schema import BUFFER_PREFIX, MASK_PREFIX


def _non_persistent_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for mod_name, module in model.named_modules():
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            buf = module._buffers.get(name)
            if buf is not None:
                out[f"{mod_name}.{name}" if mod_name else name] = buf
    return out


def _hf_config(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    to_dict = getattr(config, "to_dict", None)
    return json.loads(json.dumps(to_dict(), default=str)) if callable(to_dict) else None


def build_manifest(
    model: nn.Module, source: str | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The manifest dict and the tensors to write (aliases, masks and extra buffers included).

    >>> manifest, tensors = build_manifest(nn.Linear(2, 1))
    >>> manifest["shapes"]
    {'weight': [1, 2], 'bias': [1]}
    """
    tensors, aliases = unique_state_dict(model)
    extra = _non_persistent_buffers(model)
    shapes = {
        name: list(t.shape)
        for name, t in model.state_dict().items()
        if isinstance(t, torch.Tensor)  # skip get_extra_state() payloads
    }
    shapes.update({name: list(t.shape) for name, t in extra.items()})
    for name, buf in extra.items():
        tensors[BUFFER_PREFIX + name] = buf.detach().cpu().contiguous().clone()
    from netsculpt.surgery.masks import sync_masks

    masks = dict(sync_masks(model)) if getattr(model, "_netsculpt_masks", None) else {}
    for name, mask in masks.items():
        if name not in shapes:
            raise InputError(f"save: mask for '{name}' names no parameter of the model")
        tensors[MASK_PREFIX + name] = mask.detach().to("cpu", torch.bool).contiguous().clone()
    source = source or getattr(model, "_netsculpt_source", None)
    config = _hf_config(model)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "class": qualified_name(model),
        "source": source or ("hf" if config is not None else None),
        "shapes": shapes,
        "aliases": aliases,
        "attrs": {
            name or "": attrs
            for name, module in model.named_modules()
            if (attrs := structural_attrs(module))
        },
        "modules": list(getattr(model, "_netsculpt_edits", [])),
        "config": config,
        "masks": sorted(masks),
    }
    if manifest["source"] is None and qualified_name(model).startswith("netsculpt."):
        manifest["source"] = "netsculpt"  # rebuilt from class + init kwargs
        manifest["init"] = init_kwargs(model)
    return manifest, tensors


def save(model: nn.Module, directory: str | os.PathLike, *, source: str | None = None) -> Path:
    """Write ``model.safetensors`` + ``manifest.json`` into ``directory``, atomically.

    ``source`` says how to build the original architecture ("torchvision:resnet50",
    "builtin:digits-mlp", "hf"); default: ``model._netsculpt_source``. Returns the directory.

    The folder is replaced as a whole, and only when it holds nothing but netsculpt's own
    files (``manifest.json``, ``model.safetensors``, and the ``report.json`` /
    ``report.html`` a recipe run wrote there); any other file in it makes the save refuse,
    so nothing the user put there is ever deleted. A previous copy left by a save that was
    killed mid-swap (``.NAME.old-PID``) is put back first; stale ``.NAME.tmp-PID-*`` folders
    are removed. Files and folders get the permissions the umask allows.

    >>> save(model, "out/")            # doctest: +SKIP
    >>> load("out/")                   # doctest: +SKIP
    """
    from safetensors.torch import save_file

    target = check_save_target(directory)
    # build everything first: bad input is refused before a byte is written
    manifest, tensors = build_manifest(model, source)
    text = json.dumps(manifest, indent=1)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    check_save_target(target)  # a copy put back by recover() must pass the same rules
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        os.chmod(tmp, dir_mode())
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        (tmp / MANIFEST).write_text(text)
        for name in (WEIGHTS, MANIFEST):
            os.chmod(tmp / name, file_mode())
            fsync_path(tmp / name)
        fsync_path(tmp)
        if target.exists():
            target.rename(old)  # keep the previous save until the new one is in place
        tmp.rename(target)
        fsync_path(target.parent)
    except BaseException:
        if tmp.exists():
            remove_own(tmp)
        if old.exists() and not target.exists():
            old.rename(target)
        raise
    if old.exists():
        remove_own(old)
    return target


def program_report_files(out: str | os.PathLike) -> tuple[Path, Path]:
    """The report files that go beside a recipe's ``.pt2`` output: ``<stem>.report.json`` and
    ``<stem>.report.html``."""
    stem = Path(out).with_suffix("")
    return stem.with_name(f"{stem.name}.report.json"), stem.with_name(f"{stem.name}.report.html")


def save_run(model: nn.Module, out: str | os.PathLike, report: Any, example_inputs: Any) -> str:
    """Where a recipe's result goes: ``out`` ending in ``.pt2`` gets the model exported (dynamic
    batch) and the report beside it as ``<stem>.report.json`` / ``<stem>.report.html``; a folder
    gets the model (:func:`save`) and ``report.json`` / ``report.html``. Returns the note saying
    where."""
    out = Path(out)
    if out.suffix == ".pt2":
        from netsculpt.io.export import export

        export(model, out, example_inputs)
        as_json, as_html = program_report_files(out)
        report.to_json(as_json)
        report.to_html(as_html)
        return (
            f"saved the model to {out} (torch.export program, dynamic batch) and the report"
            f" to {as_json.name} / {as_html.name}"
        )
    save(model, out)
    report.to_json(out / "report.json")
    report.to_html(out / "report.html")
    return f"saved model and report to {out}"
