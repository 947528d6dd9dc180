"""Small helpers every part of netsculpt uses: example-input normalization, train-mode restore,
unique (untied) tensors of a state dict.

Kept free of heavy imports: only torch and the standard library.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError


def _is_hf_model(model: nn.Module) -> bool:
    """True for a Hugging Face model whose forward takes ``use_cache`` (it must be False to export)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "use_cache"):
        return False
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "use_cache" in params


def normalize_inputs(
    example_inputs: Any, model: nn.Module | None = None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Turn example inputs into ``(args, kwargs)`` for ``model(*args, **kwargs)`` / torch.export.

    Accepts a Tensor, a tuple/list (positional args), a dict (keyword args) or an explicit
    ``(args_tuple, kwargs_dict)`` pair. For a Hugging Face model ``use_cache=False`` is added.

    >>> args, kwargs = normalize_inputs(torch.zeros(1, 4))
    >>> args[0].shape, kwargs
    (torch.Size([1, 4]), {})
    """
    if example_inputs is None:
        raise InputError("example_inputs is None: pass a Tensor, a tuple of tensors or a dict")
    if isinstance(example_inputs, torch.Tensor):
        args, kwargs = (example_inputs,), {}
    elif isinstance(example_inputs, Mapping):  # a dict, or a tokenizer's BatchEncoding
        args, kwargs = (), dict(example_inputs)
    elif (
        isinstance(example_inputs, tuple)
        and len(example_inputs) == 2
        and isinstance(example_inputs[0], tuple)
        and isinstance(example_inputs[1], dict)
    ):
        # torch.export's own (args, kwargs) convention
        args, kwargs = tuple(example_inputs[0]), dict(example_inputs[1])
    elif isinstance(example_inputs, (tuple, list)):
        args, kwargs = tuple(example_inputs), {}
    else:
        raise InputError(
            f"example_inputs of type {type(example_inputs).__name__} is not supported: "
            "pass a Tensor, a tuple/list of tensors or a dict of keyword arguments"
        )
    if model is not None and "use_cache" not in kwargs and _is_hf_model(model):
        kwargs["use_cache"] = False
    return args, kwargs


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own flag afterwards.

    >>> with eval_mode(nn.Dropout()) as m:
    ...     m.training
    False
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def unique_state_dict(
    model: nn.Module,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict with each shared tensor kept once, plus ``{alias: kept_name}`` for the others.

    Returned tensors are detached, on CPU, contiguous and own their storage (what safetensors
    needs); tied weights (same tensor under two names) are stored once.

    >>> tensors, aliases = unique_state_dict(nn.Linear(2, 2))
    >>> sorted(tensors), aliases
    (['bias', 'weight'], {})
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if not isinstance(tensor, torch.Tensor):  # extra_state and the like
            continue
        key = _tensor_identity(tensor)
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor
    return _own_storage(tensors), aliases


def _tensor_identity(t: torch.Tensor) -> tuple[Any, ...]:
    """Same storage, offset, shape, stride and dtype: the same tensor under another name."""
    if t.device.type == "meta":
        return (id(t),)
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _own_storage(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy only the tensors that share or partly cover a storage (safetensors refuses those)."""
    counts: dict[int, int] = {}
    for t in tensors.values():
        ptr = t.untyped_storage().data_ptr()
        counts[ptr] = counts.get(ptr, 0) + 1
    out = {}
    for name, t in tensors.items():
        t = t.detach().cpu()
        storage = t.untyped_storage()
        whole = t.is_contiguous() and t.numel() * t.element_size() == storage.nbytes()
        if counts[storage.data_ptr()] > 1 or not whole:
            t = t.contiguous().clone()
        out[name] = t
    return out


def qualified_name(obj: Any) -> str:
    """``module.QualName`` of a class or of an instance's class.

    >>> qualified_name(nn.Linear(1, 1))
    'torch.nn.modules.linear.Linear'
    """
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class _MaskSuspension:
    """``with masks_suspended():`` — pruning masks are not re-applied inside (graph capture
    must not record their in-place multiply). Re-entrant."""

    depth = 0

    def __call__(self) -> _MaskSuspension:
        return self

    def __enter__(self) -> None:
        type(self).depth += 1

    def __exit__(self, *exc: object) -> None:
        type(self).depth -= 1


masks_suspended = _MaskSuspension()
