"""The converter for MultiHeadAttention (sequences: ``(batch, time, features)`` inputs).

The mirror module has four ``nn.Linear`` (query, key, value, output) and calls
``F.scaled_dot_product_attention`` on ``(batch, heads, time, head_dim)`` views, so the engine
sees whole heads as one prunable group (the head size sets the softmax scale and is kept). The
rebuilt layer gets ``num_heads`` from the query projection's width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from netsculpt.keras._base import KT, converter, refuse, tensor, weights_of


class Attention(nn.Module):
    """Keras ``MultiHeadAttention`` on rank-3 inputs, in torch."""

    def __init__(self, dims: tuple[int, int, int], heads: int, key_dim: int, value_dim: int,
                 out_dim: int, bias: bool) -> None:  # fmt: skip
        super().__init__()
        qd, kd, vd = dims
        self.key_dim, self.value_dim = key_dim, value_dim
        self.query = nn.Linear(qd, heads * key_dim, bias=bias)
        self.key = nn.Linear(kd, heads * key_dim, bias=bias)
        self.value = nn.Linear(vd, heads * value_dim, bias=bias)
        self.output = nn.Linear(heads * value_dim, out_dim, bias=bias)

    def forward(self, query: torch.Tensor, value: torch.Tensor, key: torch.Tensor | None = None):
        key = value if key is None else key
        b, tq, ts = query.shape[0], query.shape[1], value.shape[1]
        q = self.query(query).view(b, tq, -1, self.key_dim).transpose(1, 2)
        k = self.key(key).view(b, ts, -1, self.key_dim).transpose(1, 2)
        v = self.value(value).view(b, ts, -1, self.value_dim).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(self.key_dim))
        return self.output(o.transpose(1, 2).reshape(b, tq, -1))


_UNSUPPORTED_CALL = ("attention_mask", "return_attention_scores", "use_causal_mask",
                     "query_mask", "value_mask", "key_mask")  # fmt: skip


@converter("MultiHeadAttention")
class MultiHeadAttention:
    def build(self, b, layer, ins, shape):
        kwargs = dict(getattr(b, "call_kwargs", {}) or {})
        bad = [k for k in _UNSUPPORTED_CALL if kwargs.get(k) not in (None, False)]
        if bad:
            raise refuse(layer, f"called with {', '.join(bad)} (masks and scores are not mirrored)")
        if getattr(layer, "_use_gate", False) or getattr(layer, "_sliding_window", None):
            raise refuse(layer, "use_gate / sliding_window attention")
        if any(t.rank != 3 for t in ins) or tuple(layer._attention_axes or (1,)) != (1,):
            raise refuse(layer, "attention over other than the time axis of (batch, time, dim)")
        ins = [b.layout(t, False) for t in ins]
        q, v = ins[0], ins[1]
        k = ins[2] if len(ins) > 2 else v
        w = weights_of(layer)
        heads, kd, vd = layer.num_heads, layer.key_dim, layer.value_dim
        out_dim = shape[-1]
        use_bias = layer._use_bias

        def make():
            mod = Attention((q.channels, k.channels, v.channels), heads, kd, vd, out_dim, use_bias)
            for name in ("query", "key", "value"):
                lin = getattr(mod, name)
                lin.weight = tensor(w[f"{name}/kernel"].reshape(lin.in_features, -1).T)
                if use_bias:
                    lin.bias = tensor(w[f"{name}/bias"].reshape(-1))
            mod.output.weight = tensor(w["attention_output/kernel"].reshape(-1, out_dim).T)
            if use_bias:
                mod.output.bias = tensor(w["attention_output/bias"])
            return mod

        path = b.module(layer, "main", make)
        return b.step(layer, ins, [("mod", path)], shape, False)

    def rebuild(self, r, layer, ins, perms):
        mod = r.mod(layer)
        if not r.same_type(layer):
            raise refuse(layer, f"the edit replaced it with a {type(mod).__name__}")
        heads = mod.query.out_features // mod.key_dim
        cfg = {**layer.get_config(), "num_heads": heads, "key_dim": mod.key_dim}
        cfg["value_dim"] = mod.value_dim
        q_dim = int(ins[0].tensor.shape[-1])
        n_out = mod.output.out_features
        given = layer.get_config().get("output_shape") is not None
        cfg["output_shape"] = (n_out,) if given or n_out != q_dim else None
        for key in ("query_shape", "key_shape", "value_shape"):
            cfg.pop(key, None)  # built from the new inputs

        def weights():
            out = {}
            for name in ("query", "key", "value"):
                lin = getattr(mod, name)
                out[f"{name}/kernel"] = lin.weight.detach().T.reshape(lin.in_features, heads, -1)
                out[f"{name}/bias"] = (
                    None if lin.bias is None else lin.bias.detach().reshape(heads, -1)
                )
            o = mod.output
            out["attention_output/kernel"] = o.weight.detach().T.reshape(heads, -1, o.out_features)
            out["attention_output/bias"] = o.bias
            return out

        new = r.layer(layer, cfg, weights)
        tensors = [k.tensor for k in ins]
        y = new(tensors[0], tensors[1], key=tensors[2]) if len(tensors) > 2 else new(*tensors[:2])
        r.applied.append(new)
        return KT(y, False)
