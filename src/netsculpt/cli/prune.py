"""``netsculpt prune MODEL --amount 0.5 --importance l2 -o OUT``.

``netsculpt prune HF_DIR --sharded --amount 0.3 -o OUT`` prunes a Hugging Face checkpoint
folder shard by shard without loading it (:func:`netsculpt.hf.prune_pretrained`). A Hugging
Face model pruned in memory (``netsculpt prune HF_DIR --amount 0.3``) gets the same HF
defaults (:mod:`netsculpt.hf.structured`: heads and MLP, uniform) and is measured on the same
example input, so both report the same architecture, params and MACs."""

from __future__ import annotations

import argparse

from netsculpt.cli._common import (
    add_config_arguments,
    add_data_argument,
    add_latency_argument,
    add_model_argument,
    calibration,
    check_data,
    check_folder,
    check_model_output,
    check_output,
    config_overrides,
    load_model,
    measure_after,
    measure_before,
    save_model,
    write_report,
)
from netsculpt.cli._common import (
    short_name as _short,
)

NAME = "prune"
HELP = "Remove channels, neurons and heads (structured) or zero weights (unstructured)."
ORDER = 20


STRUCTURED = ["amount", "target_macs", "target_params", "global_", "round_to"]
UNSTRUCTURED = ["threshold", "sparsity", "pattern"]
COMMON = ["importance", "max_batches", "seed"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("-o", "--output", help="folder (or .pt2 file) to save the pruned model")
    s = parser.add_argument_group("structured")
    u = parser.add_argument_group("unstructured")
    where = {**dict.fromkeys(STRUCTURED, s), **dict.fromkeys(UNSTRUCTURED, u)}
    add_config_arguments(parser, "prune", STRUCTURED + UNSTRUCTURED + COMMON, where)
    s.add_argument(
        "--targets", nargs="+", help="parts: heads, mlp, hidden (an HF model: heads mlp)"
    )
    s.add_argument(
        "--uniform",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="equal counts in every layer (default for an HF model)",
    )
    u.add_argument("--keep-dead", action="store_true", help="do not remove dead neurons")
    h = parser.add_argument_group("Hugging Face checkpoint folder, shard by shard")
    h.add_argument(
        "--sharded",
        action="store_true",
        help="MODEL is an HF safetensors folder: prune it shard by shard into -o (l1 / l2; "
        "activation with --data, wanda / sparsegpt with --data and --sparsity or --pattern: "
        "one layer at a time)",
    )
    h.add_argument(
        "--remove-layers",
        type=_count_or_fraction,
        help="--sharded --data: also remove this many decoder layers (or this fraction), the "
        "lowest --layer-criterion scores of the same pass",
    )
    h.add_argument(
        "--layer-criterion",
        choices=("influence", "angular"),
        help="--remove-layers: block influence 1 - cos (default) or angular distance",
    )
    h.add_argument("--max-shard-size", help="re-pack the output shards, e.g. 5GB")
    h.add_argument(
        "--activation-budget", help="calibrated --sharded: activations beyond this go to disk (1GB)"
    )
    add_data_argument(parser, "calibration data for taylor / activation / wanda / sparsegpt")
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
    check_data(args.data, example_inputs, args.model)
    check_model_output(args.output, args.model, source)
    kw = config_overrides(args, STRUCTURED + UNSTRUCTURED + COMMON + ["targets", "uniform"])
    if args.keep_dead:
        kw["remove_dead"] = False
    if args.ignore:
        kw["ignore"] = args.ignore
    if source == "hf" and _structured(args):
        kw.update(_hf_defaults(args))
    from netsculpt.core import progress

    before = measure_before(args, model, example_inputs)
    with progress.step(f"prune {_short(args.model)}"):
        report = ns.prune(model, example_inputs, data=calibration(args.data), **kw)
    measure_after(report, before, model, example_inputs)
    print(report)
    for note in report.notes:
        print(f"note: {note}")
    save_model(model, args.output, args.model, source, example_inputs)
    write_report(report, args.report)
    return 0


def _structured(args: argparse.Namespace) -> bool:
    """Whether the options ask for structured pruning (as ``ns.prune`` decides it), with
    ``--amount`` left to its default."""
    if any(v is not None for v in (args.amount, args.target_macs, args.target_params)):
        return True
    return args.threshold is None and args.pattern is None and args.sparsity is None


def _hf_defaults(args: argparse.Namespace) -> dict:
    """The HF prune defaults (:func:`netsculpt.hf.structured.prune_options`) under the given
    options; ``--amount`` defaults only when no budget is given."""
    from netsculpt.hf.structured import prune_options

    budget = args.target_macs is not None or args.target_params is not None
    kw = prune_options(amount=args.amount, targets=args.targets, uniform=args.uniform,
                       importance=args.importance)  # fmt: skip
    if budget and args.amount is None:
        kw.pop("amount")
    return kw


def _run_sharded(args: argparse.Namespace) -> int:
    from netsculpt.core.errors import InputError
    from netsculpt.hf.sharded import prune_pretrained

    if args.importance in ("wanda", "sparsegpt"):
        return _run_calibrated(args)
    if args.layer_criterion is not None and args.remove_layers is None:
        raise InputError("--layer-criterion goes with --remove-layers N")
    streamed = args.importance == "activation" or args.remove_layers is not None
    other = {
        "--activation-budget": None if streamed else args.activation_budget,
        "--target-macs": args.target_macs,
        "--target-params": args.target_params,
        "--threshold": args.threshold,
        "--sparsity": args.sparsity,
        "--pattern": args.pattern,
        "--data": None if streamed else args.data,
        "--ignore": args.ignore or None,
        "--keep-dead": args.keep_dead or None,
        "--no-uniform": True if args.uniform is False else None,
    }
    used = [name for name, v in other.items() if v is not None]
    if used:
        raise InputError(f"--sharded prunes by --amount only; not with {', '.join(used)}")
    if not args.output:
        raise InputError("--sharded needs an output folder: -o OUT")
    check_folder(args.output)
    if args.report:
        check_output(args.report, suffixes=(".json", ".html"))
    given = {
        "amount": args.amount,
        "targets": None if args.targets is None else tuple(args.targets),
        "importance": args.importance,
        "round_to": args.round_to,
        "max_shard_size": args.max_shard_size,
    }  # what is not given takes the HF defaults
    kw = {k: v for k, v in given.items() if v is not None}
    if streamed:
        from netsculpt.hf.sharded import _size_limit

        if not args.data:
            raise InputError("--sharded --importance activation / --remove-layers needs "
                             "calibration data: --data D")  # fmt: skip
        budget = args.activation_budget
        kw.update(data=calibration(args.data), max_batches=args.max_batches or 16,
                  activation_budget=None if budget is None else _size_limit(budget),
                  remove_layers=args.remove_layers,
                  layer_criterion=args.layer_criterion or "influence")  # fmt: skip
    report = prune_pretrained(args.model, args.output, global_=bool(args.global_), **kw)
    print(report)
    print(f"saved to {args.output}")
    write_report(report, args.report)
    return 0


def _run_calibrated(args: argparse.Namespace) -> int:
    """``--sharded --importance wanda|sparsegpt``: one decoder layer at a time."""
    from netsculpt.core.errors import InputError
    from netsculpt.hf.sharded import _size_limit, prune_pretrained

    other = {"--amount": args.amount, "--threshold": args.threshold, "--targets": args.targets,
             "--round-to": args.round_to, "--global": args.global_ or None,
             "--ignore": args.ignore or None}  # fmt: skip
    used = [name for name, v in other.items() if v is not None]
    if used:
        raise InputError(f"--sharded --importance {args.importance} takes --sparsity or "
                         f"--pattern; not {', '.join(used)}")  # fmt: skip
    if not args.data:
        raise InputError(f"--importance {args.importance} needs calibration data: --data D")
    if not args.output:
        raise InputError("--sharded needs an output folder: -o OUT")
    check_folder(args.output)
    if args.report:
        check_output(args.report, suffixes=(".json", ".html"))
    budget = None if args.activation_budget is None else _size_limit(args.activation_budget)
    report = prune_pretrained(
        args.model, args.output, importance=args.importance, data=calibration(args.data),
        sparsity=args.sparsity, pattern=args.pattern, activation_budget=budget,
        max_batches=args.max_batches or 16, max_shard_size=args.max_shard_size,
    )  # fmt: skip
    print(report)
    print(f"saved to {args.output}")
    write_report(report, args.report)
    return 0


def _count_or_fraction(text: str) -> int | float:
    """``--remove-layers``: ``2`` (a count) or ``0.25`` (a fraction of the layers)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"a count or a fraction, got {text!r}") from None
