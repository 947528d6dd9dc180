"""BatchNorm running statistics re-estimated on calibration data ("adaptive BN").

Removing a block changes the distribution every later BatchNorm sees, so its running mean and
variance (estimated on the original network) are stale. Re-estimating them on a few hundred
samples, with no weight change, recovers most of what the stale statistics cost, and scoring a
candidate edit on the re-estimated network ranks edits much closer to how they rank after
fine-tuning (Li et al. 2020, EagleEye).

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
>>> batches = [Batch(torch.randn(64, 4) * 3 + 1) for _ in range(4)]
>>> with adapted_bn(net, batches):
...     shifted = float(net[1].running_mean.abs().sum()) > 0
>>> shifted, float(net[1].running_mean.abs().sum())
(True, 0.0)
>>> recalibrate_bn(net, batches)
1
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from netsculpt.calibration.batches import run
from netsculpt.calibration.hooks import Batch
from netsculpt.core.utils import eval_mode

_BN = nn.modules.batchnorm._BatchNorm
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def batchnorms(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers that keep running statistics (the ones eval mode reads)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, _BN) and m.track_running_stats and m.running_mean is not None
    ]


def save_bn(model: nn.Module) -> Callable[[], None]:
    """A function that puts every BatchNorm's running statistics back as they are now."""
    saved = [
        (m, {k: getattr(m, k).detach().clone() for k in _BUFFERS if getattr(m, k) is not None})
        for m in batchnorms(model)
    ]

    def restore() -> None:
        with torch.no_grad():
            for m, bufs in saved:
                for k, v in bufs.items():
                    getattr(m, k).copy_(v)

    return restore


def recalibrate_bn(model: nn.Module, batches: Sequence[Batch]) -> int:
    """Re-estimate every BatchNorm's running mean / variance in place as the plain average over
    ``batches`` (weights untouched, every other module in eval mode: no dropout). Returns how
    many layers were re-estimated."""
    bns = batchnorms(model)
    if not bns or not batches:
        return 0
    momenta = [m.momentum for m in bns]
    with eval_mode(model), torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch counts the same
            m.train()
        try:
            for b in batches:
                run(model, b.inputs)
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom
    return len(bns)


@contextmanager
def adapted_bn(model: nn.Module, batches: Sequence[Batch]) -> Iterator[int]:
    """Inside the block the model runs with BatchNorm statistics re-estimated on ``batches``;
    the original statistics are put back on exit. Yields the number of layers re-estimated."""
    restore = save_bn(model)
    try:
        yield recalibrate_bn(model, batches)
    finally:
        restore()
