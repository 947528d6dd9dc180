"""Outputs: nothing the user wrote is deleted, nothing is half-written, a killed save is
recovered, permissions follow the umask, bad targets are refused before any work."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import netsculpt as ns
from netsculpt.cli import main
from netsculpt.data.models import build_builtin
from netsculpt.errors import InputError
from netsculpt.io.outputs import write_text_atomic

from .helpers import saved_folder, tree_state

DEAD_PID = 2**22 + 7  # above Linux's pid_max: never a live process


def _model(name="digits-mlp", seed=0):
    model = build_builtin(name)  # the same initial weights for a name: re-draw them by seed
    torch.manual_seed(seed)
    for mod in model.modules():
        if hasattr(mod, "reset_parameters"):
            mod.reset_parameters()
    return model


def test_save_onto_a_netsculpt_folder_with_user_files_refuses_and_keeps_them(tmp_path):
    out = saved_folder(tmp_path / "out")
    (out / "notes.txt").write_text("my notes")
    (out / "sub").mkdir()
    (out / "sub" / "data.csv").write_text("1,2\n")
    before = tree_state(tmp_path)
    with pytest.raises(InputError, match=r"did not write \(notes\.txt, sub/\)"):
        ns.save(_model(seed=1), out)
    assert tree_state(tmp_path) == before


def test_save_replaces_a_folder_of_its_own_files_and_recipe_reports(tmp_path):
    out = saved_folder(tmp_path / "out")
    report = ns.Report(op="prune")
    report.to_json(out / "report.json")
    report.to_html(out / "report.html")
    new = _model(seed=1)
    ns.save(new, out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.safetensors"]
    x = torch.rand(2, 64)
    torch.testing.assert_close(ns.load(out)(x), new(x))
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no .out.old / .out.tmp left


def test_a_report_json_netsculpt_did_not_write_is_the_users(tmp_path):
    out = saved_folder(tmp_path / "out")
    (out / "report.json").write_text(json.dumps({"mine": True}))
    with pytest.raises(InputError, match="report.json"):
        ns.save(_model(), out)
    assert json.loads((out / "report.json").read_text()) == {"mine": True}


CRASH = """
import os, pathlib, sys
import torch
import netsculpt as ns
from netsculpt.data.models import build_builtin
target = pathlib.Path(sys.argv[1])
real = pathlib.Path.rename
def rename(self, dst):
    out = real(self, dst)
    if pathlib.Path(self) == target:
        os._exit(9)  # killed between the two renames of the swap
    return out
pathlib.Path.rename = rename
torch.manual_seed(1)
ns.save(build_builtin("digits-mlp"), target)
"""


def test_a_save_killed_between_the_two_renames_is_named_then_recovered(tmp_path):
    out = saved_folder(tmp_path / "out")  # the previous save, seed 0
    src = str(Path(ns.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", CRASH, str(out)], env=env, timeout=240)
    assert r.returncode == 9
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "out" not in names and any(n.startswith(".out.old-") for n in names), names
    assert any(n.startswith(".out.tmp-") for n in names), names
    old = next(p for p in tmp_path.iterdir() if p.name.startswith(".out.old-"))
    with pytest.raises(InputError, match=rf"previous copy in .*{old.name}"):
        ns.load(out)
    # the CLI says the same in one line
    assert main(["analyze", str(out)]) == 2
    x = torch.rand(2, 64)
    expected_old = ns.load(old)(x)
    new = _model(seed=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ns.save(new, out)
    assert any("put back" in str(w.message) for w in caught)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # old copy used, temp folder gone
    torch.testing.assert_close(ns.load(out)(x), new(x))
    assert not torch.allclose(expected_old, new(x))


def test_recovery_restores_the_previous_copy_when_the_new_save_is_refused(tmp_path):
    saved_folder(tmp_path / f".out.old-{DEAD_PID}")
    (tmp_path / f".out.old-{DEAD_PID}" / "notes.txt").write_text("kept")
    with pytest.raises(InputError, match="notes.txt"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ns.save(_model(), tmp_path / "out")  # put back, then refused: the user's file is there
    assert (tmp_path / "out" / "notes.txt").read_text() == "kept"


def test_stale_temp_folders_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    stale = tmp_path / f".out.tmp-{DEAD_PID}-abcd"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    foreign = tmp_path / f".out.tmp-{DEAD_PID + 1}-efgh"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("not netsculpt's")
    live = tmp_path / ".out.tmp-1-ijkl"  # pid 1 is alive: maybe another save in progress
    live.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ns.save(_model(), tmp_path / "out")
    assert not stale.exists()
    assert (foreign / "mine.txt").exists() and any(foreign.name in str(w.message) for w in caught)
    assert live.exists()


def test_reports_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text('{"old": true}')

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_text_atomic(path, '{"new": true}')
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left
    ns.Report(op="prune").to_json(path)
    assert json.loads(path.read_text())["op"] == "prune"


def test_cli_disk_full_is_one_line_exit_2_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import safetensors.torch

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    assert main(["prune", "digits-mlp", "--amount", "0.5", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_report_is_refused_before_the_model_is_saved(tmp_path, capsys):
    if os.geteuid() == 0:
        ro = Path("/proc/self")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
    argv = ["prune", "digits-mlp", "--amount", "0.5", "-o", str(tmp_path / "out")]
    assert main([*argv, "--report", str(ro / "r.json")]) == 2
    assert "read-only" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("umask, dmode, fmode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_saved_files_follow_the_umask(tmp_path, umask, dmode, fmode):
    old = os.umask(umask)
    try:
        out = ns.save(_model(), tmp_path / "deep" / "out")
        ns.Report(op="prune").to_json(tmp_path / "deep" / "r.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == dmode
    assert stat.S_IMODE((tmp_path / "deep").stat().st_mode) == dmode
    for f in (out / "manifest.json", out / "model.safetensors", tmp_path / "deep" / "r.json"):
        assert stat.S_IMODE(f.stat().st_mode) == fmode, f


@pytest.mark.parametrize("kind", ["dangling", "link-to-folder", "under-file", "file"])
def test_bad_save_targets_are_refused_by_the_library_too(tmp_path, kind):
    target = tmp_path / "out"
    if kind == "dangling":
        target.symlink_to(tmp_path / "nowhere")
    elif kind == "link-to-folder":
        (tmp_path / "real").mkdir()
        target.symlink_to(tmp_path / "real")
    elif kind == "under-file":
        (tmp_path / "f").write_text("x")
        target = tmp_path / "f" / "out"
    else:
        target.write_text("x")
    before = tree_state(tmp_path)
    with pytest.raises(InputError):
        ns.save(_model(), target)
    assert tree_state(tmp_path) == before
