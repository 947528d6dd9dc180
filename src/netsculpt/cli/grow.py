"""``netsculpt grow MODEL --data D [--kind deeper|wider] [--where auto|A,B] -o OUT``."""

from __future__ import annotations

import argparse

from netsculpt.cli._common import (
    add_data_argument,
    add_latency_argument,
    add_model_argument,
    check_data,
    check_model_output,
    check_output,
    measure_after,
    measure_before,
    number,
    refuse_program,
    save_model,
    write_report,
)
from netsculpt.cli._common import (
    short_name as _short,
)

NAME = "grow"
HELP = "Insert layers or widen them where the effect is large, function-preserving (增加层)."
ORDER = 45


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_data_argument(parser, "calibration data (the example input if not given)")
    parser.add_argument("-o", "--output", required=True, help="folder to save the grown model")
    parser.add_argument(
        "--kind",
        default="deeper",
        choices=("deeper", "wider"),
        help="deeper (default): insert identity-initialised layers; wider: widen layers",
    )
    parser.add_argument("--where", default="auto", help="'auto' or comma-separated block names")
    parser.add_argument("--count", type=int, default=1, help="auto: grow at the N top blocks")
    parser.add_argument("--threshold", type=number, help="auto: grow where the effect is above")
    parser.add_argument(
        "--importance",
        "--criterion",
        dest="criterion",
        default="kl",
        help="where to grow: kl (default), loss, taylor, gradmax, ...",
    )
    parser.add_argument("--factor", type=number, default=2.0, help="wider: width multiplier")
    parser.add_argument(
        "--trainable",
        default="all",
        choices=("all", "new"),
        help="what a later heal trains: all (default) parameters or only the new ones",
    )
    parser.add_argument(
        "--ignore", nargs="*", default=[], help="blocks never grown: names or globs"
    )
    parser.add_argument("--batches", type=int, default=8, help="calibration batches (default 8)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (default 0)"
    )
    parser.add_argument("--report", help="also write the report to this .json or .html file")
    add_latency_argument(parser)


def run(args: argparse.Namespace) -> int:
    from netsculpt import grow
    from netsculpt.data import load_dataset, make_loader
    from netsculpt.io import resolve_model

    check_output(args.output)
    check_output(args.report, suffixes=(".json", ".html"))
    refuse_program(args.model, "grow")
    model, example_inputs, source = resolve_model(args.model)
    check_data(args.data, example_inputs, args.model)
    check_model_output(args.output, args.model, source)
    train = load_dataset(args.data, "train", args.seed) if args.data else None
    data = make_loader(train, 128, True, args.seed) if args.data else None
    where = args.where if args.where == "auto" else [n.strip() for n in args.where.split(",")]
    from netsculpt.core import progress

    before = measure_before(args, model, example_inputs)
    with progress.step(f"grow {_short(args.model)}"):
        report = grow(
            model,
            example_inputs,
            kind=args.kind,
            where=where,
            data=data,
            count=args.count,
            threshold=args.threshold,
            importance=args.criterion,
            factor=args.factor,
            trainable=args.trainable,
            max_batches=args.batches,
            seed=args.seed,
            ignore=tuple(args.ignore),
        )
    measure_after(report, before, model, example_inputs)
    print(report)
    save_model(model, args.output, args.model, source)
    write_report(report, args.report)
    return 0
