"""Net2WiderNet over a coupled channel group: replicate channels, split their outgoing weights.

Every tensor that produces or normalises the group's channels gets copies of the source
channels' slices; every tensor that consumes them divides each source's slice by its replica
count (so the sum seen by the next layer is unchanged). With ``noise`` the replicas' outgoing
slices get ``+η`` and the originals ``-η``: symmetry is broken and the function still holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.core.errors import InputError, VerificationError
from netsculpt.graph.capture import run_model
from netsculpt.graph.channels import StructureGraph
from netsculpt.surgery.attrs import Snapshot
from netsculpt.surgery.hf import fix_hf_modules
from netsculpt.surgery.slicing import Edit, _one_line, _owners, _set_tensor, outputs_close, verify


def widen(
    model: nn.Module,
    graph: StructureGraph,
    plan: dict[int, Any],
    example_inputs: Any = None,
    *,
    noise: float = 0.0,
    seed: int = 0,
    check_equal: bool = True,
) -> Edit:
    """Add ``len(plan[g])`` channels to each group ``g``, copying channels ``plan[g]``.

    Verified on ``example_inputs`` (outputs equal to 1e-5 when ``check_equal``); on failure
    the model is restored and VerificationError says why.

    >>> import torch
    >>> from netsculpt.graph import build_graph
    >>> m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> x = torch.randn(5, 4)
    >>> _ = widen(m, build_graph(m, x), {0: [0, 1]}, x)
    >>> m[0].out_features, m[2].in_features
    (5, 5)
    """
    gen = torch.Generator().manual_seed(seed)
    for gid in plan:
        g = graph.groups[gid]
        if g.kind != "channel" or not g.prunable:
            raise InputError(f"widen: {g.describe()} cannot grow ({g.reason or 'a head group'})")
    before = run_model(model, example_inputs) if example_inputs is not None else None
    snap = Snapshot(model)
    edit = Edit(groups=sorted(plan), snapshot=snap)
    try:
        owners = _owners(model)
        touched: set[str] = set()
        for gid, src in plan.items():
            src = np.asarray(src, dtype=np.int64)
            for member in graph.groups[gid].members:
                _widen_member(model, owners, member, src, noise, gen, snap)
                touched.add(member.module)
        _fix_widths(model, touched, snap)
        fix_hf_modules(model, snap)  # HF width attributes (GPT-2 Conv1D.nf, …) and config
        if example_inputs is not None:
            verify(model, example_inputs, before, outputs_close if check_equal else None)
    except Exception as e:
        snap.restore()
        raise VerificationError(f"widening broke the model: {_one_line(e)}; restored") from e
    return edit


def _widen_member(model, owners, member, src, noise, gen, snap) -> None:
    im = member.index_map
    n = int(im.max()) + 1
    start = int(np.argmax(im >= 0))
    if not np.array_equal(im[start : start + n], np.arange(n)) or (im >= 0).sum() != n:
        raise InputError(
            f"widen: '{member.tensor}' holds the channels through a reshape or repeat; only "
            f"plain channel runs can be widened"
        )
    mod, attr, is_param = owners[member.tensor][0]
    t = (mod._parameters if is_param else mod._buffers)[attr].detach()
    d = member.dim
    idx = torch.as_tensor(start + src)
    new = t.index_select(d, idx).clone()
    old = t.clone()
    if member.role == "in":
        counts = np.bincount(src, minlength=n) + 1
        scale_old = torch.as_tensor(1.0 / counts, dtype=t.dtype)
        shape = [1] * t.dim()
        shape[d] = n
        block = old.narrow(d, start, n) * scale_old.view(shape)
        new_shape = [1] * t.dim()
        new_shape[d] = len(src)
        new = new * torch.as_tensor(1.0 / counts[src], dtype=t.dtype).view(new_shape)
        if noise:
            eta = torch.randn(new.shape, generator=gen, dtype=t.dtype) * noise * float(t.std())
            new = new + eta
            block.index_add_(d, torch.as_tensor(src), -eta)
        old.narrow(d, start, n).copy_(block)
    widened = torch.cat(
        [old.narrow(d, 0, start + n), new, old.narrow(d, start + n, t.shape[d] - start - n)], dim=d
    )
    _set_tensor(owners[member.tensor], widened, snap)
    masks = getattr(model, "_netsculpt_masks", None)
    if masks and member.tensor in masks:
        m = masks[member.tensor]
        snap.save_mask(masks, member.tensor)
        masks[member.tensor] = torch.cat(
            [
                m.narrow(d, 0, start + n),
                m.index_select(d, idx),
                m.narrow(d, start + n, m.shape[d] - start - n),
            ],
            dim=d,
        )


def _fix_widths(model: nn.Module, paths: set[str], snap: Snapshot) -> None:
    mods = dict(model.named_modules())
    for p in paths:
        mod = mods.get(p)
        w = getattr(mod, "weight", None)
        if w is None:
            continue
        snap.save_attrs(mod)
        if isinstance(mod, nn.Linear):
            mod.in_features, mod.out_features = w.shape[1], w.shape[0]
        elif isinstance(mod, nn.modules.conv._ConvNd) and not mod.transposed:
            depthwise = mod.groups == mod.in_channels and mod.groups > 1
            mod.out_channels = w.shape[0]
            if depthwise:
                mod.groups = mod.in_channels = w.shape[0]
            else:
                mod.in_channels = w.shape[1] * mod.groups
        elif isinstance(mod, nn.modules.batchnorm._NormBase):
            mod.num_features = w.shape[0]
        elif isinstance(mod, nn.LayerNorm):
            mod.normalized_shape = tuple(w.shape)
        elif isinstance(mod, nn.GroupNorm):
            mod.num_channels = w.shape[0]
        elif isinstance(mod, nn.Embedding):
            mod.embedding_dim = w.shape[1]
