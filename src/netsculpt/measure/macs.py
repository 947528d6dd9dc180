"""Multiply-accumulate counts read from a ``torch.export`` graph.

Counted per ATen op on node shapes (``node.meta["val"]``): convolutions (grouped, transposed),
linear / addmm / mm / bmm / matmul / baddbmm / einsum and scaled-dot-product attention.
Elementwise ops and norms are not counted (the usual convention: torchvision's GFLOPS are MACs
of convs and linears).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import CaptureError
from netsculpt.core.utils import eval_mode, normalize_inputs

aten = torch.ops.aten


def _dim(d: Any) -> int:
    """An int from a (possibly symbolic) size, using the size hint of a SymInt."""
    try:
        return int(d)
    except Exception:  # a SymInt without a concrete value: fall back to its example hint
        hint = getattr(getattr(d, "node", None), "hint", None)
        return int(hint) if hint is not None else 1


def _shape(arg: Any) -> tuple[int, ...] | None:
    val = arg.meta.get("val") if isinstance(arg, torch.fx.Node) else arg
    if isinstance(val, torch.Tensor):
        return tuple(_dim(d) for d in val.shape)
    return None


def _numel(shape: Sequence[int] | None) -> int:
    return math.prod(shape) if shape is not None else 0


def _conv(node: torch.fx.Node, transposed: bool | None = None) -> int:
    x, w = _shape(node.args[0]), _shape(node.args[1])
    out = _shape(node)
    if w is None or out is None or x is None:
        return 0
    if transposed is None:  # aten.convolution carries the flag at position 6
        transposed = bool(node.args[6]) if len(node.args) > 6 else False
    kernel = math.prod(w[2:])
    if transposed:
        # weight is (Cin, Cout/groups, *k): every input element is spread over Cout/groups * k
        return _numel(x) * w[1] * kernel
    # weight is (Cout, Cin/groups, *k): every output element reads Cin/groups * k inputs
    return _numel(out) * w[1] * kernel


def _contract_last(index: int) -> Callable[[torch.fx.Node], int]:
    """Output numel times the last dim of the operand at ``index`` (the contracted dim)."""

    def count(node: torch.fx.Node) -> int:
        a = _shape(node.args[index])
        return _numel(_shape(node)) * a[-1] if a else 0

    return count


def _linear(node: torch.fx.Node) -> int:
    w = _shape(node.args[1])
    return _numel(_shape(node)) * w[-1] if w else 0


def _sdpa(node: torch.fx.Node) -> int:
    q, k, v = (_shape(a) for a in node.args[:3])
    if not (q and k and v):
        return 0
    # Q @ K^T: (..., L, E) x (..., E, S); then P @ V: (..., L, S) x (..., S, Ev)
    rows = _numel(q[:-1])
    return rows * k[-2] * q[-1] + rows * k[-2] * v[-1]


def _einsum(node: torch.fx.Node) -> int:
    equation, operands = node.args[0], node.args[1]
    shapes = [_shape(o) for o in operands]
    if len(shapes) < 2 or any(s is None for s in shapes):
        return 0  # a one-operand einsum is a sum or a permutation, not a multiply
    lhs, _, rhs = equation.replace(" ", "").partition("->")
    sizes: dict[str, int] = {}
    for term, shape in zip(lhs.split(","), shapes):
        letters = term.replace("...", "")
        ellipsis = len(shape) - len(letters)
        full = term.replace("...", "".join(f"#{i}" for i in range(ellipsis)))
        tokens = _tokens(full)
        for token, size in zip(tokens, shape):
            sizes[token] = max(sizes.get(token, 1), size)
    out_tokens = set(_tokens(rhs)) if rhs else set()
    contracted = [s for t, s in sizes.items() if t not in out_tokens and not t.startswith("#")]
    return _numel(_shape(node)) * math.prod(contracted)


def _tokens(term: str) -> list[str]:
    """Split an einsum term into index tokens; ``#k`` marks the k-th ellipsis dim."""
    tokens, i = [], 0
    while i < len(term):
        if term[i] == "#":
            j = i + 1
            while j < len(term) and term[j].isdigit():
                j += 1
            tokens.append(term[i:j])
            i = j
        else:
            tokens.append(term[i])
            i += 1
    return tokens


