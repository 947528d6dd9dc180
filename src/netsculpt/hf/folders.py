"""Hugging Face folders in, Hugging Face folders out: what comes along with the weights.

A model loaded from an HF folder is written back as one (:func:`save_hf_folder`): the new
``config.json`` and weights from ``save_pretrained``, then the source's other files — tokenizer,
``generation_config.json``, README — and, for a sentence-transformers folder (``modules.json``),
its module folders: the Pooling config (its ``word_embedding_dimension`` set to the new hidden
size) and a Normalize folder, so ``SentenceTransformer(out)`` loads the same pipeline.
The folder is written under a temporary name and renamed into place.

>>> sentence_transformers_modules(Path("no-such-folder"))
[]
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from netsculpt.core.errors import InputError

MODULES = "modules.json"
POOLING = "sentence_transformers.models.Pooling"
DENSE = "sentence_transformers.models.Dense"
# weight files of any format are never copied next to the new weights (they would be stale)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
_SKIP = ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def is_hf_folder(path: str | os.PathLike) -> bool:
    """A folder with a ``config.json`` and no netsculpt ``manifest.json``."""
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file() and not (p / "manifest.json").is_file()


def sentence_transformers_modules(folder: Path) -> list[dict[str, Any]]:
    """The entries of ``folder/modules.json`` (empty when it is not a sentence-transformers
    folder); refuses a file that is not the list sentence-transformers writes."""
    path = folder / MODULES
    if not path.is_file():
        return []
    try:
        modules = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from exc
    ok = isinstance(modules, list) and all(
        isinstance(m, dict) and isinstance(m.get("path", ""), str) for m in modules
    )
    if not ok:
        raise InputError(f"{path}: not a sentence-transformers module list")
    for m in modules:
        sub = Path(m.get("path", ""))
        if sub.is_absolute() or ".." in sub.parts:
            raise InputError(f"{path}: module path {str(sub)!r} leaves the folder")
    return modules


def check_hf_target(src: Path, dst: str | os.PathLike) -> Path:
    """Refuse an output folder for an HF save before any work: the source itself, a file, a
    folder that is not empty, or a place that cannot be written."""
    out = Path(dst)
    if out.is_symlink():
        raise InputError(f"output {out} is a symbolic link; give a real folder")
    if out.exists() and out.resolve() == src.resolve():
        raise InputError("the output folder must differ from the model folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"output {out} exists and is not an empty folder")
    anc = out if out.is_dir() else out.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(f"output {out}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(f"output {out}: {anc} is read-only for this user")
    return out


def copy_side_files(src: Path, dst: Path, hidden_size: int | None = None) -> list[str]:
    """Copy what is not weights or ``config.json`` from ``src`` into ``dst`` (files ``dst``
    has already are kept): tokenizer, generation config, README, and the module folders of a
    sentence-transformers folder. Returns the names copied."""
    copied = []
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.is_symlink() or p.name in _SKIP or p.name.endswith(".index.json"):
            continue
        if p.name.endswith(WEIGHT_SUFFIXES) or (dst / p.name).exists():
            continue
        shutil.copy2(p, dst / p.name)
        copied.append(p.name)
    for m in sentence_transformers_modules(src):
        copied += _copy_module(src, dst, m, hidden_size)
    return copied


def _copy_module(src: Path, dst: Path, module: dict[str, Any], hidden: int | None) -> list[str]:
    """One sentence-transformers module folder (the Transformer at the root is the model)."""
    rel = module.get("path", "")
    if not rel:
        return []
    kind = module.get("type", "")
    folder, out = src / rel, dst / rel
    if kind == DENSE and hidden is not None:
        cfg = _json(folder / "config.json")
        if cfg.get("in_features") not in (None, hidden):
            raise InputError(
                f"{folder}: a Dense module reads {cfg['in_features']} features, the pruned "
                f"model gives {hidden}; keep the hidden size (--targets heads mlp)"
            )
    out.mkdir(parents=True, exist_ok=True)  # Normalize has no files, only its folder
    copied = [rel + "/"]
    if not folder.is_dir():
        return copied
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.is_symlink():
            shutil.copy2(p, out / p.name)
    if kind == POOLING and hidden is not None and (out / "config.json").is_file():
        cfg = _json(out / "config.json")
        cfg["word_embedding_dimension"] = int(hidden)
        (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return copied


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a JSON object")
    return data


def save_hf_folder(
    model: nn.Module,
    dst: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    tokenizer: Any = None,
) -> Path:
    """Write ``model`` as a Hugging Face folder in ``dst`` (new or empty), with the side files of
    the ``source`` folder it came from and ``tokenizer`` if given; returns ``dst``.

    Refuses (before writing anything) a model whose shapes its config cannot describe
    (:func:`netsculpt.hf.config.hf_compatible`); use ``ns.save`` for those.

    >>> save_hf_folder(model, "out/", source="minilm/")   # doctest: +SKIP
    """
    from netsculpt.hf.config import hf_compatible

    ok, why = hf_compatible(model)
    if not ok:
        raise InputError(
            "this model's structure cannot be described by its Hugging Face config "
            f"({'; '.join(why)}); save it with ns.save(model, dir) and load it with ns.load"
        )
    src = Path(source) if source is not None else None
    out = check_hf_target(src if src is not None else Path(dst), dst)
    if src is not None:
        sentence_transformers_modules(src)  # a bad modules.json is refused before writing
    hidden = getattr(model.config, "hidden_size", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if src is not None:
            copy_side_files(src, tmp, hidden if isinstance(hidden, int) else None)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
