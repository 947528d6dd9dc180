import pytest
import torch


@pytest.mark.parametrize("variant", ["swin_t", "swin_v2_t"])
def test_window_attention_that_reads_widths_equals_torchvision(variant):
    import torchvision

    from netsculpt.surgery.tv_modules import PRUNED

    torch.manual_seed(0)
    model = torchvision.models.get_model(variant).eval()
    for blk in (model.features[1][0], model.features[1][1]):  # plain and shifted windows
        attn = blk.attn
        x = torch.randn(1, 16, 16, attn.qkv.in_features)
        ref = attn(x)
        attn.__class__ = PRUNED[type(attn)]
        assert torch.allclose(attn(x), ref, atol=1e-5)
