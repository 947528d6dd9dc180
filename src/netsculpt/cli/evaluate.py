"""``netsculpt evaluate MODEL --data digits [--metric accuracy] [--reference ORIGINAL]``."""

from __future__ import annotations

import argparse
import json

from netsculpt.cli._common import (
    add_data_argument,
    add_model_argument,
    add_seed_argument,
    check_data,
    write_text,
)

NAME = "evaluate"
HELP = (
    "Evaluate a model on a built-in data set: accuracy, loss, perplexity or embedding fidelity, "
    "plus params, MACs, latency and saved size."
)
ORDER = 70


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_data_argument(parser, "evaluation data", required=True)
    parser.add_argument(
        "--metric",
        choices=("accuracy", "loss", "perplexity", "fidelity"),
        help="accuracy, loss, perplexity or fidelity (default: perplexity for stdlib-text, "
        "else accuracy)",
    )
    parser.add_argument("--reference", help="model to compare embeddings with (--metric fidelity)")
    parser.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test"),
        help="which split of --data: train, val or test (default)",
    )
    add_seed_argument(parser)
    parser.add_argument("--latency", action="store_true", help="also time CPU latency")
    parser.add_argument(
        "--report",
        "--json",
        dest="json",
        metavar="FILE",
        help="also write the results to this .json file",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from netsculpt.data import load_dataset, make_loader
    from netsculpt.io import resolve_model
    from netsculpt.measure.evaluate import evaluate
    from netsculpt.report.console import human

    if args.json:
        from netsculpt.io.outputs import check_file_target

        check_file_target(args.json, what="--json")
    model, example_inputs, _ = resolve_model(args.model)
    check_data(args.data, example_inputs, args.model)
    reference = resolve_model(args.reference)[0] if args.reference else None
    metric = args.metric or ("perplexity" if args.data == "stdlib-text" else "accuracy")
    data = make_loader(load_dataset(args.data, args.split, args.seed), 64)
    res = evaluate(
        model,
        data,
        metric=metric,
        reference=reference,
        example_inputs=example_inputs,
        latency=args.latency,
        task="lm" if args.data == "stdlib-text" else None,
    )
    table = Table(title=f"netsculpt evaluate {args.model} on {args.data} ({args.split})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in res.items():
        if key == "metric":
            continue
        kind = key if key in ("latency_ms", "size_bytes") else "count"
        text = human(value, kind) if key in ("params", "macs", "latency_ms", "size_bytes") else (
            f"{value:.4f}" if isinstance(value, float) else str(value)
        )  # fmt: skip
        table.add_row(key, text)
    Console().print(table)
    if args.json:
        write_text(args.json, json.dumps(res, indent=2))
    return 0
