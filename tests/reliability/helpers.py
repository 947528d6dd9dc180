"""Helpers for the reliability suite: crafted hostile files and a file-tree snapshot.

Everything here builds files with public torch / safetensors calls only, so the same cases can
be run against any netsculpt version.
"""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn


class Evil:
    """Unpickling this calls ``open(marker, "w")``: proof that a loader ran embedded code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickle(marker: Path) -> bytes:
    """A ``torch.save`` payload whose unpickling creates ``marker``."""
    buf = io.BytesIO()
    torch.save({"x": Evil(marker)}, buf)
    return buf.getvalue()


def tree_state(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` (links not followed) with its type, size, mode and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            out[str(p.relative_to(root))] = (
                stat.S_IFMT(st.st_mode),
                st.st_size,
                stat.S_IMODE(st.st_mode),
                st.st_mtime_ns,
            )
    st = root.lstat()
    out["."] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def export_small(path: Path) -> tuple[nn.Module, torch.Tensor]:
    """A genuine ``torch.export.save``d program of a tiny MLP."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    x = torch.randn(2, 4)
    torch.export.save(torch.export.export(model, (x,)), str(path))
    return model, x


def rewrite_zip(path: Path, edit) -> None:
    """Rewrite a zip archive member by member: ``edit(name, data) -> [(name, data), ...]``."""
    with zipfile.ZipFile(path) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            for new_name, new_data in edit(name, data):
                z.writestr(new_name, new_data)


def evil_pt2_sample_inputs(path: Path, marker: Path) -> None:
    """A ``.pt2`` whose pickled sample inputs run code when ``torch.export.load`` reads them."""
    export_small(path)
    payload = evil_pickle(marker)
    rewrite_zip(
        path,
        lambda n, d: [(n, payload if n.endswith("data/sample_inputs/model.pt") else d)],
    )


def evil_pt2_pickled_weight(path: Path, marker: Path) -> None:
    """A ``.pt2`` whose first weight is marked ``use_pickle`` and holds a code-running pickle."""
    export_small(path)

    def edit(name, data):
        if name.endswith("data/weights/model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            first["path_name"] = "weight_evil"
            return [(name, json.dumps(config).encode())]
        if name.endswith("data/weights/weight_0"):
            return [(name, data), (name.replace("weight_0", "weight_evil"), evil_pickle(marker))]
        return [(name, data)]

    rewrite_zip(path, edit)


def hf_bin_folder(path: Path, *, with_code: Path | None = None) -> Path:
    """A Hugging Face folder whose only weights are a pickled ``pytorch_model.bin``."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        vocab_size=50,
    )  # fmt: skip
    model = transformers.BertModel(config)
    path.mkdir(parents=True)
    config.architectures = ["BertModel"]
    config.to_json_file(str(path / "config.json"))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if with_code is not None:
        state["evil"] = Evil(with_code)
    torch.save(state, path / "pytorch_model.bin")
    return path


def saved_folder(path: Path, name: str = "digits-mlp") -> Path:
    """A netsculpt save folder of a built-in model."""
    import netsculpt as ns
    from netsculpt.data.models import build_builtin

    torch.manual_seed(0)
    ns.save(build_builtin(name), path)
    return path


def edit_manifest(folder: Path, fn) -> Path:
    """Apply ``fn(manifest_dict)`` (in place, or returning a replacement) to a save's manifest."""
    p = folder / "manifest.json"
    manifest = json.loads(p.read_text())
    out = fn(manifest)
    p.write_text(json.dumps(manifest if out is None else out))
    return folder


def readonly_dir(tmp_path: Path) -> Path | None:
    """A folder this process cannot write into (a 0555 folder, or /proc/self for root)."""
    if os.geteuid() != 0:
        d = tmp_path / "readonly"
        d.mkdir()
        d.chmod(0o555)
        return d
    proc = Path("/proc/self")
    return proc if proc.is_dir() and not os.access(proc, os.W_OK) else None
