"""Read a Hugging Face model's real widths from its weights and write them into its config.

After surgery the weights are the truth. :func:`layer_widths` reads, per transformer layer, the
number of query heads, KV heads, head dim and MLP intermediate size, plus the hidden size and
the depth; :func:`sync_config` writes every field HF can express (a value shared by all layers
that rebuilds the same shapes) and keeps the exact per-layer numbers in
``config.netsculpt_layers``. :func:`hf_compatible` says whether ``save_pretrained`` +
``from_pretrained`` rebuilds the model; when not, save with ``ns.save`` (manifest).

>>> from transformers import LlamaConfig, LlamaForCausalLM   # doctest: +SKIP
>>> m = LlamaForCausalLM(LlamaConfig(hidden_size=64, num_hidden_layers=2,
...     num_attention_heads=4, num_key_value_heads=2, intermediate_size=128))  # doctest: +SKIP
>>> layer_widths(m)["layers"][0]                                 # doctest: +SKIP
{'heads': 4, 'kv_heads': 2, 'head_dim': 16, 'intermediate': 128}
"""

from __future__ import annotations

from typing import Any

from torch import nn

from netsculpt.surgery.hf import (
    GATE_UP_NAMES,
    MLP_IN_NAMES,
    head_dim_of,
    in_width,
    out_width,
    qk_widths,
)

# config fields by meaning; GPT-2 names come through the config's attribute_map
HEADS, KV_HEADS, INTER, HIDDEN, HEAD_DIM = (
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "hidden_size",
    "head_dim",
)


