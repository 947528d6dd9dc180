"""Helpers the sub-commands share: model and data arguments, calibration loaders, output."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from netsculpt.errors import InputError


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="built-in name (digits-mlp, digits-cnn, resnet18, ...), a netsculpt "
        "folder, or a .pt2 file",
    )


def load_model(name: str):
    from netsculpt.data import resolve_model

    model, example_inputs, source = resolve_model(name)
    if example_inputs is None:
        raise InputError(f"no example input is known for '{name}'")
    return model, example_inputs, source


def calibration(name: str | None, batch_size: int = 64, split: str = "train") -> Any:
    if name is None:
        return None
    from netsculpt.data import load_dataset, make_loader

    return make_loader(load_dataset(name, split), batch_size)


def check_output(path: str | None, *, suffixes: tuple[str, ...] = ()) -> None:
    """Refuse an output path before any work is done."""
    if path is None:
        return
    p = Path(path)
    if suffixes and p.suffix not in suffixes:
        raise InputError(f"output '{path}' must end in {' or '.join(suffixes)}")
    if p.exists() and p.is_file() and not suffixes:
        raise InputError(f"output '{path}' is a file; give a folder")


def write_report(report, path: str | None) -> None:
    if not path:
        return
    if path.endswith(".json"):
        report.to_json(path)
    elif path.endswith(".html"):
        report.to_html(path)
    else:
        raise InputError(f"--report must end in .json or .html, got '{path}'")


def _flag(name: str) -> str:
    return "--" + name.rstrip("_").replace("_", "-")


def _arg_type(annotation: str):
    if "bool" in annotation and "|" not in annotation:
        return bool
    for t in (int, float):
        if annotation.startswith(t.__name__):
            return t
    return str


def add_config_arguments(parser, op: str, names: list[str], group_titles=None) -> None:
    """Add one flag per config field of ``op`` (from the op registry): the flag is the field's
    name (``round_to`` -> ``--round-to``), its help the field's doc, its type the field's."""
    from netsculpt.engine import registry

    fields = registry.get(op).fields()
    for name in names:
        f = fields[name]
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        doc = f.metadata.get("doc") or name
        kind = _arg_type(ann)
        target = (group_titles or {}).get(name, parser)
        if kind is bool:
            target.add_argument(_flag(name), dest=name, action="store_true", default=None, help=doc)
        elif ann.startswith("tuple"):
            target.add_argument(_flag(name), dest=name, nargs="+", help=doc)
        else:
            target.add_argument(_flag(name), dest=name, type=kind, help=doc)


def config_overrides(args, names: list[str]) -> dict[str, Any]:
    """The config fields the user set on the command line (unset flags are left out)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def add_latency_argument(parser: argparse.ArgumentParser) -> None:
    """``--latency``: time the model before and after the op (the report's latency column)."""
    parser.add_argument(
        "--latency",
        action="store_true",
        help="measure CPU latency before and after (median of 10 forward passes, 2 threads)",
    )


def measure_before(args, model, example_inputs):
    """With ``--latency``: the model's Snapshot (params, MACs, latency, size) before the op."""
    if not getattr(args, "latency", False):
        return None
    from netsculpt.core import progress
    from netsculpt.report import Snapshot

    with progress.step("latency before"):
        return Snapshot.of(model, example_inputs, latency=True)


def measure_after(report, before, model, example_inputs) -> None:
    """Fill the report's unmeasured fields (latency, size) from ``before`` and a new Snapshot."""
    if before is None:
        return
    from netsculpt.core import progress
    from netsculpt.report import Snapshot

    with progress.step("latency after"):
        after = Snapshot.of(model, example_inputs, latency=True)
    report.before = report.before.fill(before)
    report.after = report.after.fill(after)
