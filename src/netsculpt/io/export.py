"""Export to ``.onnx`` / ``.pt2`` with dynamic batch (and token sequence) dimensions, and a check
that runs the file against the model.

>>> export(model, "model.onnx", torch.zeros(1, 3, 224, 224))   # doctest: +SKIP
>>> check_export("model.onnx", model, torch.zeros(1, 3, 224, 224))   # doctest: +SKIP
{1: 2.9e-08, 16: 4.4e-08}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.utils import eval_mode, normalize_inputs


def export(
    model: nn.Module, path: str | os.PathLike, example_inputs: Any, *, dynamic: bool = True
) -> Path:
    """Export ``model`` to ``.pt2`` (torch.export) or ``.onnx`` (dynamo exporter); returns the path.

    ``dynamic`` (default): the batch dimension (dim 0 of every input with the example's batch
    size) is dynamic, and so is the sequence dimension (dim 1) of integer token inputs such as
    ``input_ids`` / ``attention_mask``; the file then runs at any batch size. An example of
    batch 1 is repeated to 2 for tracing (torch.export specialises sizes 0 and 1).
    ``dynamic=False``: every shape is fixed to the example's.

    >>> export(model, "model.onnx", torch.zeros(1, 3, 224, 224))   # doctest: +SKIP
    """
    from netsculpt.core import progress

    p = Path(path)
    if p.suffix not in (".pt2", ".onnx"):
        raise InputError(f"export: {p} must end in .pt2 or .onnx")
    args, kwargs = normalize_inputs(example_inputs, model)
    shapes = None
    if dynamic:
        args, kwargs, shapes = dynamic_inputs(model, args, kwargs)
    if p.suffix == ".onnx":
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter needs it)
        except ImportError as exc:
            raise InputError(
                "export: .onnx needs onnxscript: pip install netsculpt[export]"
            ) from exc
    p.parent.mkdir(parents=True, exist_ok=True)
    with eval_mode(model), torch.no_grad(), progress.step(f"export {p.name}"):
        if p.suffix == ".pt2":
            ep = _traced(lambda: torch.export.export(
                model, args, kwargs, dynamic_shapes=shapes, strict=False
            ))  # fmt: skip
            _save_atomic(ep, p)
        else:
            _traced(lambda: torch.onnx.export(
                model, args, str(p), kwargs=kwargs, dynamic_shapes=shapes, dynamo=True,
                verbose=False,
            ))  # fmt: skip
    return p


def _save_atomic(program: Any, p: Path) -> None:
    """``torch.export.save`` to a temporary name beside ``p``, renamed into place when done."""
    import warnings

    tmp = p.with_name(f".{p.stem}.partial{p.suffix}")
    try:
        with warnings.catch_warnings():
            # masked (N:M, unstructured) weights share no storage group; harmless on CPU
            warnings.filterwarnings("ignore", message="No complete tensor found in the group")
            torch.export.save(program, str(tmp))
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


BATCH, SEQ = "batch", "seq"


def dynamic_inputs(
    model: nn.Module, args: tuple, kwargs: dict[str, Any]
) -> tuple[tuple, dict[str, Any], Any]:
    """``(args, kwargs, dynamic_shapes)`` for torch.export with a dynamic batch dimension, and a
    dynamic sequence dimension for integer token tensors (2-D or more, dim 1).

    Inputs of batch 1 are repeated to batch 2 (and token sequences of length 1 to 2): an
    example size of 1 would make torch.export specialise the dimension to a constant.

    >>> a, k, shapes = dynamic_inputs(nn.Linear(4, 2), (torch.zeros(1, 4),), {})
    >>> a[0].shape, [str(d) for d in shapes[0].values()]
    (torch.Size([2, 4]), ["Dim('batch', min=1)"])
    """
    from torch.export import Dim

    tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor) and t.ndim]
    if not tensors:
        return args, kwargs, None
    size = tensors[0].shape[0]
    batch = Dim(BATCH, min=1)
    seq_max = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    seq = Dim.AUTO if not isinstance(seq_max, int) else Dim(SEQ, min=1, max=seq_max)

    def one(t: Any) -> tuple[Any, Any]:
        if not isinstance(t, torch.Tensor) or not t.ndim or t.shape[0] != size:
            return t, None
        spec = {0: batch}
        if size == 1:
            t = torch.cat([t, t])
        if (
            t.ndim >= 2
            and not t.is_floating_point()
            and not t.is_complex()
            and t.dtype != torch.bool
        ):
            spec[1] = seq
            if t.shape[1] == 1:
                t = torch.cat([t, t], dim=1)
        return t, spec

    new_args, arg_specs = zip(*(one(a) for a in args)) if args else ((), ())
    new_kwargs, kw_specs = {}, {}
    for k, v in kwargs.items():
        new_kwargs[k], kw_specs[k] = one(v)
    if _takes_var_args(model):  # forward(*args, **kwargs): a loaded .pt2's unflattened module
        specs = (tuple(arg_specs), kw_specs) if kwargs else (tuple(arg_specs),)
        return tuple(new_args), new_kwargs, specs
    if not kwargs:
        return tuple(new_args), new_kwargs, tuple(arg_specs)
    return tuple(new_args), new_kwargs, _by_name(model, tuple(arg_specs), kw_specs)


def _takes_var_args(model: nn.Module) -> bool:
    import inspect

    params = list(inspect.signature(model.forward).parameters.values())
    return bool(params) and params[0].kind == params[0].VAR_POSITIONAL


def _by_name(model: nn.Module, arg_specs: tuple, kw_specs: dict[str, Any]) -> Any:
    """dynamic_shapes keyed by ``forward``'s parameter names (needed once kwargs are used)."""
    import inspect

    names = [
        n for n, prm in inspect.signature(model.forward).parameters.items()
        if prm.kind in (prm.POSITIONAL_ONLY, prm.POSITIONAL_OR_KEYWORD)
    ]  # fmt: skip
    if len(names) < len(arg_specs):
        raise InputError("export: cannot name the positional inputs; pass them as a dict")
    return {**dict(zip(names, arg_specs)), **kw_specs}


