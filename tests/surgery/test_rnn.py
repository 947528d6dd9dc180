"""Hidden units of nn.LSTM / GRU / RNN and of cells in a Python loop: graph, surgery, reload."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.graph import build_graph
from netsculpt.measure import count_macs


class Classifier(nn.Module):
    def __init__(self, rnn: nn.Module, width: int):
        super().__init__()
        self.emb, self.rnn, self.head = nn.Linear(5, 8), rnn, nn.Linear(width, 3)

    def forward(self, x):
        y = self.rnn(torch.relu(self.emb(x)))[0]
        return self.head(y[:, -1] if self.rnn.batch_first else y[-1])


RNNS = {
    "lstm-2-bi": (lambda: nn.LSTM(8, 6, num_layers=2, batch_first=True, bidirectional=True), 12),
    "lstm-proj": (lambda: nn.LSTM(8, 6, proj_size=4, num_layers=2, bidirectional=True), 8),
    "gru": (lambda: nn.GRU(8, 6, batch_first=True), 6),
    "rnn-2": (lambda: nn.RNN(8, 6, num_layers=2), 6),
}


def _units(graph, tensor: str, dim: int):
    return [g for g in graph.groups if any(m.tensor == tensor and m.dim == dim for m in g.members)]


def test_lstm_units_couple_gates_directions_and_next_layer():
    torch.manual_seed(0)
    make, width = RNNS["lstm-2-bi"]
    model, x = Classifier(make(), width), torch.randn(2, 7, 5)
    graph = build_graph(model.eval(), x)
    (g,) = [g for g in _units(graph, "rnn.weight_hh_l0", 1) if g.prunable]
    assert g.size == 6
    maps = {(m.tensor, m.dim): m.index_map for m in g.members}
    # unit u: rows g·6 + u of every gate, column u of weight_hh, columns u and u + 6 above
    assert list(maps[("rnn.weight_ih_l0", 0)][[2, 8, 14, 20]]) == [2, 2, 2, 2]
    assert list(maps[("rnn.weight_ih_l1", 1)][[3, 9]]) == [3, 3]
    assert ("rnn.weight_hh_l1_reverse", 1) in maps and ("head.weight", 1) in maps
    # the embedding's units are the LSTM's input size
    assert any(
        m.tensor == "rnn.weight_ih_l0_reverse" for m in _units(graph, "emb.weight", 0)[0].members
    )


@pytest.mark.parametrize("name", list(RNNS))
def test_prune_half_the_units_then_reload(name, tmp_path):
    torch.manual_seed(0)
    make, width = RNNS[name]
    model = Classifier(make(), width).eval()
    fresh = copy.deepcopy(model)
    x = torch.randn(2, 7, 5)
    rep = ns.prune(model, x, amount=0.5)
    rnn = model.rnn
    assert not rep.details["skipped"] and rnn.input_size == 4
    assert rnn.hidden_size == 3 and rnn.proj_size == (2 if name == "lstm-proj" else 0)
    assert rnn._flat_weights[1] is rnn.weight_hh_l0  # flat weights point at the new tensors
    assert count_macs(model, x) == rep.after.macs < rep.before.macs
    y = model(x)
    ns.save(model, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=fresh).eval()
    assert back.rnn.hidden_size == 3 and torch.allclose(back(x), y, atol=1e-6)


class Loop(nn.Module):
    def __init__(self, cell: nn.Module):
        super().__init__()
        self.emb, self.cell, self.head = nn.Linear(5, 8), cell, nn.Linear(6, 3)

    def forward(self, x):
        h = None
        for t in range(x.shape[1]):
            h = self.cell(torch.relu(self.emb(x[:, t])), h)
        return self.head(h[0] if isinstance(h, tuple) else h)


@pytest.mark.parametrize("cell", [nn.LSTMCell, nn.GRUCell, nn.RNNCell])
def test_cells_in_a_python_loop(cell, tmp_path):
    torch.manual_seed(0)
    model = Loop(cell(8, 6)).eval()
    fresh = copy.deepcopy(model)
    x = torch.randn(2, 3, 5)
    rep = ns.prune(model, x, amount=0.5)
    assert model.cell.hidden_size == 3 and model.cell.input_size == 4
    assert count_macs(model, x) == rep.after.macs
    y = model(x)
    ns.save(model, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=fresh).eval()
    assert torch.allclose(back(x), y, atol=1e-6)


def test_activation_importance_uses_hidden_state_norms():
    torch.manual_seed(0)
    model = Classifier(nn.GRU(8, 6, batch_first=True), 6).eval()
    x = torch.randn(2, 7, 5)
    with torch.no_grad():
        model.rnn.weight_hh_l0[:, 4] = 0  # unit 4 ...
        model.rnn.weight_ih_l0[[4, 10, 16]] = 0
        model.rnn.bias_ih_l0[[4, 10, 16]] = 0
        model.rnn.bias_hh_l0[[4, 10, 16]] = 0  # ... stays at h = 0: its norm is 0
    data = [torch.randn(4, 7, 5) for _ in range(2)]
    rep = ns.prune(model, x, amount=1 / 6, importance="activation", data=data)
    assert model.rnn.hidden_size == 5 and rep.details["importance"] == "activation"
    assert (model.rnn.weight_hh_l0.abs().sum(0) > 0).all()  # the silent unit went
    from netsculpt.importance.channels import channel_norms

    norms = channel_norms(model, ["rnn"], data)
    assert norms["rnn:hidden"].shape == (5,) and norms["rnn:in"].shape == (model.rnn.input_size,)


def test_failed_edit_restores_flat_weights():
    from netsculpt.surgery import remove_channels

    torch.manual_seed(0)
    model = Classifier(nn.LSTM(8, 6, batch_first=True), 6).eval()
    x = torch.randn(2, 7, 5)
    ref = model(x)
    graph = build_graph(model, x)
    (g,) = [g for g in _units(graph, "rnn.weight_hh_l0", 1) if g.prunable]
    with pytest.raises(ns.NetsculptError):
        remove_channels(model, graph, {g.id: [0]}, x, check=lambda a, b: "refused")
    assert model.rnn._flat_weights[0] is model.rnn.weight_ih_l0
    assert model.rnn.hidden_size == 6 and torch.equal(model(x), ref)


class _Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(6, 10, num_layers=2, batch_first=True)
        self.head = nn.Linear(10, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def test_rnn_plan_replays_on_a_fresh_model():
    x = torch.randn(2, 5, 6)
    torch.manual_seed(0)
    a = _Seq()
    b = copy.deepcopy(a)
    rep = ns.prune(a, x, amount=0.5, importance="l2")
    assert any(a.args.get("modules") and "rnn" in a.args["modules"] for a in rep.plan.actions)
    ns.apply(b, x, rep.plan.to_dict())
    assert a.rnn.hidden_size == b.rnn.hidden_size == 5
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    assert torch.allclose(a(x), b(x))
