"""``netsculpt prune MODEL --amount 0.5 --importance l2 -o OUT``.

``netsculpt prune HF_DIR --sharded --amount 0.3 -o OUT`` prunes a Hugging Face checkpoint
folder shard by shard without loading it (:func:`netsculpt.hf.prune_pretrained`)."""

from __future__ import annotations

import argparse

from netsculpt.cli._common import (
    add_config_arguments,
    add_latency_argument,
    add_model_argument,
    calibration,
    check_output,
    config_overrides,
    load_model,
    measure_after,
    measure_before,
    write_report,
)

NAME = "prune"
HELP = "Remove channels, neurons and heads (structured) or zero weights (unstructured)."
ORDER = 20


STRUCTURED = ["amount", "target_macs", "target_params", "global_", "round_to", "uniform"]
UNSTRUCTURED = ["threshold", "sparsity", "pattern"]
COMMON = ["importance", "max_batches", "seed"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("-o", "--output", help="folder to save the pruned model")
    s = parser.add_argument_group("structured")
    u = parser.add_argument_group("unstructured")
    where = {**dict.fromkeys(STRUCTURED, s), **dict.fromkeys(UNSTRUCTURED, u)}
    add_config_arguments(parser, "prune", STRUCTURED + UNSTRUCTURED + COMMON, where)
    u.add_argument("--keep-dead", action="store_true", help="do not remove dead neurons")
    h = parser.add_argument_group("Hugging Face checkpoint folder, shard by shard")
    h.add_argument(
        "--sharded",
        action="store_true",
        help="MODEL is an HF safetensors folder: prune it shard by shard into -o (l1/l2 only)",
    )
    h.add_argument(
        "--targets", nargs="+", default=["heads", "mlp"], help="parts: heads, mlp, hidden"
    )
    h.add_argument("--max-shard-size", help="re-pack the output shards, e.g. 5GB")
    parser.add_argument("--data", help="calibration data for taylor / activation (digits, ...)")
    parser.add_argument("--ignore", nargs="*", default=[], help="module name patterns to keep")
    parser.add_argument("--report", help="also write the report to this .json or .html file")
    add_latency_argument(parser)


def run(args: argparse.Namespace) -> int:
    import netsculpt as ns

    if args.sharded:
        return _run_sharded(args)
    check_output(args.output)
    if args.report:
        check_output(args.report, suffixes=(".json", ".html"))
    model, example_inputs, source = load_model(args.model)
    options = config_overrides(args, STRUCTURED + UNSTRUCTURED + COMMON)
    if args.keep_dead:
        options["remove_dead"] = False
    if args.ignore:
        options["ignore"] = args.ignore
    from netsculpt.core import progress

    before = measure_before(args, model, example_inputs)
    with progress.step(f"prune {args.model}"):
        report = ns.prune(model, example_inputs, data=calibration(args.data), **options)
    measure_after(report, before, model, example_inputs)
    print(report)
    for note in report.notes:
        print(f"note: {note}")
    if args.output:
        ns.save(model, args.output, source=source)
        print(f"saved to {args.output}")
    write_report(report, args.report)
    return 0


def _run_sharded(args: argparse.Namespace) -> int:
    from netsculpt.errors import InputError
    from netsculpt.hf.sharded import prune_pretrained

    other = {
        "--target-macs": args.target_macs,
        "--target-params": args.target_params,
        "--threshold": args.threshold,
        "--sparsity": args.sparsity,
        "--pattern": args.pattern,
        "--data": args.data,
        "--ignore": args.ignore or None,
        "--keep-dead": args.keep_dead or None,
    }
    used = [name for name, v in other.items() if v is not None]
    if used:
        raise InputError(f"--sharded prunes by --amount only; not with {', '.join(used)}")
    if not args.output:
        raise InputError("--sharded needs an output folder: -o OUT")
    if args.report:
        check_output(args.report, suffixes=(".json", ".html"))
    report = prune_pretrained(
        args.model,
        args.output,
        amount=0.3 if args.amount is None else args.amount,
        targets=tuple(args.targets),
        importance=args.importance or "l2",
        global_=bool(args.global_),
        round_to=args.round_to,
        max_shard_size=args.max_shard_size,
    )
    print(report)
    print(f"saved to {args.output}")
    write_report(report, args.report)
    return 0
