"""``netsculpt merge MODEL [--neurons] [--blocks] -o OUT``: fold layers, merge neurons / blocks."""

from __future__ import annotations

import argparse

from netsculpt.cli._common import (
    add_config_arguments,
    add_data_argument,
    add_latency_argument,
    add_model_argument,
    check_data,
    check_model_output,
    check_output,
    config_overrides,
    measure_after,
    measure_before,
    number,
    save_model,
    write_report,
)
from netsculpt.cli._common import (
    short_name as _short,
)
from netsculpt.core.errors import InputError

NAME = "merge"
HELP = (
    "Merge layers: exact folds (BatchNorm, Linear∘Linear, 1x1 conv, norm gains) by default; "
    "--neurons merges near-duplicate neurons, --blocks collapses similar blocks (LaCo)."
)
ORDER = 30


FIELDS = ["seed", "max_batches"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument(
        "-o", "--output", required=True, help="folder (or .pt2 file) to save the merged model"
    )
    parser.add_argument("--neurons", action="store_true", help="merge near-duplicate neurons")
    parser.add_argument("--blocks", action="store_true", help="collapse similar adjacent blocks")
    # MergeConfig fields with a flag of their own (help and type from the op registry); the
    # sub-configs are chosen by --neurons / --blocks / --no-folds, their threshold by --threshold
    add_config_arguments(parser, "merge", FIELDS)
    parser.add_argument(
        "--threshold",
        type=number,
        help="--neurons: cosine distance (default 0.01); --blocks: output similarity to keep "
        "(default 0.9)",
    )
    add_data_argument(parser, "calibration data for --blocks (the example input if not given)")
    parser.add_argument(
        "--ignore", nargs="*", default=[], help="modules no fold or merge touches: names or globs"
    )
    parser.add_argument("--no-folds", action="store_true", help="skip the exact folds")
    parser.add_argument("--report", help="also write the report to this .json or .html file")
    add_latency_argument(parser)


def run(args: argparse.Namespace) -> int:
    import netsculpt as ns
    from netsculpt.data import load_dataset
    from netsculpt.io import resolve_model

    check_output(args.output)
    check_output(args.report, suffixes=(".json", ".html"))
    model, example_inputs, source = resolve_model(args.model)
    check_data(args.data, example_inputs, args.model)
    check_model_output(args.output, args.model, source)
    if example_inputs is None:
        raise InputError(
            f"{args.model}: no example inputs known for this model; use the Python API"
        )
    data = load_dataset(args.data, "val") if args.data else None
    from netsculpt.core import progress

    before = measure_before(args, model, example_inputs)
    with progress.step(f"merge {_short(args.model)}"):
        report = ns.merge(
            model,
            example_inputs,
            neurons=args.neurons,
            blocks=args.blocks,
            threshold=args.threshold,
            data=data,
            folds=not args.no_folds,
            ignore=tuple(args.ignore),
            **config_overrides(args, FIELDS),
        )
    measure_after(report, before, model, example_inputs)
    print(report)
    save_model(model, args.output, args.model, source, example_inputs)
    write_report(report, args.report)
    return 0
