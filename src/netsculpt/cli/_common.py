"""Helpers the sub-commands share: model and data arguments, calibration loaders, output."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from netsculpt.core.errors import InputError


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="built-in name (digits-mlp, digits-cnn, resnet18, ...), a netsculpt "
        "folder, or a .pt2 file",
    )


def data_names() -> str:
    """The built-in data set names, for help texts."""
    from netsculpt.data.datasets import DATASETS

    return ", ".join(DATASETS)


def add_data_argument(parser, purpose: str, *, required: bool = False) -> None:
    """``--data NAME``: a built-in data set; the help names every one."""
    parser.add_argument(
        "--data", required=required, metavar="NAME", help=f"{purpose}: {data_names()}"
    )


def check_data(name: str | None, example_inputs: Any, model_arg: str) -> None:
    """Refuse ``--data NAME`` whose samples do not fit the model's example input, naming the
    built-in data sets that do."""
    import torch

    from netsculpt.data.datasets import DATASETS, SAMPLE_SHAPES

    if name is None or name not in DATASETS or not isinstance(example_inputs, torch.Tensor):
        return  # an unknown name is refused by load_dataset; dict inputs are checked later

    def kind(t: torch.Tensor) -> str:
        return "float" if t.is_floating_point() else "int"

    want = (tuple(example_inputs.shape[1:]), kind(example_inputs))
    if SAMPLE_SHAPES[name] == want:
        return
    fits = [n for n, shape in SAMPLE_SHAPES.items() if shape == want]
    hint = f"use --data {' or --data '.join(fits)}" if fits else "no built-in data set fits it"
    raise InputError(
        f"--data {name} gives {SAMPLE_SHAPES[name][1]} samples of shape "
        f"{SAMPLE_SHAPES[name][0]}, {model_arg} takes {want[1]} inputs of shape {want[0]}; {hint}"
    )


def add_seed_argument(parser, default: int | None = 0) -> None:
    tail = f" (default {default})" if default is not None else ""
    parser.add_argument(
        "--seed", type=int, default=default, help=f"seed of every random choice{tail}"
    )


def load_model(name: str):
    from netsculpt.io import resolve_model

    model, example_inputs, source = resolve_model(name)
    if example_inputs is None:
        raise InputError(f"no example input is known for '{name}'")
    return model, example_inputs, source


def calibration(name: str | None, batch_size: int = 64, split: str = "train") -> Any:
    if name is None:
        return None
    from netsculpt.data import load_dataset, make_loader

    return make_loader(load_dataset(name, split), batch_size)


def number(text: str) -> float:
    """argparse type: a finite float (``nan`` / ``inf`` are usage errors, not values)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def check_output(path: str | None, *, suffixes: tuple[str, ...] = ()) -> None:
    """Refuse an output before any work is done: a save folder (``-o``) by the rules of
    :func:`netsculpt.io.outputs.check_save_target`, a file (``--report``) when ``suffixes``
    are given."""
    if path is None:
        return
    from netsculpt.io.outputs import check_file_target, check_save_target

    if suffixes:
        check_file_target(path, suffixes, what="report")
    elif is_program(path):
        check_file_target(path, (".pt2",), what="output")
    else:
        check_save_target(path, what="output")


def check_folder(path: str | None) -> None:
    """Refuse an output folder that is not a netsculpt save (a demo folder, an HF checkpoint)
    when it cannot be created or written."""
    if path is None:
        return
    from netsculpt.io.outputs import check_location

    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise InputError(f"output {p} is a dangling symbolic link")
    if p.exists() and not p.is_dir():
        raise InputError(f"output {p} is a file; give a folder")
    check_location(p / "x" if p.is_dir() else p)


def write_text(path: str, text: str) -> None:
    """Write an output file atomically (a temporary file renamed into place)."""
    from netsculpt.io.outputs import write_text_atomic

    write_text_atomic(path, text)


def write_report(report, path: str | None) -> None:
    if not path:
        return
    if path.endswith(".json"):
        write_text(path, report.to_json())
    elif path.endswith(".html"):
        write_text(path, report.to_html())
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


