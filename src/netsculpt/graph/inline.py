"""Inline the subgraphs of higher-order ops that only change a mode (autocast, grad mode).

``torch.export`` keeps ``with torch.autocast(...)`` / ``torch.no_grad()`` regions as a
``wrap_with_autocast`` / ``wrap_with_set_grad_enabled`` node that calls a submodule graph
(timm's EfficientViT attention runs in float32 that way). Channels flow through them as if the
region were inline, so the structure walk reads a copy of the graph with those calls inlined;
the exported program itself is left as it is.
"""

from __future__ import annotations

import operator

from torch import fx

MODE_HOPS = {"wrap_with_autocast", "wrap_with_set_grad_enabled"}


def _hop_name(node: fx.Node) -> str | None:
    if node.op != "call_function":
        return None
    name = getattr(node.target, "__name__", None) or getattr(node.target, "_name", None)
    return name if name in MODE_HOPS else None


def walk_graph(gm: fx.GraphModule) -> fx.Graph:
    """``gm.graph``, or a copy of it with every mode-only higher-order op inlined.

    Placeholders keep their names (they name parameters and inputs); inlined nodes keep their
    metadata (shapes, module stack, stack trace).
    """
    if not any(_hop_name(n) for n in gm.graph.nodes):
        return gm.graph
    new = fx.Graph()
    _copy(new, gm, gm.graph, {}, top=True)
    return new


def _copy(new: fx.Graph, gm, graph: fx.Graph, env: dict, top: bool):
    outs = None
    for n in graph.nodes:
        if n.op == "placeholder" and not top:
            continue  # bound by the caller
        if n.op == "output" and not top:
            outs = fx.node.map_arg(n.args[0], lambda a: env[a])
            continue
        if _hop_name(n):
            i = next(
                k for k, a in enumerate(n.args) if isinstance(a, fx.Node) and a.op == "get_attr"
            )
            sub = getattr(gm, n.args[i].target)
            operands = n.args[i + 1 :]
            phs = [p for p in sub.graph.nodes if p.op == "placeholder"]
            sub_env = {p: env[a] if isinstance(a, fx.Node) else a for p, a in zip(phs, operands)}
            env[n] = _copy(new, sub, sub.graph, sub_env, top=False)
            continue
        if (
            n.op == "call_function"
            and n.target is operator.getitem
            and isinstance(env.get(n.args[0]), (tuple, list))
        ):
            env[n] = env[n.args[0]][n.args[1]]
            continue
        env[n] = new.node_copy(n, lambda a: env[a])
    return outs


__all__ = ["MODE_HOPS", "walk_graph"]
