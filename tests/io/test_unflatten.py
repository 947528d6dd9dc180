"""A loaded .pt2 keeps its module tree: standard layers come back as their torch.nn classes,
the rest as interpreter modules that call their children by name."""

from __future__ import annotations

import copy

import torch
from torch import nn

from netsculpt.data.models import build_builtin
from netsculpt.io.unflatten import program_model


def _program(model: nn.Module, x: torch.Tensor) -> torch.export.ExportedProgram:
    return torch.export.export(model.eval(), (x,))


def test_standard_layers_are_rebuilt_with_their_settings():
    net = nn.Sequential(
        nn.Conv2d(2, 6, 3, stride=2, padding=1, groups=2, bias=False), nn.BatchNorm2d(6, eps=1e-3),
        nn.ReLU6(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(24, 5), nn.GELU("tanh"),
        nn.LayerNorm(5), nn.Dropout(0.2),
    )  # fmt: skip
    x = torch.randn(2, 2, 8, 8)
    m = program_model(_program(net, x), ((x,), {}))
    assert [type(c).__name__ for c in m] == [type(c).__name__ for c in net]
    conv, bn, _, pool = m[0], m[1], m[2], m[3]
    assert (conv.stride, conv.padding, conv.groups, conv.bias) == ((2, 2), (1, 1), 2, None)
    assert bn.eps == 1e-3 and pool.kernel_size == (2, 2) and m[6].approximate == "tanh"
    assert not m.training
    with torch.no_grad():
        assert torch.equal(m(x), net(x))


def test_custom_classes_stay_and_their_children_can_be_replaced():
    net = build_builtin("digits-cnn").eval()
    x = torch.randn(2, 1, 8, 8)
    m = program_model(_program(net, x), ((x,), {}))
    assert isinstance(m.block.body, nn.Sequential) and isinstance(m.fc, nn.Linear)
    assert type(m.block).__name__ == "InterpreterModule"  # the residual block's own class
    with torch.no_grad():
        assert torch.equal(m(x), net(x))
        m.block.body = nn.Sequential()  # what runs is what the attribute holds
        net.block.body = nn.Sequential()
        assert torch.allclose(m(x), net(x), atol=1e-6)


def test_it_copies_trains_and_exports_again():
    net = build_builtin("digits-cnn").eval()
    x = torch.randn(2, 1, 8, 8)
    m = program_model(_program(net, x), ((x,), {}))
    twin = copy.deepcopy(m)
    twin.train()
    loss = twin(torch.randn(4, 1, 8, 8)).square().mean()
    loss.backward()
    assert twin.fc.weight.grad is not None and m.fc.weight.grad is None
    again = program_model(_program(m, x), ((x,), {}))
    with torch.no_grad():
        assert torch.equal(again(x), net(x))


def test_a_container_whose_items_take_size_arguments_still_holds_the_blocks(tmp_path):
    """With dynamic batch and sequence, the unflattened ``nn.Sequential`` of transformer layers
    passes symbolic sizes to its items, so it cannot come back as an ``nn.Sequential``; its
    items are still the blocks (the whole stack was one block, and ``cut --count 1`` removed
    both layers)."""
    import netsculpt as ns
    from netsculpt.graph.blocks import find_blocks
    from netsculpt.io import resolve_model

    net = build_builtin("tiny-transformer").eval()
    x = torch.randint(0, 256, (1, 64))
    ns.export(net, tmp_path / "t.pt2", x)
    m, mx, _ = resolve_model(str(tmp_path / "t.pt2"))
    assert type(m.blocks).__name__ == "InterpreterModule"
    names = [(b.name, b.kind) for b in find_blocks(m, mx)]
    assert names == [(b.name, b.kind) for b in find_blocks(net, x)]
    assert ("blocks.0", "residual") in names