def transformer_layers(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The ModuleList of transformer layers: the longest list whose items all hold attention.

    >>> transformer_layers(nn.Linear(2, 2)) is None
    True
    """
    best = None
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.ModuleList) or len(mod) == 0:
            continue
        longer = best is None or len(mod) > len(best[1])
        if longer and all(_attention(layer) is not None for layer in mod):
            best = (name, mod)
    return best


def _attention(layer: nn.Module) -> nn.Module | None:
    for mod in layer.modules():
        if head_dim_of(mod) is not None and qk_widths(mod)[0] is not None:
            return mod
    return None


def _mlp_in(layer: nn.Module) -> nn.Module | None:
    for name, mod in layer.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in MLP_IN_NAMES or leaf in GATE_UP_NAMES:
            return mod
        if name.endswith("intermediate.dense"):  # BERT
            return mod
    return None


def layer_widths(model: nn.Module) -> dict[str, Any]:
    """``{"hidden", "layers": [{"heads", "kv_heads", "head_dim", "intermediate"}, ...]}``."""
    found = transformer_layers(model)
    rows = []
    for layer in found[1] if found else []:
        attn = _attention(layer)
        hd = head_dim_of(attn)
        q_out, k_out = qk_widths(attn)
        up = _mlp_in(layer)
        inter = out_width(up) if up is not None else None
        if inter is not None and any(n.endswith(GATE_UP_NAMES) for n, m in
                                     layer.named_modules() if m is up):  # fmt: skip
            inter //= 2  # [gate | up]
        rows.append(
            {
                "heads": q_out // hd,
                "kv_heads": (k_out or q_out) // hd,
                "head_dim": hd,
                "intermediate": inter,
            }
        )
    return {"hidden": hidden_width(model), "layers": rows}


def hidden_width(model: nn.Module) -> int | None:
    """The residual-stream width: the input embedding's output size."""
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if isinstance(emb, nn.Embedding):
        return int(emb.weight.shape[1])
    if emb is not None:
        conv = next((m for m in emb.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is not None:
            return int(conv.weight.shape[0])
        w = in_width(emb)
        return w
    return None


def _uniform(values: list) -> Any:
    vals = {v for v in values if v is not None}
    return vals.pop() if len(vals) == 1 else None


def _has_field(config, name: str) -> bool:
    return name in config.to_dict() or name in getattr(config, "attribute_map", {})


def _derives_head_dim(config) -> bool:
    """True when the family computes head_dim as hidden_size // num_attention_heads."""
    return HEAD_DIM not in config.to_dict() and type(config).__name__ in _DERIVED_HEAD_DIM


# configs whose modules read head_dim only as hidden // heads (no head_dim field honoured)
_DERIVED_HEAD_DIM = {"BertConfig", "GPT2Config", "RobertaConfig", "DistilBertConfig"}


def planned_config(model: nn.Module) -> tuple[dict[str, Any], list[str]]:
    """Config values that describe the current weights, and why some cannot be expressed."""
    config = model.config
    w = layer_widths(model)
    rows, hidden, why = w["layers"], w["hidden"], []
    values: dict[str, Any] = {}
    found = transformer_layers(model)
    if found is not None and _has_field(config, "num_hidden_layers"):
        values["num_hidden_layers"] = len(found[1])
    if hidden is not None and _has_field(config, HIDDEN):
        values[HIDDEN] = hidden
    for key, field in (("intermediate", INTER), ("heads", HEADS), ("kv_heads", KV_HEADS)):
        if field == INTER and not _has_field(config, INTER) and hasattr(config, "n_inner"):
            field = "n_inner"  # GPT-2
        if not rows or not _has_field(config, field):
            continue
        v = _uniform([r[key] for r in rows])
        if v is None:
            why.append(f"{field} differs between layers")
        else:
            values[field] = v
    hd = _uniform([r["head_dim"] for r in rows]) if rows else None
    heads = values.get(HEADS)
    if hd is not None and heads:
        if _derives_head_dim(config):
            if hidden is None or hidden % heads or hidden // heads != hd:
                why.append(
                    f"{type(config).__name__} derives head_dim as hidden_size // heads "
                    f"({hidden} // {heads}), the weights have head_dim {hd}"
                )
                values.pop(HEADS)  # keep a head count the family can build; truth in layers
        else:
            values[HEAD_DIM] = hd
    return values, why


def sync_config(model: nn.Module, snap=None) -> list[str]:
    """Write the widths the weights have into ``model.config``; returns what HF cannot express.

    Fields that differ between layers keep their old value (a buildable template) and the exact
    per-layer widths go to ``config.netsculpt_layers``. Each write is saved in ``snap`` (a
    surgery Snapshot) so a failed edit puts the config back too.
    """
    config = getattr(model, "config", None)
    if config is None or transformer_layers(model) is None:
        return []
    values, why = planned_config(model)
    old_hidden = getattr(config, HIDDEN, None)
    values["netsculpt_layers"] = layer_widths(model)["layers"]
    # head_dim is written explicitly: its default (hidden // heads) moves when heads change
    changes = {
        k: v
        for k, v in values.items()
        if (getattr(config, k, None) if k == HEAD_DIM else _effective(config, k)) != v
    }
    if changes and snap is not None:
        snap.save_field(_ConfigState(config), "state")  # fields may be new: keep the whole dict
    for name, v in changes.items():
        setattr(config, name, v)
    new_hidden = values.get(HIDDEN)
    if new_hidden is not None and old_hidden is not None and new_hidden != old_hidden:
        for mod in model.modules():  # LlamaMLP, decoder layers, GPT2Model.embed_dim ...
            for attr in (HIDDEN, "embed_dim"):
                if getattr(mod, attr, None) == old_hidden and not hasattr(mod, "nf"):
                    if snap is not None:
                        snap.save_attrs(mod)
                    mod.__dict__[attr] = new_hidden
    return why


class _ConfigState:
    """A config's attribute dict as one field, so a Snapshot can put back added fields too."""

    def __init__(self, config: Any):
        self.config = config

    @property
    def state(self) -> dict[str, Any]:
        return dict(vars(self.config))

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        vars(self.config).clear()
        vars(self.config).update(value)


def _effective(config: Any, name: str) -> Any:
    value = getattr(config, name, None)
    if name == "n_inner" and value is None:  # GPT-2: None means 4 * n_embd
        return 4 * config.hidden_size
    if name == HEAD_DIM and value is None:  # the family default
        return config.hidden_size // config.num_attention_heads
    return value


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
        if _effective(config, name) != v:
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