def add_config_arguments(
    parser, op: str, names: list[str], group_titles=None, aliases=None
) -> None:
    """Add one flag per config field of ``op`` (from the op registry): the flag is the field's
    name (``round_to`` -> ``--round-to``), its help the field's doc, its type the field's, its
    choices those of a ``one_of`` check. Every flag defaults to None (unset: the config's own
    default applies). ``group_titles``: field -> argument group (or mutually exclusive group)
    to add it to; ``aliases``: field -> further option strings (older flag names). A bool field
    whose default is True gets ``--name`` / ``--no-name``."""
    import argparse as _argparse
    import dataclasses as _dc

    from netsculpt.engine import registry

    fields = registry.get(op).fields()
    for name in names:
        f = fields[name]
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        doc = f.metadata.get("doc") or name
        kind = _arg_type(ann)
        target = (group_titles or {}).get(name, parser)
        flags = [_flag(name), *((aliases or {}).get(name, ()))]
        default = f.default if f.default is not _dc.MISSING else None
        choices = getattr(f.metadata.get("check"), "choices", None)
        if kind is bool:
            action = _argparse.BooleanOptionalAction if default is True else "store_true"
            target.add_argument(*flags, dest=name, action=action, default=None, help=doc)
        elif ann.startswith("tuple"):
            target.add_argument(*flags, dest=name, nargs="+", help=doc)
        else:
            kind = number if kind is float else kind  # nan / inf are usage errors
            extra = {"choices": choices} if choices else {}
            tail = (
                f" (default {default})"
                if default not in (None, ()) and not callable(default)
                else ""
            )
            target.add_argument(*flags, dest=name, type=kind, help=doc + tail, **extra)


def split_names(text: str | list | tuple | None) -> tuple[str, ...]:
    """Names or globs from a flag: a list (``nargs``) and / or comma-separated text."""
    if isinstance(text, (list, tuple)):
        text = ",".join(text)
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


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


def is_program(path: Any) -> bool:
    """A ``.pt2`` path (a torch.export program)."""
    return path is not None and str(path).endswith(".pt2")


def check_model_output(output: str | None, model_arg: str, source: str | None) -> None:
    """Before any work: a model that came from a Hugging Face folder goes out as one, so ``-o``
    must be a new or empty folder other than the model's own; one that came from a ``.pt2``
    goes out as a ``.pt2`` (a netsculpt folder could not name its class)."""
    if output is not None and is_program(model_arg) and not is_program(output):
        raise InputError(
            f"-o {output}: {model_arg} is a torch.export program, so the result is written "
            "as one (a netsculpt folder of it could not be loaded back); give -o OUT.pt2"
        )
    if output is None or source != "hf":
        return
    from netsculpt.hf.folders import check_hf_target, is_hf_folder

    if is_hf_folder(model_arg):
        check_hf_target(Path(model_arg), output)


def save_model(
    model, output: str | None, model_arg: str, source: str | None, example_inputs: Any = None
) -> None:
    """Write the result to ``-o`` in the form it came in: a Hugging Face folder (with its
    tokenizer, generation config and sentence-transformers modules) when MODEL was one and its
    config can describe the result, a torch.export program (dynamic batch, traced on
    ``example_inputs``) when ``-o`` ends in ``.pt2``, else a netsculpt folder (with a one-line
    note saying why). Prints where it went."""
    if output is None:
        return
    from netsculpt.core import progress

    if is_program(output):
        from netsculpt.io import export

        if example_inputs is None:
            raise InputError(f"-o {output}: no example input is known to trace {model_arg} on")
        export(model, output, example_inputs)
        print(f"saved to {output} (torch.export program, dynamic batch)")
        return
    with progress.step(f"save {output}"):
        _save_model(model, output, model_arg, source)


def _save_model(model, output: str, model_arg: str, source: str | None) -> None:
    from netsculpt.io import save

    hf_in = source == "hf" and _is_hf_folder(model_arg)
    if hf_in:
        from netsculpt.hf.config import hf_compatible
        from netsculpt.hf.folders import save_hf_folder, sentence_transformers_modules

        ok, why = hf_compatible(model)
        if ok:
            save_hf_folder(model, output, source=model_arg)
            st = bool(sentence_transformers_modules(Path(model_arg)))
            kind = "sentence-transformers" if st else "Hugging Face"
            loader = "SentenceTransformer" if st else "from_pretrained"
            print(f"saved to {output} ({kind} folder: {loader}({str(output)!r}) loads it)")
            return
        save(model, output, source=source)
        print(
            f"note: saved as a netsculpt folder (load it with netsculpt.load): {why[0]}, which "
            "config.json cannot describe (--uniform keeps it a Hugging Face folder)"
        )
        print(f"saved to {output}")
        return
    save(model, output, source=source)
    print(f"saved to {output}")


def _is_hf_folder(path: str) -> bool:
    from netsculpt.hf.folders import is_hf_folder

    return is_hf_folder(path)


def short_name(model_arg: str) -> str:
    """A MODEL argument as progress lines name it: a path by its last part."""
    return Path(str(model_arg)).name or str(model_arg)
