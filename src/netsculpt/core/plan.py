"""Plan: what an op decided, as public data that can be saved, read, edited and replayed.

A :class:`Plan` is a list of :class:`Action` s. Each action names what it touches by module path
and parameter name (never by object identity), so a plan written for one copy of a model
applies to a fresh copy of the same architecture::

    plan = report.plan                    # every verb's Report carries its plan
    plan.to_json("plan.json")
    fresh = build_model()                 # the same architecture, fresh weights
    ns.apply(fresh, example_inputs, Plan.from_json("plan.json"))

Action kinds (``Action.kind``) and their ``args``:

- ``remove_channels``: ``anchor`` = ``[tensor, dim, p0, p1]``: a tensor dim of the channel
  group and the first positions of its channels 0 and 1 there (unique even where a dim is a
  product of groups, heads × head_dim),
  ``channels`` = channel indices of that group to remove (``head`` groups: head indices);
  ``size``, ``group_kind`` and ``modules`` describe the group for a reader.
- ``zero_weights``: ``tensor`` = a parameter name; ``rule`` = how the mask is found
  (``{"threshold": t}``, ``{"sparsity": s}``, ``{"pattern": "2:4"}``, ``{"global_sparsity": s}``)
  and ``importance``; ``zeros`` = how many weights it zeroed.
  Wanda actions (``importance="wanda"``) carry ``step``: the stage (decoder layer) they
  belong to; a replay measures each step on the model the earlier steps left.
- ``obs_prune``: SparseGPT (``importance="sparsegpt"``): ``tensor``, ``rule`` (sparsity or
  pattern), ``step``, ``blocksize``, ``percdamp``; the backend runs the OBS solver on the
  Hessian of the layer's inputs (in memory ``_hessian``; measured again on replay), which
  zeroes the pruned weights and updates the kept ones; ``zeros`` as for ``zero_weights``.
- ``add_bias``: ``module``, ``delta`` (a list): a constant input channel folded into the bias
  of the layer that reads it, before that channel is removed.
- ``remove_block``: ``block`` = a block name of :func:`netsculpt.graph.blocks.find_blocks` on
  the model as it is when the action runs (actions apply in order; a cut lists them deepest
  first), ``how`` = ``skip`` / ``zero`` / ``identity`` / ``bridge`` / ``bridge+fold``; a bridge
  carries its fitted ``weight`` / ``bias`` (nested lists) so that a replay gives the same model,
  and ``train_steps`` / ``trained`` (a bridge distilled once, then replayed as trained).
- ``recalibrate_bn``: re-estimate every BatchNorm's running statistics on the calibration
  data (``data=``; skipped, with a note, without it); ``layers`` / ``batches`` say how many.
- ``fold``: ``fold_kind`` (``bn_after``: layer, bn; ``bn_before``: bn, layer;
  ``linear_linear`` / ``conv_conv`` (or ``affine``): first, second; ``norm_gain``: norm, the
  Linears that read it) and ``modules`` (the module paths folded together, in that order).
- ``merge_neurons``: ``producer`` = the Linear / Conv whose output neurons merge,
  ``merged`` = ``[j, k, r]`` triples (channel ``j`` folds into the kept channel ``k`` with ratio
  ``r``: the consumers get ``W2[:, k] += r·W2[:, j]``, then ``j`` is removed; ``r = 0``: a dead
  neuron); ``batchnorm``, ``consumers`` and ``size`` describe it for a reader.
- ``collapse_blocks``: ``blocks`` = adjacent block names (as :func:`find_blocks` names them
  when the action runs) merged by RDSC into the first; the others are removed.
- ``drop_layers``: ``layers`` = positions in a Hugging Face model's transformer layer list
  (as it is when the action applies) to delete; the config's depth and per-layer fields
  follow. Applied in memory and by the shard backend (``netsculpt.hf.cut_pretrained``).
- ``grow``: ``grow_kind`` = ``deeper`` (``how`` = ``net2deeper``: an identity layer after the
  block; ``block-expansion``: a zero-output copy of a residual block after it) or ``wider``
  (``anchor``: the block's own channel group, as for ``remove_channels``; ``src``: the channels
  copied; ``noise``, ``seed``); ``block`` = a block name; ``trainable`` = ``all`` / ``new``.

Any action may carry ``step`` (an integer): consecutive actions of one kind are applied together
only while their ``step`` is the same, so a plan made in steps (``optimize``: each accepted step
is planned on the model the previous steps left) replays step by step.

The format is versioned (``"version"``); :meth:`Plan.from_dict` refuses versions it does not
know and actions that miss a field, with one line that names the action.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsculpt.core.errors import InputError

VERSION = 1
FORMAT = "netsculpt-plan"

# the fields each action kind must have (a hand-written plan is checked against these)
REQUIRED: dict[str, tuple[str, ...]] = {
    "remove_channels": ("anchor", "channels"),
    "zero_weights": ("tensor", "rule"),
    "obs_prune": ("tensor", "rule"),
    "add_bias": ("module", "delta"),
    "remove_block": ("block",),
    "fold": ("fold_kind", "modules"),
    "merge_neurons": ("producer", "merged"),
    "collapse_blocks": ("blocks",),
    "grow": ("grow_kind", "block"),
    "recalibrate_bn": (),
    "drop_layers": ("layers",),
}


@dataclass
class Action:
    """One decided edit: ``kind`` (see the module docstring), its ``args``, and the ``score``
    that decided it (``None`` when the action was asked for by name)."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        # keys starting with "_" hold in-memory values (a mask tensor) that are not written
        args = {k: v for k, v in self.args.items() if not k.startswith("_")}
        out: dict[str, Any] = {"kind": self.kind, **_plain(args)}
        if self.score is not None:
            out["score"] = _plain(self.score)
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str = "action") -> Action:
        if not isinstance(d, dict) or not isinstance(d.get("kind"), str):
            raise InputError(f"plan {where}: an action is a mapping with a 'kind' string")
        kind = d["kind"]
        if kind not in REQUIRED:
            raise InputError(f"plan {where}: unknown action kind {kind!r} (one of {_kinds()})")
        missing = [k for k in REQUIRED[kind] if k not in d]
        if missing:
            raise InputError(f"plan {where}: {kind} needs {', '.join(missing)}")
        score = d.get("score")
        if score is not None and not isinstance(score, (int, float)):
            raise InputError(f"plan {where}: score must be a number, got {score!r}")
        args = {k: v for k, v in d.items() if k not in ("kind", "score")}
        return cls(kind, args, None if score is None else float(score))


