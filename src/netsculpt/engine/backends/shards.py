"""The shard backend: applies a Plan to a checkpoint of safetensors shards, one tensor at a time.

The session's model is the checkpoint's architecture with no weights: built on the **meta
device**, so its structure graph, its groups and its params / MACs are those of the real model.
Ops plan on it exactly as in memory; the weights they need for scores come from the shards
(:meth:`ShardBackend.scorer`: L1 / L2 magnitudes, :func:`streamed_scores`). ``apply``:

1. resolves each action on the meta model as it is then: ``remove_channels`` into the positions
   each stored tensor loses (per dim, tied names merged onto the stored key), ``drop_layers``
   into the new key of each stored tensor of the layer list (or none: dropped);
2. applies the action to the meta model through the memory backend's appliers (surgery on meta:
   module attributes and the config follow, shapes only; the meta model is not run);
3. calls ``before_write(session, expected)``, where the caller writes and checks what is not a
   tensor (a config file), before any shard is written;
4. streams every tensor of the source shards once, cuts it with
   :func:`netsculpt.surgery.slicing.slice_tensor` (the rule surgery uses in memory), checks its
   shape against the edited meta model, renames it, and writes new shards into ``out``.

Peak memory: one source tensor plus the output shard being filled (at most ``max_shard_size``
bytes, or the size of the source shard it comes from), never the whole model.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.core.errors import InputError, VerificationError
from netsculpt.core.plan import Action, Plan
from netsculpt.core.progress import track
from netsculpt.engine.backends.memory import APPLIERS, checkpoint, resolve_channels

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
MAGNITUDE = {"l1": 1, "l2": 2}


# -- reading -------------------------------------------------------------------------------------
def shard_keys(f: Any) -> list[str]:
    """The tensor names of an open safetensors file (``safe_open`` objects do not iterate)."""
    return list(f.keys())


def file_keys(shards: Iterable[Path]) -> dict[str, Path]:
    """``stored key -> shard`` over every shard (headers only)."""
    from safetensors import safe_open

    where: dict[str, Path] = {}
    for path in track(list(shards), "index shards"):
        with safe_open(str(path), framework="pt") as f:
            for key in shard_keys(f):
                where[key] = path
    return where


def tensors(shards: Iterable[Path]) -> Iterator[tuple[Path, str, torch.Tensor]]:
    """``(shard, key, tensor)`` for every stored tensor, read one at a time, in shard order."""
    from safetensors import safe_open

    for path in shards:
        with safe_open(str(path), framework="pt") as f:
            for key in shard_keys(f):
                yield path, key, f.get_tensor(key)


def aliases(model: nn.Module) -> dict[str, list[str]]:
    """Every name of each parameter / buffer -> all names of the same tensor (tied weights)."""
    by_id: dict[int, list[str]] = defaultdict(list)
    for n, t in list(model.named_parameters(remove_duplicate=False)) + list(
        model.named_buffers(remove_duplicate=False)
    ):
        by_id[id(t)].append(n)
    return {n: names for names in by_id.values() for n in names}


def stored_key(name: str, names: dict[str, list[str]], stored: Any) -> str | None:
    """The key under which a model tensor is stored (a tied weight is stored once)."""
    if name in stored:
        return name
    return next((a for a in names.get(name, ()) if a in stored), None)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """``state_dict`` name -> shape (what a checkpoint of the model holds)."""
    return {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}


def streamed_scores(
    groups: list, shards: list[Path], names: dict[str, list[str]], p: int
) -> dict[int, np.ndarray]:
    """L1 (``p=1``) or L2 (``p=2``) channel scores of ``groups``, reading one tensor at a time.

    Each member's per-position reduction and the per-group sum are the in-memory estimator's
    own (:mod:`netsculpt.importance.channels`), in the same order, so the scores are equal.
    """
    from safetensors import safe_open

    from netsculpt.importance.channels import per_position, scatter

    stored = file_keys(shards)
    fn = torch.abs if p == 1 else torch.square
    wanted: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # key -> (gid, i, dim)
    for g in groups:
        for i, m in enumerate(g.members):
            if m.kind != "param":
                continue
            key = stored_key(m.tensor, names, stored)
            if key is None:
                raise InputError(
                    f"the checkpoint does not hold {m.tensor} (the config's model has it)"
                )
            wanted[key].append((g.id, i, m.dim))
    values: dict[tuple[int, int], np.ndarray] = {}
    for path in track(shards, "score shards"):
        with safe_open(str(path), framework="pt") as f:
            for key in shard_keys(f):
                if key in wanted:  # only the tensors the groups read
                    t = f.get_tensor(key)
                    for gid, i, dim in wanted[key]:
                        values[(gid, i)] = per_position(t, dim, fn)
                    del t
    out = {}
    for g in groups:
        s = scatter(
            g, [(m, values[(g.id, i)]) for i, m in enumerate(g.members) if (g.id, i) in values]
        )
        out[g.id] = np.sqrt(s) if p == 2 else s
    return out


# -- writing -------------------------------------------------------------------------------------
class ShardWriter:
    """Collects tensors and writes them as safetensors shards of at most ``limit`` bytes
    (``limit`` None: a shard is flushed when the caller says so)."""

    def __init__(self, folder: Path, limit: int | None):
        self.folder, self.limit = folder, limit
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.parts: list[tuple[Path, list[str]]] = []
        self.total = 0

    def add(self, key: str, t: torch.Tensor) -> None:
        n = t.numel() * t.element_size()
        if self.limit is not None and self.pending and self.pending_bytes + n > self.limit:
            self.flush()
        self.pending[key] = t.contiguous()
        self.pending_bytes += n
        self.total += n

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        path = self.folder / f".part-{len(self.parts):05d}.safetensors"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        self.parts.append((path, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> list[Path]:
        """Name the shards as ``save_pretrained`` does and write the index (several shards)."""
        self.flush()
        n = len(self.parts)
        names = (
            [SINGLE] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        )
        weight_map = {}
        for (path, keys), name in zip(self.parts, names):
            path.rename(self.folder / name)
            weight_map.update(dict.fromkeys(keys, name))
        if n > 1:
            index = {
                "metadata": {"total_size": self.total},
                "weight_map": dict(sorted(weight_map.items())),
            }
            (self.folder / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return [self.folder / name for name in names]


def check_shards(expected: dict[str, tuple[int, ...]], files: list[Path]) -> None:
    """Every written tensor has the edited meta model's shape (read from the headers)."""
    from safetensors import safe_open

    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in shard_keys(f):
                shape = tuple(f.get_slice(key).get_shape())
                if key in expected and shape != expected[key]:
                    raise VerificationError(
                        f"{key}: written {shape}, the edited model has {expected[key]}"
                    )


