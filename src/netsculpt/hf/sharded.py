"""Prune or cut a Hugging Face checkpoint folder shard by shard, without loading the model.

The structure graph never needs weights: the model is built from ``config.json`` on the
**meta device** and exported there. Magnitude scores (L1 / L2) need only the weights, one
tensor at a time, so :func:`prune_pretrained` streams them out of the ``*.safetensors`` shards;
the plan, the surgery (on the meta model: it fixes module attributes and the config with the
same code as in memory) and the config are exactly those of :func:`netsculpt.hf.prune` with
``uniform=True``. Then every tensor is read once more, sliced, and written to new shards.

Peak memory: one source tensor plus the output shard being filled (at most ``max_shard_size``,
or the size of the source shard it comes from), never the whole model. Everything is written
into a temporary folder next to ``dst`` that is renamed to ``dst`` only after the written shapes
and the new config were checked against the meta model; on any error nothing is left behind.

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
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.core.progress import track
from netsculpt.errors import InputError, VerificationError
from netsculpt.report import Report, Snapshot, layer_sizes

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
MAGNITUDE = ("l1", "l2")
# weight files of other formats: never copied next to the new shards (they would be stale)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")


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


def _keys(f) -> list[str]:
    """The tensor names of an open safetensors file (``safe_open`` objects do not iterate)."""
    return list(f.keys())


def _file_keys(shards: list[Path]) -> dict[str, Path]:
    from safetensors import safe_open

    where: dict[str, Path] = {}
    for path in track(shards, "index shards"):
        with safe_open(str(path), framework="pt") as f:
            for key in _keys(f):
                where[key] = path
    return where


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
    params = inspect.signature(model.forward).parameters
    if "input_ids" not in params:
        raise InputError(
            f"{type(model).__name__}: shard-by-shard pruning supports text models "
            "(forward takes input_ids)"
        )
    ex: dict[str, Any] = {"input_ids": torch.zeros(1, 8, dtype=torch.long, device="meta")}
    if "use_cache" in params:
        ex["use_cache"] = False
    return ex


def _aliases(model: nn.Module) -> dict[str, list[str]]:
    """Every name of each parameter / buffer -> all names of the same tensor (tied weights)."""
    by_id: dict[int, list[str]] = defaultdict(list)
    for n, t in list(model.named_parameters(remove_duplicate=False)) + list(
        model.named_buffers(remove_duplicate=False)
    ):
        by_id[id(t)].append(n)
    return {n: names for names in by_id.values() for n in names}


def _file_key(name: str, aliases: dict[str, list[str]], files: dict[str, Path]) -> str | None:
    """The key under which a model tensor is stored (a tied weight is stored once)."""
    if name in files:
        return name
    return next((a for a in aliases.get(name, ()) if a in files), None)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}


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


class _ShardWriter:
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


def _stream(
    shards: list[Path],
    writer: _ShardWriter,
    edit: Callable[[str, torch.Tensor], tuple[str, torch.Tensor] | None],
) -> None:
    """Read every tensor once, pass it through ``edit`` (None drops it), write the result."""
    from safetensors import safe_open

    for path in track(shards, "write shards"):
        with safe_open(str(path), framework="pt") as f:
            for key in _keys(f):
                out = edit(key, f.get_tensor(key))
                if out is not None:
                    writer.add(*out)
        if writer.limit is None:
            writer.flush()  # one output shard per source shard


def _copy_side_files(src: Path, dst: Path) -> list[str]:
    """Tokenizer, generation config, README ...: every plain file that is not weights/config."""
    copied = []
    for p in sorted(src.iterdir()):
        if not p.is_file() or p.name in ("config.json", INDEX) or p.name.endswith(".index.json"):
            continue
        if p.name.endswith(_WEIGHT_SUFFIXES):
            continue
        shutil.copy2(p, dst / p.name)
        copied.append(p.name)
    return copied


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
        rebuilt = _shapes(_meta_model(tmp)[0])
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


def _check_shards(expected: dict[str, tuple[int, ...]], files: list[Path]) -> None:
    """Every written tensor has the edited meta model's shape (read from the headers)."""
    from safetensors import safe_open

    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in _keys(f):
                shape = tuple(f.get_slice(key).get_shape())
                if key in expected and shape != expected[key]:
                    raise VerificationError(
                        f"{key}: written {shape}, the edited model has {expected[key]}"
                    )