@dataclass
class Plan:
    """What one op decided: its name, the config it ran with, and the actions, in order.

    >>> p = Plan("prune", [Action("remove_channels", {"anchor": ["0.weight", 0], "channels": [1]})])
    >>> Plan.from_dict(p.to_dict()) == p
    True
    """

    op: str
    actions: list[Action] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self.to_dict() == other.to_dict()

    def of_kind(self, *kinds: str) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]

    def extend(self, other: Plan) -> None:
        self.actions.extend(other.actions)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "op": self.op,
            "config": _plain(self.config),
            "actions": [a.to_dict() for a in self.actions],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Plan:
        if not isinstance(d, dict):
            raise InputError(f"plan: expected a mapping, got {type(d).__name__}")
        if "plan" in d and isinstance(d["plan"], dict) and "actions" not in d:
            d = d["plan"]  # a report.json holds its plan under "plan"
        version = d.get("version")
        if version != VERSION:
            raise InputError(f"plan: version {version!r} is not supported (this is {VERSION})")
        actions = d.get("actions")
        if not isinstance(actions, list):
            raise InputError("plan: 'actions' must be a list")
        config = d.get("config") or {}
        if not isinstance(config, dict):
            raise InputError("plan: 'config' must be a mapping")
        return cls(
            op=str(d.get("op", "")),
            actions=[Action.from_dict(a, f"actions[{i}]") for i, a in enumerate(actions)],
            config=config,
        )

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> Plan:
        p = Path(path_or_text)
        text = str(path_or_text)
        if isinstance(path_or_text, Path) or (not text.lstrip().startswith("{") and p.exists()):
            if not p.is_file():
                raise InputError(f"plan file {str(p)!r} does not exist")
            text = p.read_text(encoding="utf-8")
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise InputError(f"plan: not valid JSON (line {e.lineno}: {e.msg})") from None


def _kinds() -> str:
    return ", ".join(REQUIRED)


def _plain(obj: Any) -> Any:
    """JSON-safe values: numpy arrays / scalars and tensors become lists / numbers."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "detach"):  # a tensor
        return _plain(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist"):
        return _plain(obj.tolist())
    if callable(obj):
        return getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    return str(obj)
