"""Remove or replicate channels of real modules, fix their attributes, verify, restore on failure.

This is the only place that edits tensors by channel index. It works from a
:class:`~netsculpt.graph.StructureGraph` and a plan ``{group id: channel indices}``.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.core.errors import VerificationError
from netsculpt.graph.capture import run_model
from netsculpt.graph.channels import StructureGraph
from netsculpt.surgery.attrs import Snapshot, fix_attributes

Plan = dict[int, Any]


@dataclass
class Edit:
    """What one surgery did: kept indices per tensor dim and the groups involved."""

    groups: list[int]
    removed: dict[str, dict[int, int]] = field(default_factory=dict)  # tensor -> {dim: count}
    snapshot: Snapshot | None = None

    def undo(self) -> None:
        if self.snapshot is not None:
            self.snapshot.restore()


def tensor_positions(graph: StructureGraph, plan: Plan) -> dict[tuple[str, int], np.ndarray]:
    """Positions to remove for every (tensor, dim) touched by ``plan``."""
    acc: dict[tuple[str, int], list[np.ndarray]] = defaultdict(list)
    for gid, channels in plan.items():
        channels = np.asarray(channels, dtype=np.int64)
        if channels.size == 0:
            continue
        for m in graph.groups[gid].members:
            acc[(m.tensor, m.dim)].append(m.positions(channels))
    return {k: np.unique(np.concatenate(v)) for k, v in acc.items()}


def _owners(model: nn.Module) -> dict[str, list[tuple[nn.Module, str, bool]]]:
    """Every (module, attribute, is_param) that holds each named tensor (tied weights included)."""
    owners: dict[int, list] = defaultdict(list)
    names: dict[int, str] = {}
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        for attr, p in mod._parameters.items():
            if p is not None:
                owners[id(p)].append((mod, attr, True))
                names.setdefault(id(p), f"{mod_name}.{attr}" if mod_name else attr)
        for attr, b in mod._buffers.items():
            if b is not None:
                owners[id(b)].append((mod, attr, False))
                names.setdefault(id(b), f"{mod_name}.{attr}" if mod_name else attr)
    out: dict[str, list] = {}
    for key, lst in owners.items():
        out[names[key]] = lst
    # also index by every alias name so graph names (first occurrence in export) resolve
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        for attr, t in list(mod._parameters.items()) + list(mod._buffers.items()):
            if t is not None:
                out.setdefault(f"{mod_name}.{attr}" if mod_name else attr, owners[id(t)])
    return out


def _set_tensor(owners, new: torch.Tensor, snap: Snapshot) -> None:
    for mod, attr, is_param in owners:
        snap.save_tensor(mod, attr, is_param)
    first_mod, first_attr, is_param = owners[0]
    old = (first_mod._parameters if is_param else first_mod._buffers)[first_attr]
    if is_param:
        value = nn.Parameter(new, requires_grad=old.requires_grad)
    else:
        value = new
    for mod, attr, p in owners:
        if p:
            mod._parameters[attr] = value
        else:
            mod._buffers[attr] = value


def keep_indices(size: int, removed: Any) -> np.ndarray:
    """The indices of a dim of ``size`` that stay when the positions ``removed`` go.

    >>> keep_indices(5, [1, 3]).tolist()
    [0, 2, 4]
    """
    return np.setdiff1d(np.arange(size), np.asarray(removed, dtype=np.int64))


def slice_tensor(t: torch.Tensor, removed: dict[int, Any], name: str = "tensor") -> torch.Tensor:
    """``t`` without the positions ``removed[dim]`` of each dim, dims in increasing order.

    The one slicing rule of netsculpt: surgery on a model in memory and the shard backend
    (a checkpoint streamed one tensor at a time) both cut tensors with it. A meta tensor only
    changes shape.

    >>> slice_tensor(torch.arange(6).reshape(2, 3), {1: [0]}).tolist()
    [[1, 2], [4, 5]]
    """
    for dim, pos in sorted(removed.items()):
        keep = keep_indices(t.shape[dim], pos)
        if len(keep) == 0:
            raise VerificationError(f"plan removes every channel of '{name}' dim {dim}")
        t = _select(t, dim, keep)
    return t


def _select(t: torch.Tensor, dim: int, keep: np.ndarray) -> torch.Tensor:
    if t.device.type == "meta":
        shape = list(t.shape)
        shape[dim] = len(keep)
        return torch.empty(shape, dtype=t.dtype, device="meta")
    idx = torch.as_tensor(keep, dtype=torch.long, device=t.device)
    return t.detach().index_select(dim, idx)


def remove_channels(
    model: nn.Module,
    graph: StructureGraph,
    plan: Plan,
    example_inputs: Any = None,
    *,
    check: Callable[[Any, Any], str | None] | None = None,
) -> Edit:
    """Remove the planned channels from every coupled tensor; verify on ``example_inputs``.

    The output shapes must match the model's before the edit (and ``check(old, new)`` must
    return None when given); otherwise the model is restored and VerificationError is raised.

    >>> import torch
    >>> from netsculpt.graph import build_graph
    >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> x = torch.ones(1, 4)
    >>> g = build_graph(m, x)
    >>> _ = remove_channels(m, g, {g.prunable_groups()[0].id: [0, 1, 2]}, x)
    >>> m[0].out_features, m[2].in_features
    (5, 5)
    """
    plan = {gid: np.asarray(ch, dtype=np.int64) for gid, ch in plan.items() if len(ch)}
    before = run_model(model, example_inputs) if example_inputs is not None else None
    snap = Snapshot(model)
    edit = Edit(groups=sorted(plan), snapshot=snap)
    try:
        _apply(model, graph, plan, snap, edit)
        if example_inputs is not None:
            verify(model, example_inputs, before, check)
    except Exception as e:
        snap.restore()
        names = ", ".join(graph.groups[g].describe() for g in sorted(plan)[:3])
        more = f" (+{len(plan) - 3} more)" if len(plan) > 3 else ""
        raise VerificationError(
            f"removing channels broke the model at {names}{more}: {_one_line(e)}; "
            f"the model was restored"
        ) from e
    return edit


def _apply(model, graph: StructureGraph, plan: Plan, snap: Snapshot, edit: Edit) -> None:
    positions = tensor_positions(graph, plan)
    owners = _owners(model)
    by_tensor: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    for (name, dim), pos in positions.items():
        by_tensor[name][dim] = pos
    changed_modules: set[str] = set()
    masks = getattr(model, "_netsculpt_masks", None)
    for name, dims in by_tensor.items():
        if name not in owners:
            raise VerificationError(f"tensor '{name}' of the graph is not in the model")
        mod, attr, is_param = owners[name][0]
        t = (mod._parameters if is_param else mod._buffers)[attr]
        new = slice_tensor(t, dims, name)
        mask = masks.get(name) if masks else None
        if mask is not None:
            mask = slice_tensor(mask, dims, name)
        for dim, pos in dims.items():
            edit.removed.setdefault(name, {})[dim] = int(len(pos))
        _set_tensor(owners[name], new, snap)
        if mask is not None:
            snap.save_mask(masks, name)
            masks[name] = mask.bool()
        changed_modules.add(name.rsplit(".", 1)[0] if "." in name else "")
    fix_attributes(model, graph, plan, changed_modules, snap)


def verify(model: nn.Module, example_inputs: Any, before: Any, check=None) -> None:
    """Run the model and compare output structure and shapes with ``before``."""
    after = run_model(model, example_inputs)
    a, b = _flatten(before), _flatten(after)
    if len(a) != len(b):
        raise VerificationError(f"the model now returns {len(b)} tensors instead of {len(a)}")
    for i, (x, y) in enumerate(zip(a, b)):
        if tuple(x.shape) != tuple(y.shape):
            raise VerificationError(
                f"output {i} has shape {tuple(y.shape)} instead of {tuple(x.shape)}"
            )
    if check is not None:
        msg = check(before, after)
        if msg:
            raise VerificationError(msg)


def _flatten(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict) or hasattr(out, "to_tuple"):
        vals = out.to_tuple() if hasattr(out, "to_tuple") else tuple(out.values())
        return [t for v in vals for t in _flatten(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _flatten(v)]
    return []


def outputs_close(before, after, rtol: float = 1e-5, atol: float = 1e-5) -> str | None:
    """A ``check`` for edits that promise equal outputs."""
    for i, (x, y) in enumerate(zip(_flatten(before), _flatten(after))):
        if x.is_floating_point():
            scale = float(x.abs().max()) if x.numel() else 0.0
            diff = float((x - y).abs().max()) if x.numel() else 0.0
            if diff > atol + rtol * scale:
                return f"output {i} changed by {diff:.3g} (scale {scale:.3g})"
    return None


def _one_line(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[0][:300]}" if s else type(e).__name__


def meta_clone(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose tensors live on the meta device (no weights copied)."""
    memo: dict[int, Any] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        if isinstance(t, nn.Parameter):
            memo[id(t)] = nn.Parameter(torch.empty_like(t, device="meta"), t.requires_grad)
        else:
            memo[id(t)] = torch.empty_like(t, device="meta")
    return copy.deepcopy(model, memo)


