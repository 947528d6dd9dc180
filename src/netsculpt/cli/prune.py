"""``netsculpt prune MODEL --amount 0.5 --importance l2 -o OUT``."""

from __future__ import annotations

import argparse

from netsculpt.cli._common import (
    add_model_argument,
    calibration,
    check_output,
    load_model,
    write_report,
)

NAME = "prune"
HELP = "Remove channels, neurons and heads (structured) or zero weights (unstructured)."
ORDER = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("-o", "--output", help="folder to save the pruned model")
    s = parser.add_argument_group("structured")
    s.add_argument("--amount", type=float, help="fraction of each group's channels removed")
    s.add_argument("--target-macs", type=float, help="MACs budget (fraction ≤ 1, or a count)")
    s.add_argument("--target-params", type=float, help="params budget (fraction ≤ 1, or a count)")
    s.add_argument("--global", dest="global_", action="store_true", help="rank across groups")
    s.add_argument("--round-to", type=int, help="keep channel counts multiples of N")
    u = parser.add_argument_group("unstructured")
    u.add_argument("--threshold", type=float, help="zero weights with |w| below this")
    u.add_argument("--sparsity", type=float, help="fraction of weights to zero")
    u.add_argument("--pattern", help="N:M sparsity, e.g. 2:4")
    u.add_argument("--keep-dead", action="store_true", help="do not remove dead neurons")
    parser.add_argument("--importance", help="l1, l2, taylor, activation, bn_scale, random")
    parser.add_argument("--data", help="calibration data for taylor / activation (digits, ...)")
    parser.add_argument("--ignore", nargs="*", default=[], help="module name patterns to keep")
    parser.add_argument("--report", help="also write the report to this .json or .html file")


def run(args: argparse.Namespace) -> int:
    import netsculpt as ns

    check_output(args.output)
    if args.report:
        check_output(args.report, suffixes=(".json", ".html"))
    model, example_inputs, source = load_model(args.model)
    report = ns.prune(
        model,
        example_inputs,
        amount=args.amount,
        sparsity=args.sparsity,
        threshold=args.threshold,
        pattern=args.pattern,
        importance=args.importance,
        global_=args.global_,
        target_macs=args.target_macs,
        target_params=args.target_params,
        round_to=args.round_to,
        ignore=args.ignore,
        data=calibration(args.data),
        remove_dead=not args.keep_dead,
    )
    print(report)
    for note in report.notes:
        print(f"note: {note}")
    if args.output:
        ns.save(model, args.output, source=source)
        print(f"saved to {args.output}")
    write_report(report, args.report)
    return 0
