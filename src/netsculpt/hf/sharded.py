"""Prune or cut a Hugging Face checkpoint folder shard by shard, without loading the model.

One engine: the model is built from ``config.json`` on the **meta device** (no memory for
weights), a :class:`~netsculpt.engine.session.Session` is made on it with the shard backend
(:mod:`netsculpt.engine.backends.shards`), and the op is the registered one. So
:func:`prune_pretrained` runs ``ns.prune``'s structured planning with the HF defaults
(:mod:`netsculpt.hf.structured`, ``uniform=True``) — the plan, the report's params / MACs and
the architecture are those of ``ns.prune`` / ``netsculpt.hf.prune`` on the loaded model — with
L1 / L2 scores streamed out of the shards one tensor at a time. :func:`cut_pretrained` applies
a ``drop_layers`` plan. The backend edits the meta model through the memory path (module
attributes and the config follow), then streams every tensor once, cuts it with the slicing
rule surgery uses in memory, and writes new shards.

Peak memory: one source tensor plus the output shard being filled (at most ``max_shard_size``,
or the size of the source shard it comes from), never the whole model. Everything is written
into a temporary folder next to ``dst`` that is renamed to ``dst`` only after the new config
(before any shard is written) and the written shapes were checked against the meta model; on
any error nothing is left behind.

>>> import netsculpt.hf as nhf                                         # doctest: +SKIP
>>> rep = nhf.prune_pretrained("llama-7b/", "llama-7b-pruned/", amount=0.3)  # doctest: +SKIP
>>> rep = nhf.cut_pretrained("llama-7b/", "llama-7b-cut/", layers=[27, 28])  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.plan import Action, Plan
from netsculpt.engine.backends.shards import (
    INDEX,
    SINGLE,
    ShardBackend,
    aliases,
    check_shards,
    shapes,
    streamed_scores,
)
from netsculpt.hf.structured import DEFAULTS, prune_options
from netsculpt.report import Report, Snapshot

MAGNITUDE = ("l1", "l2")
# module-level names the steps below call (a test may replace one to simulate a failure)
_aliases, _check_shards = aliases, check_shards
__all__ = ["cut_pretrained", "prune_pretrained", "streamed_scores"]


# -- the source folder -------------------------------------------------------------------------
def _shards(src: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder, in index order."""
    if not src.is_dir():
        raise InputError(f"checkpoint folder {str(src)!r} does not exist")
    if not (src / "config.json").is_file():
        raise InputError(f"{str(src)!r} is not a Hugging Face checkpoint folder (no config.json)")
    index = src / INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{index}: not a safetensors index ({type(e).__name__})") from None
        files = list(dict.fromkeys(weight_map.values()))
        missing = [f for f in files if not (src / f).is_file()]
        if missing:
            raise InputError(f"{index} names shards that are not there: {', '.join(missing)}")
        return [src / f for f in files]
    if (src / SINGLE).is_file():
        return [src / SINGLE]
    raise InputError(
        f"{str(src)!r} holds no {SINGLE} or {INDEX}; shard-by-shard editing reads safetensors "
        "only (load the model and save it with safe_serialization first)"
    )


def _first_line(e: BaseException) -> str:
    """The innermost cause's message, first line (config validators wrap the useful part)."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _meta_model(config_dir: Path) -> tuple[nn.Module, Any]:
    """The model ``config.json`` describes, on the meta device (no memory for weights)."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(str(config_dir))
    except Exception as e:  # unknown model_type, bad JSON, a validator refusing the values
        raise InputError(f"{config_dir / 'config.json'}: {_first_line(e)}") from None
    classes = [getattr(transformers, a, None) for a in config.architectures or []]
    classes = [c for c in classes if c is not None]
    classes += [transformers.AutoModelForCausalLM, transformers.AutoModel]
    last: Exception | None = None
    for cls in classes:
        try:
            with torch.device("meta"):
                if hasattr(cls, "from_config"):
                    model = cls.from_config(config)
                else:
                    model = cls(config)
            return model.eval(), config
        except Exception as e:  # the Auto class does not map this config: try the next one
            last = e
    why = _first_line(last) if last is not None else "no model class"
    raise InputError(f"cannot build a model from {config_dir / 'config.json'}: {why}")


