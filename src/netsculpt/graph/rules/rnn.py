"""Recurrent layers: ``aten.lstm`` / ``gru`` / ``rnn_tanh`` / ``rnn_relu`` (``nn.LSTM`` / ``nn.GRU``
/ ``nn.RNN``, every layer and direction in one node with a flat weight list) and the cells
(``lstm_cell`` / ``gru_cell`` / ``rnn_*_cell``, an ``nn.LSTMCell`` called in a Python loop).

A hidden unit ``u`` is the rows ``g·H + u`` of ``weight_ih`` / ``weight_hh`` / the biases for
every gate ``g`` (LSTM i, f, g, o; GRU r, z, n), column ``u`` of ``weight_hh`` (the recurrence) and
of the next layer's ``weight_ih`` (columns ``u`` and ``u + H`` when bidirectional: the directions
are concatenated). ``nn.LSTM`` has one ``hidden_size`` for every layer and direction, so all of
them share one unit class; with ``proj_size`` the projected units are a second class (rows of
``weight_hr``, recurrence and next-layer columns, the outputs). The gate count is protected.
"""

from __future__ import annotations

import torch

from netsculpt.graph.rules._base import op_name, rule
from netsculpt.graph.rules.factories import FACTORIES

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def _gated(t, gates: int, hidden: tuple) -> tuple:
    return t.product(t.fresh(gates, "gates of a recurrent layer"), hidden)


def _weight(t, node, w, rows: tuple | None, cols: tuple | None) -> None:
    lw = t.L(w)
    if rows is not None:
        t.role(w, 0, "out")
        t.unify(lw[0], rows, node)
    if cols is not None and len(lw) > 1:
        t.role(w, 1, "in")
        t.unify(lw[1], cols, node)


def _state(t, node, h, hidden: tuple) -> None:
    """Couple an initial state's last dim, unless the module made it (zeros of hidden_size,
    which follow the attribute surgery updates)."""
    if isinstance(h, torch.fx.Node) and op_name(h) not in FACTORIES and h.name in t.layouts:
        t.unify(t.L(h)[-1], hidden, node)


def _steps(t, x) -> int:
    shp = t.shape(x)
    n = 1
    for s in shp[:-1]:
        n *= s
    return n


@rule("lstm", "gru", "rnn_tanh", "rnn_relu")
def rnn(t, node):
    name = op_name(node)
    x, hx, params = node.args[0], node.args[1], node.args[2]
    if not isinstance(params, (list, tuple)) or not isinstance(x, torch.fx.Node):
        return t.opaque(node, f"{name} with packed input")
    has_bias, layers, bidir, batch_first = node.args[3], node.args[4], node.args[7], node.args[8]
    gates, dirs = GATES[name], 2 if bidir else 1
    per = 4 if has_bias else 2  # weight_ih, weight_hh[, bias_ih, bias_hh][, weight_hr]
    proj = name == "lstm" and len(params) == layers * dirs * (per + 1)
    per += 1 if proj else 0
    lx, sx = t.L(x), t.shape(x)
    first = t.shape(params[1])  # weight_hh_l0: (gates·H, H_out)
    size_h = first[0] // gates
    hidden = (t.atoms.new(size_h),)
    out_h = (t.atoms.new(first[1]),) if proj else hidden
    steps = _steps(t, x)
    feed = lx[-1]
    for layer in range(layers):
        for d in range(dirs):
            ws = params[(layer * dirs + d) * per :][:per]
            _weight(t, node, ws[0], _gated(t, gates, hidden), feed)
            _weight(t, node, ws[1], _gated(t, gates, hidden), out_h)
            for b in ws[2:4] if has_bias else ():
                t.role(b, 0, "out")
                t.unify(t.L(b)[0], _gated(t, gates, hidden), node)
            if proj:
                _weight(t, node, ws[-1], out_h, hidden)
            for w in (ws[0], ws[1]) + ((ws[-1],) if proj else ()):
                t.macs(node, numel_of=w, factors=[], const=steps)
        feed = tuple(out_h) * dirs
    h0, c0 = (hx[0], hx[1]) if name == "lstm" else (hx, None)
    _state(t, node, h0, out_h)
    _state(t, node, c0, hidden)
    batch = [] if len(sx) == 2 else [lx[0] if batch_first else lx[1]]
    out = list(lx[:-1]) + [tuple(out_h) * dirs]
    h_n = [t.fresh(layers * dirs, "layers × directions")] + batch + [out_h]
    if name != "lstm":
        return [out, h_n]
    return [out, h_n, [t.fresh(layers * dirs, "layers × directions")] + batch + [hidden]]


@rule("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell")
def cell(t, node):
    name = op_name(node)[: -len("_cell")]
    x, hx, w_ih, w_hh = node.args[:4]
    gates = GATES[name]
    hidden = t.L(w_hh)[1]
    _weight(t, node, w_ih, _gated(t, gates, hidden), t.L(x)[-1])
    _weight(t, node, w_hh, _gated(t, gates, hidden), hidden)
    for b in node.args[4:6]:
        if isinstance(b, torch.fx.Node):
            t.role(b, 0, "out")
            t.unify(t.L(b)[0], _gated(t, gates, hidden), node)
    steps = _steps(t, x)
    t.macs(node, numel_of=w_ih, factors=[], const=steps)
    t.macs(node, numel_of=w_hh, factors=[], const=steps)
    states = list(hx) if isinstance(hx, (list, tuple)) else [hx]
    for h in states:
        _state(t, node, h, hidden)
    out = list(t.L(x)[:-1]) + [hidden]
    return [out, list(out)] if name == "lstm" else out
