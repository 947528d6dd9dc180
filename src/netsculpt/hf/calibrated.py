"""Calibrated pruning of a checkpoint folder, one decoder layer at a time (Wanda, SparseGPT).

The model is built from ``config.json`` with its parameters on the **meta device** (buffers
such as rotary frequencies are real: they are computed from the config). The tensors outside
the layer list that run before it (the embeddings) are loaded, the calibration batches run
up to the first decoder layer, and its inputs (hidden states and the other arguments the
model passes every layer: position embeddings, masks, positional or by keyword) are kept. Then for each decoder layer:

1. only its tensors are read from the shards;
2. the kept activations run through it with hooks collecting its Linears' input statistics
   (:mod:`netsculpt.calibration.stats`, the code ``ns.prune`` uses in memory);
3. its actions are planned by :func:`netsculpt.ops.prune_calibrated.stage_actions` and applied
   by the memory backend (the SparseGPT solver in :mod:`netsculpt.surgery.sparsegpt`);
4. the activations run through the *pruned* layer: they are the next layer's inputs;
5. its tensors are written to the output shards and the layer goes back to meta.

Every other tensor is copied as it is (the output head stays dense, as in the references).
In memory, ``ns.prune(model, x, data=..., importance=..., ignore=["lm_head"])`` runs the
same stages in the same order on the same batches: the weights are equal
(``tests/hf/test_calibrated.py``). Peak memory: one layer, the activations (beyond
``activation_budget`` bytes they go to disk), and the layer's Hessians (SparseGPT).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.calibration.batches import first_tensor, run
from netsculpt.calibration.stats import input_stats
from netsculpt.core.errors import InputError
from netsculpt.core.plan import Plan
from netsculpt.engine.backends.shards import ShardWriter, check_shards, file_keys, shapes
from netsculpt.report import Report, Snapshot


@contextlib.contextmanager
def params_on_meta() -> Iterator[None]:
    """Build modules with every parameter on the meta device and buffers where they are."""
    register = nn.Module.register_parameter

    def on_meta(self: nn.Module, name: str, param: Any) -> None:
        register(self, name, param)
        if param is not None:
            p = self._parameters[name]
            self._parameters[name] = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


class Activations:
    """The calibration activations between two layers, one tensor per batch; beyond
    ``budget`` bytes in memory, further ones are written to safetensors files in ``folder``."""

    def __init__(self, budget: int | None, folder: Path) -> None:
        self.budget, self.folder = budget, folder
        self.memory: dict[int, torch.Tensor] = {}
        self.on_disk: dict[int, int] = {}  # batch -> bytes
        self.spilled = 0  # the most bytes on disk at once

    def in_memory(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.memory.values())

    def put(self, i: int, t: torch.Tensor) -> None:
        from safetensors.torch import save_file

        self.memory.pop(i, None)
        size = t.numel() * t.element_size()
        if self.budget is None or self.in_memory() + size <= self.budget:
            self.memory[i] = t
            self.on_disk.pop(i, None)
            return
        save_file({"h": t.contiguous()}, str(self.folder / f"act-{i:06d}.safetensors"))
        self.on_disk[i] = size
        self.spilled = max(self.spilled, sum(self.on_disk.values()))

    def get(self, i: int) -> torch.Tensor:
        if i in self.memory:
            return self.memory[i]
        from safetensors import safe_open

        with safe_open(str(self.folder / f"act-{i:06d}.safetensors"), framework="pt") as f:
            return f.get_tensor("h")


class _Stop(Exception):
    pass


def first_inputs(model: nn.Module, layer: nn.Module, batches: list, acts: Activations) -> list:
    """Run the batches up to ``layer``; keep its hidden-state input per batch (in ``acts``)
    and return the other arguments the model passed it, ``(positional, keywords)`` per batch
    (GPT-2 passes its cache and mask positionally)."""
    calls: list[tuple[tuple, dict]] = []

    def catch(mod: nn.Module, args: tuple, kw: dict) -> None:
        hidden = args[0] if args else kw.pop("hidden_states")
        acts.put(len(calls), hidden.detach())
        calls.append((tuple(args[1:]), {k: v for k, v in kw.items() if k != "hidden_states"}))
        raise _Stop

    h = layer.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        with torch.no_grad():
            for b in batches:
                with contextlib.suppress(_Stop):
                    run(model, b.inputs)
    finally:
        h.remove()
    return calls


def layer_output(layer: nn.Module, hidden: torch.Tensor, call: tuple[tuple, dict]) -> torch.Tensor:
    """``layer``'s hidden-state output for one batch (``call``: from :func:`first_inputs`)."""
    args, kw = call
    return first_tensor(layer(hidden, *args, **kw)).detach()


