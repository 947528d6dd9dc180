"""``netsculpt cut MODEL --data D (--threshold T | --count N | --blocks A,B) -o OUT``."""

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

NAME = "cut"
HELP = "Remove whole blocks / layers whose measured effect on the output is small (剪切)."
ORDER = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_data_argument(parser, "calibration data (the example input if not given)")
    parser.add_argument("-o", "--output", required=True, help="folder to save the cut model")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--threshold", type=number, help="remove blocks whose effect is below this")
    what.add_argument("--count", type=int, help="remove the N least important blocks")
    what.add_argument("--blocks", help="comma-separated block names to remove")
    parser.add_argument(
        "--importance",
        "--criterion",
        dest="criterion",
        default="kl",
        help="block importance: kl (default), loss, influence, angular, taylor",
    )
    parser.add_argument("--iterative", action="store_true", help="re-score after each removal")
    parser.add_argument(
        "--bridge",
        default="lstsq",
        choices=("lstsq", "train", "none"),
        help="what replaces a removed block whose shapes differ: lstsq (default, a linear map "
        "fitted on --data), train, none",
    )
    parser.add_argument(
        "--ignore",
        "--protect",
        dest="protect",
        nargs="*",
        default=[],
        help="blocks never to remove: names or globs (space or comma separated)",
    )
    parser.add_argument("--batches", type=int, default=8, help="calibration batches (default 8)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (default 0)"
    )
    parser.add_argument(
        "--keep-bn-stats",
        action="store_true",
        help="do not re-estimate BatchNorm running statistics on --data after the cut",
    )
    parser.add_argument("--report", help="also write the report to this .json or .html file")
    add_latency_argument(parser)


def _names(text: str | None) -> tuple[str, ...]:
    if isinstance(text, (list, tuple)):
        text = ",".join(text)
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def run(args: argparse.Namespace) -> int:
    from netsculpt import cut
    from netsculpt.data import load_dataset, make_loader
    from netsculpt.io import resolve_model

    check_output(args.output)
    check_output(args.report, suffixes=(".json", ".html"))
    refuse_program(args.model, "cut")
    model, example_inputs, source = resolve_model(args.model)
    check_data(args.data, example_inputs, args.model)
    check_model_output(args.output, args.model, source)
    train = load_dataset(args.data, "train", args.seed) if args.data else None
    data = make_loader(train, 128, True, args.seed) if args.data else None
    from netsculpt.core import progress

    before = measure_before(args, model, example_inputs)
    with progress.step(f"cut {_short(args.model)}"):
        report = cut(
            model,
            example_inputs,
            data=data,
            threshold=args.threshold,
            count=args.count,
            blocks=_names(args.blocks),
            importance=args.criterion,
            iterative=args.iterative,
            bridge=args.bridge,
            ignore=_names(args.protect),
            max_batches=args.batches,
            recalibrate_bn=not args.keep_bn_stats,
            seed=args.seed,
        )
    measure_after(report, before, model, example_inputs)
    print(report)
    save_model(model, args.output, args.model, source)
    write_report(report, args.report)
    return 0
