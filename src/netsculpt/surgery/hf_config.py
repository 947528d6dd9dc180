"""Read a Hugging Face model's real widths from its weights and write them into its config.

After surgery the weights are the truth. :func:`layer_widths` reads, per transformer layer, the
number of query heads, KV heads, head dim and MLP intermediate size, plus the hidden size and
the depth; :func:`sync_config` writes every field HF can express (a value shared by all layers
that rebuilds the same shapes) and keeps the exact per-layer numbers in
``config.netsculpt_layers``. Surgery calls it after every edit of an HF model; whether the
result round-trips through ``save_pretrained`` is :func:`netsculpt.hf.config.hf_compatible`'s
question. Transformers is never imported here: modules are recognised by their attributes,
with the name tables below.

>>> transformer_layers(nn.Linear(2, 2)) is None
True
"""

from __future__ import annotations

from typing import Any

from torch import nn

# projections that produce queries / keys, in the names HF families use
Q_NAMES = ("q_proj", "query", "q_lin", "q")
K_NAMES = ("k_proj", "key", "k_lin", "k")
# the first MLP projection (its output count is the intermediate size)
MLP_IN_NAMES = ("up_proj", "gate_proj", "fc1", "c_fc", "w1", "dense_h_to_4h", "lin1")


def out_width(mod: nn.Module | None) -> int | None:
    """Output features of a Linear or of HF's transposed ``Conv1D`` (weight is (in, out))."""
    if mod is None:
        return None
    w = getattr(mod, "weight", None)
    if w is None or w.dim() != 2:
        return None
    return int(w.shape[1]) if is_conv1d(mod) else int(w.shape[0])


def in_width(mod: nn.Module | None) -> int | None:
    """Input features of a Linear or HF ``Conv1D``."""
    if mod is None:
        return None
    w = getattr(mod, "weight", None)
    if w is None or w.dim() != 2:
        return None
    return int(w.shape[0]) if is_conv1d(mod) else int(w.shape[1])


def is_conv1d(mod: nn.Module) -> bool:
    return type(mod).__name__ == "Conv1D" and hasattr(mod, "nf") and hasattr(mod, "nx")


def child(mod: nn.Module, names: tuple[str, ...]) -> nn.Module | None:
    """The first direct child of ``mod`` called one of ``names``."""
    for n in names:
        c = getattr(mod, n, None)
        if isinstance(c, nn.Module):
            return c
    return None


def head_dim_of(attn: nn.Module) -> int | None:
    """Per-head width an attention module was built with (``head_dim`` / ``attention_head_size``)."""
    for name in ("head_dim", "attention_head_size", "attention_head_dim"):
        v = getattr(attn, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


# config fields by meaning; GPT-2 names come through the config's attribute_map
HEADS, KV_HEADS, INTER, HIDDEN, HEAD_DIM = (
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "hidden_size",
    "head_dim",
)


def transformer_layers(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The ModuleList of transformer layers: the longest list whose items all hold attention."""
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
        if head_dim_of(mod) is not None and (
            child(mod, Q_NAMES) is not None or getattr(mod, "c_attn", None) is not None
        ):
            return mod
    return None


def _mlp_in(layer: nn.Module) -> nn.Module | None:
    for name, mod in layer.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in MLP_IN_NAMES:
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
        c_attn = getattr(attn, "c_attn", None)
        if c_attn is not None:
            q_out = k_out = out_width(c_attn) // 3
        else:
            q_out, k_out = out_width(child(attn, Q_NAMES)), out_width(child(attn, K_NAMES))
        up = _mlp_in(layer)
        rows.append(
            {
                "heads": q_out // hd,
                "kv_heads": (k_out or q_out) // hd,
                "head_dim": hd,
                "intermediate": out_width(up) if up is not None else None,
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
        if (getattr(config, k, None) if k == HEAD_DIM else effective(config, k)) != v
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


def effective(config: Any, name: str) -> Any:
    """The value a config field has for the model class (a family default when unset)."""
    value = getattr(config, name, None)
    if name == "n_inner" and value is None:  # GPT-2: None means 4 * n_embd
        return 4 * config.hidden_size
    if name == HEAD_DIM and value is None:  # the family default
        return config.hidden_size // config.num_attention_heads
    return value
