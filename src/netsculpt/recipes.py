"""Recipes: a YAML list of ops (prune / cut / merge / grow), heal and evaluate steps, run in order.

Example recipe::

    model: mnist1d-cnn
    data: mnist1d
    steps:
      - train: {epochs: 10}                # the built-in starts from a random init
      - evaluate: {}
      - prune: {amount: 0.5, importance: l2}
      - heal: {epochs: 3, teacher: original}
      - evaluate: {}
    output: out/mnist1d-prune

Run it with ``netsculpt run recipe.yaml`` or ``ns.run("recipe.yaml")``: one combined
:class:`~netsculpt.report.Report` at the end, written as ``report.json`` / ``report.html`` next to
the saved model in ``output``.
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from torch import nn

from netsculpt.core import progress as _progress
from netsculpt.core.errors import InputError, NetsculptError
from netsculpt.report import Report, Snapshot, layer_sizes

STRUCTURE_OPS = ("prune", "cut", "merge", "grow", "optimize")  # the op registry's verbs that edit
DATA_OPS = ("heal", "evaluate", "train")  # train: heal from the task loss, e.g. a random init
# name -> callable; entries here win over the package's own verbs (tests register fakes here)
OPS: dict[str, Callable[..., Any]] = {}
# filled in by the runner, never read from the YAML
INJECTED = {"model", "example_inputs", "data"}
LM_DATA = ("stdlib-text",)


class Recipe(BaseModel):
    """A validated recipe (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    data: str | None = None
    example_input: list[int] | str | None = None
    steps: list[dict[str, dict[str, Any] | None]]
    output: str | None = None
    seed: int = 0


def op_names() -> list[str]:
    return list(dict.fromkeys([*STRUCTURE_OPS, *DATA_OPS, *OPS]))


def get_op(name: str) -> Callable[..., Any]:
    """The callable for a step name: ``OPS[name]`` or the package verb ``netsculpt.<name>``."""
    if name in OPS:
        return OPS[name]
    if name == "train":
        name = "heal"
    if name not in STRUCTURE_OPS + DATA_OPS:
        raise InputError(f"unknown op {name!r}: one of {', '.join(op_names())}")
    import netsculpt

    try:
        fn = getattr(netsculpt, name)
        # a submodule of the same name may shadow the verb on the package (netsculpt.heal)
        return getattr(fn, name) if isinstance(fn, types.ModuleType) else fn
    except (ImportError, AttributeError) as e:
        raise InputError(f"op {name!r} is not available in this install ({e})") from e


def _options_model(name: str, fn: Callable[..., Any]) -> type[BaseModel] | None:
    """A pydantic model of ``fn``'s keyword options (None when it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # odd annotations: check names only
        hints = {}
    fields: dict[str, Any] = {}
    for i, p in enumerate(params):
        if p.name in INJECTED or (i < 2 and p.kind is p.POSITIONAL_OR_KEYWORD):
            continue  # model and example inputs / data come from the recipe
        if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            continue
        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hints.get(p.name, Any), default)
    if name in DATA_OPS:
        for key in ("teacher", "reference", "val_data"):  # names ("original", a model) allowed
            if key in fields:
                fields[key] = (Any, None)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    try:
        return create_model(f"{name}_options", __config__=config, **fields)
    except Exception:
        fields = {k: (Any, d) for k, (_, d) in fields.items()}
        return create_model(f"{name}_options", __config__=config, **fields)


def _first_error(err: ValidationError, where: str) -> InputError:
    e = err.errors()[0]
    loc = ".".join(str(x) for x in e["loc"])
    if e["type"] == "extra_forbidden":
        return InputError(f"{where}: unknown key {loc!r}")
    if e["type"] == "missing":
        return InputError(f"{where}: missing key {loc!r}")
    return InputError(f"{where}.{loc}: {e['msg']} (got {e.get('input')!r})")


def load_recipe(recipe: str | Path | dict[str, Any] | Recipe) -> Recipe:
    """Parse and validate a recipe from a YAML path, a YAML string, a dict or a :class:`Recipe`.

    Every step must have exactly one op key, and its options must be ones the op accepts.

    Example::

        r = load_recipe({"model": "digits-mlp", "data": "digits", "steps": [{"evaluate": {}}]})
    """
    where = "recipe"
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, Path)):
        import yaml

        path = Path(recipe)
        is_file = isinstance(recipe, Path) or (
            "\n" not in recipe and (path.suffix in (".yaml", ".yml") or path.exists())
        )
        if is_file and not path.exists():
            raise InputError(f"recipe file {path} does not exist")
        where = str(path) if is_file else "recipe"
        try:
            recipe = yaml.safe_load(path.read_text() if is_file else recipe)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            raise InputError(f"{where}:{line} not valid YAML ({getattr(e, 'problem', e)})") from e
    if not isinstance(recipe, dict):
        raise InputError(f"{where}: a recipe is a mapping with model, data, steps, output")
    try:
        parsed = Recipe.model_validate(recipe)
    except ValidationError as e:
        raise _first_error(e, where) from e
    for i, step in enumerate(parsed.steps):
        at = f"{where}: steps[{i}]"
        if len(step) != 1:
            raise InputError(f"{at}: a step has exactly one op key, got {sorted(step) or 'none'}")
        ((name, options),) = step.items()
        if name not in op_names():
            raise InputError(f"{at}: unknown op {name!r} (one of {', '.join(op_names())})")
        step[name] = options = options or {}
        if name in STRUCTURE_OPS and name not in OPS and _registered(name):
            _check_op_options(name, options, f"{at}.{name}")
            continue
        model = _options_model(name, get_op(name))
        if model is not None:
            try:
                model.model_validate(options)
            except ValidationError as e:
                raise _first_error(e, f"{at}.{name}") from e
    return parsed


def _registered(name: str) -> bool:
    from netsculpt.engine import registry

    return hasattr(registry.get(name).module, "CONFIGS")


def _check_op_options(name: str, options: dict[str, Any], where: str) -> None:
    """A structure step's options are fields of the op's config (from the op registry), and
    the config they make must be valid: the same one-line errors as the verb gives."""
    from netsculpt.engine import registry

    spec = registry.get(name)
    fields = set(spec.fields()) | {"structured"} | set(getattr(spec.module, "KEYWORDS", ()))
    unknown = [k for k in options if k not in fields and k != "data"]
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}")
    try:
        spec.config(None, {k: v for k, v in options.items() if k != "data"})
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def replay_config(report: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A recipe that replays a saved report: its op and config, as one step.

    ``ns.run("report.json", model=m, example_inputs=x)`` and ``netsculpt run report.json``
    accept a report.json written by any verb (``--report x.json`` / ``Report.to_json``).
    """
    import json

    d = report
    if not isinstance(report, dict):
        try:
            d = json.loads(Path(report).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{report}: not a readable report.json ({type(e).__name__})") from None
    op, config = d.get("op"), dict(d.get("config") or {})
    if op == "run":
        return {k: v for k, v in config.items() if k in Recipe.model_fields}
    if op not in STRUCTURE_OPS:
        raise InputError(
            f"{report}: a report of op {op!r} cannot be replayed (one of {STRUCTURE_OPS})"
        )
    from netsculpt.engine import registry

    fields = set(registry.get(op).fields())
    options = {k: v for k, v in config.items() if k in fields and v is not None}
    if op == "prune":
        options["structured"] = config.get("mode") != "unstructured"
    for k in ("ignore", "targets"):
        if k in options and not options[k]:
            options.pop(k)
    return {"steps": [{op: options}]}


def _example_inputs(spec: Any, resolved: Any, data: Any) -> Any:
    if isinstance(spec, list):
        return torch.randn(*spec)
    if resolved is not None and spec != "data":
        return resolved
    if data is None:
        return None
    from netsculpt.calibration.batches import loader as batches
    from netsculpt.calibration.batches import split_batch

    first = next(iter(batches(data, batch_size=1)), None)
    x = split_batch(first)[0] if first is not None else None
    return x[:1] if isinstance(x, torch.Tensor) else x


class _Runner:
    """State of one run: the model, its data splits, the original (for teachers), the reports."""

    def __init__(self, recipe: Recipe, model: nn.Module | None, data: Any, example_inputs: Any):
        self.recipe, resolved = recipe, None
        if model is None:
            if recipe.model is None:
                raise InputError("recipe: no model (set model: in the recipe or pass model=)")
            from netsculpt.io import resolve_model

            model, resolved, _ = resolve_model(recipe.model)
        self.model = model
        self.splits: dict[str, Any] = {}
        if data is not None:
            self.splits = {"train": data, "val": None, "test": data}
        elif recipe.data is not None:
            from netsculpt.data import load_dataset

            self.splits = {
                s: load_dataset(recipe.data, s, recipe.seed) for s in ("train", "val", "test")
            }
        spec = recipe.example_input
        self.example_inputs = example_inputs
        if self.example_inputs is None:
            self.example_inputs = _example_inputs(spec, resolved, self.splits.get("train"))
        self.task = "lm" if recipe.data in LM_DATA else None
        self.original: nn.Module | None = None

    def need_data(self, name: str, i: int) -> None:
        if not self.splits:
            raise InputError(f"recipe: steps[{i}] {name} needs data (set data: in the recipe)")

    def model_named(self, value: Any) -> Any:
        """``"original"``: the model before the first structural op; another string: a model."""
        if not isinstance(value, str):
            return value
        if value == "original":
            return self.original if self.original is not None else copy.deepcopy(self.model)
        from netsculpt.io import resolve_model

        return resolve_model(value)[0]

    def step(self, i: int, name: str, options: dict[str, Any], progress: bool) -> Report:
        fn = get_op(name)
        options = dict(options)
        if name in STRUCTURE_OPS or name not in DATA_OPS:
            if name in STRUCTURE_OPS and self.original is None:
                self.original = copy.deepcopy(self.model)
            params = _param_names(fn)
            if "data" in params and "data" not in options and self.splits:
                options["data"] = self.splits["train"]
            rep = fn(self.model, self.example_inputs, **options)
            return rep if isinstance(rep, Report) else Report(op=name, config=options)
        self.need_data(name, i)
        if name in ("heal", "train"):
            options["teacher"] = self.model_named(options.get("teacher"))
            options.setdefault("val_data", self.splits["val"])
            if self.task:
                options.setdefault("task", self.task)
            options.setdefault("progress", progress)
            rep = fn(self.model, self.splits["train"], **options)
            rep.config["teacher"] = self.recipe.steps[i][name].get("teacher")
            rep.op = name
            return rep
        return self.evaluate(fn, options)

    def evaluate(self, fn: Callable[..., Any], options: dict[str, Any]) -> Report:
        config = dict(options)
        options["reference"] = self.model_named(options.get("reference"))
        if self.task == "lm":
            options.setdefault("metric", "perplexity")
        options.setdefault("example_inputs", self.example_inputs)
        res = fn(self.model, self.splits["test"], **options)
        metric = res.get("metric", options.get("metric", "accuracy"))
        snap = Snapshot(
            params=res.get("params"),
            macs=res.get("macs"),
            latency_ms=res.get("latency_ms"),
            size_bytes=res.get("size_bytes"),
            metric=res.get(metric),
            metric_name=metric,
        )
        return Report(op="evaluate", config=config, before=snap, after=snap, details=res)


def _measure_from_first_evaluation(report: Report, reports: list[Report]) -> None:
    """The total's metric starts at the first evaluation before any structural op, not at a
    train step's random init (``train`` → ``evaluate`` → ``prune`` → ... reads 0.96 → 0.95,
    not 0.11 → 0.95)."""
    for r in reports:
        if r.op in STRUCTURE_OPS:
            return
        if r.op == "evaluate" and r.after.metric is not None:
            report.before.metric = r.after.metric
            report.before.metric_name = r.after.metric_name
            return


def _param_names(fn: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def run(
    recipe: str | Path | dict[str, Any] | Recipe,
    *,
    model: nn.Module | None = None,
    data: Any = None,
    example_inputs: Any = None,
    output: str | Path | None = None,
    progress: bool = True,
) -> Report:
    """Run a recipe; returns the combined Report. A ``model`` passed here is edited in place.

    With ``output`` (or the recipe's ``output:``) the model is saved there with
    :func:`netsculpt.save`, next to ``report.json`` and ``report.html``; an output ending in
    ``.pt2`` is exported, with ``<stem>.report.json`` / ``<stem>.report.html`` beside it.

    Example::

        report = ns.run("examples/recipes/prune_and_heal.yaml")
        report = ns.run({"steps": [{"prune": {"amount": 0.5}}]}, model=model, example_inputs=x)
    """
    if isinstance(recipe, (str, Path)) and str(recipe).endswith(".json"):
        recipe = replay_config(recipe)
    parsed = load_recipe(recipe)
    torch.manual_seed(parsed.seed)
    runner = _Runner(parsed, model, data, example_inputs)
    layers_before = layer_sizes(runner.model)
    reports: list[Report] = []
    for i, step in enumerate(parsed.steps):
        ((name, options),) = step.items()
        label = f"run: step {i + 1}/{len(parsed.steps)} {name}"
        try:
            with _progress.step(label, enabled=progress):
                reports.append(runner.step(i, name, options or {}, progress))
        except NetsculptError as e:
            raise type(e)(f"recipe steps[{i}] {name}: {e}") from e
    report = Report.combine(reports, op="run", config=parsed.model_dump())
    _measure_from_first_evaluation(report, reports)
    report.layers_before, report.layers_after = layers_before, layer_sizes(runner.model)
    out = output or parsed.output
    if out is not None:
        from netsculpt.io.saving import save_run

        report.notes.append(save_run(runner.model, out, report, runner.example_inputs))
    return report
