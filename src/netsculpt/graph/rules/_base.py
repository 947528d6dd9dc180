"""The rule registry and what the rules share.

Each family module registers its rules into :data:`RULES` with :func:`rule`. The elementwise
op names live here, not in :mod:`.elementwise`, because :func:`op_name` folds their in-place
forms (``add_``) onto them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

import torch

RULES: dict[str, Callable] = {}


ELEMENTWISE = [
    "add",
    "sub",
    "mul",
    "div",
    "true_divide",
    "floor_divide",
    "remainder",
    "fmod",
    "pow",
    "rsub",
    "neg",
    "abs",
    "sign",
    "reciprocal",
    "relu",
    "relu6",
    "gelu",
    "sigmoid",
    "silu",
    "tanh",
    "hardswish",
    "hardsigmoid",
    "hardtanh",
    "mish",
    "elu",
    "selu",
    "celu",
    "leaky_relu",
    "softplus",
    "logsigmoid",
    "prelu",
    "glu_",
    "exp",
    "expm1",
    "log",
    "log1p",
    "log2",
    "sqrt",
    "rsqrt",
    "sin",
    "cos",
    "erf",
    "erfinv",
    "clamp",
    "clamp_min",
    "clamp_max",
    "clip",
    "threshold",
    "dropout",
    "alpha_dropout",
    "feature_alpha_dropout",
    "bernoulli",
    "clone",
    "contiguous",
    "alias",
    "detach",
    "lift_fresh_copy",
    "_to_copy",
    "to",
    "type_as",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "logical_and",
    "logical_or",
    "logical_not",
    "logical_xor",
    "bitwise_and",
    "bitwise_or",
    "bitwise_not",
    "bitwise_xor",
    "where",
    "masked_fill",
    "maximum",
    "minimum",
    "fill",
    "zero",
    "copy",
    "softmax",
    "log_softmax",
    "_softmax",
    "_log_softmax",
    "square",
    "round",
    "floor",
    "ceil",
    "trunc",
    "frac",
    "isnan",
    "isinf",
    "nan_to_num",
    "zeros_like",
    "ones_like",
    "full_like",
    "empty_like",
    "rand_like",
    "randn_like",
    "lerp",
    "addcmul",
    "addcdiv",
    "tril",
    "triu",
    "native_dropout_backward",
    "expand_as",
    "__and__",
    "__or__",
    "__xor__",
    "__invert__",
]


def rule(*names: str):
    def deco(fn):
        for n in names:
            RULES[n] = fn
        return fn

    return deco


def op_name(node: torch.fx.Node) -> str:
    """'conv2d' for aten.conv2d.default, 'add' for aten.add_.Tensor, 'getitem' for getitem."""
    target = node.target
    if target is operator.getitem:
        return "getitem"
    packet = getattr(target, "_overloadpacket", None)
    name = getattr(packet, "__name__", None) or getattr(target, "__name__", str(target))
    if name.endswith("_") and not name.startswith("_") and name[:-1] in _INPLACE_OK:
        name = name[:-1]
    return name


_INPLACE_OK = set(ELEMENTWISE) | {"index_put", "unsqueeze", "squeeze", "transpose", "t"}


def _each_output(t, node, shaped):
    """Apply ``shaped`` to the node's value, or to each value of a tuple output."""
    val = t.val(node)
    if isinstance(val, (tuple, list)):
        return [shaped(v) for v in val]
    return shaped(val)


def _first_output(t, node, out):
    """``out`` for the (first) output; the extra outputs of ops like native_layer_norm are
    statistics nothing is coupled through."""
    val = t.val(node)
    if isinstance(val, (tuple, list)):
        return [out] + [t.opaque_value(v) for v in val[1:]]
    return out


def _prod(xs) -> int:
    p = 1
    for s in xs:
        p *= int(s)
    return p


def aten_name_pattern() -> re.Pattern:
    return re.compile(r"aten\.(\w+)")
