"""What a found block can become, and which blocks a call may touch.

- :func:`bridge_dim` / ``_plain_how``: how a plain layer block is removed (identity, a bridge
  that maps the one feature dim that changes, a bridge folded into the next Linear, or not at
  all, with the reason);
- :func:`block_ignored`, :func:`own_group`, :func:`blocks_by_name`: selection helpers for cut
  and grow.

``netsculpt.graph.blocks`` re-exports these names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from netsculpt.graph.blocks import Block


def _changed(in_shape: tuple, out_shape: tuple) -> list[int] | None:
    """The dims whose sizes differ (None: different ranks)."""
    if len(in_shape) != len(out_shape):
        return None
    return [i for i, (a, b) in enumerate(zip(in_shape, out_shape)) if a != b]


def bridge_dim(in_shape: tuple, out_shape: tuple, feature_dim: int | None = None) -> int | None:
    """The feature dim a bridge maps (-1: Linear, 1: 1x1 conv), or None if others differ.
    ``feature_dim``: the layer's own (``Block.feature_dim``), which must be the dim that
    changes (a strided conv shortens its last dim, which no bridge maps); without it, the
    dim is guessed from the shapes."""
    diff = _changed(in_shape, out_shape)
    if diff is None or len(diff) != 1:
        return None
    d, rank = diff[0], len(in_shape)
    if feature_dim is not None and d != feature_dim % rank:
        return None
    if d == rank - 1:
        return -1
    if d == 1 and rank in (3, 4, 5):
        return 1
    return None


def _plain_how(
    model: nn.Module, group: list, ishp: tuple, oshp: tuple, params: int, fdim: int = -1
) -> tuple:
    if params == 0:
        return "", "no parameters"
    if ishp == oshp:
        return "identity", ""
    dim = bridge_dim(ishp, oshp, fdim)
    if dim is None:
        one = len(_changed(ishp, oshp) or []) == 1
        what = "a spatial dim, not the channels" if one else "more than the feature dim"
        return "", f"shape {ishp} -> {oshp} changes {what}"
    bridge = ishp[dim] * oshp[dim] + oshp[dim]
    if bridge < params:
        return "bridge", ""
    container, index = group[-1][0], group[-1][1]
    if dim == -1 and index >= 0:
        children = list(model.get_submodule(container).children())
        if index + 1 < len(children) and isinstance(children[index + 1], nn.Linear):
            return "bridge+fold", ""
    return "", "a bridge would be as large as the layer and cannot fold into the next one"


def blocks_by_name(blocks: list[Block]) -> dict[str, Block]:
    return {b.name: b for b in blocks}


def block_ignored(model: nn.Module, block: Block, patterns: list[str]) -> bool:
    """True when ``block``, or any module inside it, matches ``patterns`` (the names / globs of
    :func:`netsculpt.core.select.ignored_names`): a block is cut or grown only as a whole."""
    from netsculpt.core.select import is_ignored

    if not patterns:
        return False
    return any(
        is_ignored(q, patterns)
        for m in block.modules
        for q, _ in model.get_submodule(m).named_modules(prefix=m)
    )


def own_group(graph: Any, block: Block) -> Any:
    """The largest prunable channel group of ``graph`` (a
    :class:`~netsculpt.graph.channels.StructureGraph`) produced only inside ``block``: what
    ``grow(kind="wider")`` widens. None when the block produces no such group."""
    prefixes = tuple(p + "." for p in block.modules)
    best = None
    for g in graph.groups:
        outs = [m for m in g.members if m.role == "out"]
        if (
            g.prunable
            and outs
            and all(m.module in block.modules or m.module.startswith(prefixes) for m in outs)
        ):
            best = g if best is None or g.size > best.size else best
    return best
