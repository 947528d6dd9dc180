"""torchvision modules whose forward hard-codes a width that head pruning changes.

torchvision's shifted-window attention reshapes q/k/v with ``C // num_heads`` where ``C`` is the
block's input width, so it cannot run once heads are removed (q/k/v narrower than ``C``). These
subclasses compute the same window attention from the projection widths instead.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2


def _window_attention(mod, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    b, h, w, c = x.shape
    wh, ww = mod.window_size
    x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
    ph, pw = x.shape[1], x.shape[2]
    sh, sw = (0 if wh >= ph else mod.shift_size[0]), (0 if ww >= pw else mod.shift_size[1])
    if sh or sw:
        x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
    n_win = (ph // wh) * (pw // ww)
    win = x.view(b, ph // wh, wh, pw // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    win = win.reshape(b * n_win, wh * ww, c)
    qkv_bias = mod.qkv.bias
    if getattr(mod, "logit_scale", None) is not None and qkv_bias is not None:
        # Swin V2 has no key bias
        third = qkv_bias.numel() // 3
        qkv_bias = torch.cat(
            [qkv_bias[:third], torch.zeros_like(qkv_bias[third : 2 * third]), qkv_bias[2 * third :]]
        )
    qkv = F.linear(win, mod.qkv.weight, qkv_bias)
    heads = mod.num_heads
    head_dim = qkv.shape[-1] // (3 * heads)
    q, k, v = qkv.reshape(win.shape[0], win.shape[1], 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    if getattr(mod, "logit_scale", None) is not None:
        scale = torch.clamp(mod.logit_scale, max=math.log(100.0)).exp()
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * scale
    else:
        attn = (q * head_dim**-0.5) @ k.transpose(-2, -1)
    attn = attn + bias
    if sh or sw:
        attn = attn.view(b, n_win, heads, wh * ww, wh * ww) + _shift_mask(
            x, ph, pw, (wh, ww), (sh, sw)
        ).unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, wh * ww, wh * ww)
    attn = F.dropout(attn.softmax(-1), p=mod.attention_dropout, training=mod.training)
    out = (attn @ v).transpose(1, 2).reshape(win.shape[0], win.shape[1], heads * head_dim)
    out = F.dropout(mod.proj(out), p=mod.dropout, training=mod.training)
    out = out.view(b, ph // wh, pw // ww, wh, ww, -1).permute(0, 1, 3, 2, 4, 5)
    out = out.reshape(b, ph, pw, -1)
    if sh or sw:
        out = torch.roll(out, shifts=(sh, sw), dims=(1, 2))
    return out[:, :h, :w, :].contiguous()


def _shift_mask(x, ph: int, pw: int, window, shift) -> torch.Tensor:
    """-100 between positions of a window that came from different regions after the roll."""
    region = x.new_zeros((ph, pw))
    bounds_h = ((0, ph - window[0]), (ph - window[0], ph - shift[0]), (ph - shift[0], ph))
    bounds_w = ((0, pw - window[1]), (pw - window[1], pw - shift[1]), (pw - shift[1], pw))
    label = 0
    for h0, h1 in bounds_h:
        for w0, w1 in bounds_w:
            region[h0:h1, w0:w1] = label
            label += 1
    region = region.view(ph // window[0], window[0], pw // window[1], window[1])
    region = region.permute(0, 2, 1, 3).reshape(-1, window[0] * window[1])
    diff = region.unsqueeze(1) - region.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def _init_kwargs(mod) -> dict:
    return {
        "dim": mod.qkv.in_features,
        "window_size": list(mod.window_size),
        "shift_size": list(mod.shift_size),
        "num_heads": mod.num_heads,
        "qkv_bias": mod.qkv.bias is not None,
        "proj_bias": mod.proj.bias is not None,
        "attention_dropout": mod.attention_dropout,
        "dropout": mod.dropout,
    }


class PrunedShiftedWindowAttention(ShiftedWindowAttention):
    """Swin V1 window attention that reads its head width from ``qkv`` (heads may be pruned)."""

    _netsculpt_init = _init_kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _window_attention(self, x, self.get_relative_position_bias())


class PrunedShiftedWindowAttentionV2(ShiftedWindowAttentionV2):
    """Swin V2 window attention that reads its head width from ``qkv`` (heads may be pruned)."""

    _netsculpt_init = _init_kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _window_attention(self, x, self.get_relative_position_bias())


PRUNED = {
    ShiftedWindowAttention: PrunedShiftedWindowAttention,
    ShiftedWindowAttentionV2: PrunedShiftedWindowAttentionV2,
}