def _traced(fn: Any) -> Any:
    """Run an export; a model that fixes its batch size (``x.view(1, -1)``) gets a clear error."""
    try:
        return fn()
    except Exception as exc:
        text = str(exc)
        if BATCH in text and ("specializ" in text.lower() or "Constraints violated" in text):
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
            raise InputError(
                "export: the model fixes its batch size, so the batch dimension cannot be "
                f"dynamic ({first[:200]}); export with dynamic=False (--static) to keep the "
                "example's shapes"
            ) from exc
        raise


def check_export(
    path: str | os.PathLike, model: nn.Module, example_inputs: Any, batches: Any = (1, 16)
) -> dict[int, float]:
    """Run the exported file at each batch size against ``model``; ``{batch: max |diff|}``.

    ``.onnx`` runs in onnxruntime (``pip install onnxruntime``), ``.pt2`` as its program.

    >>> check_export("m.onnx", model, x)   # doctest: +SKIP
    {1: 2.9e-08, 16: 4.4e-08}
    """
    from torch.utils._pytree import tree_leaves

    p = Path(path)
    run = _onnx_runner(p, model) if p.suffix == ".onnx" else _program_runner(p)
    out: dict[int, float] = {}
    gen = torch.Generator().manual_seed(0)
    for n in batches:
        args, kwargs = _batch_of(*normalize_inputs(example_inputs, model), n, gen)
        with eval_mode(model), torch.no_grad():
            want = [t for t in tree_leaves(model(*args, **kwargs)) if isinstance(t, torch.Tensor)]
        got = run(args, kwargs)
        diffs = [float((torch.as_tensor(g) - w).abs().max()) for g, w in zip(got, want)]
        out[int(n)] = max(diffs) if diffs else float("nan")
    return out


def _batch_of(args: tuple, kwargs: dict, n: int, gen: torch.Generator) -> tuple[tuple, dict]:
    """The example inputs at batch ``n``: rows repeated, float rows made distinct by noise."""
    tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor) and t.ndim]
    size = tensors[0].shape[0] if tensors else None

    def one(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or not t.ndim or t.shape[0] != size:
            return t
        t = t[torch.arange(n) % size]
        if t.is_floating_point():
            t = t + 0.1 * torch.randn(t.shape, generator=gen, dtype=t.dtype)
        return t

    return tuple(one(a) for a in args), {k: one(v) for k, v in kwargs.items()}


def _onnx_runner(p: Path, model: nn.Module) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise InputError("check_export: .onnx needs onnxruntime (pip install onnxruntime)") from exc
    import inspect

    session = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    params = list(inspect.signature(model.forward).parameters)

    def run(args: tuple, kwargs: dict) -> list[Any]:
        given = {**dict(zip(params, args)), **kwargs}
        tensors = [v for v in given.values() if isinstance(v, torch.Tensor)]
        feed = {
            name: (given[name] if name in given else tensors[i]).numpy()
            for i, name in enumerate(names)
        }
        return session.run(None, feed)

    return run


def _program_runner(p: Path) -> Any:
    from torch.utils._pytree import tree_leaves

    from netsculpt.io.files import load_model_file

    program = load_model_file(p)  # the safe .pt2 loader

    def run(args: tuple, kwargs: dict) -> list[Any]:
        with torch.no_grad():
            return [t for t in tree_leaves(program(*args, **kwargs)) if isinstance(t, torch.Tensor)]

    return run
