"""Keep Hugging Face modules' plain-int attributes true to their sliced weights.

Hugging Face layers store widths in attributes that ``forward`` reads (GPT-2's ``Conv1D.nf`` and
``split_size``, BERT's ``all_head_size``); after surgery they must follow the new weight shapes.
Everything here is read from the weights themselves (never from a model name), recorded in the
edit's snapshot so that a failed edit is undone, and listed in ``_netsculpt_attrs`` so that
``ns.save`` / ``ns.load`` carry it. The config is then synced by
:func:`netsculpt.surgery.hf_config.sync_config`.
Transformers is never imported here: modules are recognised by their attributes.

>>> import torch
>>> from netsculpt.surgery.attrs import Snapshot
>>> m = torch.nn.Linear(2, 2)
>>> fix_hf_modules(m, Snapshot(m))  # not a Hugging Face model: nothing to do
"""

from __future__ import annotations

from typing import Any

from torch import nn

from netsculpt.surgery.hf_config import (
    K_NAMES,
    MLP_IN_NAMES,
    Q_NAMES,
    child,
    head_dim_of,
    in_width,
    is_conv1d,
    out_width,
    sync_config,
)


def _set(snap, mod: nn.Module, **values: Any) -> None:
    snap.save_attrs(mod)
    names = list(getattr(mod, "_netsculpt_attrs", ()))
    for k, v in values.items():
        if getattr(mod, k, None) != v:
            mod.__dict__[k] = v
        if k not in names:  # ns.save records these; ns.load sets them back
            names.append(k)
    if names:
        mod.__dict__["_netsculpt_attrs"] = tuple(names)


def _kept_as_built(attn: nn.Module) -> dict[str, Any]:
    """Per-head width and score scale as the module holds them. Surgery never changes them
    (head_dim is protected), but a config may no longer derive them (GPT-2 / BERT compute
    ``hidden // heads``): recording them makes ``ns.load`` restore them instead."""
    out: dict[str, Any] = {}
    for name in ("head_dim", "attention_head_size", "scaling"):
        v = getattr(attn, name, None)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = v
    return out


def _fix_attention(attn: nn.Module, snap) -> None:
    hd = head_dim_of(attn)
    if hd is None:
        return
    c_attn = getattr(attn, "c_attn", None)
    if c_attn is not None and is_conv1d(c_attn) and not getattr(attn, "is_cross_attention", 0):
        split = out_width(c_attn) // 3  # GPT-2: fused q, k, v of equal width
        _set(snap, attn, split_size=split, num_heads=split // hd, embed_dim=in_width(c_attn),
             **_kept_as_built(attn))  # fmt: skip
        return
    q, k = child(attn, Q_NAMES), child(attn, K_NAMES)
    if q is None:
        return
    heads, values = out_width(q) // hd, _kept_as_built(attn)
    for name in ("num_heads", "num_attention_heads", "n_heads"):
        if isinstance(getattr(attn, name, None), int):
            values[name] = heads
    if isinstance(getattr(attn, "all_head_size", None), int):
        values["all_head_size"] = out_width(q)
    if k is not None and out_width(k) is not None:
        kv = out_width(k) // hd
        if isinstance(getattr(attn, "num_key_value_heads", None), int):
            values["num_key_value_heads"] = kv
        if isinstance(getattr(attn, "num_key_value_groups", None), int) and kv:
            values["num_key_value_groups"] = heads // kv
    if values:
        _set(snap, attn, **values)


def fix_hf_modules(model: nn.Module, snap) -> None:
    """Sync width attributes of every HF module with its weights, then the model's config."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return
    for mod in model.modules():
        if is_conv1d(mod):
            _set(snap, mod, nf=out_width(mod), nx=in_width(mod))
        elif head_dim_of(mod) is not None:
            _fix_attention(mod, snap)
        if isinstance(getattr(mod, "intermediate_size", None), int):
            up = child(mod, MLP_IN_NAMES)
            if up is not None and out_width(up) is not None:
                _set(snap, mod, intermediate_size=out_width(up))
    sync_config(model, snap)


# per-layer config fields -----------------------------------------------------------------------
# lists that can have the depth's length by chance but do not describe layers
_NOT_PER_LAYER = ("architectures", "image_size", "patch_size", "bad_words_ids", "suppress_tokens")
# lists of layer indices (Qwen2-MoE / Qwen3-MoE ``mlp_only_layers``, Llama 4 ``moe_layers``)
_INDEX_LISTS = ("mlp_only_layers", "moe_layers")


def layer_fields(config: Any, order: list[int], old_len: int) -> dict[str, Any]:
    """The per-layer config fields for a layer list rebuilt as ``order`` (the original index
    of each new layer: a cut leaves some out, a copy repeats one), only those that change.

    * a list of ``old_len`` scalars (``layer_types``, ``mlp_layer_types``, SmolLM3's
      ``no_rope_layers`` ...) keeps the entries of the kept layers;
    * a list of layer indices (``mlp_only_layers``, ``moe_layers``) is renumbered;
    * ``max_window_layers``, a layer-index threshold (Qwen2 / Qwen3: layers
      ``i >= max_window_layers`` use sliding window), becomes the number of new layers whose
      original index was below it, so every layer stays on its side.

    Token ids, ``architectures`` and image sizes are never touched. ``num_hidden_layers`` is
    the caller's; it sets the returned values (depth surgery through its undo log).

    >>> from types import SimpleNamespace as NS
    >>> cfg = NS(max_window_layers=3, layer_types=list("ffflll"), eos_token_id=[1, 2, 3, 4, 5, 6])
    >>> layer_fields(cfg, [0, 2, 3, 5], 6)
    {'max_window_layers': 2, 'layer_types': ['f', 'f', 'l', 'l']}
    """
    out: dict[str, Any] = {}
    for name, value in vars(config).items():
        if name.startswith("_") or name in _NOT_PER_LAYER or "token_id" in name:
            continue
        if name == "max_window_layers" and type(value) is int:
            new: Any = sum(1 for i in order if i < value)
        elif name in _INDEX_LISTS and isinstance(value, list):
            kept = set(value)
            new = [j for j, i in enumerate(order) if i in kept]
        elif isinstance(value, list) and len(value) == old_len and all(_scalar(v) for v in value):
            new = [value[i] for i in order]
        else:
            continue
        if new != value:
            out[name] = new
    return out


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float))
