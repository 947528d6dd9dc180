"""Hand-edited manifests are checked field by field before anything is built; a refused load
leaves the caller's model and the folder as they were; weights behind a symlink that leaves
the folder are refused."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.errors import ManifestError, UnsafeFileError
from netsculpt.io import record_module

from .helpers import edit_manifest, tree_state
from .test_rel_restore import assert_same, model_state


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    net = Net()
    record_module(net, "act", nn.Sequential(nn.ReLU(), nn.Identity()))
    ns.save(net, tmp_path / "m")
    return tmp_path / "m"


LINEAR = "torch.nn.modules.linear.Linear"


def _attr(path, name, value):
    return lambda m: m["attrs"].setdefault(path, {}).__setitem__(name, value)


def _spec(spec):
    return lambda m: m["modules"].append(spec)


CASES = {
    "modules-not-a-list": (lambda m: m.__setitem__("modules", {}), "modules"),
    "shapes-not-a-dict": (lambda m: m.__setitem__("shapes", []), "shapes"),
    "unknown-top-level-key": (lambda m: m.__setitem__("code", "print(1)"), "code"),
    "negative-size": (_attr("fc1", "in_features", -7), "in_features"),
    "bool-size": (_attr("fc1", "out_features", True), "out_features"),
    "huge-size-attr": (_attr("fc1", "in_features", 2**40), "in_features"),
    "size-disagrees-with-weight": (_attr("fc1", "in_features", 7), "in_features"),
    "method-as-attr": (_attr("fc1", "forward", 3), "forward"),
    "private-attr": (_attr("fc1", "_parameters", 3), "_parameters"),
    "attr-of-no-module": (_attr("fc9", "in_features", 3), "fc9"),
    "new-child-evil": (_spec({"path": "evil", "type": LINEAR, "kwargs": {}}), "evil"),
    "dunder-path": (_spec({"path": "__class__", "type": LINEAR, "kwargs": {}}), "__class__"),
    "dunder-child": (
        _spec(
            {
                "path": "act",
                "type": "torch.nn.modules.container.Sequential",
                "kwargs": {},
                "children": [["__dict__", {"ref": "fc1"}]],
            }
        ),
        "__dict__",
    ),  # fmt: skip
    "ref-to-nothing": (_spec({"path": "act", "ref": "fc1.nope"}), "fc1.nope"),
    "two-kinds": (_spec({"path": "act", "ref": "fc1", "type": LINEAR}), "exactly one"),
    "foreign-class": (_spec({"path": "act", "type": "subprocess.Popen"}), "subprocess.Popen"),
    "torch-non-module": (_spec({"path": "act", "type": "torch.nn.functional.relu"}), "relu"),
    "kwargs-nan": (
        _spec(
            {
                "path": "act",
                "type": "torch.nn.modules.activation.LeakyReLU",
                "kwargs": {"negative_slope": float("nan")},
            }
        ),
        "negative_slope",
    ),  # fmt: skip
    "kwargs-huge": (
        _spec(
            {
                "path": "act",
                "type": LINEAR,
                "kwargs": {"in_features": 100_000, "out_features": 100_000},
            }
        ),
        "would build",
    ),  # fmt: skip
    "shape-of-no-tensor": (lambda m: m["shapes"].__setitem__("fc3.weight", [2, 2]), "fc3.weight"),
    "shape-not-the-files": (lambda m: m["shapes"].__setitem__("fc1.weight", [9, 6]), "fc1.weight"),
    "shape-float": (lambda m: m["shapes"].__setitem__("fc1.weight", [8.0, 6]), "fc1.weight"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hand_edited_manifest_is_refused_in_one_line_naming_the_field(folder, name):
    fn, field = CASES[name]
    edit_manifest(folder, fn)
    before_fs = tree_state(folder.parent)
    fresh = Net()
    before = model_state(fresh)
    with pytest.raises(ManifestError) as info:
        ns.load(folder, fresh)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and field in msg and "manifest.json" in msg, msg
    assert_same(before, model_state(fresh))  # the caller's model was not touched
    assert tree_state(folder.parent) == before_fs


def test_the_untouched_manifest_still_loads(folder):
    loaded = ns.load(folder, Net())
    assert isinstance(loaded.act, nn.Sequential)
    assert [e["path"] for e in loaded._netsculpt_edits] == ["act"]


def test_manifest_sizes_cannot_add_modules_or_attributes(folder):
    """What the old loader accepted silently: an extra child and a negative width."""
    edit_manifest(folder, _spec({"path": "evil", "type": LINEAR, "kwargs": {"in_features": 2,
                                                                            "out_features": 2}}))  # fmt: skip
    with pytest.raises(ManifestError, match="'evil' names no module"):
        ns.load(folder, Net())
    assert not hasattr(Net(), "evil")


def test_weights_behind_a_symlink_out_of_the_folder_are_refused(tmp_path, folder):
    outside = tmp_path / "outside.safetensors"
    (folder / "model.safetensors").rename(outside)
    (folder / "model.safetensors").symlink_to(outside)
    with pytest.raises(UnsafeFileError, match="outside"):
        ns.load(folder, Net())


def test_a_symlink_inside_the_folder_is_fine(folder):
    (folder / "model.safetensors").rename(folder / "weights.bin.safetensors")
    (folder / "model.safetensors").symlink_to("weights.bin.safetensors")
    ns.load(folder, Net())


def test_manifest_behind_a_symlink_out_of_the_folder_is_refused(tmp_path, folder):
    (tmp_path / "other.json").write_text((folder / "manifest.json").read_text())
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").symlink_to(tmp_path / "other.json")
    with pytest.raises(UnsafeFileError, match="manifest.json"):
        ns.load(folder, Net())


def test_hf_config_asking_for_a_giant_model_is_refused_before_it_is_built(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        vocab_size=50,
    )  # fmt: skip
    ns.save(transformers.BertModel(config), tmp_path / "hf")
    ok = ns.load(tmp_path / "hf")  # the untouched save loads
    assert ok.config.hidden_size == 16
    manifest = json.loads((tmp_path / "hf" / "manifest.json").read_text())
    manifest["config"]["vocab_size"] = 10**9
    (tmp_path / "hf" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="config"):
        ns.load(tmp_path / "hf")
