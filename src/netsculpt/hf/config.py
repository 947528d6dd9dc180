"""Does a Hugging Face model's config describe its (edited) weights?

The widths are read and written by surgery (:mod:`netsculpt.surgery.hf_config`: after surgery
the weights are the truth, :func:`layer_widths` reads them per layer and :func:`sync_config`
writes what HF can express); they are re-exported here. :func:`hf_compatible` says whether
``save_pretrained`` + ``from_pretrained`` rebuilds the model; when not, save with ``ns.save``
(manifest).

>>> from transformers import LlamaConfig, LlamaForCausalLM   # doctest: +SKIP
>>> m = LlamaForCausalLM(LlamaConfig(hidden_size=64, num_hidden_layers=2,
...     num_attention_heads=4, num_key_value_heads=2, intermediate_size=128))  # doctest: +SKIP
>>> layer_widths(m)["layers"][0]                                 # doctest: +SKIP
{'heads': 4, 'kv_heads': 2, 'head_dim': 16, 'intermediate': 128}
"""

from __future__ import annotations

from torch import nn

from netsculpt.surgery.hf_config import (
    effective,
    hidden_width,
    layer_widths,
    planned_config,
    sync_config,
    transformer_layers,
)

__all__ = [
    "hf_compatible",
    "hidden_width",
    "layer_widths",
    "planned_config",
    "sync_config",
    "transformer_layers",
]


def hf_compatible(model: nn.Module) -> tuple[bool, list[str]]:
    """Whether ``save_pretrained`` + ``from_pretrained`` rebuilds exactly these shapes.

    >>> hf_compatible(nn.Linear(2, 2))
    (False, ['not a Hugging Face model (no config)'])
    """
    if getattr(model, "config", None) is None:
        return False, ["not a Hugging Face model (no config)"]
    values, why = planned_config(model)
    config = model.config
    for name, v in values.items():
        if effective(config, name) != v:
            why.append(f"config.{name} is {getattr(config, name, None)}, the weights say {v}")
    edits = [e for e in getattr(model, "_netsculpt_edits", None) or [] if not _reorders(e)]
    if edits:
        why.append("modules were replaced (see ns.save's manifest)")
    if not why:
        why += _rebuild_mismatches(model)
    return not why, why


def _rebuild_mismatches(model: nn.Module, limit: int = 3) -> list[str]:
    """Build the class from the current config on the meta device (what ``from_pretrained``
    does, without memory) and list tensors whose shapes differ from the model's."""
    import torch

    config = model.config
    try:  # through from_dict, as from_pretrained reads it: its validators run too
        config = type(config).from_dict(config.to_dict())
    except Exception as e:
        msg = " ".join(str(e).split())
        return [f"{type(config).__name__} rejects the saved config: {msg}"]
    try:
        with torch.device("meta"):
            fresh = type(model)(config)
    except Exception as e:  # a config the class cannot build is not compatible either
        msg = " ".join(str(e).split())
        return [f"{type(model).__name__} cannot be built from the config: {msg}"]
    want = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    out = []
    for k, v in model.state_dict().items():
        if k in want and want[k] != tuple(v.shape):
            out.append(f"from_pretrained would build {k} as {want[k]}, the weights are "
                       f"{tuple(v.shape)}")  # fmt: skip
    return out[:limit]


def _reorders(spec: dict) -> bool:
    """An edit that only removes, repeats or copies existing layers of a layer list (a cut or
    a block expansion): the config's layer count describes it."""
    children = spec.get("children")
    if children is None:
        return False
    return all("ref" in c or "copy" in c for _, c in children)
