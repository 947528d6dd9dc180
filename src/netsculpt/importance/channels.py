"""Channel importance for the groups of a :class:`~netsculpt.graph.StructureGraph`.

Every estimator returns ``{group id: np.ndarray of one score per channel}``; a higher score means
more important. Groups an estimator cannot score are left out (and so are not pruned).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.calibration.batches import iter_batches, run
from netsculpt.calibration.hooks import task_loss
from netsculpt.core.errors import InputError
from netsculpt.core.utils import eval_mode
from netsculpt.graph.channels import Group, StructureGraph

ESTIMATORS: dict[str, Callable] = {}


def estimator(name: str, needs_data: bool = False):
    def deco(fn):
        fn.needs_data = needs_data
        ESTIMATORS[name] = fn
        return fn

    return deco


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    out = dict(model.named_parameters(remove_duplicate=False))
    out.update(dict(model.named_buffers(remove_duplicate=False)))
    return out


def per_position(
    t: torch.Tensor, dim: int, fn: Callable[[torch.Tensor], torch.Tensor]
) -> np.ndarray:
    """``fn(t)`` summed over every dim but ``dim``: one float64 per position along ``dim``.

    Shared by the in-memory estimators and the shard-by-shard scorer
    (:func:`netsculpt.engine.backends.shards.streamed_scores`), so both give equal scores.

    >>> per_position(torch.tensor([[1.0, -2.0], [3.0, 4.0]]), 0, torch.abs).tolist()
    [3.0, 7.0]
    """
    t = t.detach().float()
    dims = [d for d in range(t.dim()) if d != dim]
    v = fn(t).sum(dim=dims) if dims else fn(t)
    return v.cpu().numpy().astype(np.float64)


def scatter(group: Group, member_values: Iterable[tuple[Any, np.ndarray]]) -> np.ndarray:
    """One score per channel of ``group``: each ``(member, values)`` adds its per-position
    ``values`` to the channels its ``index_map`` points at (-1: no channel).

    >>> from types import SimpleNamespace as NS
    >>> g = NS(size=2)
    >>> scatter(g, [(NS(index_map=np.array([1, 0, -1])), np.array([1.0, 2.0, 5.0]))]).tolist()
    [2.0, 1.0]
    """
    score = np.zeros(group.size, dtype=np.float64)
    for m, vals in member_values:
        sel = m.index_map >= 0
        np.add.at(score, m.index_map[sel], vals[sel])
    return score


def _magnitude(model, graph, groups, p: int) -> dict[int, np.ndarray]:
    tensors = _tensors(model)
    fn = torch.abs if p == 1 else torch.square
    out = {}
    for g in groups:
        vals = [
            (m, per_position(tensors[m.tensor], m.dim, fn))
            for m in g.members
            if m.kind == "param" and m.tensor in tensors
        ]
        s = scatter(g, vals)
        out[g.id] = np.sqrt(s) if p == 2 else s
    return out


@estimator("l1")
def l1(model, graph, groups, data=None, **kw) -> dict[int, np.ndarray]:
    """Sum of |w| over every parameter slice of the channel."""
    return _magnitude(model, graph, groups, 1)


@estimator("l2")
def l2(model, graph, groups, data=None, **kw) -> dict[int, np.ndarray]:
    """L2 norm of all parameter slices of the channel together."""
    return _magnitude(model, graph, groups, 2)


@estimator("lamp")
def lamp(model, graph, groups, data=None, **kw) -> dict[int, np.ndarray]:
    """LAMP (Lee et al. 2021) per channel: with the group's squared channel norms sorted
    ascending, the ``u``-th scores ``s_(u) / Σ_{v ≥ u} s_(v)``; the largest channel of every
    group scores 1, so one global ranking needs no per-layer ratios (``global_=True``)."""
    out = {}
    for gid, norm in _magnitude(model, graph, groups, 2).items():
        sq = norm**2
        order = np.argsort(sq, kind="stable")
        tail = np.cumsum(sq[order][::-1])[::-1]  # Σ over the channels at least as large
        score = np.empty_like(sq)
        score[order] = sq[order] / np.maximum(tail, 1e-300)
        out[gid] = score
    return out


lamp.normalized = True  # comparable across groups as they are: a global ranking uses them raw


@estimator("fpgm")
def fpgm(model, graph, groups, data=None, **kw) -> dict[int, np.ndarray]:
    """FPGM (He et al. 2019): a channel close to the geometric median of its group is
    redundant; its score is ``Σ_j ||F_i − F_j||₂`` over the group's channels, ``F_i`` the
    channel's slices of every producing weight (role ``out``; else every weight) together."""
    tensors = _tensors(model)
    out = {}
    for g in groups:
        members = [m for m in g.members if m.kind == "param" and m.tensor in tensors]
        members = [m for m in members if m.role == "out"] or members
        rows = [_channel_rows(tensors[m.tensor], m, g.size) for m in members]
        rows = [r for r in rows if r is not None]
        if not rows:
            continue
        f = torch.cat(rows, dim=1)
        out[g.id] = torch.cdist(f, f).sum(1).cpu().numpy().astype(np.float64)
    return out


