"""timm families (random init, small inputs, shallow where the depth is a constructor argument):
prune 30% of every group, the model runs, the output is the same shape, it reloads by class."""

from __future__ import annotations

import pytest
import torch

import netsculpt as ns

timm = pytest.importorskip("timm")

# model -> (input size, constructor kwargs); each one covers a case met in the timm zoo
MODELS = {
    "resnet10t": (64, {}),
    "mobilenetv3_small_050": (64, {}),
    "regnetx_002": (64, {}),  # ConvNormAct: read-only in_channels / out_channels
    "cspnext_tiny": (64, {}),
    "rexnet_100": (64, {}),  # x[:, : self.in_channels] + shortcut
    "mobilevit_xxs": (64, {}),  # timm Attention.attn_dim follows the heads
    "efficientvit_b0": (64, {}),  # a torch.autocast(enabled=False) region
    "vit_tiny_patch16_224": (32, {"img_size": 32, "depth": 2}),
    "convnext_atto": (64, {}),
    "ese_vovnet19b_slim_dw": (64, {}),
    "mobileone_s0": (64, {}),
    "csatv2": (64, {}),  # unbind over the last dim
    "repvit_m1": (64, {}),  # the model's own embed_dim is a per-stage tuple, not a size
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_prune_then_reload_by_class(name, tmp_path):
    size, kwargs = MODELS[name]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        shape = model(x).shape
    rep = ns.prune(model, x, amount=0.3, importance="l2")
    assert rep.after.params < 0.9 * rep.before.params, f"{name}: {rep.details['skipped']}"
    with torch.no_grad():
        y = model(x)
    assert y.shape == shape
    ns.save(model, tmp_path / "m")
    fresh = timm.create_model(name, pretrained=False, **kwargs)
    back = ns.load(tmp_path / "m", model=fresh).eval()
    with torch.no_grad():
        assert torch.allclose(back(x), y, atol=1e-5)
