"""The only editor of models: slice / extend tensors by channel index, fix attributes, verify."""

from netsculpt.surgery.slicing import (
    Edit,
    find_breaking_groups,
    meta_clone,
    outputs_close,
    remove_channels,
    remove_channels_safely,
    slice_tensor,
    tensor_positions,
    verify,
)
from netsculpt.surgery.widen import widen

__all__ = [
    "Edit",
    "find_breaking_groups",
    "outputs_close",
    "meta_clone",
    "remove_channels",
    "remove_channels_safely",
    "slice_tensor",
    "tensor_positions",
    "verify",
    "widen",
]
