"""Per-weight scores for unstructured and N:M pruning.

>>> wanda_scores(torch.tensor([[1.0, -2.0], [3.0, 0.5]]), torch.tensor([2.0, 1.0])).tolist()
[[2.0, 2.0], [6.0, 0.5]]
"""

from __future__ import annotations

import torch

from netsculpt.core.errors import InputError


def wanda_scores(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """Wanda (Sun et al. 2023): ``|W_ij| · ‖X_j‖₂``, the weight times the norm of the input
    channel it reads (``weight``: out × in; ``input_norm``: one value per input), in fp32."""
    if input_norm.shape != (weight.shape[1],):
        raise InputError(
            f"{tuple(input_norm.shape)} input norms for a weight {tuple(weight.shape)}"
        )
    return weight.detach().float().abs() * input_norm.float().view(1, -1)