def _to_meta(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return torch.empty_like(x, device="meta")
    if isinstance(x, dict):
        return {k: _to_meta(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_meta(v) for v in x)
    return x


def find_breaking_groups(
    model: nn.Module, graph: StructureGraph, plan: Plan, example_inputs: Any
) -> dict[int, str]:
    """Groups of ``plan`` whose removal breaks the model, by bisection. Trials run on a meta
    copy of the model when it runs there (shapes only, no compute), else on the model itself."""
    target, inputs = model, example_inputs
    try:
        clone, meta_inputs = meta_clone(model), _to_meta(example_inputs)
        run_model(clone, meta_inputs)
        target, inputs = clone, meta_inputs
    except Exception:  # data-dependent code cannot run on meta: trial on the real model
        pass
    bad: dict[int, str] = {}

    def trial(gids: list[int]) -> str | None:
        try:
            remove_channels(target, graph, {g: plan[g] for g in gids}, inputs).undo()
            return None
        except VerificationError as e:
            return str(e)

    def search(gids: list[int]) -> None:
        msg = trial(gids)
        if msg is None:
            return
        if len(gids) == 1:
            bad[gids[0]] = msg
            return
        half = len(gids) // 2
        n_before = len(bad)
        search(gids[:half])
        search(gids[half:])
        if len(bad) == n_before:  # only fails in combination: keep a greedy compatible subset
            ok: list[int] = []
            for g in gids:
                if trial(ok + [g]) is None:
                    ok.append(g)
                else:
                    bad[g] = "fails in combination with other groups"

    search(sorted(gid for gid, ch in plan.items() if len(ch)))
    return bad


def remove_channels_safely(
    model: nn.Module, graph: StructureGraph, plan: Plan, example_inputs: Any, *, check=None
) -> tuple[Edit, dict[int, str]]:
    """Like :func:`remove_channels`, but groups whose removal breaks the model (code that
    hard-codes a width, say) are left out; returns the edit and ``{group id: reason}``."""
    try:
        return remove_channels(model, graph, plan, example_inputs, check=check), {}
    except VerificationError:
        if check is not None:
            raise
    bad = find_breaking_groups(model, graph, plan, example_inputs)
    rest = {g: ch for g, ch in plan.items() if g not in bad}
    return remove_channels(model, graph, rest, example_inputs, check=check), bad