def _overload_packets() -> dict[Any, Callable[[torch.fx.Node], int]]:
    rules: dict[Any, Callable[[torch.fx.Node], int]] = {
        aten.linear: _linear,
        aten.addmm: _contract_last(1),
        aten.mm: _contract_last(0),
        aten.bmm: _contract_last(0),
        aten.matmul: _contract_last(0),
        aten.baddbmm: _contract_last(1),
        aten.addbmm: lambda n: _numel(_shape(n.args[1])) * _shape(n.args[2])[-1],
        aten.einsum: _einsum,
        aten.convolution: _conv,
        aten._convolution: _conv,
        aten.scaled_dot_product_attention: _sdpa,
    }
    for name in ("conv1d", "conv2d", "conv3d"):
        rules[getattr(aten, name)] = lambda n: _conv(n, transposed=False)
    for name in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        rules[getattr(aten, name)] = lambda n: _conv(n, transposed=True)
    for name in (
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
    ):
        if hasattr(aten, name):
            rules[getattr(aten, name)] = _sdpa
    return rules


_RULES = _overload_packets()


def macs_from_graph(graph_module: torch.fx.GraphModule) -> int:
    """MACs of every counted op in a graph module and its nested subgraphs.

    >>> ep = torch.export.export(nn.Linear(4, 3), (torch.zeros(2, 4),))
    >>> macs_from_graph(ep.graph_module)
    24
    """
    total = 0
    for gm in graph_module.modules():
        if not isinstance(gm, torch.fx.GraphModule):
            continue
        for node in gm.graph.nodes:
            if node.op != "call_function":
                continue
            packet = getattr(node.target, "overloadpacket", None)
            rule = _RULES.get(packet)
            if rule is not None:
                total += int(rule(node))
    return total


def macs_inside(ep: torch.export.ExportedProgram, paths: Sequence[str]) -> int:
    """MACs of the counted ops of ``ep`` called from inside the modules at ``paths`` (or their
    submodules): what removing those modules takes off :func:`macs_from_program`.

    >>> m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> ep = torch.export.export(m, (torch.zeros(1, 4),))
    >>> macs_inside(ep, ["2"]), macs_from_program(ep)
    (6, 18)
    """
    from netsculpt.graph.capture import _clean_path

    wanted = set(paths)
    prefixes = tuple(p + "." for p in wanted)
    total = 0
    for node in ep.graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        rule = _RULES.get(getattr(node.target, "overloadpacket", None))
        if rule is None:
            continue
        stack = node.meta.get("nn_module_stack") or {}
        mods = {_clean_path(v[0]) for v in stack.values()}
        if any(m in wanted or m.startswith(prefixes) for m in mods):
            total += int(rule(node))
    return total


def macs_from_program(ep: torch.export.ExportedProgram) -> int:
    """MACs of an already captured ``ExportedProgram``.

    >>> ep = torch.export.export(nn.Linear(4, 3), (torch.zeros(1, 4),))
    >>> macs_from_program(ep)
    12
    """
    return macs_from_graph(ep.graph_module)


def count_macs(model: nn.Module, example_inputs: Any) -> int:
    """MACs of one forward pass on ``example_inputs``, from the ``torch.export`` graph.

    The model is captured in eval mode under ``torch.no_grad()``; its train/eval flags are
    restored afterwards.

    >>> count_macs(nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 10, 10))
    13824
    """
    args, kwargs = normalize_inputs(example_inputs, model)
    with eval_mode(model), torch.no_grad():
        try:
            ep = torch.export.export(model, args, kwargs, strict=False)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CaptureError(
                f"torch.export could not capture {type(model).__name__} for MAC counting: {first}"
            ) from exc
    return macs_from_program(ep)
