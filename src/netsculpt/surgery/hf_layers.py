"""Edits of a Hugging Face model's transformer layer list itself, for every family (post-LN
BERT too): delete layers, fold a span of layers into one (LaCo).

``ns.cut`` / ``ns.merge`` work on residual blocks found in the graph; a post-LayerNorm encoder
(BERT, MiniLM) has no ``x + f(x)`` block, yet deleting a whole layer still leaves a model that
runs. These edit the layer ``ModuleList`` directly and keep the config in step
(``num_hidden_layers``, per-layer fields such as ``layer_types`` and ``max_window_layers``, each
layer's ``layer_idx``), so ``save_pretrained`` describes the result. Which layers to edit is
decided elsewhere (:mod:`netsculpt.hf.layers` scores them).

>>> layer_list(nn.Linear(2, 2))
Traceback (most recent call last):
netsculpt.core.errors.InputError: Linear: found no transformer layer list
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.surgery.hf import layer_fields
from netsculpt.surgery.hf_config import transformer_layers


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """``(path, ModuleList)`` of the model's transformer layers; InputError when it has none."""
    found = transformer_layers(model)
    if found is None:
        raise InputError(f"{type(model).__name__}: found no transformer layer list")
    return found


def set_layers(model: nn.Module, keep: list[nn.Module]) -> None:
    """Make ``keep`` (layers of the current list, in order) the layer list, in place, and sync
    the config: depth, per-layer fields (:func:`netsculpt.surgery.hf.layer_fields`: e.g.
    ``layer_types``, ``max_window_layers``) and each layer's ``layer_idx``.

    >>> set_layers(model, list(layer_list(model)[1])[::2])   # doctest: +SKIP
    """
    path, old = layer_list(model)
    index = {id(m): i for i, m in enumerate(old)}
    bad = [i for i, m in enumerate(keep) if id(m) not in index]
    if bad:
        raise InputError(f"set_layers: keep[{bad[0]}] is not a layer of {path}")
    fields = layer_fields(model.config, [index[id(m)] for m in keep], len(old))
    widths = getattr(model.config, "netsculpt_layers", None)  # per-layer widths after a prune
    if isinstance(widths, list) and len(widths) == len(old):
        fields["netsculpt_layers"] = [widths[index[id(m)]] for m in keep]
    place_layers(model, path, keep)
    model.config.num_hidden_layers = len(keep)
    for name, value in fields.items():
        setattr(model.config, name, value)


def place_layers(model: nn.Module, path: str, keep: list[nn.Module]) -> None:
    """Put ``keep`` at ``path`` as the layer list and renumber each layer's ``layer_idx``
    (the config is the caller's: :func:`set_layers` syncs it)."""
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, nn.ModuleList(keep))
    for i, layer in enumerate(keep):
        for mod in layer.modules():
            if isinstance(getattr(mod, "layer_idx", None), int):
                mod.layer_idx = i


@contextmanager
def layers_trial(model: nn.Module, keep: list[nn.Module]) -> Iterator[None]:
    """The layer list is ``keep`` inside the block (a trial: score the model without a layer);
    afterwards the list, each layer's ``layer_idx`` and the config are exactly as before."""
    path, old = layer_list(model)
    old = list(old)
    state = dict(vars(model.config))
    set_layers(model, keep)
    try:
        yield
    finally:
        place_layers(model, path, old)
        vars(model.config).clear()
        vars(model.config).update(state)


def check_drop(n_layers: int, indices: Iterable[int]) -> list[int]:
    """``indices`` sorted, once each; InputError unless they leave at least one of ``n_layers``."""
    drop = sorted({int(i) for i in indices})
    if not drop or drop[0] < 0 or drop[-1] >= n_layers or len(drop) >= n_layers:
        raise InputError(f"drop_layers: bad indices {drop} for {n_layers} layers")
    return drop


def drop_layers(model: nn.Module, indices: Iterable[int]) -> list[int]:
    """Delete the layers at ``indices`` (positions in the current list); returns them sorted."""
    _, layers = layer_list(model)
    drop = check_drop(len(layers), indices)
    set_layers(model, [m for i, m in enumerate(layers) if i not in drop])
    return drop


@torch.no_grad()
def collapse_layers(model: nn.Module, first: int, span: int) -> None:
    """LaCo RDSC: fold layers ``first+1 .. first+span-1`` into ``first`` with
    ``θ = θ_first + Σ (θ_k − θ_first)`` (the original θ_first, not the notebook's in-place bug),
    then delete them. Norms are kept from ``first``."""
    _, layers = layer_list(model)
    if span < 2 or first + span > len(layers):
        raise InputError(f"collapse_layers: span {span} from {first} exceeds {len(layers)} layers")
    base = layers[first]
    orig = {n: p.detach().clone() for n, p in base.named_parameters()}
    for k in range(first + 1, first + span):
        other = dict(layers[k].named_parameters())
        for n, p in base.named_parameters():
            if "norm" in n.lower() or n not in other or other[n].shape != p.shape:
                continue
            p.add_(other[n] - orig[n])
    drop_layers(model, range(first + 1, first + span))
