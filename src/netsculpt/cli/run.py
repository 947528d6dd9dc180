"""``netsculpt run recipe.yaml [-o OUT]``: run a recipe of ops, heal and evaluate steps."""

from __future__ import annotations

import argparse

NAME = "run"
HELP = "Run a recipe (YAML): prune / cut / merge / grow, heal and evaluate steps, one report."
ORDER = 80


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "recipe",
        help="recipe YAML file (see examples/recipes/), or a report.json to replay its op",
    )
    parser.add_argument("--model", help="model to run on (overrides the recipe's model:)")
    parser.add_argument(
        "-o", "--output", help="output folder or .pt2 file (overrides the recipe's output:)"
    )
    parser.add_argument("--report", help="also write the report to this .json or .html file")
    parser.add_argument("--check", action="store_true", help="validate the recipe and stop")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    from netsculpt.cli._common import check_model_output, check_output, is_program, write_report
    from netsculpt.recipes import load_recipe, replay_config
    from netsculpt.recipes import run as run_recipe

    if args.report:
        check_output(args.report, suffixes=(".json", ".html"))
    recipe = replay_config(args.recipe) if args.recipe.endswith(".json") else args.recipe
    parsed = load_recipe(recipe)
    if args.model:
        parsed = parsed.model_copy(update={"model": args.model})
    out = args.output or parsed.output
    check_output(out)  # -o, or the recipe's own output
    if is_program(out):  # the report goes beside the program: refuse a bad name there too
        from netsculpt.io.outputs import check_file_target
        from netsculpt.io.saving import program_report_files

        for path in program_report_files(out):
            check_file_target(path, what="report")
    check_model_output(str(out) if out else None, str(parsed.model or ""), None)
    if args.check:
        print(f"{args.recipe}: ok ({len(parsed.steps)} steps)")
        return 0
    report = run_recipe(parsed, output=args.output, progress=not args.quiet)
    print(report)
    write_report(report, args.report)
    return 0
