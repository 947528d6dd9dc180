"""Read ``.pt2`` programs without running the pickles that may be inside them.

``torch.export.load`` unpickles parts of the archive: the sample inputs (falling back to a full
``torch.load`` when the restricted one fails), weights and constants marked ``use_pickle``,
"opaque" constants (plain ``pickle.loads``), and it loads compiled AOTInductor libraries. A
crafted ``.pt2`` can therefore run code on load. :func:`load_program` reads the archive into
memory, checks every member that would be unpickled with ``torch.load(weights_only=True)``,
refuses the ones that cannot be read that way and those that are code by nature, and only then
hands the very same bytes to ``torch.export.load``.

>>> ep = load_program("model.pt2")        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError, NetsculptError, UnsafeFileError

_CODE = ("/data/aotinductor/",)  # compiled model libraries: native code
_CODE_SUFFIXES = (".so", ".dll", ".dylib", ".pyd")
_OBJECTS = ("custom_obj_", "opaque_obj_")  # script / opaque objects: always unpickled
_REMEDY = (
    "netsculpt never unpickles code; re-export the model with torch.export.save, or load it "
    "with torch.export.load yourself if you trust its author"
)
_env_lock = threading.Lock()


def _pickled_members(z: zipfile.ZipFile, names: list[str]) -> list[str]:
    """Members ``torch.export.load`` would unpickle (sample inputs, legacy files, and payloads
    that their weights / constants config marks ``use_pickle``)."""
    out = [n for n in names if n.endswith(".pt") or "/data/sample_inputs/" in f"/{n}"]
    for cfg in names:
        if not cfg.endswith(("_weights_config.json", "_constants_config.json")):
            continue
        try:
            entries = json.loads(z.read(cfg)).get("config", {})
        except (ValueError, AttributeError):
            continue  # torch.export.load refuses a config it cannot parse
        folder = cfg.rpartition("/")[0]
        for meta in entries.values() if isinstance(entries, dict) else ():
            if isinstance(meta, dict) and meta.get("use_pickle"):
                out.append(f"{folder}/{meta.get('path_name')}")
    return list(dict.fromkeys(out))


def check_program(data: bytes, where: Path) -> None:
    """Raise unless every member of the ``.pt2`` archive ``data`` is safe to hand to
    ``torch.export.load``."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"{where}: not a torch.export program (not a zip archive)") from exc
    for name in names:
        if any(c in f"/{name}" for c in _CODE) or name.endswith(_CODE_SUFFIXES):
            raise UnsafeFileError(
                f"{where}: member {name} is compiled code (AOTInductor); netsculpt only loads "
                "plain torch.export programs"
            )
        if name.rpartition("/")[2].startswith(_OBJECTS):
            raise UnsafeFileError(f"{where}: member {name} is a pickled object; {_REMEDY}")
    for name in _pickled_members(z, names):
        if name not in names:
            continue  # torch.export.load fails on the missing member by itself
        try:
            torch.load(io.BytesIO(z.read(name)), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure means "not plain tensors"
            raise UnsafeFileError(
                f"{where}: member {name} is a pickle that weights_only loading cannot read "
                f"(it may run code); {_REMEDY}"
            ) from exc


@contextlib.contextmanager
def _restricted_loading() -> Iterator[None]:
    """Every ``torch.load`` inside runs with ``weights_only=True`` (belt and braces: the members
    were checked already); torch's own loader logging stays quiet."""
    quiet = [logging.getLogger(n) for n in ("torch.export", "torch._export")]
    levels = [lg.level for lg in quiet]
    with _env_lock:
        saved = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
        saved_no = os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(quiet, levels):
                lg.setLevel(level)
            if saved is None:
                os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
            else:
                os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = saved
            if saved_no is not None:
                os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = saved_no


def load_program(path: str | os.PathLike) -> torch.export.ExportedProgram:
    """``torch.export.load(path)``, refusing archives whose loading could run code.

    Raises :class:`~netsculpt.core.errors.UnsafeFileError` (one line, naming the member) for pickles
    that ``weights_only`` cannot read and for compiled code; InputError for anything else that
    is not a readable program.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc.strerror})") from exc
    check_program(data, p)
    try:
        with _restricted_loading():
            return torch.export.load(io.BytesIO(data))
    except NetsculptError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types on damaged archives
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        detail = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        raise InputError(f"{p}: not a torch.export program ({detail})") from exc


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
