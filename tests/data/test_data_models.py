"""Built-in models and resolve_model."""

import pytest
import torch

from netsculpt.data import BUILTINS, train_quick
from netsculpt.errors import InputError
from netsculpt.io import resolve_model
from netsculpt.measure import count_params


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtins_run_and_export(name):
    model, x, source = resolve_model(name)
    assert source == f"builtin:{name}" == model._netsculpt_source
    model.eval()
    ep = torch.export.export(model, (x,), strict=False)
    torch.testing.assert_close(ep.module()(x), model(x))


def test_builtin_shapes():
    cnn, _, _ = resolve_model("digits-cnn")
    assert 10_000 <= count_params(cnn) <= 30_000
    mlp, x, _ = resolve_model("digits-mlp")
    assert [m.out_features for m in mlp if hasattr(m, "out_features")] == [64, 32, 10]
    seed, x, _ = resolve_model("seed-mlp")
    assert x.shape == (1, 10) and seed(x).shape == (1, 1)
    deep, _, _ = resolve_model("mnist1d-mlp")
    assert len(deep.blocks) >= 12
    tt, x, _ = resolve_model("tiny-transformer")
    assert tt.blocks[0].attn.num_heads == 4 and tt(x).shape == (1, 64, 256)


def test_resolve_torchvision_resnet18():
    model, x, source = resolve_model("resnet18")
    assert source == "torchvision:resnet18" and x.shape == (1, 3, 224, 224)
    assert type(model).__name__ == "ResNet"


def test_resolve_saved_folder_returns_example_inputs(tmp_path):
    from netsculpt.io import save

    model, _, _ = resolve_model("digits-mlp")
    save(model, tmp_path / "m")
    loaded, x, source = resolve_model(str(tmp_path / "m"))
    assert source == "builtin:digits-mlp" and loaded(x).shape == (1, 10)


def test_unknown_name_lists_close_matches():
    with pytest.raises(InputError, match="resnet18"):
        resolve_model("resnet1")


def test_train_quick_learns_digits():
    model, _, _ = resolve_model("digits-mlp")
    threads = torch.get_num_threads()
    assert train_quick(model, "digits", epochs=8, seed=0) > 0.85
    assert torch.get_num_threads() == threads
