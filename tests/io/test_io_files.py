"""load_model_file never unpickles code; export writes .pt2 / .onnx."""

import pytest
import torch
from torch import nn

from netsculpt.errors import InputError
from netsculpt.io import export, load_model_file, save


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), path)  # a whole pickled module: code, not weights
    with pytest.raises(InputError, match="contains pickled code; netsculpt never unpickles"):
        load_model_file(path)


def test_text_file_is_not_a_model(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello, I am not a model\n")
    with pytest.raises(InputError, match="not a PyTorch"):
        load_model_file(path)


def test_state_dict_needs_arch_then_loads_with_it(tmp_path):
    from netsculpt.data import SeedMLP

    path = tmp_path / "weights.pth"
    model = SeedMLP(64, 10)
    torch.save(model.state_dict(), path)
    with pytest.raises(InputError, match="state dict.*--arch"):
        load_model_file(path)
    loaded = load_model_file(path, arch="digits-mlp")
    x = torch.rand(2, 64)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(InputError, match="does not fit --arch digits-cnn"):
        load_model_file(path, arch="digits-cnn")


def test_folder_and_missing_paths(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2))
    save(model, tmp_path / "out", source=None)
    with pytest.raises(InputError, match="source"):
        load_model_file(tmp_path / "out")  # no source recorded: needs a fresh instance
    with pytest.raises(InputError, match="no such file"):
        load_model_file(tmp_path / "nothing.pt")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="no manifest.json"):
        load_model_file(tmp_path / "plain")


def test_export_pt2_and_load_back(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).train()
    x = torch.randn(2, 4)
    path = export(model, tmp_path / "m.pt2", x)
    assert model.training  # export ran in eval mode and restored the flag
    torch.testing.assert_close(load_model_file(path)(x), model(x))


def test_export_onnx(tmp_path):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    path = export(nn.Linear(4, 3), tmp_path / "m.onnx", torch.zeros(1, 4))
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] and graph.output


def test_export_refuses_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match=r"\.pt2 or \.onnx"):
        export(nn.Linear(1, 1), tmp_path / "m.tflite", torch.zeros(1, 1))
    assert list(tmp_path.iterdir()) == []


def test_local_hugging_face_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        vocab_size=50,
    )  # fmt: skip
    model = transformers.BertModel(config).eval()
    model.save_pretrained(tmp_path / "hf")
    loaded = load_model_file(tmp_path / "hf").eval()
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(
        loaded(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state
    )
