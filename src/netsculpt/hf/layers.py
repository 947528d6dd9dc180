"""Which transformer layers to drop: layer scores (ShortGPT influence, angular distance, SLEB
loss) and the cuts they decide, for every HF family (post-LN BERT too).

The edits themselves (:func:`drop_layers`, :func:`set_layers`, :func:`collapse_layers`: the
layer list, the config's depth and per-layer fields, each layer's ``layer_idx``) are surgery's
(:mod:`netsculpt.surgery.hf_layers`) and are re-exported here.

>>> from netsculpt.hf.layers import layer_scores, drop_layers   # doctest: +SKIP
>>> scores = layer_scores(model, batches, "influence")          # doctest: +SKIP
>>> drop_layers(model, sorted(scores, key=scores.get)[:2])       # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.surgery.hf_layers import (
    collapse_layers,
    drop_layers,
    layer_list,
    layers_trial,
    set_layers,
)

CRITERIA = ("influence", "angular", "ppl")
__all__ = [
    "CRITERIA",
    "collapse_layers",
    "cut_layers",
    "damage",
    "drop_layers",
    "layer_list",
    "layer_scores",
    "lowest",
    "similarity",
    "set_layers",
]


def _hidden(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _run(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, dict):
        return model(**batch)
    return model(batch)


@torch.no_grad()
def layer_scores(model: nn.Module, data: Iterable[Any], criterion: str = "influence") -> dict:
    """Importance of each layer (low = safe to drop), keyed by position.

    ``influence``: ShortGPT block influence ``1 - cos(h_in, h_out)`` per token;
    ``angular``: ``arccos(cos) / pi`` of the last token (Gromov et al., n=1);
    ``ppl``: loss increase when the layer alone is skipped (one-shot Shortened-LLaMA / SLEB step).
    """
    if criterion not in CRITERIA:
        raise InputError(f"layer criterion must be one of {CRITERIA}, got {criterion!r}")
    _, layers = layer_list(model)
    batches = list(data)
    was = model.training
    model.eval()
    try:
        if criterion == "ppl":
            return _ppl_scores(model, layers, batches)
        sums = [0.0] * len(layers)
        counts = [0] * len(layers)
        hooks = []
        for i, layer in enumerate(layers):
            hooks.append(layer.register_forward_hook(_sim_hook(i, criterion, sums, counts)))
        try:
            for b in batches:
                _run(model, b)
        finally:
            for h in hooks:
                h.remove()
        return {i: sums[i] / max(counts[i], 1) for i in range(len(layers))}
    finally:
        model.train(was)


def _sim_hook(i: int, criterion: str, sums: list, counts: list):
    def hook(mod, args, kwargs_or_out, out=None):
        h_in = args[0] if args else None
        h_out = _hidden(out if out is not None else kwargs_or_out)
        if h_in is None or h_in.shape != h_out.shape:
            return
        total, n = similarity(h_in, h_out, criterion)
        sums[i] += total
        counts[i] += n

    return hook


def similarity(h_in: torch.Tensor, h_out: torch.Tensor, criterion: str) -> tuple[float, int]:
    """``(sum, count)`` of a layer's ``influence`` (``1 - cos`` per token) or ``angular``
    (``arccos(cos) / pi`` of the last token) between its input and output hidden states; the
    score is the sum over batches divided by the count. In memory (:func:`layer_scores`) and
    one layer at a time (:mod:`netsculpt.hf.streamed`) alike.

    >>> x, y = torch.tensor([[[1.0, 0.0]] * 3]), torch.tensor([[[0.0, 1.0]] * 3])
    >>> similarity(x, y, "angular"), similarity(x, y, "influence")
    ((0.5, 1), (3.0, 3))
    """
    if criterion == "angular":
        h_in, h_out = h_in[:, -1], h_out[:, -1]
    cos = nn.functional.cosine_similarity(h_in.float(), h_out.float(), dim=-1)
    cos = cos.clamp(-1, 1)
    vals = 1 - cos if criterion == "influence" else torch.arccos(cos) / math.pi
    return float(vals.sum()), vals.numel()


def lowest(scores: dict[int, float], count: int) -> list[int]:
    """The ``count`` positions with the lowest scores (ties: the earlier layer first)."""
    return sorted(scores, key=scores.get)[:count]


def _main_out(out: Any) -> torch.Tensor:
    for name in ("last_hidden_state", "logits"):
        t = getattr(out, name, None)
        if isinstance(t, torch.Tensor):
            return t
    return _hidden(out)


def damage(model: nn.Module, batches: list, ref: list | None = None) -> float:
    """Mean next-token loss of a causal LM (``ref`` None), or ``1 - cos`` of the output to
    ``ref`` (the outputs before the edit) per token: the SLEB signal for any model."""
    total = 0.0
    for k, b in enumerate(batches):
        if ref is None:
            kw = dict(b) if isinstance(b, dict) else {"input_ids": b}
            kw.setdefault("labels", kw["input_ids"])
            total += float(model(**kw).loss)
        else:
            out = _main_out(_run(model, b)).float()
            total += float(1 - nn.functional.cosine_similarity(out, ref[k], dim=-1).mean())
    return total / max(len(batches), 1)


def _is_causal_lm(model: nn.Module) -> bool:
    return hasattr(model, "generate") and hasattr(model, "lm_head")


def _ppl_scores(model: nn.Module, layers: nn.ModuleList, batches: list) -> dict:
    ref = None
    if not _is_causal_lm(model):
        ref = [_main_out(_run(model, b)).float() for b in batches]
    base = damage(model, batches, ref)
    keep = list(layers)
    scores = {}
    for i in range(len(keep)):
        with layers_trial(model, keep[:i] + keep[i + 1 :]):  # then the layer comes back
            scores[i] = damage(model, batches, ref) - base
    return scores


def cut_layers(
    model: nn.Module, data: Iterable[Any], count: int, criterion: str = "influence"
) -> list[int]:
    """Drop ``count`` layers in place (original positions returned). ``ppl`` is iterative
    (SLEB: re-score after each removal); the similarity criteria are one-shot (ShortGPT)."""
    batches = list(data)
    _, layers = layer_list(model)
    original = {id(m): i for i, m in enumerate(layers)}
    removed: list[int] = []
    rounds = count if criterion == "ppl" else 1
    for _ in range(rounds):
        _, layers = layer_list(model)
        scores = layer_scores(model, batches, criterion)
        n = 1 if criterion == "ppl" else count
        drop = lowest(scores, n)
        removed += [original[id(layers[i])] for i in drop]
        drop_layers(model, drop)
    return sorted(removed)
