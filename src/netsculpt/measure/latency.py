"""CPU latency of one forward pass."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.utils import eval_mode, normalize_inputs


def latency_ms(
    model: nn.Module,
    example_inputs: Any,
    *,
    threads: int = 2,
    warmup: int = 3,
    repeats: int = 10,
) -> dict[str, float]:
    """Median / min / max milliseconds of a forward pass in eval mode under inference mode.

    The thread count is fixed to ``threads`` (so numbers compare across runs) and restored after.

    >>> sorted(latency_ms(nn.Linear(4, 3), torch.zeros(1, 4), repeats=3))
    ['max', 'median', 'min']
    """
    if threads < 1 or repeats < 1 or warmup < 0:
        raise InputError(
            f"latency_ms: threads={threads}, repeats={repeats} must be >= 1, warmup={warmup} >= 0"
        )
    args, kwargs = normalize_inputs(example_inputs, model)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = []
    try:
        with eval_mode(model), torch.inference_mode():
            for _ in range(warmup):
                model(*args, **kwargs)
            for _ in range(repeats):
                start = time.perf_counter()
                model(*args, **kwargs)
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        torch.set_num_threads(old_threads)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}
