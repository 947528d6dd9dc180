"""A loaded ``.pt2`` program as a model with its module hierarchy and real ``torch.nn`` layers.

``program.module()`` is one flat graph: no blocks to cut or grow, no layer to fold.
:func:`program_model` calls ``torch.export.unflatten`` (which recovers the module tree the
program was exported from, as interpreter modules that each run their own piece of the graph)
and then turns every piece whose original class is a standard ``torch.nn`` layer (conv, linear,
norms, activations, pools, ``nn.Sequential``) back into that class, reading
its settings from the one ATen call it makes and sharing its tensors. A piece that does not
match its class's pattern exactly stays an interpreter module; custom classes (a ResNet
``BasicBlock``) stay interpreter modules that call their children by name, so a child that is
replaced (cut) or wrapped (grow) is what runs. Only classes of a fixed table are built: nothing
named in the file is imported or run.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).eval()
>>> m = program_model(torch.export.export(net, (torch.randn(2, 1, 8, 8),)))
>>> [type(c).__name__ for c in m]
['Conv2d', 'BatchNorm2d', 'ReLU']
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.fx.operator_schemas import normalize_function

from netsculpt.core.errors import InputError

_Build = Callable[[dict[str, Any], dict[str, Any]], nn.Module]


def _conv(cls: type) -> _Build:
    def build(kw: dict, t: dict) -> nn.Module:
        w, groups = t["weight"], kw.get("groups", 1)
        m = cls(
            w.shape[1] * groups,
            w.shape[0],
            tuple(w.shape[2:]),
            stride=tuple(kw.get("stride", 1)),
            padding=kw.get("padding", 0)
            if isinstance(kw.get("padding"), str)
            else tuple(kw.get("padding", 0)),  # fmt: skip
            dilation=tuple(kw.get("dilation", 1)),
            groups=groups,
            bias=kw.get("bias") is not None,
        )
        return m

    return build


def _batch_norm(cls: type) -> _Build:
    def build(kw: dict, t: dict) -> nn.Module:
        if kw.get("training"):
            raise ValueError("exported in training mode")
        stats, affine = t.get("running_mean"), t.get("weight")
        c = (stats if stats is not None else affine).shape[0]
        return cls(
            c,
            eps=kw["eps"],
            momentum=kw["momentum"],
            affine=affine is not None,
            track_running_stats=stats is not None,
        )

    return build


def _simple(factory: Callable[[dict], nn.Module]) -> _Build:
    return lambda kw, t: factory(kw)


def _pool_stride(kw: dict) -> Any:
    return tuple(kw["stride"]) if kw.get("stride") else None


_ACT = {  # class name: (ATen ops it makes, how to build it from their arguments)
    "ReLU": (("relu", "relu_"), None),
    "ReLU6": (("relu6", "hardtanh", "hardtanh_"), None),
    "GELU": (("gelu",), lambda kw: nn.GELU(approximate=kw.get("approximate", "none"))),
    "SiLU": (("silu", "silu_"), None),
    "Tanh": (("tanh",), None),
    "Sigmoid": (("sigmoid",), None),
    "Hardswish": (("hardswish", "hardswish_"), None),
    "Hardsigmoid": (("hardsigmoid", "hardsigmoid_"), None),
    "Mish": (("mish", "mish_"), None),
    "LeakyReLU": (("leaky_relu", "leaky_relu_"), lambda kw: nn.LeakyReLU(kw["negative_slope"])),
    "ELU": (("elu", "elu_"), lambda kw: nn.ELU(kw.get("alpha", 1.0))),
    "Softmax": (("softmax",), lambda kw: nn.Softmax(kw["dim"])),
    "Dropout": (("dropout",), lambda kw: nn.Dropout(kw["p"])),
}
# class name: (ATen ops, builder(normalized kwargs, the layer's tensors by name))
_LAYERS: dict[str, tuple[tuple[str, ...], _Build]] = {
    "Conv1d": (("conv1d",), _conv(nn.Conv1d)),
    "Conv2d": (("conv2d",), _conv(nn.Conv2d)),
    "Conv3d": (("conv3d",), _conv(nn.Conv3d)),
    "Linear": (
        ("linear",),
        lambda kw, t: nn.Linear(
            t["weight"].shape[1], t["weight"].shape[0], bias=kw.get("bias") is not None
        ),
    ),
    "BatchNorm1d": (("batch_norm",), _batch_norm(nn.BatchNorm1d)),
    "BatchNorm2d": (("batch_norm",), _batch_norm(nn.BatchNorm2d)),
    "BatchNorm3d": (("batch_norm",), _batch_norm(nn.BatchNorm3d)),
    "LayerNorm": (
        ("layer_norm",),
        lambda kw, t: nn.LayerNorm(
            tuple(kw["normalized_shape"]),
            eps=kw.get("eps", 1e-5),
            elementwise_affine=kw.get("weight") is not None,
            bias=kw.get("bias") is not None,
        ),
    ),
    "GroupNorm": (
        ("group_norm",),
        lambda kw, t: nn.GroupNorm(
            kw["num_groups"], t["weight"].shape[0], eps=kw.get("eps", 1e-5)
        ),
    ),
    "Embedding": (
        ("embedding",),
        lambda kw, t: nn.Embedding(
            *t["weight"].shape,
            padding_idx=None if kw.get("padding_idx", -1) < 0 else kw["padding_idx"],
        ),
    ),
    "MaxPool1d": (("max_pool1d",), _simple(lambda kw: nn.MaxPool1d(
        tuple(kw["kernel_size"]), _pool_stride(kw), tuple(kw.get("padding", 0)),
        tuple(kw.get("dilation", 1)), ceil_mode=kw.get("ceil_mode", False)))),  # fmt: skip
    "MaxPool2d": (("max_pool2d",), _simple(lambda kw: nn.MaxPool2d(
        tuple(kw["kernel_size"]), _pool_stride(kw), tuple(kw.get("padding", 0)),
        tuple(kw.get("dilation", 1)), ceil_mode=kw.get("ceil_mode", False)))),  # fmt: skip
    "AvgPool2d": (("avg_pool2d",), _simple(lambda kw: nn.AvgPool2d(
        tuple(kw["kernel_size"]), _pool_stride(kw), tuple(kw.get("padding", 0)),
        kw.get("ceil_mode", False), kw.get("count_include_pad", True),
        kw.get("divisor_override")))),  # fmt: skip
    "AdaptiveAvgPool1d": (("adaptive_avg_pool1d",),
                          _simple(lambda kw: nn.AdaptiveAvgPool1d(tuple(kw["output_size"])))),
    "AdaptiveAvgPool2d": (("adaptive_avg_pool2d",),
                          _simple(lambda kw: nn.AdaptiveAvgPool2d(tuple(kw["output_size"])))),
    "Flatten": (("flatten",), _simple(lambda kw: nn.Flatten(kw.get("start_dim", 0),
                                                            kw.get("end_dim", -1)))),
}  # fmt: skip
for _name, (_ops, _make) in _ACT.items():
    _LAYERS[_name] = (_ops, _simple(_make or (lambda kw, n=_name: getattr(nn, n)())))


def _class_name(ty: Any) -> str | None:
    """``Conv2d`` for ``torch.nn.modules.conv.Conv2d`` (a class of the table), else None."""
    if not isinstance(ty, str) or not ty.startswith("torch.nn.modules."):
        return None
    name = ty.rpartition(".")[2]
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and f"{cls.__module__}.{cls.__qualname__}" == ty):
        return None
    return name


def _graph(m: nn.Module) -> torch.fx.Graph | None:
    g = getattr(m, "graph", None)
    return g if isinstance(g, torch.fx.Graph) else None


def _leaf(m: nn.Module, name: str) -> nn.Module | None:
    """The ``torch.nn`` layer ``name`` that computes what interpreter module ``m`` does, or None
    when its graph is not exactly one call of the layer's ATen op on its own tensors."""
    g = _graph(m)
    if g is None or any(True for _ in m.children()):
        return None
    nodes = list(g.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    calls = [n for n in nodes if n.op == "call_function"]
    out = [n for n in nodes if n.op == "output"]
    if len(inputs) != 1 or len(out) != 1:
        return None
    result = out[0].args[0]
    result = result[0] if isinstance(result, (tuple, list)) and len(result) == 1 else result
    if name in ("Identity", "Dropout") and not calls and result is inputs[0]:
        return nn.Identity()
    if name not in _LAYERS or len(calls) != 1 or result is not calls[0]:
        return None
    ops, build = _LAYERS[name]
    call = calls[0]
    if getattr(call.target, "_opname", None) not in ops or call.target._overloadname not in (
        "default",
        "padding",
        "int",
        "using_ints",
    ):
        return None
    norm = normalize_function(
        call.target, call.args, call.kwargs, normalize_to_only_use_kwargs=True
    )
    if norm is None:
        return None
    kw = dict(norm.kwargs)
    named = {
        k: _fetch(m, v.target)
        for k, v in kw.items()
        if isinstance(v, torch.fx.Node) and v.op == "get_attr"
    }
    relu6 = (kw.get("min_val"), kw.get("max_val")) == (0.0, 6.0)
    if name == "ReLU6" and call.target._opname != "relu6" and not relu6:
        return None
    if name == "Dropout" and kw.get("train"):
        return None
    try:
        layer = build(kw, {**dict(m.named_buffers(recurse=False)), **named})
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    if getattr(call.target, "_opname", "").endswith("_") and hasattr(layer, "inplace"):
        layer.inplace = True
    own = dict(m.named_parameters(recurse=False)) | dict(m.named_buffers(recurse=False))
    want = dict(layer.named_parameters(recurse=False)) | dict(layer.named_buffers(recurse=False))
    for key, value in want.items():
        src = own.get(key)
        if src is None:
            if key == "num_batches_tracked":
                continue
            return None
        if tuple(src.shape) != tuple(value.shape):
            return None
        if isinstance(value, nn.Parameter):
            setattr(layer, key, src if isinstance(src, nn.Parameter) else nn.Parameter(src))
        else:
            setattr(layer, key, src)
    return layer.to(device=next(iter(own.values())).device) if own else layer


def _fetch(m: nn.Module, target: str) -> Any:
    obj: Any = m
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _container(m: nn.Module, name: str) -> nn.Module | None:
    """An ``nn.Sequential`` holding ``m``'s children, when ``m``'s graph calls every child once,
    in order, on the previous result. (An ``nn.ModuleList`` stays as it is: its items are
    called by path from its owner's graph, so renumbering them would call the wrong ones.)"""
    children = list(m.named_children())
    if not children:
        return None
    g = _graph(m)
    if name != "Sequential" or g is None:
        return None
    nodes = list(g.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    calls = [n for n in nodes if n.op != "placeholder" and n.op != "output"]
    if len(inputs) != 1 or [n.target for n in calls] != [k for k, _ in children]:
        return None
    prev = inputs[0]
    for n in calls:
        if n.op != "call_module" or n.args != (prev,) or n.kwargs:
            return None
        prev = n
    out = [n for n in nodes if n.op == "output"][0].args[0]
    out = out[0] if isinstance(out, (tuple, list)) and len(out) == 1 else out
    if out is not prev:
        return None
    return nn.Sequential(OrderedDict(children))


def _restore(m: nn.Module) -> nn.Module | None:
    """``m`` as a real ``torch.nn`` class, or None (keep it)."""
    name = _class_name(getattr(m, "_ty", None))
    if name is None:
        return None
    return _container(m, name) or _leaf(m, name)


def _restore_tree(m: nn.Module) -> int:
    """Replace, bottom-up, the children of ``m`` that are standard layers; returns how many."""
    count = 0
    for key, child in list(m.named_children()):
        count += _restore_tree(child)
        new = _restore(child)
        if new is not None:
            m._modules[key] = new
            count += 1
    return count


def program_model(
    program: torch.export.ExportedProgram, example: Any = None, *, where: Any = None
) -> nn.Module:
    """The model of ``program`` with its module hierarchy, standard layers rebuilt as their
    ``torch.nn`` classes, in eval mode (a program is traced for inference).

    With ``example`` (``(args, kwargs)``) the result is checked against the plain unflattened
    program, and that one is returned when they differ. A program that ``unflatten`` cannot
    take apart comes back as its flat module (:func:`~netsculpt.io.program.program_module`).
    """
    try:
        model = torch.export.unflatten(program)
        plain = torch.export.unflatten(program).eval() if example is not None else None
    except Exception:  # noqa: BLE001 - e.g. a program saved without its module call graph
        from netsculpt.io.program import program_module

        try:
            return program_module(program)
        except Exception as exc:  # noqa: BLE001
            raise InputError(
                f"{where or 'program'}: cannot rebuild the module ({type(exc).__name__})"
            ) from exc
    _restore_tree(model)
    root = _restore(model) if _class_name(getattr(model, "_ty", None)) == "Sequential" else None
    candidate = (root if root is not None else model).eval()
    for m in (candidate, plain):
        if m is not None:
            _drop_fake_values(m)
    if example is None or plain is None:
        return candidate
    args, kwargs = example
    try:
        with torch.no_grad():
            same = _close(plain(*args, **kwargs), candidate(*args, **kwargs))
    except Exception:  # noqa: BLE001 - a rebuilt layer that does not run: keep the plain tree
        same = False
    return candidate if same else plain


def _drop_fake_values(model: nn.Module) -> None:
    """Remove the traced (fake, symbolic) values from the graphs' node metadata and the root's
    reference to itself: running reads neither, and they make ``copy.deepcopy(model)`` fail."""
    meta = getattr(model, "meta", None)
    if isinstance(meta, dict):
        meta.pop("unflattened_module", None)
    for m in model.modules():
        g = _graph(m)
        for node in g.nodes if g is not None else ():
            for key in ("val", "tensor_meta", "example_value", "unbacked_bindings"):
                node.meta.pop(key, None)


def _close(a: Any, b: Any) -> bool:
    la, lb = torch.utils._pytree.tree_leaves(a), torch.utils._pytree.tree_leaves(b)
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb):
        if isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and x.shape == y.shape):
                return False
            if not torch.allclose(x.float(), y.float(), rtol=1e-4, atol=1e-5):
                return False
    return True
