"""One call that measures everything cheap about a model: params, MACs, latency, saved size."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from netsculpt.measure.latency import latency_ms
from netsculpt.measure.macs import count_macs
from netsculpt.measure.params import count_params, saved_size_bytes


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What :func:`measure` found. ``latency_ms`` is the median, or None when not timed."""

    params: int
    macs: int
    latency_ms: float | None
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON.

        >>> Measurement(1, 2, None, 3).to_dict()
        {'params': 1, 'macs': 2, 'latency_ms': None, 'size_bytes': 3}
        """
        return dataclasses.asdict(self)


def measure(
    model: nn.Module, example_inputs: Any, *, latency: bool = True, threads: int = 2
) -> Measurement:
    """Params, MACs, median CPU latency (if ``latency``) and safetensors size of ``model``.

    >>> import torch
    >>> m = measure(nn.Linear(4, 3), torch.zeros(1, 4), latency=False)
    >>> (m.params, m.macs)
    (15, 12)
    """
    return Measurement(
        params=count_params(model),
        macs=count_macs(model, example_inputs),
        latency_ms=latency_ms(model, example_inputs, threads=threads)["median"]
        if latency
        else None,
        size_bytes=saved_size_bytes(model),
    )