def _layer_call(layer: nn.Module, acts: Activations, calls: list, replace: bool) -> None:
    """Run ``layer`` on every batch's activations (``replace``: keep its outputs instead)."""
    with torch.no_grad():
        for i, call in enumerate(calls):
            out = layer_output(layer, acts.get(i), call)
            if replace:
                acts.put(i, out)


def load_layer(layer: nn.Module, prefix: str, where: dict[str, Path]) -> None:
    """Read the layer's tensors (``prefix`` + its state-dict names) from the shards into it."""
    from safetensors import safe_open

    want = list(layer.state_dict(keep_vars=True))
    missing = [k for k in want if prefix + k not in where]
    if missing:
        raise InputError(f"the checkpoint does not hold {prefix + missing[0]}")
    sd = {}
    for path in dict.fromkeys(where[prefix + k] for k in want):
        with safe_open(str(path), framework="pt") as f:
            sd.update({k: f.get_tensor(prefix + k) for k in want if where[prefix + k] == path})
    layer.load_state_dict(sd, assign=True)


def prune_layers(
    model: nn.Module,
    shards: list[Path],
    out: Path,
    session: Any,
    rule: dict,
    importance: str,
    *,
    activation_budget: int | None = None,
    max_shard_size: int | None = None,
) -> Report:
    """Prune ``model`` (params on meta, built from the checkpoint's config) layer by layer from
    ``shards`` into ``out``; ``session`` is a Session on ``model`` holding the data."""
    from netsculpt.ops.prune_calibrated import check_rule, stage_actions
    from netsculpt.surgery.hf_config import transformer_layers
    from netsculpt.surgery.masks import make_permanent

    t0 = time.perf_counter()
    check_rule(rule, importance)
    found = transformer_layers(model)
    if found is None:
        raise InputError(f"{type(model).__name__}: found no transformer layer list")
    path, layers = found
    types = getattr(model.config, "layer_types", None)
    if types and len(set(types)) > 1:
        raise InputError(f"layer by layer needs one attention type per layer, got {set(types)}")
    where = file_keys(shards)
    inner = {f"{path}.{i}.": layer for i, layer in enumerate(layers)}
    outer = [k for k in where if not any(k.startswith(p) for p in inner)]
    head = model.get_output_embeddings()
    head_names = {f"{n}.weight" for n, m in model.named_modules() if m is head and n}
    first = {k for k in outer if k not in head_names}  # what runs before the first layer
    load_outer(model, first, where)
    batches = session.batches("layer-by-layer calibrated pruning")
    writer = ShardWriter(out, max_shard_size)  # None: one output shard per layer
    rows, plan = [], Plan("prune", [], {"mode": "hf-sharded-calibrated"})
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".activations-") as tmp:
        acts = Activations(activation_budget, Path(tmp))
        kwargs = first_inputs(model, layers[0], batches, acts)
        for i, layer in enumerate(layers):
            t1 = time.perf_counter()
            prefix = f"{path}.{i}."
            load_layer(layer, prefix, where)
            layer.eval()
            lin = {prefix + n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
            stats = input_stats(
                {k[:-1] if k.endswith(".") else k: m for k, m in lin.items()},
                lambda layer=layer: _layer_call(layer, acts, kwargs, False),
                hessian=importance == "sparsegpt",
            )
            weights = {f"{k}.weight": m.weight for k, m in lin.items()}
            actions = stage_actions(weights, stats, rule, importance, i)
            done = session.apply(Plan("prune", actions)).actions
            for a in done:
                a.args.pop("_hessian", None)
                a.args.pop("_mask", None)
            plan.actions += done
            _layer_call(layer, acts, kwargs, True)
            make_permanent(model)  # the masks of a written layer are not needed
            zeros = sum(int((m.weight == 0).sum()) for m in lin.values())
            total = sum(m.weight.numel() for m in lin.values())
            for k, t in layer.state_dict().items():
                writer.add(prefix + k, t.detach())
            layer.to("meta")
            if max_shard_size is None:
                writer.flush()
            rows.append({"layer": i, "seconds": round(time.perf_counter() - t1, 3),
                         "sparsity": zeros / total if total else 0.0})  # fmt: skip
        spilled = acts.spilled
    copy_outer(outer, where, writer)
    files = writer.finish()
    check_shards(shapes(model), files)
    params = sum(p.numel() for p in model.parameters())
    zeroed = sum(a.args.get("zeros", 0) for a in plan.actions)
    details = {
        "layers": rows,
        "weights_zeroed": zeroed,
        "sparsity": sum(r["sparsity"] for r in rows) / len(rows),
        "activations_spilled_bytes": spilled,
        "batches": len(batches),
        "shards": len(files),
        "bytes": writer.total,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return Report(op="prune", config={"mode": "hf-sharded-calibrated", "importance": importance,
                  **rule}, before=Snapshot(params=params), after=Snapshot(params=params),
                  details=details, notes=session.notes, plan=plan)  # fmt: skip


def load_outer(model: nn.Module, keys: set[str], where: dict[str, Path]) -> None:
    """Load the stored tensors ``keys`` (full names) into ``model``."""
    from safetensors import safe_open

    params = dict(model.named_parameters(remove_duplicate=False))
    for path in dict.fromkeys(where[k] for k in keys):
        with safe_open(str(path), framework="pt") as f:
            for k in keys:
                if where[k] == path and k in params:
                    mod_path, _, attr = k.rpartition(".")
                    mod = model.get_submodule(mod_path)
                    setattr(mod, attr, nn.Parameter(f.get_tensor(k), requires_grad=False))


def copy_outer(keys: list[str], where: dict[str, Path], writer: ShardWriter) -> None:
    from safetensors import safe_open

    for path in dict.fromkeys(where[k] for k in keys):
        with safe_open(str(path), framework="pt") as f:
            for k in keys:
                if where[k] == path:
                    writer.add(k, f.get_tensor(k))


def prune_streamed(
    src: str | Path,
    dst: str | Path,
    *,
    data: Any,
    importance: str,
    sparsity: float | None = None,
    pattern: str | None = None,
    activation_budget: int | None = None,
    max_batches: int = 16,
    batch_size: int | None = None,
    max_shard_size: int | str | None = None,
) -> Report:
    """:func:`netsculpt.hf.prune_pretrained` with ``importance="wanda"`` or ``"sparsegpt"``:
    see the module docstring. ``sparsity`` (per layer) or ``pattern`` (N:M)."""
    from netsculpt.engine.session import Session
    from netsculpt.hf import sharded as S
    from netsculpt.ops.prune_unstructured import parse_pattern

    t0 = time.perf_counter()
    if data is None:
        raise InputError(f"importance='{importance}' needs calibration data (data=, --data)")
    if (sparsity is None) == (pattern is None):
        raise InputError(f"importance='{importance}' prunes to sparsity= or pattern= (one of them)")
    if sparsity is not None and not 0 < sparsity < 1:
        raise InputError(f"sparsity must be in (0, 1), got {sparsity}")
    if pattern is not None:
        parse_pattern(pattern)
    if activation_budget is not None and activation_budget < 0:
        raise InputError(f"activation_budget must be >= 0 bytes, got {activation_budget}")
    rule = {"sparsity": sparsity} if sparsity is not None else {"pattern": pattern}
    limit = S._size_limit(max_shard_size)
    src, dst = Path(src), Path(dst)
    shards = S._shards(src)
    S._check_dst(src, dst)
    meta, config = S._meta_model(src)
    with params_on_meta():
        model = type(meta)(config).eval()
    del meta
    session = Session(model, None, data=data, max_batches=max_batches, batch_size=batch_size)

    def body(tmp: Path) -> Report:
        rep = prune_layers(model, shards, tmp, session, rule, importance,
                           activation_budget=activation_budget, max_shard_size=limit)  # fmt: skip
        shutil.copy2(src / "config.json", tmp / "config.json")
        rep.details["copied"] = S._copy_side_files(src, tmp)
        return rep

    report = S._run_into(dst, src, body)
    report.details.update(output=str(dst), seconds=round(time.perf_counter() - t0, 3))
    report.config.update(max_batches=max_batches, activation_budget=activation_budget)
    return report
