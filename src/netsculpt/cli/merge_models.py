"""``netsculpt merge-models M1 M2 ... -o OUT``: merge trained models of one architecture."""

from __future__ import annotations

import argparse

from netsculpt.cli._common import check_model_output, check_output, number, save_model
from netsculpt.core.errors import InputError

NAME = "merge-models"
HELP = (
    "Merge several trained models of the same architecture in weight space: uniform average, "
    "task arithmetic or TIES (the last two need --base)."
)
ORDER = 31


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models", nargs="+", help="two or more models (netsculpt folders, names, .pt2 files)"
    )
    parser.add_argument(
        "-o", "--output", required=True, help="folder (or .pt2 file) to save the merged model"
    )
    parser.add_argument("--base", help="the shared starting model (θ0) for task_arithmetic / ties")
    parser.add_argument(
        "--method",
        default="average",
        choices=("average", "task_arithmetic", "ties"),
        help="average (default) of the weights; task_arithmetic or ties: merge task vectors "
        "from --base",
    )
    parser.add_argument("--lam", type=number, default=1.0, help="scale of the merged task vector")
    parser.add_argument(
        "--trim",
        type=number,
        default=0.2,
        help="TIES: the fraction of each task vector kept (default 0.2)",
    )


def run(args: argparse.Namespace) -> int:
    from netsculpt.io import resolve_model, save
    from netsculpt.ops.merge_models import merge_models

    if len(args.models) < 2:
        raise InputError("merge-models needs at least two models")
    check_output(args.output)
    for m in args.models:
        check_model_output(args.output, m, None)
    resolved = [resolve_model(m) for m in args.models]
    base = resolve_model(args.base)[0] if args.base else None
    merged = merge_models(
        [m for m, _, _ in resolved], base=base, method=args.method, lam=args.lam, trim=args.trim
    )
    if str(args.output).endswith(".pt2"):
        save_model(merged, args.output, args.models[0], None, resolved[0][1])
    else:
        save(merged, args.output, source=resolved[0][2])
    n = sum(p.numel() for p in merged.parameters())
    print(f"merged {len(resolved)} models ({args.method}, {n:,} parameters) -> {args.output}")
    return 0
