"""The fold planner of ``merge``: find exact folds in the exported graph (the math, and the
edit, are in ``surgery/fold.py``; the memory backend's ``fold`` applier calls it).

"Consecutive" is read from the ATen graph: a conv node whose only user is a batch_norm node, a
linear whose only user (through eval-mode dropout / clone) is another linear, a norm whose users
are all linears. Module order in ``__init__`` plays no part. A module is folded only if each of its
parameters is used by exactly one node (a module called twice, or a tied weight, is left alone).

>>> import torch
>>> from netsculpt.graph.capture import capture
>>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
>>> [f.kind for f in plan_bn_after(m, capture(m, torch.randn(1, 3, 8, 8)))]
['bn_after']

Every planner takes ``ignore`` (module names / patterns, :func:`netsculpt.core.select.is_ignored`):
a fold that would touch an ignored module is not planned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.fx import Node

from netsculpt.core.plan import Action
from netsculpt.core.select import is_ignored
from netsculpt.surgery import fold as F

aten = torch.ops.aten
_CONV_OPS = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default}
_CONV_T_OPS = {
    aten.conv_transpose1d.default,
    aten.conv_transpose2d.input,
    aten.conv_transpose3d.input,
}
_LINEAR_OPS = {aten.linear.default}
_BN_OPS = {aten.batch_norm.default}
# ops that are the identity in eval mode; a fold may look through them
_PASS_OPS = {aten.dropout.default, aten.clone.default, aten.alias.default, aten.detach.default}


@dataclass
class Fold:
    """One planned fold: its kind (``bn_after``, ``bn_before``, ``linear_linear``, ``conv_conv``,
    ``norm_gain``) and the module paths it folds together, in the order the kind expects."""

    kind: str
    modules: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"kind": self.kind, "modules": list(self.modules)}

    def action(self) -> Action:
        """The plan's ``fold`` action for this fold."""
        return Action("fold", {"fold_kind": self.kind, "modules": list(self.modules)})


def _skip(paths: Sequence[str | None], ignore: Sequence[str]) -> bool:
    return any(p is not None and is_ignored(p, ignore) for p in paths)


def _module_of(model: nn.Module, cap, node, types) -> str | None:
    """Path of the module owning placeholder ``node`` if it is an instance of ``types`` and every
    one of its parameters / buffers in the graph has exactly one user."""
    if not isinstance(node, Node) or node.op != "placeholder":
        return None
    fqn = cap.tensor_of_input.get(node.name)
    if fqn is None:
        return None
    path = fqn.rpartition(".")[0]
    try:
        mod = model.get_submodule(path)
    except AttributeError:
        return None
    if not isinstance(mod, types):
        return None
    for ph in cap.graph.nodes:
        if ph.op != "placeholder":
            break
        owner = cap.tensor_of_input.get(ph.name, "")
        if owner.rpartition(".")[0] == path and len(ph.users) > 1:
            return None
    return path


def _through(node: Node) -> tuple[Node, Node | None]:
    """Follow ``node`` through eval-identity ops; return (last node, its single consumer)."""
    while len(node.users) == 1:
        (user,) = node.users
        if user.target in _PASS_OPS and user.args[0] is node:
            if user.target is aten.dropout.default and user.args[2]:
                return node, user  # a training-mode dropout is not the identity
            node = user
            continue
        return node, user
    return node, None


def _ndim(node: Node) -> int:
    val = node.meta.get("val")
    return val.dim() if isinstance(val, torch.Tensor) else -1


def _layer_path(model, cap, node: Node) -> str | None:
    if node.target in _LINEAR_OPS:
        return _module_of(model, cap, node.args[1], nn.Linear)
    if node.target in _CONV_OPS:
        return _module_of(model, cap, node.args[1], F._CONV)
    if node.target in _CONV_T_OPS:
        return _module_of(model, cap, node.args[1], F._CONV_T)
    return None


def _bn_path(model, cap, node: Node) -> str | None:
    # batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
    if node.target not in _BN_OPS or node.args[5]:
        return None
    return _module_of(model, cap, node.args[3], F._BN)


def plan_bn_after(model: nn.Module, cap, ignore: Sequence[str] = ()) -> list[Fold]:
    """BatchNorm whose input is a Linear / Conv / ConvTranspose used by nothing else."""
    folds = []
    for node in cap.graph.nodes:
        bn = _bn_path(model, cap, node)
        if bn is None or not isinstance(node.args[0], Node):
            continue
        prod = node.args[0]
        layer = _layer_path(model, cap, prod)
        if layer is None or len(prod.users) != 1:
            continue
        if prod.target in _LINEAR_OPS and _ndim(prod) != 2:
            continue  # BatchNorm1d on [N, C, L] normalizes dim 1, not the Linear's features
        if not _skip((layer, bn), ignore):
            folds.append(Fold("bn_after", (layer, bn)))
    return folds


