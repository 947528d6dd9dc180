"""The neuron planner of ``merge`` — Neuron Merging (NeurIPS 2020), data-free: a neuron whose
pre-activation map is a positive multiple of a kept neuron's is removed, its outgoing weights
added, scaled, to the kept one's.

Exact when the multiple is exact, because ReLU / LeakyReLU are positively homogeneous:
``act(r·y) = r·act(y)`` for ``r > 0``. The pre-activation of neuron ``c`` is the affine map
``y_c = a_c·w_c·x + (a_c·b_c + t_c)`` (``a, t``: a BatchNorm in between, else 1, 0); two neurons
are compared on the rows ``v_c = [a_c·w_c, a_c·b_c + t_c]``, which includes the bias mismatch.
Consumers: ``W2[:, k] += r·W2[:, j]`` with ``r = v_j·v_k / v_k·v_k``, then ``j`` is removed with
``netsculpt.surgery.remove_channels`` (which slices every coupled tensor). This module only plans
(``merge_neurons`` actions: producer, ``[j, k, r]`` triples); the writes are
:func:`netsculpt.surgery.fold.merge_into_consumers` and ``remove_channels``, called by the
memory backend's ``merge_neurons`` applier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.fx import Node

from netsculpt.core.plan import Action
from netsculpt.core.select import is_ignored
from netsculpt.ops import merge_folds as MF
from netsculpt.surgery.fold import bn_scale_shift

aten = torch.ops.aten
_ACTS = {aten.relu.default, aten.relu_.default, aten.leaky_relu.default, aten.leaky_relu_.default}
_RESHAPES = {aten.flatten.using_ints, aten.view.default, aten.reshape.default}


def _consumers(act: Node, model, cap) -> set[str] | None:
    """Modules of the Linear / Conv nodes that read ``act`` (through reshapes / eval identities);
    ``None`` if anything else reads it."""
    out, todo = set(), [act]
    while todo:
        node = todo.pop()
        for user in node.users:
            if user.target in MF._PASS_OPS or user.target in _RESHAPES:
                if user.target is aten.dropout.default and user.args[2]:
                    return None
                todo.append(user)
                continue
            path = MF._layer_path(model, cap, user)
            if path is None or user.args[0] is not node or user.target in MF._CONV_T_OPS:
                return None
            out.add(path)
    return out


def candidates(
    model: nn.Module, graph, ignore: Any = ()
) -> list[tuple[str, str | None, Any, set[str]]]:
    """``(producer, batchnorm or None, group, consumers)`` for every Linear / Conv followed by a
    positively homogeneous activation whose channel group couples nothing else (and touches no
    module that ``ignore`` names)."""
    cap = graph.captured
    by_tensor = {}
    for g in graph.groups:
        for m in g.members:
            if m.role == "out" and m.dim == 0:
                by_tensor[m.tensor] = g
    found = []
    for node in cap.graph.nodes:
        prod = MF._layer_path(model, cap, node)
        if prod is None or node.target in MF._CONV_T_OPS:
            continue
        last, user = MF._through(node)
        bn = None
        if user is not None and user.args[0] is last and (bn := MF._bn_path(model, cap, user)):
            last, user = MF._through(user)
        if user is None or user.target not in _ACTS or user.args[0] is not last:
            continue
        if (
            user.target in (aten.leaky_relu.default, aten.leaky_relu_.default)
            and len(user.args) > 1
            and user.args[1] < 0
        ):
            continue  # a negative slope flips sign: not positively homogeneous in the same way
        group = by_tensor.get(f"{prod}.weight")
        consumers = _consumers(user, model, cap)
        if group is None or not group.prunable or not consumers:
            continue
        own = {prod, bn}
        ok = all(
            (m.module in own and m.role in ("out", "norm"))
            or (m.role == "in" and m.module in consumers)
            for m in group.members
        )
        if ok and not any(is_ignored(p, ignore) for p in (prod, *([bn] if bn else []), *consumers)):
            found.append((prod, bn, group, consumers))
    return found


def rows(model: nn.Module, prod: str, bn: str | None, group) -> torch.Tensor:
    """``v_c`` for each channel ``c`` of the group, in float64: [size, fan_in + 1]."""
    layer = model.get_submodule(prod)
    (member,) = [m for m in group.members if m.tensor == f"{prod}.weight"]
    order = np.argsort(member.index_map)  # position of channel 0, 1, ...
    w = layer.weight.detach().double()[order].flatten(1)
    b = (
        layer.bias.detach().double()[order]
        if layer.bias is not None
        else torch.zeros(len(w), dtype=torch.float64)
    )
    if bn is not None:
        a, t = bn_scale_shift(model.get_submodule(bn))
        w, b = w * a[:, None], a * b + t
    return torch.cat([w, b[:, None]], dim=1)


def match(v: torch.Tensor, threshold: float) -> list[tuple[int, int, float]]:
    """Greedy merge plan ``[(j, k, r)]``: neurons in order of decreasing norm are kept unless
    their row has cosine ``>= 1 - threshold`` with an already kept row; dead rows get ``r = 0``.

    >>> match(torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]), 0.01)
    [(0, 1, 0.5)]
    """
    norms = v.norm(dim=1)
    order = torch.argsort(norms, descending=True).tolist()
    tiny = 1e-12 * float(norms.max()) if len(norms) else 0.0
    kept: list[int] = []
    plan = []
    unit = v / norms.clamp(min=1e-300)[:, None]
    for c in order:
        if kept and float(norms[c]) <= tiny:
            plan.append((c, kept[0], 0.0))  # a dead neuron: act(0) = 0 contributes nothing
            continue
        if kept:
            cos = unit[kept] @ unit[c]
            best = int(torch.argmax(cos))
            if float(cos[best]) >= 1 - threshold - 1e-9:
                k = kept[best]
                plan.append((c, k, float(v[c] @ v[k] / (v[k] @ v[k]))))
                continue
        kept.append(c)
    return plan


def plan(model: nn.Module, graph, threshold: float, ignore: Any = ()) -> tuple[list, dict]:
    """``(merge_neurons actions, per-layer details)`` for every candidate with something to
    merge at cosine distance ``threshold``; the model is only read."""
    actions, layers = [], {}
    for prod, bn, group, consumers in candidates(model, graph, ignore):
        merged = match(rows(model, prod, bn, group), threshold)
        if not merged:
            continue
        args = {
            "producer": prod,
            "merged": [[int(j), int(k), float(r)] for j, k, r in merged],
            "batchnorm": bn,
            "consumers": sorted(consumers),
            "size": group.size,
        }
        actions.append(Action("merge_neurons", args))
        layers[prod] = {
            "size": group.size,
            "merged": sum(r > 0 for _, _, r in merged),
            "dead": sum(r == 0 for _, _, r in merged),
            "into": {int(j): int(k) for j, k, _ in merged},
        }
    return actions, layers