def _write(
    src: Path,
    tmp: Path,
    shards: list[Path],
    limit: int | None,
    edit: Callable[[str, torch.Tensor], tuple[str, torch.Tensor] | None],
    config: tuple[dict, dict],
    expected: dict[str, tuple[int, ...]],
    advice: str,
) -> dict[str, Any]:
    """config.json (checked), then the shards (checked), then the side files, into ``tmp``."""
    changed = _write_config(src, tmp, *config)
    _check_config(tmp, expected, advice)
    writer = _ShardWriter(tmp, limit)
    _stream(shards, writer, edit)
    out_files = writer.finish()
    _check_shards(expected, out_files)
    copied = _copy_side_files(src, tmp)
    return {"shards": len(out_files), "bytes": writer.total, "config": changed, "copied": copied}


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


# -- pruning -----------------------------------------------------------------------------------
def streamed_scores(
    groups: list, shards: list[Path], aliases: dict[str, list[str]], p: int
) -> dict[int, np.ndarray]:
    """L1 (``p=1``) or L2 (``p=2``) channel scores of ``groups``, reading one tensor at a time.

    Each member's per-position reduction and the per-group sum are the in-memory estimator's
    own (:mod:`netsculpt.importance.channels`), in the same order, so the scores are equal.
    """
    from safetensors import safe_open

    from netsculpt.importance.channels import per_position, scatter

    files = _file_keys(shards)
    fn = torch.abs if p == 1 else torch.square
    wanted: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # key -> (gid, i, dim)
    for g in groups:
        for i, m in enumerate(g.members):
            if m.kind != "param":
                continue
            key = _file_key(m.tensor, aliases, files)
            if key is None:
                raise InputError(
                    f"the checkpoint does not hold {m.tensor} (the config's model has it)"
                )
            wanted[key].append((g.id, i, m.dim))
    values: dict[tuple[int, int], np.ndarray] = {}
    for path in track(shards, "score shards"):
        with safe_open(str(path), framework="pt") as f:
            for key in _keys(f):
                if key in wanted:
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


def prune_pretrained(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    amount: float = 0.3,
    targets: Iterable[str] = ("heads", "mlp"),
    importance: str = "l2",
    global_: bool = False,
    round_to: int | None = None,
    max_shard_size: int | str | None = None,
) -> Report:
    """Prune heads / MLP channels / hidden size of the checkpoint in ``src`` into ``dst``.

    Same plan as ``netsculpt.hf.prune(model, ..., uniform=True)`` on the loaded model, without
    loading it: scores by weight magnitude (``importance`` ``"l1"`` or ``"l2"``) read one tensor
    at a time; shards written one at a time. ``max_shard_size`` (bytes or ``"5GB"``) re-packs
    the output; by default each source shard gives one (smaller) output shard. ``dst`` loads
    with ``from_pretrained``; tokenizer and generation files are copied.
    """
    from netsculpt.graph import build_graph
    from netsculpt.hf.config import layer_widths
    from netsculpt.hf.structured import check_amount_targets, plan_parts, removed_counts
    from netsculpt.surgery import remove_channels
    from netsculpt.surgery.slicing import tensor_positions

    t0 = time.perf_counter()
    targets = tuple(targets)
    check_amount_targets(amount, targets)
    if importance not in MAGNITUDE:
        raise InputError(
            f"importance {importance!r} is not available shard by shard: it needs forward "
            "passes over the loaded model; use l1 or l2 here, or netsculpt.hf.prune in memory"
        )
    limit = _size_limit(max_shard_size)
    src, dst = Path(src), Path(dst)
    shards = _shards(src)
    _check_dst(src, dst)
    model, _ = _meta_model(src)
    example = _example(model)
    aliases = _aliases(model)

    graph = build_graph(model, example)
    before = Snapshot(params=graph.predict_params(model), macs=graph.predict_macs())
    layers_before = layer_sizes(model)
    norm = 1 if importance == "l1" else 2
    parts, _, plan = plan_parts(
        graph, model, targets, lambda gs: streamed_scores(gs, shards, aliases, norm), amount,
        global_=global_, round_to=round_to, uniform=True,
    )  # fmt: skip

    config_before = model.config.to_dict()
    # shapes only: the meta model cannot run eagerly (HF mask code reads values), so the
    # check is that the written config.json rebuilds exactly these shapes (_check_config)
    remove_channels(model, graph, plan)
    expected = _shapes(model)

    # file key -> {dim: kept indices}, tied names merged onto the stored key
    files = _file_keys(shards)
    removed: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    for (name, dim), pos in tensor_positions(graph, plan).items():
        key = _file_key(name, aliases, files)
        if key is None:
            if name not in expected:  # a non-persistent buffer: never saved, rebuilt on load
                continue
            raise InputError(f"the checkpoint does not hold {name} (the config's model has it)")
        prev = removed[key].get(dim)
        removed[key][dim] = pos if prev is None else np.union1d(prev, pos)

    def edit(key: str, t: torch.Tensor) -> tuple[str, torch.Tensor]:
        for dim, pos in sorted(removed.get(key, {}).items()):
            keep = np.setdiff1d(np.arange(t.shape[dim]), pos)
            t = t.index_select(dim, torch.as_tensor(keep, dtype=torch.long))
        want = expected.get(key)
        if want is not None and tuple(t.shape) != want:
            raise VerificationError(
                f"{key}: sliced to {tuple(t.shape)}, the pruned model has {want}"
            )
        return key, t

    config = (config_before, model.config.to_dict())
    advice = "choose another amount or round_to, or prune in memory and save with ns.save"
    written = _run_into(
        dst, src, lambda tmp: _write(src, tmp, shards, limit, edit, config, expected, advice)
    )
    after = Snapshot(params=graph.predict_params(model), macs=graph.predict_macs(plan))
    details = {
        "removed": removed_counts(plan, parts, targets),
        "layers": layer_widths(model),
        "hf_compatible": True,
        **_written_details(written, dst, t0),
    }
    return Report(
        op="prune",
        config={"mode": "hf-sharded", "amount": amount, "targets": list(targets), "uniform": True,
                "importance": importance, "global_": global_, "round_to": round_to},
        before=before,
        after=after,
        details=details,
        layers_before=layers_before,
        layers_after=layer_sizes(model),
    )  # fmt: skip


