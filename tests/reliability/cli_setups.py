"""What the cases of ``cli_cases.py`` set up in their temp folder before they run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .helpers import (
    edit_manifest,
    evil_pickle,
    evil_pt2_pickled_weight,
    evil_pt2_sample_inputs,
    hf_bin_folder,
    readonly_dir,
    saved_folder,
)

MARKER = "PWNED"  # created by the hostile pickles if they ever run


def _file(rel: str, text: str = "hello\n") -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        p = t / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    return setup


def _dangling(t: Path) -> None:
    (t / "link").symlink_to(t / "nowhere")


def _plain_dir(t: Path) -> None:
    (t / "out").mkdir()
    (t / "out" / "mine.txt").write_text("mine")


def _ns_folder_with_user_files(t: Path) -> None:
    saved_folder(t / "out")
    (t / "out" / "notes.txt").write_text("my notes")
    (t / "out" / "sub").mkdir()
    (t / "out" / "sub" / "data.csv").write_text("1,2\n")


def _saved(fn=None) -> Callable[[Path], None]:
    def setup(t: Path) -> None:
        saved_folder(t / "m")
        if fn is not None:
            edit_manifest(t / "m", fn)

    return setup


def _attr(path: str, name: str, value) -> Callable[[dict], None]:
    def fn(m: dict) -> None:
        m["attrs"].setdefault(path, {})[name] = value

    return fn


def _set(key: str, value) -> Callable[[dict], None]:
    def fn(m: dict) -> None:
        m[key] = value

    return fn


def _shape(name: str, value) -> Callable[[dict], None]:
    def fn(m: dict) -> None:
        m["shapes"][name] = value

    return fn


def _module(spec: dict) -> Callable[[dict], None]:
    def fn(m: dict) -> None:
        m["modules"].append(spec)

    return fn


LINEAR = "torch.nn.modules.linear.Linear"
SEQ = "torch.nn.modules.container.Sequential"
IDENT = "torch.nn.modules.linear.Identity"


def _bad_json(t: Path) -> None:
    saved_folder(t / "m")
    (t / "m" / "manifest.json").write_text('{"format": "netsculpt/1", "shapes": ')


def _weights_symlink(t: Path) -> None:
    saved_folder(t / "m")
    saved_folder(t / "elsewhere")
    (t / "m" / "model.safetensors").unlink()
    (t / "m" / "model.safetensors").symlink_to(t / "elsewhere" / "model.safetensors")


def _corrupt_weights(t: Path) -> None:
    saved_folder(t / "m")
    (t / "m" / "model.safetensors").write_bytes(b"\x00" * 64)


def _interrupted(t: Path) -> None:
    saved_folder(t / f".m.old-{2**22 + 7}")  # a dead pid: the save was killed mid-swap


def _evil_pt2(t: Path) -> None:
    evil_pt2_sample_inputs(t / "evil.pt2", t / MARKER)


def _evil_weight_pt2(t: Path) -> None:
    evil_pt2_pickled_weight(t / "evil.pt2", t / MARKER)


def _evil_pt(t: Path) -> None:
    (t / "evil.pt").write_bytes(evil_pickle(t / MARKER))


def _hf_bin(t: Path) -> None:
    hf_bin_folder(t / "hf")


def _hf_bin_code(t: Path) -> None:
    hf_bin_folder(t / "hf", with_code=t / MARKER)


def _recipe(t: Path) -> None:
    (t / "r.yaml").write_text("model: digits-mlp\nsteps:\n  - prune: {amount: 0.5}\n")


def _bad_recipe(t: Path) -> None:
    (t / "r.yaml").write_text("model: digits-mlp\nsteps: [\n")


def _readonly_out(t: Path) -> list[str]:
    ro = readonly_dir(t)
    return [] if ro is None else ["-o", str(ro / "out")]
