"""save → load round trips into fresh instances, edits recorded by ops, atomic writes."""

import json

import pytest
import torch
from torch import nn

from netsculpt.errors import InputError
from netsculpt.io import load, record_module, save
from netsculpt.io.manifest import init_kwargs


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)
        self.norm = nn.LayerNorm(3)

    def forward(self, x):
        return self.norm(self.fc2(self.act(self.fc1(x))))


def _shrink_hidden(net: Net, keep: torch.Tensor) -> None:
    """What structured pruning does to fc1's outputs and fc2's inputs."""
    net.fc1.weight = nn.Parameter(net.fc1.weight[keep].detach().clone())
    net.fc1.bias = nn.Parameter(net.fc1.bias[keep].detach().clone())
    net.fc1.out_features = len(keep)
    net.fc2.weight = nn.Parameter(net.fc2.weight[:, keep].detach().clone())
    net.fc2.in_features = len(keep)


def test_shrunk_linear_reloads_into_fresh_instance(tmp_path):
    torch.manual_seed(0)
    net = Net()
    _shrink_hidden(net, torch.tensor([0, 2, 5]))
    x = torch.randn(4, 6)
    save(net, tmp_path / "out")
    loaded = load(tmp_path / "out", Net())
    assert loaded.fc1.out_features == 3 and loaded.fc2.in_features == 3
    assert loaded.fc1.weight.shape == (3, 6) and isinstance(loaded.fc1.weight, nn.Parameter)
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_identity_and_insertion_recorded_by_record_module(tmp_path):
    torch.manual_seed(0)
    net = Net()
    record_module(net, "act", nn.Identity())
    # insertion keeps the original fc2 object inside a new Sequential
    record_module(net, "fc2", nn.Sequential(net.fc2, nn.Linear(3, 3)))
    x = torch.randn(2, 6)
    save(net, tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert [e["path"] for e in manifest["modules"]] == ["act", "fc2"]
    assert manifest["modules"][1]["children"][0][1] == {"ref": "fc2"}
    loaded = load(tmp_path / "m", Net())
    assert isinstance(loaded.act, nn.Identity)
    assert isinstance(loaded.fc2, nn.Sequential) and isinstance(loaded.fc2[0], nn.Linear)
    torch.testing.assert_close(loaded(x), net(x))


def test_later_edit_at_same_path_overrides():
    net = Net()
    record_module(net, "act", nn.GELU())
    record_module(net, "act", nn.Identity())
    assert [e["type"].rsplit(".", 1)[1] for e in net._netsculpt_edits] == ["Identity"]


def test_record_module_refuses_unknown_path_and_foreign_class():
    net = Net()
    with pytest.raises(InputError, match="nope"):
        record_module(net, "nope", nn.Identity())
    with pytest.raises(InputError, match="only torch.nn and netsculpt"):
        record_module(net, "act", Net())


def test_init_kwargs_of_conv_roundtrip():
    conv = nn.Conv2d(4, 8, (3, 1), stride=2, padding=1, groups=2, bias=False)
    kwargs = init_kwargs(conv)
    assert kwargs["groups"] == 2 and kwargs["bias"] is False and kwargs["kernel_size"] == [3, 1]


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(self.emb(idx))


def test_tied_weights_stored_once_and_retied(tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = Tied()
    model.emb.weight = nn.Parameter(model.emb.weight[:15].detach().clone())
    model.head.weight = model.emb.weight
    model.emb.num_embeddings, model.head.out_features = 15, 15
    save(model, tmp_path / "t")
    assert set(load_file(str(tmp_path / "t" / "model.safetensors"))) == {"emb.weight"}
    loaded = load(tmp_path / "t", Tied())
    assert loaded.head.weight is loaded.emb.weight
    idx = torch.tensor([[1, 4, 14]])
    torch.testing.assert_close(loaded(idx), model(idx))


def test_masks_round_trip(tmp_path):
    net = Net()
    mask = torch.rand(8, 6) > 0.5
    net._netsculpt_masks = {"fc1.weight": mask}
    save(net, tmp_path / "m")
    loaded = load(tmp_path / "m", Net())
    assert torch.equal(loaded._netsculpt_masks["fc1.weight"], mask)


def test_builtin_source_rebuilds_without_model(tmp_path):
    from netsculpt.io import resolve_model

    model, x, _ = resolve_model("digits-cnn")
    model.eval()
    record_module(model, "block", nn.Identity())
    save(model, tmp_path / "c")
    loaded = load(tmp_path / "c").eval()
    assert type(loaded).__name__ == "DigitsCNN" and isinstance(loaded.block, nn.Identity)
    torch.testing.assert_close(loaded(x), model(x))


def test_load_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="manifest.json is missing"):
        load(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a netsculpt manifest"):
        load(tmp_path / "bad")
    save(Net(), tmp_path / "ok")
    with pytest.raises(InputError, match="model.safetensors: key 'fc1.weight'"):
        load(tmp_path / "ok", nn.Sequential(nn.Linear(6, 8)))


def test_failed_save_leaves_nothing_half_written(tmp_path, monkeypatch):
    import safetensors.torch

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save(Net(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_keeps_old_folder_when_save_fails(tmp_path, monkeypatch):
    save(Net(), tmp_path / "out")
    before = (tmp_path / "out" / "manifest.json").read_text()
    import safetensors.torch

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save(Net(), tmp_path / "out")
    assert (tmp_path / "out" / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_save_refuses_foreign_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        save(Net(), tmp_path)


def test_hf_model_rebuilds_from_saved_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=100,
    )  # fmt: skip
    model = transformers.BertModel(config).eval()
    ffn_in = model.encoder.layer[0].intermediate.dense
    ffn_out = model.encoder.layer[0].output.dense
    keep = torch.arange(40)  # a non-uniform width no config can describe
    ffn_in.weight = nn.Parameter(ffn_in.weight[keep].detach().clone())
    ffn_in.bias = nn.Parameter(ffn_in.bias[keep].detach().clone())
    ffn_in.out_features = 40
    ffn_out.weight = nn.Parameter(ffn_out.weight[:, keep].detach().clone())
    ffn_out.in_features = 40
    ids = torch.randint(0, 100, (1, 8))
    save(model, tmp_path / "hf")
    loaded = load(tmp_path / "hf").eval()
    assert type(loaded) is transformers.BertModel
    torch.testing.assert_close(
        loaded(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state
    )


def test_module_edited_in_place_is_recorded_by_type_not_as_self_reference(tmp_path):
    net = Net()
    net.act.__class__ = nn.GELU  # an in-place class swap, as surgery does for attention
    net.act.approximate = "tanh"
    spec = record_module(net, "act", net.act)
    assert "ref" not in spec and spec["type"].endswith("GELU")
    save(net, tmp_path / "g")
    loaded = load(tmp_path / "g", Net())
    assert isinstance(loaded.act, nn.GELU) and loaded.act.approximate == "tanh"


def test_bias_added_by_surgery_is_created_on_load(tmp_path):
    net = nn.Sequential(nn.Linear(3, 2, bias=False))
    net[0].bias = nn.Parameter(torch.randn(2))  # e.g. a folded BatchNorm shift
    save(net, tmp_path / "b")
    loaded = load(tmp_path / "b", nn.Sequential(nn.Linear(3, 2, bias=False)))
    x = torch.randn(1, 3)
    torch.testing.assert_close(loaded(x), net(x))