# -- the backend ---------------------------------------------------------------------------------
class ShardBackend:
    """Apply a plan to the meta model of a checkpoint and write the edited checkpoint.

    ``shards``: the source files in order; ``out``: the folder the new shards go to;
    ``max_shard_size``: bytes per output shard (None: one output shard per source shard);
    ``before_write(session, expected)``: called once the meta model is edited, before any
    shard is written (``expected``: the edited model's state-dict shapes). ``deferred``:
    ``apply`` only edits the meta model and records the cuts, so that several plans (a prune,
    then a layer cut) go into one checkpoint, written by :meth:`write`.
    """

    name = "shards"

    def __init__(
        self,
        shards: Iterable[Path],
        out: Path,
        *,
        max_shard_size: int | None = None,
        before_write: Callable[[Any, dict[str, tuple[int, ...]]], None] | None = None,
        deferred: bool = False,
    ) -> None:
        self.shards = [Path(s) for s in shards]
        self.out = Path(out)
        self.limit = max_shard_size
        self.before_write = before_write
        self.deferred = deferred
        self.stored = file_keys(self.shards)
        self._name: dict[str, str | None] = {k: k for k in self.stored}  # None: dropped
        self._cuts: dict[str, list[dict[int, np.ndarray]]] = defaultdict(list)
        self.expected: dict[str, tuple[int, ...]] = {}
        self.written: dict[str, Any] = {}

    # -- scores ----------------------------------------------------------------------------------
    def scorer(self, model: nn.Module) -> Callable[[str, list], dict]:
        """``scorer(name, groups)`` for a :class:`~netsculpt.engine.session.Session` on the
        meta ``model``: weight magnitudes (``l1`` / ``l2``) streamed from the shards."""

        def score(name: str, groups: list) -> dict[int, np.ndarray]:
            if name not in MAGNITUDE:
                raise InputError(
                    f"importance {name!r} is not available shard by shard: it needs forward "
                    "passes over the loaded model; use l1 or l2 here, or prune in memory"
                )
            return streamed_scores(groups, self.shards, aliases(model), MAGNITUDE[name])

        return score

    # -- Backend protocol ------------------------------------------------------------------------
    def apply(self, session: Any, plan: Plan, **options: Any) -> Plan:
        """Edit the meta model, then write the edited checkpoint (once per backend; with
        ``deferred``, :meth:`write` does)."""
        if self.written:
            raise InputError("the shard backend writes one checkpoint: apply one plan")
        done = Plan(plan.op, [], dict(plan.config))
        for kind, run in groupby(plan.actions, key=lambda a: a.kind):
            actions = list(run)
            if kind == "remove_channels":
                self._remove_channels(session, actions)
            elif kind == "drop_layers":
                self._drop_layers(session, actions)
            else:
                raise InputError(
                    f"plan: the shard backend cannot apply {kind!r} actions "
                    "(remove_channels, drop_layers); apply it in memory"
                )
            session.stale()
            done.actions.extend(actions)
        session.refused = {}  # nothing is left out: the written config is the check
        if not self.deferred:
            self.write(session)
        return done

    def write(self, session: Any) -> None:
        """Write the checkpoint of the meta model as the applied plans left it."""
        if self.written:
            raise InputError("the shard backend writes one checkpoint: it is written")
        self.expected = shapes(session.model)
        if self.before_write is not None:
            self.before_write(session, self.expected)
        self._write()

    def checkpoint(self, session: Any) -> Callable[[], None]:
        """Undo for the meta model, the planned cuts and renames, and any shards written."""
        undo_model = checkpoint(session.model)
        names, cuts = dict(self._name), {k: list(v) for k, v in self._cuts.items()}
        written = self.written

        def undo() -> None:
            undo_model()
            self._name, self._cuts = names, defaultdict(list, cuts)
            if self.written is not written:
                for path in self.written.get("paths", ()):
                    path.unlink(missing_ok=True)
                self.written = written

        return undo

    # -- actions ---------------------------------------------------------------------------------
    def _stored_names(self, model: nn.Module) -> dict[str, str]:
        """``model tensor name -> stored key`` for the model as it is now."""
        now = {cur: key for key, cur in self._name.items() if cur is not None}
        names = aliases(model)
        out = {}
        for name in names:
            found = stored_key(name, names, now)
            if found is not None:
                out[name] = now[found]
        return out

    def _remove_channels(self, session: Any, actions: list[Action]) -> None:
        from netsculpt.surgery.slicing import tensor_positions

        graph = session.graph
        positions = tensor_positions(graph, resolve_channels(session, actions))
        stored = self._stored_names(session.model)
        APPLIERS["remove_channels"](session, actions, safe=False, verify=False)
        persistent = shapes(session.model)
        cut: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
        for (name, dim), pos in positions.items():
            key = stored.get(name)
            if key is None:
                if name not in persistent:  # a non-persistent buffer: never saved, rebuilt
                    continue
                raise InputError(f"the checkpoint does not hold {name} (the config's model has it)")
            prev = cut[key].get(dim)
            cut[key][dim] = pos if prev is None else np.union1d(prev, pos)
        for key, dims in cut.items():
            self._cuts[key].append(dims)

    def _drop_layers(self, session: Any, actions: list[Action]) -> None:
        from netsculpt.surgery.hf_layers import check_drop, layer_list

        for a in actions:
            path, layers = layer_list(session.model)
            n = len(layers)
            drop = check_drop(n, a.args["layers"])
            APPLIERS["drop_layers"](session, [a])
            new_index = {i: j for j, i in enumerate(i for i in range(n) if i not in drop)}
            pattern = re.compile(rf"^{re.escape(path)}\.(\d+)\.")
            for key, cur in self._name.items():
                m = pattern.match(cur) if cur is not None else None
                if m is not None:
                    i = int(m.group(1))
                    new = new_index.get(i)
                    self._name[key] = None if new is None else f"{path}.{new}.{cur[m.end() :]}"

    # -- streaming -------------------------------------------------------------------------------
    def _edit(self, key: str, t: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        from netsculpt.surgery.slicing import slice_tensor

        name = self._name.get(key, key)
        if name is None:
            return None
        for dims in self._cuts.get(key, ()):
            t = slice_tensor(t, dims, key)
        want = self.expected.get(name)
        if want is not None and tuple(t.shape) != want:
            raise VerificationError(
                f"{key}: sliced to {tuple(t.shape)}, the edited model has {want}"
            )
        return name, t

    def _write(self) -> None:
        """Read every tensor once, cut / rename / drop it, write the result into ``out``."""
        writer = ShardWriter(self.out, self.limit)
        current = None
        for path, key, t in tensors(track(self.shards, "write shards")):
            if writer.limit is None and current is not None and path != current:
                writer.flush()  # one output shard per source shard
            current = path
            out = self._edit(key, t)
            if out is not None:
                writer.add(*out)
            del t
        files = writer.finish()
        paths = files + ([self.out / INDEX] if len(files) > 1 else [])
        self.written = {"files": files, "paths": paths, "shards": len(files), "bytes": writer.total}
