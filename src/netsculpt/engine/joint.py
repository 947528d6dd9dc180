"""Scopes as one program: the scoped submodules of a model called in the order of one forward.

One forward of the whole model is recorded. Each input of a scope is either a tensor that an
earlier scope returned, unchanged (a *link*: the program passes it on, so the channels it
carries are coupled across the two scopes), or a tensor the outer code made (recorded, and
an input of the program). A scope output the outer code computes with (anything but reading
its shape), or that the model returns, is an output of the program: its channels stay whole,
with the op and module that use it as the reason. One exception: when the outer code only
feeds it to a Linear / Conv module, that module joins the program (its input channels are
sliced with the scope's outputs; its own outputs stay whole).

The program is the model itself with :func:`installed` giving it a ``forward`` over the
recorded inputs, so that every module path, parameter name and edit is the model's own.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
>>> j = trace("prune", net, torch.ones(1, 4), ["0", "1"])
>>> [s.path for s in j.steps], j.exports, j.links
(['0', '1'], [(1, 0)], 1)
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode, resolve_name
from torch.utils import _pytree as pytree

from netsculpt.core.errors import InputError
from netsculpt.core.utils import eval_mode, normalize_inputs

_ATTR = "_netsculpt_joint"
# reading these of a scope output is not a use of its channels' values
_SHAPE_ONLY = {"shape", "size", "dim", "ndim", "dtype", "device", "is_cuda", "layout",
               "is_floating_point", "is_complex", "is_quantized", "requires_grad",
               "get_device", "element_size"}  # fmt: skip


@dataclass
class Step:
    """One call of the program: ``path`` on its inputs. ``sources``: per input leaf,
    ``("link", step, leaf)``, ``("input", k)`` (the k-th recorded tensor) or ``("const", v)``."""

    path: str
    spec: Any
    sources: list
    names: list[str] = field(default_factory=list)  # its output leaves, as key paths
    adopted: bool = False  # a Linear / Conv outside the scopes that joined the program


@dataclass
class Joint:
    steps: list[Step]
    inputs: tuple  # the recorded tensors: the program's example inputs
    exports: list[tuple[int, int]]  # (step, leaf) the program returns
    kept: dict[str, str]  # "<scope> output <leaf>" -> why it stays whole
    links: int = 0  # scope inputs that are another scope's outputs
    output: Any = None  # the structure of the whole model's outputs (:func:`structure`)

    @property
    def adopted(self) -> list[str]:
        return [s.path for s in self.steps if s.adopted]

    def signature(self) -> list:
        return [(s.path, [x[:1] if x[0] != "link" else x for x in s.sources]) for s in self.steps]

    def label(self, key: tuple[int, int]) -> str:
        s = self.steps[key[0]]
        return f"{s.path} output{s.names[key[1]]}"


class _Recorder(TorchFunctionMode):
    """Watches one forward: scope calls (by their hooks), module nesting, and every torch op
    the outer code runs on a scope output."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.paths = {id(m): p for p, m in model.named_modules()}
        self.names = names
        self.depth = 0  # > 0 inside a scope
        self.busy = False
        self.stack: list[nn.Module] = []
        self.owner: dict[int, tuple[int, int]] = {}
        self.alive: list[torch.Tensor] = []  # keeps the ids of owned tensors unique
        self.steps: list[Step] = []
        self.inputs: list[torch.Tensor] = []
        self.calls: dict[str, int] = dict.fromkeys(names, 0)
        self.uses: dict[tuple[int, int], str] = {}
        self.by_scope: set[tuple[int, int]] = set()
        self.adopt: dict[str, list[tuple[int, int]]] = {}  # outside Linear / Conv -> leaves fed
        self.runs: dict[int, int] = {}  # calls of each Linear / Conv module
        self.modules = dict(model.named_modules())

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth == 0 and not self.busy and self.owner:
            self._see(func, args, kwargs)
        return func(*args, **kwargs)

    def _see(self, func, args, kwargs) -> None:
        name = resolve_name(func) or getattr(func, "__name__", str(func))
        if name.removeprefix("torch.Tensor.").split(".")[0] in _SHAPE_ONLY:
            return
        top = self.stack[-1] if self.stack else None
        where = self.paths.get(id(top), type(top).__name__) if top is not None else ""
        for t in pytree.tree_leaves((args, kwargs)):
            key = self.owner.get(id(t)) if isinstance(t, torch.Tensor) else None
            if key is None or key in self.adopt.get(where, ()):
                continue
            self.uses.setdefault(key, f"{name} in {where or 'the model forward'}")

    # -- hooks ---------------------------------------------------------------------------------
    def pre_any(self, mod: nn.Module, args: tuple) -> None:
        self.stack.append(mod)
        leaf = isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd))
        if leaf:  # an outside module that joins the program must run only there
            self.runs[id(mod)] = self.runs.get(id(mod), 0) + 1
        if self.depth == 0 and leaf and args and isinstance(args[0], torch.Tensor):
            key = self.owner.get(id(args[0]))
            path = self.paths.get(id(mod))
            if key is not None and path is not None and path not in self.names:
                self.adopt.setdefault(path, []).append(key)
                self.steps.append(Step(path, pytree.tree_flatten(((args[0],), {}))[1],
                                       [("link", *key)], ["[0]"], adopted=True))  # fmt: skip

    def post_any(self, mod: nn.Module, args: tuple, out: Any) -> None:
        if self.stack:
            self.stack.pop()

    def pre_scope(self, name: str):
        def hook(_mod, args, kwargs):
            self.calls[name] += 1
            if self.depth == 0:
                leaves, spec = pytree.tree_flatten((args, kwargs))
                sources = []
                for v in leaves:
                    key = self.owner.get(id(v)) if isinstance(v, torch.Tensor) else None
                    if key is not None:
                        sources.append(("link", *key))
                        self.by_scope.add(key)
                    elif isinstance(v, torch.Tensor):
                        self.busy = True
                        self.inputs.append(v.detach().clone())
                        self.busy = False
                        sources.append(("input", len(self.inputs) - 1))
                    else:
                        sources.append(("const", v))
                self.steps.append(Step(name, spec, sources))
            self.depth += 1

        return hook

    def post_scope(self, name: str):
        def hook(_mod, _args, _kwargs, out):
            self.depth -= 1
            if self.depth == 0:
                i = len(self.steps) - 1
                pairs = pytree.tree_flatten_with_path(out)[0]
                self.steps[i].names = [pytree.keystr(k) for k, _ in pairs]
                for j, (_, v) in enumerate(pairs):
                    if isinstance(v, torch.Tensor) and id(v) not in self.owner:
                        self.owner[id(v)] = (i, j)
                        self.alive.append(v)

        return hook


