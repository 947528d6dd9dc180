"""``netsculpt demo``: the main job on built-in defaults, offline, in a few minutes.

Trains the seed's MLP shape (64 → 64 → 32 → 10) and a small residual CNN on scikit-learn's
digits, then runs each through a recipe and prints before → after. Both start with the seed's
threshold prune (|w| < 0.01, dead neurons removed). The MLP then loses half its neurons
(structured prune) and grows a layer; the CNN goes to ``optimize``, which searches channel
widths, the residual block (cut) and exact BatchNorm folds (merge) for 65% of the MACs within
a held-out accuracy budget. Both end with a heal by distillation from the original.
"""

from __future__ import annotations

import argparse
import copy
import time

NAME = "demo"
HELP = "Train two small models on digits, prune / grow / optimize / heal them, show the table."
ORDER = 1
MINILM_STEPS = 60  # netsculpt.hf.demo.STEPS (not imported here: the parser stays light)

# The CNN's search: 65% of the MACs, at most 1 point of accuracy lost on held-out training
# batches, a short heal after every accepted step. It searches channel widths, removing the
# residual block and the exact BatchNorm folds (so no separate merge step is needed).
OPTIMIZE = {"target_macs": 0.65, "max_drop": 0.01, "heal_every": 1, "heal_steps": 40,
            "heal_lr": 0.003}  # fmt: skip

RECIPES = {
    "digits-mlp": {
        "model": "digits-mlp",
        "data": "digits",
        "steps": [
            {"prune": {"threshold": 0.01}},
            {"prune": {"amount": 0.5, "importance": "l2"}},
            {"grow": {"kind": "deeper", "where": "auto"}},
            {"heal": {"epochs": 4, "lr": 0.003, "teacher": "original", "loss": "both"}},
        ],
    },
    "digits-cnn": {
        "model": "digits-cnn",
        "data": "digits-image",
        "steps": [
            {"prune": {"threshold": 0.01}},
            {"optimize": OPTIMIZE},
            {"heal": {"epochs": 3, "lr": 0.003, "teacher": "original", "loss": "both"}},
        ],
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="digits",
        choices=("digits", "minilm"),
        help="digits: the two small models (default); minilm: the shipped MiniLM",
    )
    parser.add_argument("--epochs", type=int, default=15, help="training epochs before surgery")
    parser.add_argument(
        "--steps",
        type=int,
        default=MINILM_STEPS,
        help=f"distillation steps of the MiniLM demo (default {MINILM_STEPS}, about two minutes "
        "on two cores; 300 heals further)",
    )
    parser.add_argument(
        "-o",
        "--output",
        help="folder to save the models and reports (minilm: a sentence-transformers folder)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads of the MiniLM demo (default 1)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice (default 0)"
    )


def run(args: argparse.Namespace) -> int:
    from netsculpt.cli._common import check_folder

    check_folder(args.output)
    if args.model == "minilm":
        from netsculpt.hf.demo import run_minilm_demo

        report = run_minilm_demo(
            steps=args.steps, threads=args.threads, progress=True, output=args.output
        )
        print(report)
        for note in report.notes:
            print(note)
        d = report.details
        print(
            f"held-out fidelity (mean cosine to the original): {d['after_heal']['cosine']:.3f}; "
            f"nearest-neighbour agreement: {d['after_heal']['nn_agreement']:.3f} "
            f"({d['held_out_sentences']} sentences); {d['seconds']:.0f} s in all"
        )
        if args.output:
            report.to_json(f"{args.output}/minilm-report.json")
            report.to_html(f"{args.output}/minilm-report.html")
        return 0
    rows = [demo_one(name, args.epochs, args.seed, args.output) for name in RECIPES]
    _print_table(rows)
    return 0


def demo_one(name: str, epochs: int, seed: int, output: str | None) -> dict:
    """Train, measure, run the recipe, measure again: one row of the demo table."""
    import torch

    import netsculpt as ns
    from netsculpt.data import load_dataset, make_loader, train_quick
    from netsculpt.io import resolve_model

    torch.manual_seed(seed)
    recipe = RECIPES[name]
    model, x, source = resolve_model(name)
    t0 = time.perf_counter()
    train_quick(model, recipe["data"], epochs=epochs, seed=seed)
    print(f"{name}: trained {epochs} epochs in {time.perf_counter() - t0:.1f}s")
    test = make_loader(load_dataset(recipe["data"], "test", seed), 256)
    before = _measure(ns, model, x, test)
    original = copy.deepcopy(model)
    report = ns.run(
        {**recipe, "seed": seed},
        model=model,
        example_inputs=x,
        output=f"{output}/{name}" if output else None,
    )
    ns.make_permanent(model)  # training is over: drop the pruning masks (and their hooks)
    after = _measure(ns, model, x, test)
    print(report)
    del original
    return {"model": name, "before": before, "after": after, "ops": _ops(report)}


def _measure(ns, model, x, test) -> dict:
    m = ns.measure(model, x, latency=True, threads=1)
    acc = ns.evaluate(model, test)["accuracy"]
    return {"params": m.params, "macs": m.macs, "latency_ms": m.latency_ms, "accuracy": acc}


def _ops(report) -> str:
    return " → ".join(s.op for s in report.steps)


def _print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    from netsculpt.report.console import COMPACT_BELOW, change

    console = Console()
    compact = console.width < COMPACT_BELOW
    table = Table(title="netsculpt demo: before → after (digits test set, CPU, 1 thread)")
    for col in ("model", "steps", "params", "MACs", "latency", "accuracy"):
        table.add_column(col, justify="left" if col in ("model", "steps") else "right")
    for r in rows:
        b, a = r["before"], r["after"]
        table.add_row(
            r["model"],
            r["ops"],
            change(b["params"], a["params"], "params", stacked=compact),
            change(b["macs"], a["macs"], "macs", stacked=compact),
            change(b["latency_ms"], a["latency_ms"], "latency_ms", stacked=compact),
            change(b["accuracy"], a["accuracy"], "metric", stacked=compact),
        )
    console.print(table)
