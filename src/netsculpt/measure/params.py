"""Parameter count and saved size of a model."""

from __future__ import annotations

from torch import nn

from netsculpt.core.utils import unique_state_dict


def count_params(model: nn.Module) -> int:
    """Number of unique parameters; tied weights (one tensor under two names) count once.

    >>> count_params(nn.Linear(4, 3))
    15
    """
    # named_parameters() already drops repeated Parameter objects; dedup by storage as well
    # so that two Parameters viewing the same memory count once too
    seen: set[tuple] = set()
    total = 0
    for p in model.parameters():
        key = (
            (id(p),)
            if p.device.type == "meta"
            else (p.untyped_storage().data_ptr(), p.storage_offset(), tuple(p.shape))
        )
        if key not in seen:
            seen.add(key)
            total += p.numel()
    return total


def saved_size_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict serialized as safetensors (shared tensors stored once).

    >>> saved_size_bytes(nn.Linear(4, 3)) > 15 * 4
    True
    """
    from safetensors.torch import save

    tensors, _ = unique_state_dict(model)
    return len(save(tensors))
