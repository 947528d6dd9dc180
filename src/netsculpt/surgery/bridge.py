"""Bridge training: distil the layer that replaced a removed shape-changing span.

``cut`` replaces a span whose output shape differs from its input by a Linear / 1x1 conv
bridge fitted by ridge least squares (:func:`netsculpt.surgery.depth.make_bridge`). With
``bridge="train"`` that bridge is then distilled (everything else frozen) towards the outputs
the network gave before the span was removed. This writes the bridge's weights, so it lives
here, with the other editors.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3))
>>> x = [torch.randn(8, 4)]
>>> ref = [net(x[0]).detach()]
>>> with torch.no_grad():
...     _ = net[0].weight.zero_()
>>> before = float(distill_loss(ref[0], net(x[0])))
>>> train_bridge(net, "0", x, ref, steps=50) < before
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netsculpt.calibration.batches import first_tensor, run
from netsculpt.core.utils import eval_mode


def distill_loss(ref: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """KL(softmax(ref) || softmax(out)) for logits; MSE for a single (regression) output."""
    if ref.shape[-1] == 1:
        return F.mse_loss(out, ref)
    ref2, out2 = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
    return F.kl_div(F.log_softmax(out2, -1), F.log_softmax(ref2, -1), log_target=True,
                    reduction="batchmean")  # fmt: skip


def train_bridge(
    model: nn.Module,
    path: str,
    inputs: Sequence[Any],
    refs: Sequence[torch.Tensor],
    steps: int,
    lr: float = 1e-3,
) -> float:
    """Distil the module at ``path`` (everything else frozen) so that the model's outputs on
    ``inputs`` (model inputs, one per batch) approach ``refs``; Adam, ``steps`` steps cycling
    over the batches. Requires-grad flags and gradients are put back. Returns the last loss."""
    bridge = model.get_submodule(path)
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    for p in bridge.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(bridge.parameters(), lr=lr)
    last = float("nan")
    try:
        with eval_mode(model):
            for step in range(steps):
                i = step % len(inputs)
                loss = distill_loss(refs[i], first_tensor(run(model, inputs[i])))
                opt.zero_grad()
                loss.backward()
                opt.step()
                last = float(loss.detach())
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
            p.grad = None
    return last
