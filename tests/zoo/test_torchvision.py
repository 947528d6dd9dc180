"""Real architectures (random init): prune half of every group, check the model, reload it."""

import pytest
import torch

import netsculpt as ns
from netsculpt.measure import count_macs

# input sizes: the smallest each architecture accepts, to keep CI fast
MODELS = {
    "resnet18": 64,
    "mobilenet_v3_small": 64,
    "efficientnet_b0": 64,
    "convnext_tiny": 64,
    "densenet121": 64,
    "shufflenet_v2_x0_5": 64,
    "squeezenet1_0": 64,
    "swin_t": 224,
    "vit_b_16": 224,
    "regnet_y_400mf": 64,
    "googlenet": 64,
    "mnasnet0_5": 64,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_prune_half_then_save_and_reload(name, tmp_path):
    import torchvision

    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    x = torch.randn(1, 3, MODELS[name], MODELS[name])
    macs = count_macs(model, x)
    out_shape = model(x).shape
    rep = ns.prune(model, x, amount=0.5, importance="l2")
    y = model(x)
    assert y.shape == out_shape
    pruned_macs = count_macs(model, x)
    assert pruned_macs == rep.after.macs
    assert pruned_macs <= 0.6 * macs, f"{name}: MACs only down to {pruned_macs / macs:.2f}"
    ns.save(model, tmp_path / "m")
    fresh = torchvision.models.get_model(name, weights=None, **kwargs)
    reloaded = ns.load(tmp_path / "m", model=fresh).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(x), y, atol=1e-5)
