"""Modules that surgery swaps in when a stock module cannot express the pruned shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PrunedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose attention width (heads × head_dim) may be smaller than
    ``embed_dim`` — what remains after removing heads. Same call signature and outputs.

    >>> m = PrunedMultiheadAttention(8, 2, inner_dim=4, batch_first=True)
    >>> m(torch.ones(1, 3, 8), torch.ones(1, 3, 8), torch.ones(1, 3, 8))[0].shape
    torch.Size([1, 3, 8])
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        inner_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        device=None,
        dtype=None,
    ):
        # the parent checks embed_dim % num_heads, which need not hold here: build with one head
        super().__init__(
            embed_dim,
            1,
            dropout=dropout,
            bias=bias,
            batch_first=batch_first,
            device=device,
            dtype=dtype,
        )
        self.num_heads = num_heads
        inner = inner_dim or embed_dim
        kw = {"device": device, "dtype": dtype}
        self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, embed_dim, **kw))
        if bias:
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * inner, **kw))
        self.out_proj = nn.modules.linear.NonDynamicallyQuantizableLinear(
            inner, embed_dim, bias=bias, **kw
        )
        nn.init.xavier_uniform_(self.in_proj_weight)
        self.inner_dim = inner
        self.head_dim = inner // num_heads

    def _netsculpt_init(self) -> dict:
        return {
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "inner_dim": self.inner_dim,
            "dropout": self.dropout,
            "bias": self.in_proj_bias is not None,
            "batch_first": self.batch_first,
        }

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        if not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        b, t, _ = query.shape
        s = key.shape[1]
        h, d = self.num_heads, self.head_dim
        wq, wk, wv = self.in_proj_weight.chunk(3)
        bq, bk, bv = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3
        q = F.linear(query, wq, bq).view(b, t, h, d).transpose(1, 2)
        k = F.linear(key, wk, bk).view(b, s, h, d).transpose(1, 2)
        v = F.linear(value, wv, bv).view(b, s, h, d).transpose(1, 2)
        mask = _merge_masks(attn_mask, key_padding_mask, b, h, t, s, q.dtype)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / d**0.5
            if mask is not None:
                scores = scores + mask
            elif is_causal:
                causal = torch.ones(t, s, dtype=torch.bool, device=q.device).tril()
                scores = scores.masked_fill(~causal, float("-inf"))
            attn = F.dropout(scores.softmax(-1), p, self.training)
            out = attn @ v
            weights = attn.mean(1) if average_attn_weights else attn
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal and mask is None
            )
        out = self.out_proj(out.transpose(1, 2).reshape(b, t, h * d))
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights


def _merge_masks(attn_mask, key_padding_mask, b, h, t, s, dtype):
    """Additive float mask of shape broadcastable to (b, h, t, s), or None."""
    mask = None
    if attn_mask is not None:
        m = attn_mask
        if m.dtype == torch.bool:
            m = torch.zeros_like(m, dtype=dtype).masked_fill(m, float("-inf"))
        mask = m.view(b, h, t, s) if m.dim() == 3 else m
    if key_padding_mask is not None:
        k = key_padding_mask
        if k.dtype == torch.bool:
            k = torch.zeros_like(k, dtype=dtype).masked_fill(k, float("-inf"))
        k = k.view(b, 1, 1, s)
        mask = k if mask is None else mask + k
    return mask