def trace(op: str, model: nn.Module, example_inputs: Any, names: list[str]) -> Joint:
    """Run ``model`` once (eval, no grad) on ``example_inputs`` and return the program of
    the scopes ``names``: their calls, links, recorded inputs and kept outputs."""
    rec = _Recorder(model, names)
    handles = [nn.modules.module.register_module_forward_pre_hook(rec.pre_any),
               nn.modules.module.register_module_forward_hook(rec.post_any)]  # fmt: skip
    for n in names:
        sub = model.get_submodule(n)
        handles.append(sub.register_forward_pre_hook(rec.pre_scope(n), with_kwargs=True))
        handles.append(sub.register_forward_hook(rec.post_scope(n), with_kwargs=True))
    args, kwargs = normalize_inputs(example_inputs, model)
    try:
        with eval_mode(model), torch.no_grad(), rec:
            out = model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    for n, count in rec.calls.items():
        if not count:
            raise InputError(f"{op}: scope {n!r} did not run in the model's forward; name a "
                             "submodule that runs on these inputs")  # fmt: skip
        if count > 1:
            raise InputError(
                f"{op}: scope {n!r} runs {count} times in one forward (once per input or "
                "level); scope the module that calls it, so that one graph holds every call"
            )
    for t in pytree.tree_leaves(out):
        key = rec.owner.get(id(t)) if isinstance(t, torch.Tensor) else None
        if key is not None:
            rec.uses.setdefault(key, "the model's own outputs")
    joint = _joint(rec)
    joint.output = structure(out)
    return joint


