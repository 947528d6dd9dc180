"""Compare model outputs: the relative change an exact edit must keep below its tolerance, and
the per-sample cosine that an approximate edit (LaCo's block collapse) is accepted by.

>>> import torch
>>> a = torch.tensor([[1.0, 2.0]])
>>> relative_diff([a], [torch.tensor([[1.0, 2.5]])])
0.25
>>> round(similarity([a], [2 * a]), 6)
1.0
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def output_tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor in a model output (tensor, tuple, dict, Hugging Face ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in output_tensors(o)]
    return []


def relative_diff(ref: list[torch.Tensor], out: list[torch.Tensor]) -> float:
    """``max |out - ref| / max |ref|`` over all output tensors (inf if the shapes differ)."""
    if len(ref) != len(out) or any(a.shape != b.shape for a, b in zip(ref, out)):
        return float("inf")
    num = max((float((a.double() - b.double()).abs().max()) for a, b in zip(ref, out)), default=0)
    den = max((float(a.double().abs().max()) for a in ref), default=0)
    return num / max(den, 1e-12)


def similarity(ref: list[torch.Tensor], out: list[torch.Tensor]) -> float:
    """Mean over samples of the cosine between flattened outputs (LaCo's acceptance score)."""
    num = den = 0.0
    for a, b in zip(ref, out):
        cos = nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)
        num += float(cos.sum())
        den += cos.numel()
    return num / max(den, 1)
