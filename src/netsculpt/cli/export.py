"""``netsculpt export MODEL OUT.onnx|OUT.pt2 [--static] [--check]``: a deployable file.

The batch dimension is dynamic by default, and the sequence dimension of token inputs too, so
the file runs at any batch size (``--static`` keeps the example's shapes). ``--check`` runs the
file (onnxruntime for ``.onnx``) at batch 1 and 16 against the model.
"""

from __future__ import annotations

import argparse

from netsculpt.cli._common import add_model_argument, check_output, load_model

NAME = "export"
HELP = "Export a model to ONNX or a torch.export .pt2, with a dynamic batch dimension."
ORDER = 75
TOLERANCE = 1e-4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("output", help="OUT.onnx (dynamo exporter) or OUT.pt2 (torch.export)")
    parser.add_argument(
        "--static", action="store_true", help="fix every shape to the example input's"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"run the file at batch 1 and 16 and compare with the model (max |diff| "
        f"<= {TOLERANCE:g}, else exit status 1)",
    )


def run(args: argparse.Namespace) -> int:
    from netsculpt.core.utils import normalize_inputs
    from netsculpt.io import export
    from netsculpt.io.export import check_export, dynamic_inputs

    check_output(args.output, suffixes=(".onnx", ".pt2"))
    model, example_inputs, _ = load_model(args.model)
    path = export(model, args.output, example_inputs, dynamic=not args.static)
    if args.static:
        what = "static shapes"
    else:
        _, _, shapes = dynamic_inputs(model, *normalize_inputs(example_inputs, model))
        what = "dynamic batch" + (" and sequence" if 1 in _dims(shapes) else "")
    print(f"exported {args.model} to {path} ({what})")
    if not args.check:
        return 0
    batches = (1, 16) if not args.static else (_batch(example_inputs),)
    diffs = check_export(path, model, example_inputs, batches)
    ok = all(d <= TOLERANCE for d in diffs.values())
    for n, d in diffs.items():
        print(f"batch {n}: max |diff| {d:.2e} {'ok' if d <= TOLERANCE else 'TOO LARGE'}")
    return 0 if ok else 1


def _dims(shapes) -> set[int]:
    """The dynamic dimensions named anywhere in torch.export's ``dynamic_shapes``."""
    if isinstance(shapes, dict) and all(isinstance(k, int) for k in shapes):
        return set(shapes)
    items = shapes.values() if isinstance(shapes, dict) else (shapes or ())
    return {d for spec in items if spec for d in _dims(spec)}


def _batch(example_inputs) -> int:
    import torch
    from torch.utils._pytree import tree_leaves

    tensors = [t for t in tree_leaves(example_inputs) if isinstance(t, torch.Tensor) and t.ndim]
    return int(tensors[0].shape[0]) if tensors else 1
