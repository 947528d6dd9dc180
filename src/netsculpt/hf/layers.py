"""Depth edits on the transformer layer list itself, for every HF family (post-LN BERT too).

``ns.cut`` / ``ns.merge`` work on residual blocks found in the graph; a post-LayerNorm encoder
(BERT, MiniLM) has no ``x + f(x)`` block, yet deleting a whole layer still leaves a model that
runs. These helpers edit the layer ``ModuleList`` directly and keep the config in step
(``num_hidden_layers``, per-layer fields such as ``layer_types`` and ``max_window_layers``, each
layer's ``layer_idx``), so ``save_pretrained`` describes the result.

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

from netsculpt.errors import InputError
from netsculpt.hf.config import transformer_layers
from netsculpt.surgery.hf import layer_fields

CRITERIA = ("influence", "angular", "ppl")


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """``(path, ModuleList)`` of the model's transformer layers; InputError when it has none.

    >>> layer_list(nn.Linear(2, 2))
    Traceback (most recent call last):
    netsculpt.errors.InputError: Linear: found no transformer layer list
    """
    found = transformer_layers(model)
    if found is None:
        raise InputError(f"{type(model).__name__}: found no transformer layer list")
    return found


def _hidden(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _run(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, dict):
        return model(**batch)
    return model(batch)


def set_layers(model: nn.Module, keep: list[nn.Module]) -> None:
    """Make ``keep`` (layers of the current list, in order) the layer list, in place, and sync
    the config: depth, per-layer fields (:func:`netsculpt.surgery.hf.layer_fields`: e.g.
    ``layer_types``, ``max_window_layers``) and each layer's ``layer_idx``.

    >>> set_layers(model, list(layer_list(model)[1])[::2])   # doctest: +SKIP
    """
    path, old = layer_list(model)
    index = {id(m): i for i, m in enumerate(old)}
    bad = [i for i, m in enumerate(keep) if id(m) not in index]
    if bad:
        raise InputError(f"set_layers: keep[{bad[0]}] is not a layer of {path}")
    fields = layer_fields(model.config, [index[id(m)] for m in keep], len(old))
    _place(model, path, keep)
    model.config.num_hidden_layers = len(keep)
    for name, value in fields.items():
        setattr(model.config, name, value)


def _place(model: nn.Module, path: str, keep: list[nn.Module]) -> None:
    """Put ``keep`` at ``path`` as the layer list and renumber each layer's ``layer_idx``."""
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, nn.ModuleList(keep))
    for i, layer in enumerate(keep):
        for mod in layer.modules():
            if isinstance(getattr(mod, "layer_idx", None), int):
                mod.layer_idx = i


def drop_layers(model: nn.Module, indices: Iterable[int]) -> list[int]:
    """Delete the layers at ``indices`` (positions in the current list); returns them sorted."""
    _, layers = layer_list(model)
    drop = sorted({int(i) for i in indices})
    if not drop or drop[0] < 0 or drop[-1] >= len(layers) or len(drop) >= len(layers):
        raise InputError(f"drop_layers: bad indices {drop} for {len(layers)} layers")
    set_layers(model, [m for i, m in enumerate(layers) if i not in drop])
    return drop


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
        if criterion == "angular":
            h_in, h_out = h_in[:, -1], h_out[:, -1]
        cos = nn.functional.cosine_similarity(h_in.float(), h_out.float(), dim=-1)
        cos = cos.clamp(-1, 1)
        vals = 1 - cos if criterion == "influence" else torch.arccos(cos) / math.pi
        sums[i] += float(vals.sum())
        counts[i] += vals.numel()

    return hook


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
    path, keep = layer_list(model)[0], list(layers)
    state = dict(vars(model.config))
    scores = {}
    for i in range(len(keep)):
        set_layers(model, keep[:i] + keep[i + 1 :])
        try:
            scores[i] = damage(model, batches, ref) - base
        finally:  # the layer comes back: list, layer_idx and the config exactly as they were
            _place(model, path, keep)
            vars(model.config).clear()
            vars(model.config).update(state)
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
        drop = sorted(scores, key=scores.get)[:n]
        removed += [original[id(layers[i])] for i in drop]
        drop_layers(model, drop)
    return sorted(removed)


@torch.no_grad()
def collapse_layers(model: nn.Module, first: int, span: int) -> None:
    """LaCo RDSC: fold layers ``first+1 .. first+span-1`` into ``first`` with
    ``θ = θ_first + Σ (θ_k − θ_first)`` (the original θ_first, not the notebook's in-place bug),
    then delete them. Norms are kept from ``first``."""
    _, layers = layer_list(model)
    if span < 2 or first + span > len(layers):
        raise InputError(f"collapse_layers: span {span} from {first} exceeds {len(layers)} layers")
    base = layers[first]
    orig = {n: p.detach().clone() for n, p in base.named_parameters()}
    for k in range(first + 1, first + span):
        other = dict(layers[k].named_parameters())
        for n, p in base.named_parameters():
            if "norm" in n.lower() or n not in other or other[n].shape != p.shape:
                continue
            p.add_(other[n] - orig[n])
    drop_layers(model, range(first + 1, first + span))