def _channel_rows(t: torch.Tensor, m: Any, size: int) -> torch.Tensor | None:
    """``(size, k)``: each channel's positions of ``m``'s dim, with the rest of the tensor,
    flattened (None when channels own unequal numbers of positions)."""
    im = m.index_map
    pos = np.nonzero(im >= 0)[0]
    counts = np.bincount(im[pos], minlength=size)
    if len(counts) != size or counts.min() != counts.max() or counts[0] == 0:
        return None
    order = pos[np.argsort(im[pos], kind="stable")]
    x = t.detach().double().movedim(m.dim, 0)
    x = x.index_select(0, torch.as_tensor(order, device=x.device))
    return x.reshape(size, -1)


@estimator("random")
def random(model, graph, groups, data=None, seed: int = 0, **kw) -> dict[int, np.ndarray]:
    """Random scores: the baseline every criterion must beat."""
    rng = np.random.default_rng(seed)
    return {g.id: rng.random(g.size) for g in groups}


@estimator("bn_scale")
def bn_scale(model, graph, groups, data=None, **kw) -> dict[int, np.ndarray]:
    """|γ| of the BatchNorm layers in the group (network slimming); groups without one are
    not scored."""
    mods = dict(model.named_modules())
    tensors = _tensors(model)
    out = {}
    for g in groups:
        vals = [
            (m, per_position(tensors[m.tensor], m.dim, torch.abs))
            for m in g.members
            if m.tensor.endswith(".weight")
            and isinstance(mods.get(m.module), nn.modules.batchnorm._BatchNorm)
        ]
        if vals:
            out[g.id] = scatter(g, vals)
    return out


