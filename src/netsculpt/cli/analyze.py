"""``netsculpt analyze MODEL [--data D] [--blocks]``: groups (and blocks) with their scores."""

from __future__ import annotations

import argparse

from netsculpt.cli._common import (
    add_data_argument,
    add_model_argument,
    calibration,
    check_data,
    check_output,
    load_model,
    write_report,
)

NAME = "analyze"
HELP = "Show channel groups (size, importance, what is coupled) and, with --blocks, block effects."
ORDER = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("--importance", default="l2", help="group score (default l2)")
    add_data_argument(parser, "calibration data for data-driven scores")
    parser.add_argument("--blocks", action="store_true", help="also score each block")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (default 0)"
    )
    parser.add_argument("--all", action="store_true", help="list protected groups too")
    parser.add_argument("--plot", help="bar chart PNG of the block scores (with --blocks)")
    parser.add_argument("--report", help="write the report to this .json or .html file")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    import netsculpt as ns
    from netsculpt.report.console import groups_table

    check_output(args.report, suffixes=(".json", ".html"))
    if args.plot:
        from netsculpt.io.outputs import check_file_target

        check_file_target(args.plot, what="plot")
    model, example_inputs, _ = load_model(args.model)
    check_data(args.data, example_inputs, args.model)
    data = calibration(args.data)
    report = ns.analyze(
        model,
        example_inputs,
        data=data,
        importance=args.importance,
        blocks=args.blocks or None,
        seed=args.seed,
    )
    console = Console()
    title = f"channel groups of {args.model}"
    console.print(groups_table(report.details["groups"], args.importance, title, args.all))
    rows = report.details["groups"]
    n_prot = sum(not r["prunable"] for r in rows)
    console.print(
        f"{len(rows) - n_prot} prunable groups, {n_prot} protected "
        f"(--all lists them); params {report.before.params:,}, "
        f"MACs {report.before.macs:,}"
    )
    if "blocks" in report.details:
        _blocks(console, report.details["blocks"], args.plot)
    write_report(report, args.report)
    return 0


def _blocks(console, rows, plot) -> None:
    from netsculpt.report.console import blocks_table

    console.print(blocks_table(rows, console.width))
    if plot and rows:
        from netsculpt.importance.blocks import plot_block_scores

        plot_block_scores(rows, plot)
        console.print(f"plot written to {plot}")
