"""What removing a block changes in size: params and MACs, predicted without editing (a bridge
or a fold into the next Linear adds some back). Used by cut's budgets and by optimize."""

from __future__ import annotations

from typing import Any

from torch import nn

from netsculpt.graph.blocks import Block
from netsculpt.measure.macs import macs_inside
from netsculpt.measure.params import count_params


def fold_target(model: nn.Module, block: Block) -> str | None:
    """The module path of the Linear a ``bridge+fold`` block's bridge folds into."""
    box = model.get_submodule(block.container) if block.container else model
    names = [n for n, _ in box.named_children()]
    i = block.index + len(block.modules)
    if block.index < 0 or i >= len(names):
        return None
    return f"{block.container}.{names[i]}" if block.container else names[i]


def bridge_dims(block: Block) -> tuple[int, int]:
    d = block.feature_dim
    return int(block.in_shape[d]), int(block.out_shape[d])


def param_delta(model: nn.Module, block: Block) -> int:
    """How the parameter count changes when ``block`` goes (a bridge or a fold adds some)."""
    if not block.how.startswith("bridge"):
        return -block.params
    in_f, out_f = bridge_dims(block)
    if block.how == "bridge+fold":
        nxt = fold_target(model, block)
        n_out = model.get_submodule(nxt).out_features if nxt else out_f
        return -block.params + (in_f - out_f) * n_out
    return -block.params + in_f * out_f + out_f


def mac_delta(model: nn.Module, program: Any, block: Block) -> int:
    """How the MACs change when ``block`` goes, read from the capture it was found on."""
    prog = program
    delta = -macs_inside(prog, block.modules)
    if block.how == "bridge":
        in_f, _ = bridge_dims(block)
        n = 1
        for s in block.out_shape:
            n *= int(s)
        delta += n * in_f
    elif block.how == "bridge+fold":
        in_f, out_f = bridge_dims(block)
        nxt = fold_target(model, block)
        m = macs_inside(prog, [nxt]) if nxt else 0
        delta += m // out_f * in_f - m
    return delta


def blocks_to_budget(model: nn.Module, scores: dict, cands: list[Block], goal: int) -> list[str]:
    """The lowest-scoring blocks, in order, until the predicted params are at most ``goal``."""
    by_name = {b.name: b for b in cands}
    params = count_params(model)
    chosen = []
    for _, name in sorted((s, n) for n, s in scores.items() if s == s):
        if params <= goal:
            break
        chosen.append(name)
        params += param_delta(model, by_name[name])
    return chosen