@estimator("taylor", needs_data=True)
def taylor(model, graph, groups, data=None, max_batches: int = 16, **kw):
    """First-order Taylor: |Σ w·∂L/∂w| over the channel's slices, gradients summed over data."""
    params = dict(model.named_parameters(remove_duplicate=False))
    grads: dict[str, torch.Tensor] = {}
    flags = {n: p.requires_grad for n, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    try:
        with eval_mode(model):
            for x, y in iter_batches(data, max_batches):
                model.zero_grad(set_to_none=True)
                task_loss(run(model, x), y).backward()
                for n, p in params.items():
                    if p.grad is not None:
                        g = p.grad.detach() * p.detach()
                        grads[n] = grads[n] + g if n in grads else g
    finally:
        model.zero_grad(set_to_none=True)
        for n, p in params.items():
            p.requires_grad_(flags[n])
    if not grads:
        raise InputError("taylor importance: the calibration data produced no gradients")
    out = {}
    for g in groups:
        vals = [
            (m, per_position(grads[m.tensor], m.dim, lambda t: t))
            for m in g.members
            if m.tensor in grads
        ]
        out[g.id] = np.abs(scatter(g, vals))
    return out


def norm_hooks(modules: dict[str, nn.Module], sq: dict[str, torch.Tensor]) -> list:
    """Hook the Linear / HF Conv1D / Conv / recurrent modules of ``modules`` (path -> module):
    each call adds Σ x_c² per channel of their inputs and outputs into ``sq`` under
    ``"<path>:in"`` / ``"<path>:out"`` (``":hidden"``: recurrent hidden states). Returns the
    handles. The whole model on its batches (:func:`channel_norms`) or one decoder layer at a
    time (:mod:`netsculpt.hf.streamed`) run through the same hooks."""

    def add(key: str, t, cdim: int) -> None:
        if isinstance(t, torch.Tensor) and t.dim() >= 1:
            d = cdim % t.dim()
            v = t.detach().float().square().sum([i for i in range(t.dim()) if i != d])
            sq[key] = sq[key] + v if key in sq else v

    handles = []
    for path, mod in modules.items():
        # HF's Conv1D (GPT-2) is a Linear with a transposed weight: channels last, like Linear
        linear = isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D"
        if linear or isinstance(mod, nn.modules.conv._ConvNd):
            cdim = -1 if linear else 1

            def hook(m, args, output, path=path, cdim=cdim):
                add(f"{path}:in", args[0] if args else None, cdim)
                add(f"{path}:out", output, cdim)

            handles.append(mod.register_forward_hook(hook))
        elif isinstance(mod, (nn.RNNBase, nn.RNNCellBase)):

            def rnn_hook(m, args, output, path=path):
                add(f"{path}:in", _data(args[0]) if args else None, -1)
                h = output[0] if isinstance(output, tuple) else output
                h = _data(h)  # (..., directions · H_out): fold the directions onto the units
                width = getattr(m, "proj_size", 0) or m.hidden_size
                if isinstance(h, torch.Tensor) and h.shape[-1] % width == 0:
                    add(f"{path}:hidden", h.reshape(-1, width), -1)

            handles.append(mod.register_forward_hook(rnn_hook))
    return handles


def channel_norms(
    model: nn.Module, paths, data: Any, max_batches: int = 16
) -> dict[str, torch.Tensor]:
    """``{"<path>:in" / "<path>:out": ‖x_c‖₂ per channel}`` of the inputs and outputs of the
    Linear / HF Conv1D / Conv modules at ``paths``, over calibration data (channels: last dim
    for Linear and Conv1D, dim 1 for conv)."""
    mods = dict(model.named_modules())
    sq: dict[str, torch.Tensor] = {}
    handles = norm_hooks({p: mods[p] for p in paths if p in mods}, sq)
    try:
        with torch.no_grad(), eval_mode(model):
            for x, _ in iter_batches(data, max_batches):
                run(model, x)
    finally:
        for h in handles:
            h.remove()
    return {k: v.sqrt() for k, v in sq.items()}


def consumers(groups: list[Group]) -> set[str]:
    """The modules whose inputs / outputs the ``activation`` scores of ``groups`` read."""
    return {m.module for g in groups for m in g.members if m.role in ("in", "out")}


@estimator("activation", needs_data=True)
def activation(model, graph, groups, data=None, max_batches: int = 16, **kw):
    """Wanda-style: Σ |W_ij|·‖X_j‖ over the layers that consume the channel (inputs measured
    on data); channels with no consumer use the norm of their own activation; hidden units of
    nn.LSTM / GRU / RNN (and cells) the norm of the hidden states they produce."""
    norms = channel_norms(model, consumers(groups), data, max_batches)
    return activation_scores(groups, norms, _tensors(model))


def activation_scores(
    groups: list[Group], norms: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]
) -> dict[int, np.ndarray]:
    """The ``activation`` scores of ``groups`` from the channel ``norms`` (as
    :func:`channel_norms` gives them) and the weights in ``tensors`` (name -> tensor)."""
    out = {}
    for g in groups:
        vals = _hidden_norms(g, norms)  # recurrent units: the norms of their hidden states
        for m in g.members if not vals else ():
            w = tensors.get(m.tensor)
            if w is None or not m.tensor.endswith("weight") or w.dim() < 2:
                continue
            x_norm = norms.get(m.module + ":in")
            if m.role == "in" and x_norm is not None and _takes_input(m.tensor):
                col = per_position(w, m.dim, torch.abs)
                if len(x_norm) == len(col):
                    vals.append((m, col * x_norm.cpu().numpy()))
        if not vals:
            for m in g.members:
                y_norm = norms.get(m.module + ":out")
                if m.role == "out" and y_norm is not None and len(y_norm) == len(m.index_map):
                    vals.append((m, y_norm.cpu().numpy().astype(np.float64)))
        if vals:
            out[g.id] = scatter(g, vals)
    return out


def _hidden_norms(g: Group, norms: dict) -> list:
    """One (member, norms) pair when ``g``'s channels are hidden units of a recurrent module
    (they index the recurrence columns of ``weight_hh``), else none."""
    for m in g.members:
        h_norm = norms.get(m.module + ":hidden")
        leaf = m.tensor.rsplit(".", 1)[-1]
        hh = leaf in ("weight_hh", "weight_hh_l0")
        if m.role == "in" and hh and h_norm is not None and len(h_norm) == len(m.index_map):
            return [(m, h_norm.cpu().numpy().astype(np.float64))]
    return []


def _data(x: Any) -> Any:
    """The tensor of a PackedSequence (its ``data``), else ``x``."""
    return getattr(x, "data", x) if type(x).__name__ == "PackedSequence" else x


def _takes_input(tensor: str) -> bool:
    """A recurrent module's ``:in`` norms are those of its first layer's input only."""
    leaf = tensor.rsplit(".", 1)[-1]
    if not leaf.startswith(("weight_ih", "weight_hh", "weight_hr")):
        return True
    return leaf in ("weight_ih", "weight_ih_l0", "weight_ih_l0_reverse")


def score_groups(
    name: str,
    model: nn.Module,
    graph: StructureGraph,
    groups: list[Group],
    data=None,
    seed: int = 0,
) -> dict[int, np.ndarray]:
    """Scores for ``groups`` by the estimator ``name`` (l1, l2, lamp, fpgm, taylor, activation,
    bn_scale, random)."""
    if name not in ESTIMATORS:
        raise InputError(f"unknown importance '{name}'; choose one of {', '.join(ESTIMATORS)}")
    fn = ESTIMATORS[name]
    if fn.needs_data and data is None:
        raise InputError(f"importance '{name}' needs calibration data: pass data=...")
    return fn(model, graph, groups, data=data, seed=seed)
