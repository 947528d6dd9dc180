"""LaCo layer collapse: merge ``span`` adjacent, identical residual blocks into the first one with
the RDSC rule ``θ*_l = θ_l + Σ_{k=1..m} (θ_{l+k} − θ_l)`` (norms kept from block ``l``), replace the
others by the identity, and keep the change only if the model's output stays similar.

The sum uses the *original* ``θ_l`` for every ``k``. LaCo's reference notebook updates ``θ_l`` in
place inside the loop, which yields ``θ_{l+m}`` (layer replacement, not RDSC); see
docs/algorithms.md §2.

>>> a, b, c = (torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0]))
>>> rdsc([a, b, c])
tensor([5.])
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from netsculpt.utils import eval_mode


def rdsc(thetas: list[torch.Tensor]) -> torch.Tensor:
    """``θ_0 + Σ_{k≥1} (θ_k − θ_0)`` with the original ``θ_0`` (not updated in place)."""
    base = thetas[0]
    out = base.clone()
    for t in thetas[1:]:
        out += t - base
    return out


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def _signature(module: nn.Module) -> tuple:
    return (type(module), tuple((k, tuple(v.shape)) for k, v in module.state_dict().items()))


def block_runs(model: nn.Module, example_inputs: Any) -> list[list]:
    """Runs of adjacent residual blocks (one container, same class, same tensor shapes; removed
    blocks between them do not count) that can be collapsed into each other, as ``Block``s from
    :func:`netsculpt.graph.blocks.find_blocks`."""
    from netsculpt.graph.blocks import find_blocks
    from netsculpt.surgery.depth import Skip

    runs: list[list] = []
    for b in find_blocks(model, example_inputs):
        if b.kind != "residual" or b.how != "skip" or not b.removable or not b.same_shape:
            continue
        sig = _signature(model.get_submodule(b.name))
        last = runs[-1][-1] if runs else None
        if last is not None and last[0].container == b.container and last[1] == sig:
            box = model.get_submodule(b.container) if b.container else model
            gap = list(box.children())[last[0].index + 1 : b.index]
            if all(isinstance(m, (nn.Identity, Skip)) for m in gap):
                runs[-1].append((b, sig))
                continue
        runs.append([(b, sig)])
    return [[b for b, _ in run] for run in runs if len(run) > 1]


def _calib(data: Any, example_inputs: Any, limit: int) -> list:
    from netsculpt.calibration.batches import iter_batches

    if data is None:
        return [example_inputs]
    return [x for x, _ in iter_batches(data, limit)]


@torch.no_grad()
def _outputs(model: nn.Module, inputs: list) -> list[torch.Tensor]:
    from netsculpt.calibration.batches import logits_of, run

    with eval_mode(model):
        return [logits_of(run(model, x)).detach().double() for x in inputs]


def similarity(ref: list[torch.Tensor], out: list[torch.Tensor]) -> float:
    """Mean over samples of the cosine between flattened outputs (LaCo's acceptance score)."""
    num = den = 0.0
    for a, b in zip(ref, out):
        cos = nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)
        num += float(cos.sum())
        den += cos.numel()
    return num / max(den, 1)


def _collapse(model: nn.Module, blocks: list) -> None:
    """Write RDSC of ``blocks`` into the first one and remove the others (highest index first,
    so that deleting from a ModuleList leaves the lower indices valid)."""
    from netsculpt.surgery.depth import remove_block

    target = model.get_submodule(blocks[0].name)
    norms = {n for n, m in target.named_modules() if n and _is_norm(m)}
    others = [dict(model.get_submodule(b.name).named_parameters()) for b in blocks[1:]]
    with torch.no_grad():
        for name, p in target.named_parameters():
            if name.rpartition(".")[0] in norms:
                continue  # LaCo keeps the norms of block l
            merged = rdsc([p.detach().double()] + [o[name].detach().double() for o in others])
            p.copy_(merged.to(p.dtype))
    for b in sorted(blocks[1:], key=lambda b: -b.index):
        remove_block(model, b)


def collapse_blocks(model: nn.Module, example_inputs: Any, cfg, data: Any = None) -> dict:
    """LaCo's loop over each run of identical residual blocks, from the top down (in place)."""
    from netsculpt.ops.merge import restore

    inputs = _calib(data, example_inputs, cfg.calib_batches)
    ref = _outputs(model, inputs)
    merged, tried, removed = [], [], 0
    runs = block_runs(model, example_inputs)
    r = len(runs) - 1
    while r >= 0:
        run = runs[r]
        layer = len(run) - cfg.span
        while layer >= 0:
            if cfg.max_removed is not None and removed + cfg.span - 1 > cfg.max_removed:
                break
            cands = run[layer : layer + cfg.span]
            names = [b.name for b in cands]
            backup = copy.deepcopy(model)
            _collapse(model, cands)
            sim = similarity(ref, _outputs(model, inputs))
            tried.append({"blocks": names, "similarity": sim, "accepted": sim > cfg.threshold})
            if sim > cfg.threshold:
                merged.append({"into": names[0], "removed": names[1:], "similarity": sim})
                removed += len(cands) - 1
                # re-read the blocks: a ModuleList shifted; the merged block kept its name
                runs = block_runs(model, example_inputs)
                r = next((i for i, rr in enumerate(runs) if names[0] in {b.name for b in rr}), -1)
                if r < 0:
                    break
                run = runs[r]
                pos = [b.name for b in run].index(names[0])
                layer = min(pos - 1, len(run) - cfg.span)
            else:
                restore(model, backup)
                layer -= 1
        r -= 1
    final = similarity(ref, _outputs(model, inputs))
    notes = [] if merged else [f"no block collapse kept output similarity > {cfg.threshold}"]
    return {
        "merged": merged,
        "tried": tried,
        "removed": removed,
        "similarity": final,
        "notes": notes,
    }