def _example(model: nn.Module) -> dict[str, Any]:
    """The example input the CLI measures an HF folder with, on the meta device."""
    from netsculpt.hf.io import example_inputs

    if "input_ids" not in inspect.signature(model.forward).parameters:
        raise InputError(
            f"{type(model).__name__}: shard-by-shard pruning supports text models "
            "(forward takes input_ids)"
        )
    return {**example_inputs(model, device="meta"), "use_cache": False}


# -- writing -----------------------------------------------------------------------------------
def _size_limit(max_shard_size: int | str | None) -> int | None:
    if max_shard_size is None or isinstance(max_shard_size, int):
        if isinstance(max_shard_size, int) and max_shard_size <= 0:
            raise InputError(f"max_shard_size must be positive, got {max_shard_size}")
        return max_shard_size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)\s*", str(max_shard_size), re.I)
    if not m:
        raise InputError(f"max_shard_size must be bytes or like '5GB', got {max_shard_size!r}")
    unit = m.group(2).upper()
    base = 1024 if "I" in unit else 1000
    power = " KMGT".index(unit[0]) if unit[0] in "KMGT" else 0
    return int(float(m.group(1)) * base**power)


def _copy_side_files(src: Path, dst: Path) -> list[str]:
    """Tokenizer, generation config, README, sentence-transformers modules ...: every plain
    file that is not weights / config (:func:`netsculpt.hf.folders.copy_side_files`)."""
    from netsculpt.hf.folders import copy_side_files

    hidden = json.loads((dst / "config.json").read_text()).get("hidden_size")
    return copy_side_files(src, dst, hidden if isinstance(hidden, int) else None)