def plan_bn_before(
    model: nn.Module, cap, ignore: Sequence[str] = ()
) -> tuple[list[Fold], list[str]]:
    """BatchNorm whose only consumer is a Linear / Conv; refusals say why a fold is not exact."""
    folds, notes = [], []
    for node in cap.graph.nodes:
        bn = _bn_path(model, cap, node)
        if bn is None:
            continue
        last, user = _through(node)
        if user is None or user.args[0] is not last:
            continue
        layer = _layer_path(model, cap, user)
        if layer is None or (user.target in _LINEAR_OPS and _ndim(user) != 2):
            continue
        if _skip((bn, layer), ignore):
            continue
        reason = F.bn_before_refusal(model.get_submodule(layer))
        if reason:
            notes.append(f"BatchNorm {bn} before {layer} not folded: {reason}")
            continue
        folds.append(Fold("bn_before", (bn, layer)))
    return folds, notes


def plan_affine(model: nn.Module, cap, ignore: Sequence[str] = ()) -> tuple[list[Fold], list[str]]:
    """Linear∘Linear and conv∘conv (one pointwise) with nothing non-linear between, kept only when
    the merged layer costs no more MACs than the two."""
    folds, notes, used = [], [], set()
    for node in cap.graph.nodes:
        first = _layer_path(model, cap, node)
        if first is None or node.target in _CONV_T_OPS or first in used:
            continue
        last, user = _through(node)
        if user is None or user.args[0] is not last or user.target != node.target:
            continue
        second = _layer_path(model, cap, user)
        if second is None or second in used or second == first or _skip((first, second), ignore):
            continue
        m1, m2 = model.get_submodule(first), model.get_submodule(second)
        if node.target in _LINEAR_OPS:
            before = F.linear_macs(m1) + F.linear_macs(m2)
            after = m1.in_features * m2.out_features
            kind = "linear_linear"
        else:
            reason = F.compose_conv_refusal(m1, m2)
            if reason:
                notes.append(f"{first} -> {second} not merged: {reason}")
                continue
            n1, n2 = node.meta["val"][0, 0].numel(), user.meta["val"][0, 0].numel()
            before = F.conv_macs(m1, n1) + F.conv_macs(m2, n2)
            after = F.composed_conv_macs(m1, m2, n2)
            kind = "conv_conv"
        if after > before:
            notes.append(
                f"{first} -> {second} not merged: the merged layer would cost more MACs "
                f"({after:,} > {before:,} per sample)"
            )
            continue
        used.update((first, second))
        folds.append(Fold(kind, (first, second)))
    return folds, notes


def _norm_node(model, cap, node: Node) -> str | None:
    """Path of the norm whose gain ``node`` applies (LayerNorm / RMSNorm ops, or the final
    ``weight * x`` of a hand-written RMSNorm as in Hugging Face models)."""
    if node.target in (aten.layer_norm.default, aten.rms_norm.default):
        if len(node.args) < 3 or node.args[2] is None or len(node.args[1]) != 1:
            return None
        return _module_of(model, cap, node.args[2], nn.Module)
    if node.target is aten.mul.Tensor:
        for a in node.args:
            path = _module_of(model, cap, a, nn.Module)
            if path is not None and "norm" in type(model.get_submodule(path)).__name__.lower():
                return path
    return None


def plan_norm_gain(
    model: nn.Module, cap, ignore: Sequence[str] = ()
) -> tuple[list[Fold], list[str]]:
    """LayerNorm / RMSNorm gain into the Linears that read the norm's output (all of them)."""
    folds, notes = [], []
    for node in cap.graph.nodes:
        norm = _norm_node(model, cap, node)
        if norm is None:
            continue
        mod = model.get_submodule(norm)
        w = getattr(mod, "weight", None)
        bias = getattr(mod, "bias", None)
        if not isinstance(w, torch.Tensor) or w.dim() != 1:
            continue
        if bool((w == 1).all()) and (not isinstance(bias, torch.Tensor) or not bias.any()):
            continue  # nothing left to fold
        users = list(node.users)
        linears = [_layer_path(model, cap, u) if u.target in _LINEAR_OPS else None for u in users]
        if (
            not users
            or any(p is None for p in linears)
            or any(u.args[0] is not node for u in users)
        ):
            notes.append(f"{norm} gain not folded: its output feeds something other than Linears")
            continue
        if not _skip((norm, *linears), ignore):
            folds.append(Fold("norm_gain", (norm, *linears)))
    return folds, notes
