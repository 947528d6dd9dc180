"""LoRA healing through ``peft`` (optional extra): wrap, train the adapters, merge back in place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from netsculpt.core.errors import InputError

LORA_KEYS = {"r", "alpha", "lora_alpha", "dropout", "lora_dropout", "target_modules", "bias"}


@contextmanager
def lora_wrapped(model: nn.Module, options: dict[str, Any]) -> Iterator[nn.Module]:
    """Yield a peft model whose LoRA adapters train; on exit merge them into ``model``'s weights.

    ``model`` stays the same object of the same class, with its ``requires_grad`` flags restored.

    Example::

        with lora_wrapped(model, {"r": 8, "target_modules": ["fc1", "fc2"]}) as net:
            train(net)
    """
    try:
        import peft
    except ImportError as e:
        raise InputError("heal: lora= needs peft (pip install netsculpt[heal])") from e
    unknown = set(options) - LORA_KEYS
    if unknown:
        raise InputError(f"heal: unknown lora option(s) {sorted(unknown)}; use {sorted(LORA_KEYS)}")
    if not options.get("target_modules"):
        raise InputError("heal: lora= needs target_modules (names of the Linear layers to adapt)")
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    attrs = set(vars(model))
    r = int(options.get("r", 8))
    config = peft.LoraConfig(
        r=r,
        lora_alpha=options.get("lora_alpha", options.get("alpha", 2 * r)),
        lora_dropout=options.get("lora_dropout", options.get("dropout", 0.0)),
        target_modules=list(options["target_modules"]),
        bias=options.get("bias", "none"),
    )
    try:
        wrapped = peft.get_peft_model(model, config)
    except ValueError as e:
        raise InputError(f"heal: lora could not wrap the model: {e}") from e
    ok = False
    try:
        yield wrapped
        ok = True
    finally:
        base = wrapped.merge_and_unload() if ok else wrapped.unload()
        if base is not model:  # peft edits in place; copy back if a version ever does not
            model.load_state_dict(base.state_dict())
        for name in set(vars(model)) - attrs:  # e.g. peft_config left on the module
            delattr(model, name)
        for n, p in model.named_parameters():
            p.requires_grad_(flags.get(n, True))
