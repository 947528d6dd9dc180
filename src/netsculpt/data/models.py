"""Built-in models: small, fast, and shaped like the structures the ops must handle.

Every class defines ``_netsculpt_init()`` (its constructor kwargs) so that ``netsculpt.save``
can rebuild it and ``record_module`` can record it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class SeedMLP(nn.Sequential):
    """The seed's MLP: in → 64 → 32 → out with ReLU, as an ``nn.Sequential``.

    >>> SeedMLP(10, 1)(torch.zeros(2, 10)).shape
    torch.Size([2, 1])
    """

    def __init__(self, in_features: int = 10, out_features: int = 1) -> None:
        super().__init__(
            nn.Linear(in_features, 64),
            nn.ReLU(),
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, out_features),
        )
        self._init = {"in_features": in_features, "out_features": out_features}

    def _netsculpt_init(self) -> dict[str, Any]:
        return dict(self._init)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)
    )


class ResidualBlock2d(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))``: the ResNet basic block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(channels, channels), nn.ReLU(), _conv_bn(channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))

    def _netsculpt_init(self) -> dict[str, Any]:
        return {"channels": self.body[0][0].in_channels}


class DigitsCNN(nn.Module):
    """A small CNN for 1×8×8 digits: stem, one residual block, strided conv, pool, linear (~22k).

    >>> DigitsCNN()(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, width: int = 24, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(1, width), nn.ReLU())
        self.block = ResidualBlock2d(width)
        self.down = nn.Sequential(_conv_bn(width, 2 * width, stride=2), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)
        self._init = {"width": width, "num_classes": num_classes}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(self.block(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))

    def _netsculpt_init(self) -> dict[str, Any]:
        return dict(self._init)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections and ``F.scaled_dot_product_attention``.

    Heads are found with ``view(B, T, -1, head_dim)`` so that removing heads only needs
    ``num_heads`` updated (and the projections sliced).
    """

    _netsculpt_attrs = ("causal",)

    def __init__(self, dim: int, num_heads: int, causal: bool = True) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.causal = num_heads, dim // num_heads, causal
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (
            p(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, -1))

    def _netsculpt_init(self) -> dict[str, Any]:
        dim = self.q_proj.in_features
        return {"dim": dim, "num_heads": dim // self.head_dim, "causal": self.causal}


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4, causal: bool = True) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads, causal)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

    def _netsculpt_init(self) -> dict[str, Any]:
        dim = self.ln1.normalized_shape[0]
        return {
            "dim": dim,
            "num_heads": self.attn.num_heads,
            "mlp_ratio": self.mlp[0].out_features // dim,
            "causal": self.attn.causal,
        }


class TinyTransformer(nn.Module):
    """Token + learned position embeddings, pre-norm blocks, final LayerNorm, LM or class head.

    ``num_classes=None`` gives a causal byte-level LM (logits (B, T, vocab)); otherwise a
    bidirectional classifier on the mean token (logits (B, num_classes)).

    >>> TinyTransformer()(torch.zeros(2, 16, dtype=torch.long)).shape
    torch.Size([2, 16, 256])
    """

    def __init__(
        self,
        vocab_size: int = 256,
        max_len: int = 64,
        dim: int = 64,
        num_heads: int = 4,
        depth: int = 2,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        causal = num_classes is None
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.blocks = nn.Sequential(
            *(TransformerBlock(dim, num_heads, causal=causal) for _ in range(depth))
        )
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes or vocab_size)
        self._init = {
            "vocab_size": vocab_size,
            "max_len": max_len,
            "dim": dim,
            "num_heads": num_heads,
            "depth": depth,
            "num_classes": num_classes,
        }

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.ln_f(self.blocks(self.tok_emb(idx) + self.pos_emb(pos)))
        return self.head(x) if self._init["num_classes"] is None else self.head(x.mean(1))

    def _netsculpt_init(self) -> dict[str, Any]:
        return dict(self._init)


class ResidualMLPBlock(nn.Module):
    """``x + fc2(relu(fc1(ln(x))))``: a pre-norm residual MLP block, removable as a whole."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.relu(self.fc1(self.ln(x))))

    def _netsculpt_init(self) -> dict[str, Any]:
        return {"width": self.fc1.in_features, "hidden": self.fc1.out_features}


class ResidualMLP(nn.Module):
    """Stem → ``depth`` residual MLP blocks (an ``nn.Sequential``) → LayerNorm → head.

    >>> ResidualMLP(depth=12)(torch.zeros(2, 40)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self, in_features: int = 40, width: int = 64, depth: int = 8, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(in_features, width), nn.ReLU())
        self.blocks = nn.Sequential(*(ResidualMLPBlock(width, 2 * width) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        self._init = {
            "in_features": in_features,
            "width": width,
            "depth": depth,
            "num_classes": num_classes,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.stem(x))))

    def _netsculpt_init(self) -> dict[str, Any]:
        return dict(self._init)


class ConvNet1D(nn.Module):
    """A small 1-D CNN with BatchNorm for (N, 40) MNIST-1D signals.

    >>> ConvNet1D()(torch.zeros(2, 40)).shape
    torch.Size([2, 10])
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 64), num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, cout in enumerate(channels):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv1d(cin, cout, 5 if i == 0 else 3, stride=stride, padding=2 if i == 0 else 1),
                nn.BatchNorm1d(cout),
                nn.ReLU(),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(cin, num_classes)
        self._init = {"channels": list(channels), "num_classes": num_classes}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # (N, L) signals get a channel dim
            x = x.unsqueeze(1)
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))

    def _netsculpt_init(self) -> dict[str, Any]:
        return {"channels": self._init["channels"], "num_classes": self._init["num_classes"]}


# name -> (constructor, example-input factory); batch 1 so MACs read per sample
BUILTINS: dict[str, tuple[Any, Any]] = {
    "seed-mlp": (lambda: SeedMLP(10, 1), lambda: torch.randn(1, 10)),
    "digits-mlp": (lambda: SeedMLP(64, 10), lambda: torch.rand(1, 64)),
    "digits-cnn": (DigitsCNN, lambda: torch.rand(1, 1, 8, 8)),
    "mnist1d-mlp": (lambda: ResidualMLP(40, 64, 12, 10), lambda: torch.randn(1, 40)),
    "mnist1d-cnn": (ConvNet1D, lambda: torch.randn(1, 40)),
    "tiny-transformer": (TinyTransformer, lambda: torch.randint(0, 256, (1, 64))),
}


def builtin_example(name: str) -> torch.Tensor:
    """The example input of a built-in model, the same tensor every time."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return BUILTINS[name][1]()


def build_builtin(name: str) -> nn.Module:
    """A fresh built-in model by name (see ``BUILTINS``); sets ``_netsculpt_source``.

    >>> type(build_builtin("digits-cnn")).__name__
    'DigitsCNN'
    """
    from netsculpt.core.errors import InputError

    if name not in BUILTINS:
        raise InputError(f"unknown built-in model {name!r}: one of {', '.join(BUILTINS)}")
    with torch.random.fork_rng(devices=[]):  # one name, one initial model: runs repeat exactly
        torch.manual_seed(0)
        model = BUILTINS[name][0]()
    model._netsculpt_source = f"builtin:{name}"
    return model
