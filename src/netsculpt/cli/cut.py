"""``netsculpt cut MODEL --data D (--threshold T | --count N | --blocks A,B | --target-params P)
-o OUT``. The flags of :class:`~netsculpt.ops.cut.CutConfig` fields come from the op registry."""

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
    split_names,
    write_report,
)
from netsculpt.cli._common import (
    short_name as _short,
)

NAME = "cut"
HELP = "Remove whole blocks / layers whose measured effect on the output is small (剪切)."
ORDER = 30


# CutConfig fields with a flag of their own (name, type, help and choices from the registry)
CHOICE = ["threshold", "count", "blocks", "target_params"]
FIELDS = ["importance", "iterative", "bridge", "max_batches", "seed", "recalibrate_bn"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_data_argument(parser, "calibration data (the example input if not given)")
    parser.add_argument(
        "-o", "--output", required=True, help="folder (or .pt2 file) to save the cut model"
    )
    what = parser.add_mutually_exclusive_group(required=True)
    add_config_arguments(
        parser,
        "cut",
        CHOICE + FIELDS,
        dict.fromkeys(CHOICE, what),
        aliases={"importance": ["--criterion"], "max_batches": ["--batches"]},
    )
    parser.add_argument(
        "--ignore",
        "--protect",
        dest="protect",
        nargs="*",
        default=[],
        help="blocks never to remove: names or globs (space or comma separated)",
    )
    parser.add_argument(
        "--keep-bn-stats",
        action="store_true",
        help="do not re-estimate BatchNorm running statistics on --data after the cut "
        "(= --no-recalibrate-bn)",
    )
    parser.add_argument("--report", help="also write the report to this .json or .html file")
    add_latency_argument(parser)


def run(args: argparse.Namespace) -> int:
    from netsculpt import cut
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
    from netsculpt.core import progress

    before = measure_before(args, model, example_inputs)
    with progress.step(f"cut {_short(args.model)}"):
        options = config_overrides(args, CHOICE + FIELDS)
        if options.get("blocks"):
            options["blocks"] = split_names(options["blocks"])
        if args.keep_bn_stats:
            options["recalibrate_bn"] = False
        report = cut(model, example_inputs, data=data, ignore=split_names(args.protect), **options)
    measure_after(report, before, model, example_inputs)
    print(report)
    save_model(model, args.output, args.model, source, example_inputs)
    write_report(report, args.report)
    return 0