def _write_config(src: Path, dst: Path, before: dict, after: dict) -> dict[str, Any]:
    """``src/config.json`` with the fields the edit changed (same code as in memory)."""
    changed = {k: v for k, v in after.items() if k not in before or before[k] != v}
    data = json.loads((src / "config.json").read_text())
    data.update(changed)
    (dst / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return changed


def _check_config(tmp: Path, expected: dict[str, tuple[int, ...]], advice: str) -> None:
    """The one config check: the written config.json (the source's file plus the changed
    fields, what ``from_pretrained`` will read) passes transformers' validators and builds
    exactly the edited meta model's tensors. Run before any shard is written; any failure is
    a one-line InputError ending in ``advice``."""
    try:
        rebuilt = shapes(_meta_model(tmp)[0])
    except InputError as e:
        msg = str(e).split(": ", 1)[-1]
        raise InputError(f"transformers refuses the edited config ({msg}); {advice}") from None
    for k in sorted(set(rebuilt) | set(expected)):
        if rebuilt.get(k) != expected.get(k):
            got, want = rebuilt.get(k, "absent"), expected.get(k, "absent")
            raise InputError(
                "the edited structure cannot be described by config.json (from_pretrained "
                f"would build {k} as {got}, the edited model has {want}); {advice}"
            )


def _check_dst(src: Path, dst: Path) -> None:
    if dst.resolve() == src.resolve():
        raise InputError("the output folder must differ from the checkpoint folder")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise InputError(f"output {str(dst)!r} exists and is not an empty folder")


def _run_into(dst: Path, src: Path, body: Callable[[Path], Any]) -> Any:
    """Run ``body(tmp)`` on a temporary folder next to ``dst``; rename it to ``dst`` on success."""
    _check_dst(src, dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        result = body(tmp)
        if dst.exists():
            dst.rmdir()
        tmp.rename(dst)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _writes_config(src: Path, tmp: Path, before: dict, advice: str, changed: dict):
    """``before_write`` for the shard backend: config.json into ``tmp`` (the source's file plus
    the fields the edit changed), checked against the edited meta model before any shard."""

    def write(session: Any, expected: dict[str, tuple[int, ...]]) -> None:
        changed.update(_write_config(src, tmp, before, session.model.config.to_dict()))
        _check_config(tmp, expected, advice)

    return write


def _finish(src: Path, tmp: Path, backend: ShardBackend, changed: dict) -> dict[str, Any]:
    """After the backend wrote the shards: check them, copy the side files."""
    _check_shards(backend.expected, backend.written["files"])
    copied = _copy_side_files(src, tmp)
    return {"shards": backend.written["shards"], "bytes": backend.written["bytes"],
            "config": changed, "copied": copied}  # fmt: skip


# -- pruning -----------------------------------------------------------------------------------
def prune_pretrained(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    amount: float = DEFAULTS["amount"],
    targets: Iterable[str] = DEFAULTS["targets"],
    importance: str = DEFAULTS["importance"],
    global_: bool = False,
    round_to: int | None = None,
    max_shard_size: int | str | None = None,
    data: Any = None,
    sparsity: float | None = None,
    pattern: str | None = None,
    activation_budget: int | None = None,
    max_batches: int = 16,
    remove_layers: int | float | None = None,
    layer_criterion: str = "influence",
) -> Report:
    """Prune heads / MLP channels / hidden size of the checkpoint in ``src`` into ``dst``.

    ``importance="activation"`` with ``data`` (heads and MLP channels), and ``remove_layers``
    (a count or a fraction; the lowest ``layer_criterion`` scores, ``"influence"`` or
    ``"angular"``): scored in one calibrated pass, a decoder layer at a time
    (:mod:`netsculpt.hf.streamed`); ``amount=0`` with ``remove_layers`` removes layers only.

    ``importance="wanda"`` / ``"sparsegpt"`` with ``data`` and ``sparsity`` or ``pattern``:
    unstructured / N:M pruning calibrated one decoder layer at a time
    (:mod:`netsculpt.hf.calibrated`; ``activation_budget``: bytes of activations kept in
    memory, the rest go to disk; ``max_batches`` calibration batches are read).

    ``ns.prune``'s plan with the HF defaults and ``uniform=True`` (as ``netsculpt.hf.prune``
    on the loaded model), without loading it: scores by weight magnitude (``importance``
    ``"l1"`` or ``"l2"``) read one tensor at a time; shards written one at a time.
    ``max_shard_size`` (bytes or ``"5GB"``) re-packs the output; by default each source shard
    gives one (smaller) output shard. ``dst`` loads with ``from_pretrained``; tokenizer and
    generation files are copied.
    """
    from netsculpt.engine import registry
    from netsculpt.engine.session import Session
    from netsculpt.engine.verbs import run

    if importance in ("wanda", "sparsegpt"):
        from netsculpt.hf.calibrated import prune_streamed

        return prune_streamed(src, dst, data=data, importance=importance, sparsity=sparsity,
                              pattern=pattern, activation_budget=activation_budget,
                              max_batches=max_batches, max_shard_size=max_shard_size)  # fmt: skip
    if sparsity is not None or pattern is not None:
        raise InputError("sparsity= / pattern= prune shard by shard with importance='wanda' or "
                         "'sparsegpt' (and data=)")  # fmt: skip
    if importance == "activation" or remove_layers is not None:
        from netsculpt.hf.streamed import prune_structured

        if importance not in ("activation", *MAGNITUDE):
            raise InputError(f"remove_layers= shard by shard prunes with importance 'activation',"
                             f" 'l1' or 'l2', got {importance!r}")  # fmt: skip
        opts = prune_options(amount=amount, targets=targets, importance=importance, uniform=True,
                             global_=global_, round_to=round_to, max_batches=max_batches)  # fmt: skip
        return prune_structured(Path(src), Path(dst), data=data, options=opts,
                                remove_layers=remove_layers, layer_criterion=layer_criterion,
                                activation_budget=activation_budget, max_batches=max_batches,
                                max_shard_size=_size_limit(max_shard_size))  # fmt: skip
    t0 = time.perf_counter()
    kw = prune_options(amount=amount, targets=targets, importance=importance,
                       global_=global_, round_to=round_to, uniform=True)  # fmt: skip
    cfg = registry.get("prune").config(None, kw)
    if importance not in MAGNITUDE:
        raise InputError(
            f"importance {importance!r} is not available shard by shard: it needs the whole "
            "model; use l1, l2 or activation (with data=) here, or netsculpt.hf.prune in memory"
        )
    limit = _size_limit(max_shard_size)
    src, dst = Path(src), Path(dst)
    shards = _shards(src)
    _check_dst(src, dst)
    model, _ = _meta_model(src)
    example = _example(model)
    before = model.config.to_dict()
    advice = "choose another amount or round_to, or prune in memory and save with ns.save"

    def body(tmp: Path) -> tuple[Report, dict]:
        changed: dict = {}
        write_config = _writes_config(src, tmp, before, advice, changed)
        backend = ShardBackend(shards, tmp, max_shard_size=limit, before_write=write_config)
        session = Session(model, example, backend=backend, scorer=backend.scorer(model))
        report = run("prune", session, cfg)
        return report, _finish(src, tmp, backend, changed)

    report, written = _run_into(dst, src, body)
    report.config["mode"] = "hf-sharded"
    report.config["max_shard_size"] = max_shard_size
    report.details.update(hf_compatible=True, **_written_details(written, dst, t0))
    from netsculpt.hf.config import layer_widths

    report.details["layers"] = layer_widths(model)
    return report


# -- layer cuts --------------------------------------------------------------------------------
def cut_pretrained(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    layers: Iterable[int],
    *,
    max_shard_size: int | str | None = None,
) -> Report:
    """Remove the transformer layers at positions ``layers`` from the checkpoint in ``src``.

    A ``drop_layers`` plan applied by the shard backend: the surviving ``<layers path>.{i}.*``
    keys are renumbered, everything else is copied as is; ``num_hidden_layers`` and the
    per-layer fields (``layer_types``, ``max_window_layers`` ...) follow (the same
    ``drop_layers`` surgery as in memory, on the meta model). Which layers to drop is the
    caller's choice (e.g. from ``netsculpt.hf.layers.layer_scores`` on a smaller run); nothing
    is scored here. ``report.plan`` replays in memory with ``ns.apply``.
    """
    from netsculpt.engine.session import Session
    from netsculpt.surgery.hf_layers import check_drop, layer_list

    t0 = time.perf_counter()
    limit = _size_limit(max_shard_size)
    src, dst = Path(src), Path(dst)
    shards = _shards(src)
    _check_dst(src, dst)
    model, _ = _meta_model(src)
    drop = check_drop(len(layer_list(model)[1]), layers)
    plan = Plan("cut", [Action("drop_layers", {"layers": drop})], {"mode": "hf-sharded"})
    before = Snapshot(params=sum(p.numel() for p in model.parameters()))
    config_before = model.config.to_dict()
    advice = "cut in memory and save with ns.save"

    def body(tmp: Path) -> tuple[Report, dict]:
        changed: dict = {}
        write_config = _writes_config(src, tmp, config_before, advice, changed)
        backend = ShardBackend(shards, tmp, max_shard_size=limit, before_write=write_config)
        session = Session(model, None, backend=backend)
        done = session.guarded(lambda: session.apply(plan))
        after = Snapshot(params=sum(p.numel() for p in model.parameters()))
        details = {"removed_layers": drop, "layers": len(layer_list(model)[1])}
        report = session.report("cut", {"mode": "hf-sharded", "layers": drop}, done, before,
                                after, details)  # fmt: skip
        return report, _finish(src, tmp, backend, changed)

    report, written = _run_into(dst, src, body)
    report.details.update(_written_details(written, dst, t0))
    return report


def _written_details(written: dict, dst: Path, t0: float) -> dict:
    """The report fields every streamed write shares: where, how many shards and bytes, which
    config fields changed, which side files were copied, and the wall time."""
    return {
        "output": str(dst),
        "shards": written["shards"],
        "bytes": written["bytes"],
        "config_changes": sorted(written["config"]),
        "copied": written["copied"],
        "seconds": round(time.perf_counter() - t0, 3),
    }
