"""Loading never runs code: crafted .pt2 archives, pickled Hugging Face weights, .pt pickles."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import netsculpt
from netsculpt.errors import InputError, UnsafeFileError
from netsculpt.io import load_model_file, resolve_model

from .helpers import (
    evil_pickle,
    evil_pt2_pickled_weight,
    evil_pt2_sample_inputs,
    export_small,
    hf_bin_folder,
    rewrite_zip,
    tree_state,
)


def _refused(path: Path, marker: Path, match: str) -> None:
    with pytest.raises(UnsafeFileError, match=match) as info:
        load_model_file(path)
    assert len(str(info.value).splitlines()) == 1
    assert not marker.exists(), "the archive's pickle ran"
    with pytest.raises(UnsafeFileError):
        resolve_model(str(path))  # the CLI's way in
    assert not marker.exists()


def test_pt2_whose_sample_inputs_run_code_is_refused(tmp_path):
    evil_pt2_sample_inputs(tmp_path / "evil.pt2", tmp_path / "PWNED")
    _refused(tmp_path / "evil.pt2", tmp_path / "PWNED", r"sample_inputs/model\.pt is a pickle")


def test_pt2_with_a_use_pickle_weight_that_runs_code_is_refused(tmp_path):
    evil_pt2_pickled_weight(tmp_path / "evil.pt2", tmp_path / "PWNED")
    _refused(tmp_path / "evil.pt2", tmp_path / "PWNED", r"weights/weight_evil is a pickle")


@pytest.mark.parametrize(
    "member, match",
    [
        ("data/aotinductor/model/model.so", "compiled code"),
        ("data/constants/opaque_obj_0", "pickled object"),
        ("data/constants/custom_obj_0", "pickled object"),
    ],
)
def test_pt2_members_that_are_code_by_nature_are_refused(tmp_path, member, match):
    path = tmp_path / "m.pt2"
    export_small(path)
    root = zipfile.ZipFile(path).namelist()[0].split("/")[0]
    payload = evil_pickle(tmp_path / "PWNED")
    rewrite_zip(
        path,
        lambda n, d: (
            [(n, d)] + ([(f"{root}/{member}", payload)] if n.endswith("byteorder") else [])
        ),
    )
    _refused(path, tmp_path / "PWNED", match)


def test_a_genuine_pt2_still_loads_and_keeps_its_example_inputs(tmp_path):
    model, x = export_small(tmp_path / "m.pt2")
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    torch.testing.assert_close(load_model_file(tmp_path / "m.pt2")(x), model(x))
    loaded, example, _ = resolve_model(str(tmp_path / "m.pt2"))
    torch.testing.assert_close(loaded(*example[0]), model(x))
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") == before  # nothing left behind


def test_a_zip_that_is_no_program_and_plain_text_are_input_errors(tmp_path):
    (tmp_path / "a.pt2").write_text("not a zip\n")
    with pytest.raises(InputError, match="not a zip archive"):
        load_model_file(tmp_path / "a.pt2")
    with zipfile.ZipFile(tmp_path / "b.pt2", "w") as z:
        z.writestr("b/readme.txt", "hello")
    with pytest.raises(InputError, match="not a torch.export program"):
        load_model_file(tmp_path / "b.pt2")


def test_hf_folder_with_only_a_pickled_bin_is_refused_naming_the_file(tmp_path):
    folder = hf_bin_folder(tmp_path / "hf", with_code=tmp_path / "PWNED")
    before = tree_state(tmp_path)
    with pytest.raises(UnsafeFileError) as info:
        load_model_file(folder)
    msg = str(info.value)
    assert "pytorch_model.bin" in msg and "safetensors" in msg and len(msg.splitlines()) == 1
    assert not (tmp_path / "PWNED").exists() and tree_state(tmp_path) == before


def test_hf_folder_with_safetensors_never_reads_the_bin_next_to_it(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        vocab_size=50,
    )  # fmt: skip
    model = transformers.BertModel(config).eval()
    model.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "pytorch_model.bin").write_bytes(evil_pickle(tmp_path / "PWNED"))
    loaded = load_model_file(tmp_path / "hf").eval()
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(input_ids=ids)[0], model(input_ids=ids)[0])
    assert not (tmp_path / "PWNED").exists()


def _cli(*argv: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    src = str(Path(netsculpt.__file__).parents[1])
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    full_env.pop("NETSCULPT_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "netsculpt.cli", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**full_env, **(env or {})},
        timeout=240,
    )


def test_real_process_crafted_pt2_is_one_line_exit_2_and_runs_nothing(tmp_path):
    evil_pt2_sample_inputs(tmp_path / "evil.pt2", tmp_path / "PWNED")
    before = tree_state(tmp_path)
    r = _cli(
        "prune",
        str(tmp_path / "evil.pt2"),
        "--amount",
        "0.5",
        "-o",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("netsculpt prune: error: ") and "evil.pt2" in r.stderr
    assert not (tmp_path / "PWNED").exists() and tree_state(tmp_path) == before