def structure(out: Any) -> tuple:
    """What must not change in a model's outputs: the nesting and keys, and per tensor its
    dims after the first (a detector's box count varies) and dtype."""
    leaves, spec = pytree.tree_flatten(out)
    cells = [
        (tuple(v.shape[1:]), str(v.dtype)) if isinstance(v, torch.Tensor) else type(v).__name__
        for v in leaves
    ]
    return str(spec), tuple(cells)


def _joint(rec: _Recorder) -> Joint:
    kept: dict[tuple[int, int], str] = {}
    for path, keys in list(rec.adopt.items()):
        runs = rec.runs.get(id(rec.modules[path]), 0)
        if runs > 1:  # a module outside the scopes that runs more than once stays out
            for k in keys:
                rec.uses.setdefault(k, f"{path}, which runs {runs} times in one forward")
            rec.adopt[path] = []
    steps, index = [], {}
    for i, s in enumerate(rec.steps):
        if s.adopted and (not rec.adopt[s.path] or tuple(s.sources[0][1:]) in rec.uses):
            continue
        index[i] = len(steps)
        steps.append(s)
    for s in steps:
        s.sources = [("link", index[x[1]], x[2]) if x[0] == "link" else x for x in s.sources]
    exports = []
    for i, s in enumerate(steps):
        old = next(k for k, v in index.items() if v == i)
        for j in range(len(s.names)):
            key = (old, j)
            if key not in rec.owner.values() and not s.adopted:
                continue  # not a tensor
            if s.adopted:
                exports.append((i, j))
            elif key in rec.uses or key not in rec.by_scope and not _adopted(rec, key):
                exports.append((i, j))
                kept[(i, j)] = rec.uses.get(key, "no other scope reads it")
    joint = Joint(steps, tuple(rec.inputs), exports, {})
    joint.kept = {joint.label(k): why for k, why in kept.items()}
    joint.links = sum(x[0] == "link" for s in steps if not s.adopted for x in s.sources)
    return joint


def _adopted(rec: _Recorder, key: tuple[int, int]) -> bool:
    return any(keys == [key] for keys in rec.adopt.values())


def _forward(self: nn.Module, *flat: torch.Tensor, **_hf: Any) -> tuple:
    """The program's forward: each step on its linked, recorded or constant inputs (keyword
    inputs added for a Hugging Face model, ``use_cache``, are the recorded ones already)."""
    joint: Joint = self.__dict__[_ATTR]
    outs: list[list] = []
    for step in joint.steps:
        leaves = [
            flat[s[1]] if s[0] == "input" else outs[s[1]][s[2]] if s[0] == "link" else s[1]
            for s in step.sources
        ]
        args, kwargs = pytree.tree_unflatten(leaves, step.spec)
        outs.append(pytree.tree_leaves(self.get_submodule(step.path)(*args, **kwargs)))
    return tuple(outs[i][j] for i, j in joint.exports)


@contextmanager
def installed(model: nn.Module, joint: Joint) -> Iterator[nn.Module]:
    """``model`` whose ``forward`` is the program of ``joint`` for the body of the block."""
    had = "forward" in vars(model)
    before = vars(model).get("forward")
    model.__dict__[_ATTR] = joint
    model.forward = types.MethodType(_forward, model)
    try:
        yield model
    finally:
        vars(model).pop(_ATTR, None)
        if had:
            model.forward = before
        else:
            vars(model).pop("forward", None)
