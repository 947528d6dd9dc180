"""BatchNorm running statistics re-estimated as an edit (the ``recalibrate_bn`` action).

:func:`netsculpt.calibration.bn.recalibrate_bn` writes the statistics in place; here every
BatchNorm first gets fresh buffer tensors, so that a checkpoint taken before (which holds
references, never copies) still holds the old statistics and a failed verb puts them back.

>>> import torch
>>> from torch import nn
>>> from netsculpt.calibration import Batch
>>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
>>> old = net[1].running_mean
>>> reestimate_bn(net, [Batch(torch.randn(16, 4) + 3)])
1
>>> float(old.abs().sum()), net[1].running_mean is old
(0.0, False)
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from netsculpt.calibration.bn import batchnorms, recalibrate_bn
from netsculpt.calibration.hooks import Batch

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def reestimate_bn(model: nn.Module, batches: Sequence[Batch]) -> int:
    """Replace every BatchNorm's running-statistics buffers by copies and re-estimate them on
    ``batches`` (the plain average, weights untouched). Returns how many layers changed."""
    bns = batchnorms(model)
    if not bns or not batches:
        return 0
    for m in bns:
        for k in _BUFFERS:
            buf = m._buffers.get(k)
            if buf is not None:
                m._buffers[k] = buf.detach().clone()
    return recalibrate_bn(model, batches)
