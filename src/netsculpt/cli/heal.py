"""``netsculpt heal MODEL --data digits --epochs 3 [--teacher ORIGINAL] -o OUT``."""

from __future__ import annotations

import argparse

from netsculpt.cli._common import (
    add_data_argument,
    add_model_argument,
    check_model_output,
    check_output,
    number,
    save_model,
    write_report,
)

NAME = "heal"
HELP = (
    "Fine-tune and/or distil a model after surgery: task loss, KD from --teacher, or both; "
    "best weights on the validation split are kept."
)
ORDER = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_data_argument(parser, "training data", required=True)
    parser.add_argument(
        "-o", "--output", required=True, help="folder (or .pt2 file) to save the healed model"
    )
    parser.add_argument("--teacher", help="the original model (name or folder) to distil from")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="passes over the data (default 1)")
    budget.add_argument("--steps", type=int, help="optimizer steps instead of epochs")
    parser.add_argument("--lr", type=number, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument(
        "--loss",
        choices=("task", "kd", "both"),
        help="task, kd or both (default: both with --teacher, else task)",
    )
    parser.add_argument("--temperature", type=number, default=2.0, help="KD temperature")
    parser.add_argument("--alpha", type=number, default=0.5, help="weight of KD in --loss both")
    parser.add_argument("--hidden", action="store_true", help="also match block outputs (KD)")
    parser.add_argument("--patience", type=int, help="stop after N evaluations without gain")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (default 0)"
    )
    parser.add_argument("--report", help="also write the report to this .json or .html file")


def run(args: argparse.Namespace) -> int:
    from netsculpt.data import load_dataset, make_loader
    from netsculpt.heal import heal
    from netsculpt.io import resolve_model

    check_output(args.output)
    check_output(args.report, suffixes=(".json", ".html"))
    model, example_inputs, source = resolve_model(args.model)
    check_model_output(args.output, args.model, source)
    teacher = resolve_model(args.teacher)[0] if args.teacher else None
    train = make_loader(
        load_dataset(args.data, "train", args.seed), args.batch_size, True, args.seed
    )
    val = make_loader(load_dataset(args.data, "val", args.seed), args.batch_size)
    report = heal(
        model,
        train,
        teacher=teacher,
        epochs=args.epochs,
        steps=args.steps,
        lr=args.lr,
        loss=args.loss,
        temperature=args.temperature,
        alpha=args.alpha,
        hidden=args.hidden,
        val_data=val,
        patience=args.patience,
        seed=args.seed,
        task="lm" if args.data == "stdlib-text" else "classification",
    )
    print(report)
    save_model(model, args.output, args.model, source, example_inputs)
    write_report(report, args.report)
    return 0
