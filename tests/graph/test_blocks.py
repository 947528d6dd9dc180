"""The depth view: which blocks a model has, whether they are residual, and how they can go."""

from __future__ import annotations

import torch
from torch import nn

from netsculpt.data.models import ResidualMLP, SeedMLP
from netsculpt.graph.blocks import Block, bridge_dim, find_blocks


class OuterSkip(nn.Module):
    """``x = x + f(x)`` written in the parent: each f is a residual *branch*."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 16)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16)) for _ in range(3)
        )
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for b in self.blocks:
            x = x + b(x)
        return self.out(x)


def _by_name(blocks: list[Block]) -> dict[str, Block]:
    return {b.name: b for b in blocks}


def test_seed_mlp_plain_layers_absorb_their_activation():
    blocks = find_blocks(SeedMLP(10, 1), torch.randn(4, 10))
    assert [(b.name, b.modules, b.kind) for b in blocks] == [
        ("0", ("0", "1"), "layer"),
        ("2", ("2", "3"), "layer"),
        ("4", ("4",), "layer"),
    ]
    b = _by_name(blocks)
    assert b["2"].in_shape == (4, 64) and b["2"].out_shape == (4, 32)
    assert b["2"].how == "bridge+fold" and b["2"].activation == "ReLU"
    assert not b["4"].removable and b["4"].reason
    assert b["2"].params == 64 * 32 + 32 and b["2"].macs == 4 * 64 * 32


def test_residual_blocks_and_their_output_projection():
    blocks = find_blocks(ResidualMLP(40, 16, 4, 10), torch.randn(2, 40))
    res = [b for b in blocks if b.residual]
    assert [b.name for b in res] == [f"blocks.{i}" for i in range(4)]
    assert all(b.kind == "residual" and b.how == "skip" for b in res)
    assert set(res[0].out_params) == {"fc2.weight", "fc2.bias"}


def test_branch_blocks_when_the_parent_adds_the_skip():
    blocks = find_blocks(OuterSkip(), torch.randn(2, 8))
    br = [b for b in blocks if b.kind == "branch"]
    assert [b.name for b in br] == ["blocks.0", "blocks.1", "blocks.2"]
    assert all(b.how == "zero" and b.out_params == ("2.weight", "2.bias") for b in br)


def test_resnet_post_relu_blocks_are_residual_and_downsampling_ones_are_not():
    from torchvision.models import resnet18

    model = resnet18(num_classes=10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    b = _by_name(find_blocks(model, torch.randn(1, 3, 32, 32)))
    assert b["layer1.0"].kind == "residual" and b["layer1.0"].feature_dim == 1
    assert set(b["layer1.0"].out_params) == {"bn2.weight", "bn2.bias"}
    assert not b["layer2.0"].removable and "feature dim" in b["layer2.0"].reason
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())  # read-only


def test_hf_decoder_layers_are_residual():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=50,
    )  # fmt: skip
    blocks = find_blocks(LlamaForCausalLM(cfg), torch.randint(0, 50, (1, 6)))
    layers = [b for b in blocks if b.residual]
    assert [b.name for b in layers] == ["model.layers.0", "model.layers.1"]
    assert set(layers[0].out_params) == {"self_attn.o_proj.weight", "mlp.down_proj.weight"}


def test_bridge_dim():
    assert bridge_dim((4, 64), (4, 32)) == -1
    assert bridge_dim((2, 8, 5, 5), (2, 16, 5, 5)) == 1
    assert bridge_dim((2, 8, 6, 6), (2, 16, 3, 3)) is None


def test_bridge_dim_is_the_layers_feature_dim():
    assert bridge_dim((2, 8, 6), (2, 8, 3)) == -1  # from the shapes alone: looks like a Linear
    assert bridge_dim((2, 8, 6), (2, 8, 3), feature_dim=1) is None  # a strided conv: no bridge
    assert bridge_dim((2, 8, 6), (2, 16, 6), feature_dim=1) == 1
    assert bridge_dim((4, 10, 64), (4, 10, 32), feature_dim=-1) == -1
