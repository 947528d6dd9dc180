"""Input statistics of Linear layers on calibration data: the Hessian ``2 X Xᵀ / n`` (SparseGPT)
and the per-input-channel norm ``‖X_j‖₂`` (Wanda), collected with forward hooks.

The caller says how the modules are run (``run()``: the whole model on its batches, or one
decoder layer on stored activations, :mod:`netsculpt.hf.calibrated`); the accumulation is the
same code either way, so equal inputs give equal statistics, bit for bit.

>>> lin = nn.Linear(3, 2)
>>> st = input_stats({"lin": lin}, lambda: lin(torch.ones(4, 3)), hessian=True)
>>> st["lin"].samples, tuple(st["lin"].hessian.shape), st["lin"].norm().tolist()
(4, (3, 3), [2.0, 2.0, 2.0])
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from netsculpt.calibration.batches import Batch, run
from netsculpt.core.errors import InputError
from netsculpt.core.utils import eval_mode


@dataclass
class InputStats:
    """What one Linear saw: ``samples`` (rows of X seen; a (B, T, F) input counts B, as in
    SparseGPT's reference), the running Hessian ``H = 2/n Σ X Xᵀ`` (fp32, or None when not
    collected) and ``sq`` = Σ x_j² over every token (fp32)."""

    samples: int = 0
    hessian: torch.Tensor | None = None
    sq: torch.Tensor | None = None
    want_hessian: bool = field(default=False, repr=False)

    def add(self, x: torch.Tensor) -> None:
        """Add one batch of inputs ``x`` (..., in_features)."""
        n = x.shape[0] if x.dim() == 3 else 1 if x.dim() <= 2 else math.prod(x.shape[:-2])
        flat = x.detach().reshape(-1, x.shape[-1]).float()
        sq = flat.square().sum(0)
        self.sq = sq if self.sq is None else self.sq + sq
        if self.want_hessian:
            cols = flat.shape[1]
            if self.hessian is None:
                self.hessian = torch.zeros(cols, cols, dtype=torch.float32)
            # the reference's running mean: H ← H·n/(n+t) + 2/(n+t) XᵀX
            self.hessian *= self.samples / (self.samples + n)
            scaled = math.sqrt(2 / (self.samples + n)) * flat
            self.hessian += scaled.t() @ scaled
        self.samples += n

    def norm(self) -> torch.Tensor:
        """``‖X_j‖₂`` per input channel, over every token seen."""
        if self.sq is None:
            raise InputError("no calibration input reached this layer")
        return self.sq.sqrt()


def input_stats(
    modules: dict[str, nn.Module], run_fn: Callable[[], Any], *, hessian: bool = False
) -> dict[str, InputStats]:
    """Hook every module of ``modules``, call ``run_fn()`` (which runs them on calibration
    data) and return what each module's first input was, accumulated in call order."""
    stats = {name: InputStats(want_hessian=hessian) for name in modules}

    def hook(name: str) -> Callable:
        def f(mod: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], torch.Tensor):
                stats[name].add(args[0])

        return f

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in modules.items()]
    try:
        with torch.no_grad():
            run_fn()
    finally:
        for h in handles:
            h.remove()
    missing = [n for n, s in stats.items() if s.samples == 0]
    if missing:
        raise InputError(f"calibration data never reached {missing[0]} (is it used in forward?)")
    return stats


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the modules of interest have run."""


@contextlib.contextmanager
def _stop_after(module: nn.Module | None) -> Iterator[None]:
    if module is None:
        yield
        return

    def f(mod: nn.Module, args: tuple, out: Any) -> None:
        raise _Stop

    h = module.register_forward_hook(f)
    try:
        yield
    finally:
        h.remove()


def model_runner(
    model: nn.Module, batches: list[Batch], stop: nn.Module | None = None
) -> Callable[[], None]:
    """``run_fn`` for :func:`input_stats`: the model on every batch (eval mode, no grad), each
    forward ended right after ``stop`` ran (its later layers need not run for the stats)."""

    def go() -> None:
        with eval_mode(model), torch.no_grad(), _stop_after(stop):
            for b in batches:
                with contextlib.suppress(_Stop):
                    run(model, b.inputs)

    return go


def common_module(model: nn.Module, names: list[str]) -> nn.Module | None:
    """The deepest module containing every parameter of ``names`` (None: only the root does)."""
    paths = [n.rsplit(".", 1)[0].split(".") if "." in n else [] for n in names]
    prefix: list[str] = []
    for parts in zip(*paths):
        if len(set(parts)) != 1:
            break
        prefix.append(parts[0])
    return model.get_submodule(".".join(prefix)) if prefix else None