# -- layer cuts --------------------------------------------------------------------------------
def cut_pretrained(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    layers: Iterable[int],
    *,
    max_shard_size: int | str | None = None,
) -> Report:
    """Remove the transformer layers at positions ``layers`` from the checkpoint in ``src``.

    The surviving ``<layers path>.{i}.*`` keys are renumbered, everything else is copied as is;
    ``num_hidden_layers`` and the per-layer fields (``layer_types``, ``max_window_layers`` ...)
    follow (:func:`netsculpt.hf.layers.drop_layers` on the meta model). Which layers to drop
    is the caller's choice (e.g. from ``netsculpt.hf.layers.layer_scores`` on a smaller run);
    nothing is scored here.
    """
    from netsculpt.hf.layers import drop_layers, layer_list

    t0 = time.perf_counter()
    limit = _size_limit(max_shard_size)
    src, dst = Path(src), Path(dst)
    shards = _shards(src)
    _check_dst(src, dst)
    model, _ = _meta_model(src)
    path, old = layer_list(model)
    n_before = len(old)
    before = Snapshot(params=sum(p.numel() for p in model.parameters()))
    config_before = model.config.to_dict()
    dropped = drop_layers(model, layers)
    expected = _shapes(model)
    new_index = {}
    for i in range(n_before):
        if i not in dropped:
            new_index[i] = len(new_index)
    pattern = re.compile(rf"^{re.escape(path)}\.(\d+)\.")

    def edit(key: str, t: torch.Tensor) -> tuple[str, torch.Tensor] | None:
        m = pattern.match(key)
        if m is None:
            return key, t
        i = int(m.group(1))
        if i not in new_index:
            return None
        return f"{path}.{new_index[i]}.{key[m.end() :]}", t

    config = (config_before, model.config.to_dict())
    advice = "cut in memory and save with ns.save"
    written = _run_into(
        dst, src, lambda tmp: _write(src, tmp, shards, limit, edit, config, expected, advice)
    )
    return Report(
        op="cut",
        config={"mode": "hf-sharded", "layers": dropped},
        before=before,
        after=Snapshot(params=sum(p.numel() for p in model.parameters())),
        details={
            "removed_layers": dropped,
            "layers": len(new_index),
            **_written_details(written, dst, t0),
        },
    )


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
