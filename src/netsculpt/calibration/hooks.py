"""Forward/backward hooks that collect what modules see on calibration data.

Generic on purpose: any op that needs block inputs / outputs / output gradients (cut, grow,
merge, importance) uses :func:`collect`; :func:`replaced` swaps a module's output for a while
(ablation: identity, zeros, or any function of the input).

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
>>> seen = []
>>> collect(net, ["0"], [torch.randn(2, 4)], lambda name, rec: seen.append(rec.output.shape))
>>> seen
[torch.Size([2, 3])]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netsculpt.calibration.batches import Batch, first_tensor, read_batches, run
from netsculpt.core.errors import InputError
from netsculpt.core.utils import eval_mode


@dataclass
class Record:
    """What one module saw on one batch."""

    input: torch.Tensor  # the primary (first tensor) input
    output: torch.Tensor  # the primary (first tensor) output
    grad: torch.Tensor | None = None  # d loss / d output, when collected with grad=True
    batch: Batch | None = None


def as_batches(data: Any, example_inputs: Any = None, max_batches: int | None = 8) -> list[Batch]:
    """Materialise calibration data (see :mod:`netsculpt.calibration.batches` for the batch
    forms); ``None`` falls back to ``example_inputs`` (one unlabelled batch)."""
    if data is None:
        if example_inputs is None:
            raise InputError("no calibration data: pass data=... (or example inputs)")
        return [Batch(example_inputs)]
    return read_batches(data, max_batches)


def _primary_input(args: tuple, kwargs: dict) -> torch.Tensor | None:
    t = first_tensor(args)
    if t is None:
        t = kwargs.get("hidden_states", first_tensor(kwargs))
    return t


def _with_first(obj: Any, new: torch.Tensor) -> Any:
    """``obj`` with its first tensor replaced by ``new``."""
    if isinstance(obj, torch.Tensor):
        return new
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "logits"):
        i = next(i for i, v in enumerate(obj) if isinstance(v, torch.Tensor))
        items = list(obj)
        items[i] = new
        return type(obj)(items) if not hasattr(obj, "_fields") else type(obj)(*items)
    raise InputError(f"cannot replace the output of type {type(obj).__name__}")


def task_loss(output: Any, target: Any) -> torch.Tensor:
    """Cross-entropy for integer targets (classes, or tokens aligned with the logits), MSE for
    float targets, and cross-entropy against the model's own predictions without a target."""
    logits = first_tensor(output)
    if target is None:
        target = logits.detach().argmax(-1) if logits.shape[-1] > 1 else logits.detach()
    if target.dtype.is_floating_point:
        return F.mse_loss(logits.reshape(target.shape).float(), target.float())
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1))


def collect(
    model: nn.Module,
    modules: Iterable[str] | dict[str, nn.Module],
    data: Iterable[Batch] | Any,
    fn: Callable[[str, Record], None],
    *,
    grad: bool = False,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
) -> None:
    """Run ``model`` on every batch of ``data`` (eval mode) and call ``fn(name, record)`` for
    each named module once per batch; ``grad=True`` also fills ``record.grad`` (one backward of
    ``loss_fn(output, target)``, default :func:`task_loss`)."""
    mods = modules if isinstance(modules, dict) else {n: model.get_submodule(n) for n in modules}
    batches = data if isinstance(data, list) and all(isinstance(b, Batch) for b in data) else (
        as_batches(data, max_batches=None)
    )  # fmt: skip
    loss_fn = loss_fn or task_loss
    for batch in batches:
        for name, rec in _one_batch(model, mods, batch, grad, loss_fn).items():
            fn(name, rec)


def _one_batch(
    model: nn.Module, mods: dict[str, nn.Module], batch: Batch, grad: bool, loss_fn: Callable
) -> dict[str, Record]:
    seen: dict[str, Record] = {}

    def hook(name: str) -> Callable:
        def f(mod: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            x, y = _primary_input(args, kwargs), first_tensor(out)
            if x is None or y is None or name in seen:
                return
            rec = Record(x.detach(), y.detach(), None, batch)
            seen[name] = rec
            if grad and y.requires_grad:
                y.register_hook(lambda g: setattr(rec, "grad", g.detach()))

        return f

    handles = [m.register_forward_hook(hook(n), with_kwargs=True) for n, m in mods.items()]
    try:
        with eval_mode(model), _grads_on(model, grad), torch.set_grad_enabled(grad):
            out = run(model, batch.inputs)
            if grad:
                loss_fn(out, batch.target).backward()
    finally:
        for h in handles:
            h.remove()
    return seen


@contextlib.contextmanager
def _grads_on(model: nn.Module, on: bool) -> Iterator[None]:
    """Let gradients flow through every parameter for a while; restore flags and grads after."""
    if not on:
        yield
        return
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, f, g in zip(params, flags, grads):
            p.requires_grad_(f)
            p.grad = g


@contextlib.contextmanager
def replaced(
    model: nn.Module, changes: dict[str, str | Callable[[torch.Tensor], torch.Tensor]]
) -> Iterator[None]:
    """For a while, replace named modules' outputs: ``"identity"`` (their input), ``"zero"`` or
    ``f(input)``. The model is not edited; hooks are removed on exit.

    >>> net = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    >>> with replaced(net, {"0": "zero"}):
    ...     float(net(torch.ones(1, 3)).abs().sum())
    0.0
    """

    def make(how: Any) -> Callable:
        def f(mod: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
            x, y = _primary_input(args, kwargs), first_tensor(out)
            if how == "identity":
                new = x
            elif how == "zero":
                new = torch.zeros_like(y)
            else:
                new = how(x)
            return _with_first(out, new.to(y.dtype))

        return f

    handles = [
        model.get_submodule(name).register_forward_hook(make(how), with_kwargs=True)
        for name, how in changes.items()
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def span_replaced(
    model: nn.Module,
    first: str,
    last: str,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Iterator[None]:
    """For a while, the output of module ``last`` becomes ``fn(x, y)``: ``x`` the input of module
    ``first`` (the start of the span), ``y`` the original output of ``last``.

    >>> net = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    >>> x = torch.randn(2, 3)
    >>> with span_replaced(net, "0", "1", lambda x, y: x):
    ...     torch.equal(net(x), x)
    True
    """
    stash: list[torch.Tensor] = []

    def pre(mod: nn.Module, args: tuple, kwargs: dict) -> None:
        stash.append(_primary_input(args, kwargs))

    def post(mod: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
        x = stash.pop() if stash else _primary_input(args, kwargs)
        y = first_tensor(out)
        return _with_first(out, fn(x, y).to(y.dtype))

    h1 = model.get_submodule(first).register_forward_pre_hook(pre, with_kwargs=True)
    h2 = model.get_submodule(last).register_forward_hook(post, with_kwargs=True)
    try:
        yield
    finally:
        h1.remove()
        h2.remove()


def outputs(model: nn.Module, batches: list[Batch]) -> list[torch.Tensor]:
    """The model's (first-tensor) outputs on every batch, in eval mode, without gradients."""
    with eval_mode(model), torch.no_grad():
        return [first_tensor(run(model, b.inputs)).detach() for b in batches]
