"""Where in ``forward`` a group's width is fixed: the line that broke a removal.

When removing a group's channels breaks the model, the culprit is almost always a ``view`` /
``reshape`` (or a slice, an expand) written with a constant width. The exported graph keeps
each node's source line (``node.meta["stack_trace"]``); the node is found among those that read
the group's channels, by the frames of the error's traceback or, failing that, by the shape the
error message quotes (the constant the code wrote).
"""

from __future__ import annotations

import re
import traceback

from torch import fx

from netsculpt.graph.capture import Captured
from netsculpt.graph.channels import StructureGraph
from netsculpt.graph.rules import op_name

# ops whose size arguments a forward may write as constants
SHAPED = {
    "view", "reshape", "_unsafe_view", "unflatten", "expand", "slice", "split",
    "split_with_sizes", "narrow", "repeat", "new_zeros", "new_ones", "new_empty", "zeros",
    "ones", "full", "empty",
}  # fmt: skip
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_SHAPE = re.compile(r"shape '\[([-\d, ]+)\]'")


def _frames(node: fx.Node) -> list[tuple[str, int]]:
    return [(f, int(n)) for f, n in _FRAME.findall(node.meta.get("stack_trace") or "")]


def _reads_group(graph: StructureGraph, node: fx.Node, cls: int) -> bool:
    for a in node.all_input_nodes:
        lays = graph.layouts.get(a.name)
        if not isinstance(lays, list):
            continue
        flat = [x for sub in lays for x in (sub if isinstance(sub, list) else [sub])]
        for lay in flat:
            if lay is not None and cls in graph.atoms.leaves(lay):
                return True
    return False


def _describe(node: fx.Node) -> str:
    file, line = _frames(node)[-1]
    src = (node.meta.get("stack_trace") or "").rstrip().splitlines()[-1].strip()
    where = Captured.module_path(node) or "<root>"
    return f"{op_name(node)} at {file}:{line} in '{where}' (`{src[:80]}`)"


def fixed_width_at(graph: StructureGraph, gid: int, error: BaseException | None) -> str | None:
    """``"reshape at model.py:12 in 'attn' (`x.view(b, t, 8)`)"`` for the node of the graph
    that reads group ``gid``'s channels and most likely broke with ``error``, or None."""
    cls = graph.groups[gid].root
    candidates = [
        n
        for n in graph.captured.graph.nodes
        if n.op == "call_function" and _frames(n) and _reads_group(graph, n, cls)
    ]
    cause = error
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    if cause is not None and cause.__traceback__ is not None:
        seen = {(f.filename, f.lineno) for f in traceback.extract_tb(cause.__traceback__)}
        for n in candidates:  # the innermost frame of the node is a frame of the error
            if _frames(n)[-1] in seen and op_name(n) in SHAPED:
                return _describe(n)
    m = _SHAPE.search(str(cause) if cause is not None else "")
    if m:
        quoted = [int(s) for s in m.group(1).split(",") if s.strip()]
        for n in candidates:
            sizes = n.args[1] if len(n.args) > 1 else None
            shaped = op_name(n) in SHAPED and isinstance(sizes, (list, tuple))
            if shaped and [s for s in sizes if isinstance(s, int)] == quoted:
                return _describe(n)
    return None
