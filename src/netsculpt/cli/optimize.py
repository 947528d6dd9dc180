"""``netsculpt optimize MODEL --data D --target-latency 0.5 --max-drop 0.01 -o OUT``.

Targets are fractions of the original (≤ 1) or absolute figures (> 1: ms, MACs, parameters).
One line per accepted step goes to stderr; the report (with the Pareto trace and the plan) to
stdout and, with ``--report``, to a .json / .html file."""

from __future__ import annotations

import argparse

from netsculpt.cli._common import (
    add_model_argument,
    calibration,
    check_data,
    check_model_output,
    check_output,
    data_names,
    load_model,
    save_model,
    write_report,
)

NAME = "optimize"
HELP = "Search for a smaller model that meets a latency / MACs / params budget (NetAdapt)."
ORDER = 25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("-o", "--output", help="folder (or .pt2 file) to save the optimized model")
    parser.add_argument(
        "--data",
        metavar="NAME",
        help=f"calibration / held-out / healing data: {data_names()}",
    )
    t = parser.add_argument_group("targets (≤ 1: a fraction of the original; > 1: absolute)")
    t.add_argument("--target-latency", type=float, help="latency budget (fraction, or ms)")
    t.add_argument("--target-macs", type=float, help="MACs budget (fraction, or a count)")
    t.add_argument("--target-params", type=float, help="params budget (fraction, or a count)")
    q = parser.add_argument_group("quality and search")
    q.add_argument("--max-drop", type=float, help="largest allowed drop of --metric (held out)")
    q.add_argument(
        "--metric",
        choices=("auto", "accuracy", "loss", "kl"),
        default=None,
        help="quality measure for --max-drop: auto (default), accuracy, loss, kl",
    )
    q.add_argument("--time-budget", type=float, help="seconds; then the best plan so far")
    q.add_argument("--seed", type=int, help="seed of every random choice")
    q.add_argument("--step", type=float, help="cost saved per step (fraction of the original)")
    q.add_argument("--importance", help="channel scores (l2, activation, taylor, lamp, fpgm, ...)")
    q.add_argument("--no-heal", action="store_true", help="no short distillation between steps")
    q.add_argument("--no-cut", action="store_true", help="do not propose removing blocks")
    q.add_argument("--no-fold", action="store_true", help="keep the BatchNorms unfolded")
    lat = parser.add_argument_group("latency measurement")
    lat.add_argument("--batch-size", type=int, help="batch size the latency is measured at")
    lat.add_argument("--threads", type=int, help="threads the latency is measured with")
    parser.add_argument("--ignore", nargs="*", default=[], help="module name patterns to keep")
    parser.add_argument("--report", help="also write the report to this .json or .html file")


FLAGS = {
    "target_latency": "target_latency",
    "target_macs": "target_macs",
    "target_params": "target_params",
    "max_drop": "max_drop",
    "metric": "metric",
    "time_budget": "time_budget",
    "seed": "seed",
    "step": "step",
    "importance": "importance",
    "batch_size": "latency_batch",
    "threads": "threads",
}


def run(args: argparse.Namespace) -> int:
    import netsculpt as ns

    check_output(args.output)
    if args.report:
        check_output(args.report, suffixes=(".json", ".html"))
    model, example_inputs, source = load_model(args.model)
    check_data(args.data, example_inputs, args.model)
    check_model_output(args.output, args.model, source)
    options = {key: getattr(args, flag) for flag, key in FLAGS.items()}
    options = {k: v for k, v in options.items() if v is not None}
    options.update(heal=not args.no_heal, cut=not args.no_cut, fold=not args.no_fold)
    if args.ignore:
        options["ignore"] = args.ignore
    report = ns.optimize(model, example_inputs, data=calibration(args.data), **options)
    print(report)
    for note in report.notes:
        print(f"note: {note}")
    if args.output:
        save_model(model, args.output, args.model, source, example_inputs)
    write_report(report, args.report)
    return 0
