"""``netsculpt grow MODEL --data D [--kind deeper|wider] [--where auto|A,B] -o OUT``."""

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
    save_model,
    write_report,
)
from netsculpt.cli._common import (
    short_name as _short,
)

NAME = "grow"
HELP = "Insert layers or widen them where the effect is large, function-preserving (增加层)."
ORDER = 45


# GrowConfig fields with a flag of their own (name, type, help and choices from the registry)
FIELDS = ["kind", "count", "threshold", "importance", "factor", "noise", "trainable",
          "max_batches", "seed"]  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_data_argument(parser, "calibration data (the example input if not given)")
    parser.add_argument(
        "-o", "--output", required=True, help="folder (or .pt2 file) to save the grown model"
    )
    parser.add_argument("--where", default="auto", help="'auto' or comma-separated block names")
    add_config_arguments(
        parser,
        "grow",
        FIELDS,
        aliases={"importance": ["--criterion"], "max_batches": ["--batches"]},
    )
    parser.add_argument(
        "--ignore", nargs="*", default=[], help="blocks never grown: names or globs"
    )
    parser.add_argument("--report", help="also write the report to this .json or .html file")
    add_latency_argument(parser)


def run(args: argparse.Namespace) -> int:
    from netsculpt import grow
    from netsculpt.data import load_dataset, make_loader
    from netsculpt.io import resolve_model

    check_output(args.output)
    check_output(args.report, suffixes=(".json", ".html"))
    model, example_inputs, source = resolve_model(args.model)
    check_data(args.data, example_inputs, args.model)
    check_model_output(args.output, args.model, source)
    seed = args.seed if args.seed is not None else 0
    train = load_dataset(args.data, "train", seed) if args.data else None
    data = make_loader(train, 128, True, seed) if args.data else None
    where = args.where if args.where == "auto" else [n.strip() for n in args.where.split(",")]
    from netsculpt.core import progress

    before = measure_before(args, model, example_inputs)
    with progress.step(f"grow {_short(args.model)}"):
        report = grow(
            model,
            example_inputs,
            where=where,
            data=data,
            ignore=tuple(args.ignore),
            **config_overrides(args, FIELDS),
        )
    measure_after(report, before, model, example_inputs)
    print(report)
    save_model(model, args.output, args.model, source, example_inputs)
    write_report(report, args.report)
    return 0
