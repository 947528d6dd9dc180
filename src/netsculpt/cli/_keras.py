"""The commands on a Keras ``.keras`` file: ``netsculpt prune model.keras -o out.keras``.

``main`` sends a command here when its MODEL ends in ``.keras``. The command's own flags are
read from its parsed arguments and passed to the :mod:`netsculpt.keras` verb; the result is
saved with ``model.save`` (standard layers: ``keras.saving.load_model`` reads it back with no
custom objects). ``--data`` is a ``.npz`` file with arrays ``x`` (and ``y``); without it the
example input is one random batch of the model's input shape.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

import numpy as np

from netsculpt.cli._common import split_names
from netsculpt.errors import InputError

COMMANDS = ("prune", "cut", "merge", "grow", "analyze", "heal", "evaluate")
WRITES = ("prune", "cut", "merge", "grow", "heal")


def wants(args: argparse.Namespace) -> bool:
    """Whether this command line names a Keras model file."""
    return str(getattr(args, "model", "") or "").endswith(".keras")


def run(args: argparse.Namespace) -> int:
    if args.command not in COMMANDS:
        raise InputError(f"netsculpt {args.command} does not take Keras models ({args.model})")
    output = getattr(args, "output", None)
    if args.command in WRITES and output is not None and not str(output).endswith(".keras"):
        raise InputError(f"output '{output}' must end in .keras for a Keras model")
    if getattr(args, "sharded", False):
        raise InputError("--sharded reads Hugging Face folders, not Keras models")
    model = _load(args.model)
    data = _data(getattr(args, "data", None))
    x = _example(model, data)
    import netsculpt.keras as nk

    if args.command == "evaluate":
        return _evaluate(nk, model, data, x, args)
    if args.command == "analyze":
        report = nk.analyze(model, x, data=data, **_analyze(args))
        new = None
    else:
        kwargs = globals()[f"_{args.command}"](args)
        fn = getattr(nk, args.command)
        new, report = (
            fn(model, data, **kwargs)
            if args.command == "heal"
            else fn(model, x, data=data, **kwargs)
        )
    print(report)
    if args.command == "analyze":
        _groups(report, getattr(args, "all", False))
    if new is not None and output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        new.save(output)
        print(f"saved to {output}")
    if getattr(args, "report", None):
        from netsculpt.cli._common import write_report

        write_report(report, args.report)
    return 0


def _load(path: str) -> Any:
    if not Path(path).is_file():
        raise InputError(f"Keras model file '{path}' does not exist")
    importlib.import_module("netsculpt.keras")  # picks a backend when none is set, then:
    import keras

    try:
        return keras.saving.load_model(path)
    except Exception as e:
        raise InputError(
            f"{path}: keras.saving.load_model failed ({type(e).__name__}: {e})"
        ) from None


def _data(path: str | None) -> tuple | None:
    if path is None:
        return None
    if not str(path).endswith(".npz") or not Path(path).is_file():
        raise InputError(
            f"--data for a Keras model is a .npz file with arrays x and y, got '{path}'"
        )
    with np.load(path) as f:
        if "x" not in f:
            raise InputError(f"{path}: no array named 'x'")
        return f["x"], f.get("y")


def _example(model: Any, data: tuple | None) -> np.ndarray:
    if data is not None:
        return data[0][:1]
    try:
        shapes = [tuple(t.shape) for t in model.inputs]
    except (AttributeError, ValueError):
        raise InputError("the model has no input shape; pass --data with an x array") from None
    if len(shapes) != 1 or any(d is None for d in shapes[0][1:]):
        raise InputError(f"input shape {shapes}: pass --data with an x array for example inputs")
    dtype = str(model.inputs[0].dtype)
    if "int" in dtype:
        return np.zeros((1, *shapes[0][1:]), np.int64)
    return np.random.default_rng(0).standard_normal((1, *shapes[0][1:])).astype(np.float32)


def _given(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    """``{verb keyword: value}`` for each flag in ``names`` (flag dest -> keyword) that is set."""
    return {
        kw: getattr(args, dest)
        for dest, kw in names.items()
        if getattr(args, dest, None) is not None
    }


def _prune(args: argparse.Namespace) -> dict[str, Any]:
    from netsculpt.cli._common import config_overrides
    from netsculpt.cli.prune import COMMON, STRUCTURED, UNSTRUCTURED

    kw = config_overrides(args, STRUCTURED + UNSTRUCTURED + COMMON)
    if getattr(args, "keep_dead", False):
        kw["remove_dead"] = False
    if getattr(args, "ignore", None):
        kw["ignore"] = list(args.ignore)
    return kw


def _cut(args: argparse.Namespace) -> dict[str, Any]:
    from netsculpt.cli._common import config_overrides
    from netsculpt.cli.cut import CHOICE, FIELDS

    kw = config_overrides(args, CHOICE + FIELDS)
    if kw.get("blocks"):
        kw["blocks"] = split_names(kw["blocks"])
    if split_names(args.protect):
        kw["ignore"] = split_names(args.protect)
    if getattr(args, "keep_bn_stats", False):
        kw["recalibrate_bn"] = False
    return kw


def _merge(args: argparse.Namespace) -> dict[str, Any]:
    kw = _given(args, {"threshold": "threshold"})
    kw.update(neurons=args.neurons, blocks=args.blocks, folds=not args.no_folds)
    return kw


def _grow(args: argparse.Namespace) -> dict[str, Any]:
    from netsculpt.cli._common import config_overrides
    from netsculpt.cli.grow import FIELDS

    kw = config_overrides(args, FIELDS)
    kw["where"] = args.where if args.where == "auto" else list(split_names(args.where))
    return kw


def _analyze(args: argparse.Namespace) -> dict[str, Any]:
    return {"importance": args.importance, "blocks": args.blocks or None}


def _groups(report: Any, everything: bool) -> None:
    rows = [r for r in report.details["groups"] if r["prunable"] or everything]
    for r in rows:
        state = "prunable" if r["prunable"] else f"protected: {r['why_protected']}"
        print(
            f"group {r['group']:>3}  {r['kind']:<8} size {r['size']:>5}  {state:<24} {', '.join(r['coupled'])}"
        )
    hidden = len(report.details["groups"]) - len(rows)
    if hidden:
        print(f"({hidden} protected groups not shown; --all lists them)")


def _heal(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "teacher", None) or getattr(args, "steps", None):
        raise InputError(
            "Keras heal trains with the model's compiled loss: --epochs only (no --teacher, --steps)"
        )
    return {"epochs": args.epochs or 1, "batch_size": args.batch_size, "seed": args.seed}


def _evaluate(
    nk: Any, model: Any, data: tuple | None, x: np.ndarray, args: argparse.Namespace
) -> int:
    import json

    res = nk.evaluate(model, data, example_inputs=x)
    for key, value in res.items():
        print(f"{key:>12}  {value:.6g}" if isinstance(value, float) else f"{key:>12}  {value}")
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0
