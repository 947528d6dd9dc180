"""Structured pruning and layer removal of a checkpoint folder from one calibrated pass.

``netsculpt.hf.prune_pretrained(src, dst, data=..., importance="activation", amount=...,
remove_layers=..., layer_criterion=...)``. Two models are built from ``config.json``: the
planning model, entirely on the meta device (its structure graph, groups, params and MACs
are the real model's), and the running model, whose parameters are on meta but whose buffers
(rotary frequencies) are real. One pass over the running model, a decoder layer at a time
(:class:`LayerPass`):

1. the embeddings run on the calibration batches up to the first decoder layer; its inputs
   are kept (beyond ``activation_budget`` bytes on disk) and the embeddings go back to meta;
2. for each decoder layer: only its tensors are read; the kept activations run through it
   with the hooks of ``importance="activation"`` on the modules of its head / MLP groups
   (:func:`netsculpt.importance.channels.norm_hooks`, the code ``ns.prune`` uses in memory);
   its groups' scores are made from those norms and its weights
   (:func:`~netsculpt.importance.channels.activation_scores`); the layer's block influence or
   angular distance is measured on its input and output hidden states
   (:func:`netsculpt.hf.layers.similarity`, the code of :func:`~netsculpt.hf.layers.layer_scores`);
   its outputs become the next layer's inputs, and it goes back to meta.

Every score is that of the dense model, as in memory, where ``netsculpt.hf.prune(model, x,
data=..., importance="activation")`` scores every group before anything is removed and
``netsculpt.hf.layers.layer_scores`` scores the layers of the model it is given. The scores
reach the prune op through the session's ``scorer``: the op plans as in memory (uniform
counts, so the config describes the result), the shard backend applies the plan to the meta
model, then a ``drop_layers`` action for the ``remove_layers`` lowest-scoring layers, and
writes the checkpoint once, one tensor at a time. Peak memory: one layer plus the
activations.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.core.plan import Action, Plan
from netsculpt.hf.calibrated import (
    Activations,
    first_inputs,
    layer_output,
    load_layer,
    load_outer,
    params_on_meta,
)
from netsculpt.hf.layers import lowest, similarity

LAYER_CRITERIA = ("influence", "angular")  # the similarity criteria of netsculpt.hf.layers


class LayerPass:
    """The calibrated pass over a checkpoint's decoder layers, run once (:meth:`run`):
    ``scores`` (group id -> activation scores of the groups given) and ``layer_scores``
    (position -> mean influence / angular distance; empty without a ``criterion``).
    ``batches()`` gives the calibration batches (the session's, read when the pass runs)."""

    def __init__(self, runner: nn.Module, shards: list[Path], batches: Any, *,
                 criterion: str | None, budget: int | None, folder: Path) -> None:  # fmt: skip
        from netsculpt.engine.backends.shards import file_keys
        from netsculpt.surgery.hf_config import transformer_layers

        found = transformer_layers(runner)
        if found is None:
            raise InputError(f"{type(runner).__name__}: found no transformer layer list")
        self.runner, self.path, self.layers = runner, found[0], found[1]
        self.where = file_keys(shards)
        self.read, self.criterion = batches, criterion
        self.batches: list = []
        self.budget, self.folder = budget, folder
        self.scores: dict[int, np.ndarray] = {}
        self.layer_scores: dict[int, float] = {}
        self.rows: list[dict] = []
        self.spilled = 0
        self.done = False

    def scorer(self, fallback: Any):
        """``scorer(name, groups)`` for the planning session: ``activation`` from this pass,
        any other name from ``fallback`` (the shard backend's weight magnitudes)."""

        def score(name: str, groups: list) -> dict[int, np.ndarray]:
            if name != "activation":
                return fallback(name, groups)
            self.run(groups)
            return {g.id: self.scores[g.id] for g in groups if g.id in self.scores}

        return score

    def _by_layer(self, groups: list) -> dict[int, list]:
        pattern = re.compile(rf"^{re.escape(self.path)}\.(\d+)\.")
        out: dict[int, list] = defaultdict(list)
        for g in groups:
            found = {pattern.match(m.module + ".") for m in g.members}
            at = {int(m.group(1)) if m else None for m in found}
            if len(at) != 1 or None in at:
                raise InputError(
                    f"importance='activation' shard by shard scores groups inside one decoder "
                    f"layer (heads, mlp); {g.describe()} spans more; leave 'hidden' out of "
                    "targets, or prune in memory"
                )
            out[at.pop()].append(g)
        return out

    def run(self, groups: list) -> None:
        """The pass (once): the scores of ``groups`` and, with a criterion, of every layer."""
        from netsculpt.importance.channels import activation_scores, consumers, norm_hooks

        if self.done:
            return
        by_layer = self._by_layer(groups)
        inner = tuple(f"{self.path}.{i}." for i in range(len(self.layers)))
        head = self.runner.get_output_embeddings()
        head_names = {f"{n}.weight" for n, m in self.runner.named_modules() if m is head and n}
        first = {k for k in self.where if not k.startswith(inner) and k not in head_names}
        load_outer(self.runner, first, self.where)
        acts = Activations(self.budget, self.folder)
        self.batches = list(self.read())
        calls = first_inputs(self.runner, self.layers[0], self.batches, acts)
        _to_meta(self.runner, first)  # the embeddings are not needed again
        sums, counts = [0.0] * len(self.layers), [0] * len(self.layers)
        for i, layer in enumerate(self.layers):
            t1 = time.perf_counter()
            prefix = f"{self.path}.{i}."
            load_layer(layer, prefix, self.where)
            layer.eval()
            mine = by_layer.get(i, [])
            sq: dict[str, torch.Tensor] = {}
            handles = norm_hooks({p: self.runner.get_submodule(p) for p in consumers(mine)}, sq)
            try:
                with torch.no_grad():
                    for b, call in enumerate(calls):
                        h = acts.get(b)
                        out = layer_output(layer, h, call)
                        if self.criterion is not None and h.shape == out.shape:
                            total, n = similarity(h, out, self.criterion)
                            sums[i], counts[i] = sums[i] + total, counts[i] + n
                        acts.put(b, out)
            finally:
                for hd in handles:
                    hd.remove()
            norms = {k: v.sqrt() for k, v in sq.items()}
            tensors = {prefix + k: t for k, t in layer.state_dict(keep_vars=True).items()}
            self.scores.update(activation_scores(mine, norms, tensors))
            layer.to("meta")
            self.rows.append({"layer": i, "seconds": round(time.perf_counter() - t1, 3)})
        if self.criterion is not None:
            self.layer_scores = {i: sums[i] / max(counts[i], 1) for i in range(len(sums))}
            for row in self.rows:
                row[self.criterion] = self.layer_scores[row["layer"]]
        self.spilled, self.done = acts.spilled, True


def _to_meta(model: nn.Module, keys: set[str]) -> None:
    params = dict(model.named_parameters(remove_duplicate=False))
    for k in keys:
        if k in params:
            mod_path, _, attr = k.rpartition(".")
            setattr(model.get_submodule(mod_path), attr, nn.Parameter(params[k].to("meta"),
                    requires_grad=False))  # fmt: skip


def layer_count(remove_layers: int | float, n: int) -> int:
    """How many of ``n`` layers ``remove_layers`` (a count, or a fraction in (0, 1)) removes.

    >>> layer_count(2, 8), layer_count(0.25, 8), layer_count(0.1, 8)
    (2, 2, 1)
    """
    if isinstance(remove_layers, bool) or not isinstance(remove_layers, (int, float)):
        raise InputError(f"remove_layers must be a count or a fraction, got {remove_layers!r}")
    if isinstance(remove_layers, float) and 0 < remove_layers < 1:
        count = max(1, round(remove_layers * n))
    elif float(remove_layers).is_integer() and remove_layers >= 1:
        count = int(remove_layers)
    else:
        raise InputError(f"remove_layers must be a count >= 1 or a fraction in (0, 1), got "
                         f"{remove_layers}")  # fmt: skip
    if count >= n:
        raise InputError(f"remove_layers={remove_layers} removes {count} of {n} layers; "
                         "at least one must stay")  # fmt: skip
    return count


def prune_structured(
    src: Path,
    dst: Path,
    *,
    data: Any,
    options: dict[str, Any],
    remove_layers: int | float | None,
    layer_criterion: str,
    activation_budget: int | None,
    max_batches: int,
    max_shard_size: int | None,
) -> Any:
    """See the module docstring. ``options``: the prune op's keywords (``prune_options``);
    ``amount=0`` with ``remove_layers`` removes layers only."""
    from netsculpt.engine import registry
    from netsculpt.engine.backends.shards import ShardBackend
    from netsculpt.engine.session import Session
    from netsculpt.engine.verbs import run
    from netsculpt.hf import sharded as S
    from netsculpt.surgery.hf_layers import layer_list

    t0 = time.perf_counter()
    importance = options["importance"]
    if data is None:
        what = "importance='activation'" if importance == "activation" else "remove_layers="
        raise InputError(f"{what} shard by shard needs calibration data (data=, --data)")
    if layer_criterion not in LAYER_CRITERIA:
        raise InputError(f"layer_criterion must be one of {LAYER_CRITERIA} one layer at a time "
                         f"(ppl ablates the whole model), got {layer_criterion!r}")  # fmt: skip
    if activation_budget is not None and activation_budget < 0:
        raise InputError(f"activation_budget must be >= 0 bytes, got {activation_budget}")
    widths = options["amount"] != 0
    cfg = registry.get("prune").config(None, options) if widths else None
    shards = S._shards(src)
    S._check_dst(src, dst)
    model, config = S._meta_model(src)
    n_layers = len(layer_list(model)[1])
    count = layer_count(remove_layers, n_layers) if remove_layers is not None else 0
    if not widths and not count:
        raise InputError("amount=0 prunes nothing: pass amount > 0 or remove_layers=")
    with params_on_meta():
        runner = type(model)(config).eval()
    before_cfg = model.config.to_dict()
    advice = "choose another amount or round_to, or prune in memory and save with ns.save"

    def body(tmp: Path) -> Any:
        changed: dict = {}
        write_config = S._writes_config(src, tmp, before_cfg, advice, changed)
        backend = ShardBackend(shards, tmp, max_shard_size=max_shard_size,
                               before_write=write_config, deferred=True)  # fmt: skip
        with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".activations-") as act_dir:
            scan = LayerPass(runner, shards, lambda: session.batches("calibrated pruning"),
                             criterion=layer_criterion if count else None,
                             budget=activation_budget, folder=Path(act_dir))  # fmt: skip
            session = Session(model, S._example(model), data=data, backend=backend,
                              scorer=scan.scorer(backend.scorer(model)),
                              ignore=getattr(cfg, "ignore", ()), max_batches=max_batches,
                              seed=getattr(cfg, "seed", 0))  # fmt: skip

            def edit() -> Any:
                if widths:
                    report = run("prune", session, cfg)
                else:
                    before = session.snapshot()
                    report = session.report("prune", {}, Plan("prune", []), before, before)
                if count:
                    scan.run([])
                    drop = sorted(lowest(scan.layer_scores, count))
                    action = Action("drop_layers", {"layers": drop, "criterion": layer_criterion,
                                    "scores": [scan.layer_scores[i] for i in drop]})  # fmt: skip
                    session.apply(Plan("prune", [action]))
                    report.plan.actions.append(action)
                    report.after = session.snapshot()
                    report.details["removed_layers"] = drop
                backend.write(session)
                return report

            report = session.guarded(edit)
        report.details.update(S._written_details(S._finish(src, tmp, backend, changed), dst, t0))
        report.details["pass"] = {"layers": scan.rows, "batches": len(scan.batches),
                                  "activations_spilled_bytes": scan.spilled}  # fmt: skip
        return report

    report = S._run_into(dst, src, body)
    report.config.update(mode="hf-sharded-calibrated", importance=importance,
                         remove_layers=remove_layers, layer_criterion=layer_criterion,
                         activation_budget=activation_budget, max_batches=max_batches)  # fmt: skip
    report.details.update(hf_compatible=True, seconds=round(time.perf_counter() - t0, 3))
    from netsculpt.hf.config import layer_widths

    report.details["layers"] = layer_widths(model)
    return report


__all__ = ["LAYER_CRITERIA", "LayerPass", "layer_count", "prune_structured"]
