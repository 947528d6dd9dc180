import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netsculpt
from netsculpt.errors import CaptureError, UnsupportedOpError
from netsculpt.graph import build_graph
from netsculpt.surgery import remove_channels


def _groups_by_tensor(graph, tensor, dim):
    return [g for g in graph.groups for m in g.members if m.tensor == tensor and m.dim == dim]


def test_every_prunable_group_of_the_tiny_models_can_lose_a_channel(tiny):
    """The invariant behind the graph: a group is exactly what must go together."""
    for name, (model, x) in tiny.items():
        graph = build_graph(model, x)
        assert graph.prunable_groups(), name
        for g in graph.prunable_groups():
            remove_channels(model, graph, {g.id: [0]}, x).undo()


def test_residual_add_couples_both_sides():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

        def forward(self, x):
            h = self.a(x)
            return self.out(h + self.b(h))

    g = build_graph(Res(), torch.randn(2, 4))
    (grp,) = [g for g in g.prunable_groups() if g.size == 8 and len(g.members) > 3]
    tensors = {(m.tensor, m.dim) for m in grp.members}
    assert {("a.weight", 0), ("b.weight", 0), ("b.weight", 1), ("out.weight", 1)} <= tensors


def test_concat_gives_offsets_into_the_consumer():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 3), nn.Linear(4, 5), nn.Linear(8, 2)

        def forward(self, x):
            return self.c(torch.cat([self.a(x), self.b(x)], dim=-1))

    graph = build_graph(Cat(), torch.randn(2, 4))
    (gb,) = _groups_by_tensor(graph, "b.weight", 0)
    (member,) = [m for m in gb.members if m.tensor == "c.weight"]
    assert list(member.index_map) == [-1, -1, -1, 0, 1, 2, 3, 4]


def test_view_into_heads_makes_a_head_group_and_protects_head_dim(tiny):
    model, x = tiny["transformer"]
    graph = build_graph(model, x)
    heads = [g for g in graph.groups if g.kind == "head"]
    assert heads and all(g.size == 4 and g.prunable for g in heads)
    proj = [m for g in heads for m in g.members if m.tensor == "blocks.0.attn.proj.weight"]
    assert list(proj[0].index_map) == sum(([h] * 8 for h in range(4)), [])
    assert any("head_dim" in (g.reason or "") for g in graph.groups)


def test_depthwise_conv_follows_its_input_and_grouped_conv_keeps_groups(tiny):
    model, x = tiny["cnn"]
    graph = build_graph(model, x)
    (g,) = [g for g in _groups_by_tensor(graph, "dw.weight", 0) if g.prunable]
    assert ("a.0.weight", 0) in {(m.tensor, m.dim) for m in g.members}
    plan = {g.id: [0] for g in graph.prunable_groups()}
    remove_channels(model, graph, plan, x)
    assert model.grouped.groups == 3 and model.dw.groups == model.dw.in_channels < 16


def test_raw_parameters_layer_scale_cls_token_and_position_embedding(tiny):
    graph = build_graph(*tiny["transformer"])
    hidden = [g for g in graph.prunable_groups() if any(m.tensor == "pos" for m in g.members)]
    assert hidden and {"cls", "tok.weight"} <= {m.tensor for m in hidden[0].members}
    graph = build_graph(*tiny["cnn"])
    assert any(m.tensor == "gamma" for g in graph.prunable_groups() for m in g.members)


def test_model_input_and_output_dims_are_protected():
    graph = build_graph(
        nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)), torch.ones(1, 4)
    )
    reasons = {g.size: g.reason for g in graph.groups}
    assert reasons[4] == "model input" and reasons[3] == "model output" and reasons[6] is None


def test_ignore_protects_a_module_by_name_or_object():
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    assert not build_graph(m, torch.ones(1, 4), ignore=["0"]).prunable_groups()
    assert not build_graph(m, torch.ones(1, 4), ignore=[m[0]]).prunable_groups()


def test_an_op_without_a_rule_names_the_op_the_module_and_the_remedy():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.fft.fft(self.fc(x)).real

    with pytest.raises(UnsupportedOpError, match=r"fft.*ignore="):
        build_graph(Odd(), torch.randn(2, 4))


def test_model_that_cannot_be_exported_is_a_clear_error():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(CaptureError, match="torch.export could not capture"):
        build_graph(DataDependent(), torch.randn(3))


def test_data_dependent_shapes_are_protected_not_fatal():
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x):
            h = self.a(x)
            return self.b(h), h[h > 0].sum()

    graph = build_graph(Masked(), torch.randn(2, 4))
    assert not graph.prunable_groups()


def test_capture_on_meta_device_needs_no_weights(tiny):
    model, x = tiny["transformer"]
    model = model.to("meta")
    graph = build_graph(model, x)
    assert graph.prunable_groups() and graph.predict_macs() > 0


def test_predicted_macs_match_a_fresh_capture_after_removal(tiny):
    from netsculpt.measure import count_macs

    model, x = tiny["cnn"]
    graph = build_graph(model, x)
    plan = {g.id: list(range(g.size // 2)) for g in graph.prunable_groups()}
    predicted = graph.predict_macs(plan)
    remove_channels(model, graph, plan, x)
    assert count_macs(model, x) == predicted


def test_chunk_pieces_shrink_alike_and_embedding_rows_stay():
    class Shuffle(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.a, self.b = nn.Linear(4, 4), nn.Linear(8, 2)

        def forward(self, ids):
            x1, x2 = self.emb(ids).chunk(2, dim=-1)
            return self.b(torch.cat([x1, F.relu(self.a(x2))], dim=-1))

    graph = build_graph(Shuffle(), torch.randint(0, 10, (2, 3)))
    assert any(g.reason == "embedding rows (vocabulary)" for g in graph.groups)
    for g in graph.prunable_groups():
        remove_channels(
            Shuffle(),
            build_graph(Shuffle(), torch.randint(0, 10, (2, 3))),
            {g.id: [0]},
            torch.randint(0, 10, (2, 3)),
        )


class _GroupedConvs(nn.Module):
    def __init__(self, grouped=True, transposed=True):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2) if grouped else nn.Identity()
        self.up = nn.ConvTranspose2d(8, 12, 2, stride=2, groups=2) if transposed else nn.Identity()
        self.head = nn.Conv2d(12 if transposed else 8, 4, 1)

    def forward(self, x):
        return self.head(F.relu(self.up(F.relu(self.grouped(F.relu(self.stem(x)))))))


@pytest.mark.parametrize(
    "grouped,transposed",
    [(True, False), (False, True), (True, True)],
    ids=["conv", "tconv", "both"],
)
def test_grouped_and_transposed_grouped_convs_prune_and_keep_the_output_shape(grouped, transposed):
    torch.manual_seed(0)
    model, x = _GroupedConvs(grouped, transposed).eval(), torch.randn(2, 3, 8, 8)
    before = model(x).shape
    n_params = sum(p.numel() for p in model.parameters())
    netsculpt.prune(model, x, amount=0.5)
    assert model(x).shape == before
    assert sum(p.numel() for p in model.parameters()) < n_params
    assert model.stem.out_channels < 8
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)):
        per_group = conv.out_channels if conv.transposed else conv.in_channels
        assert conv.weight.shape[1] * conv.groups == per_group
        assert conv.in_channels % conv.groups == 0 and conv.out_channels % conv.groups == 0
    if grouped:  # a grouped conv keeps its group count and narrows every group alike
        assert model.grouped.groups == 2
    build_graph(model, x)  # the pruned model still captures
