"""The measured record of one op (or a whole run): what it was asked, what it found, what changed."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import InputError

_LAYER_ATTRS = (
    "in_features",
    "out_features",
    "in_channels",
    "out_channels",
    "num_features",
    "normalized_shape",
    "num_embeddings",
    "embedding_dim",
    "num_heads",
    "groups",
)


@dataclass
class Snapshot:
    """Numbers that describe a model at one moment; ``None`` where not measured.

    Example::

        before = Snapshot(params=1_000, macs=50_000, metric=0.91, metric_name="accuracy")
    """

    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None
    size_bytes: int | None = None
    metric: float | None = None
    metric_name: str | None = None

    @classmethod
    def of(
        cls,
        model: nn.Module,
        example_inputs: Any = None,
        *,
        latency: bool = False,
        metric: float | None = None,
        metric_name: str | None = None,
    ) -> Snapshot:
        """Measure ``model`` with :func:`netsculpt.measure.measure` (params only without inputs).

        Example::

            snap = Snapshot.of(model, (torch.randn(1, 10),))
        """
        if example_inputs is None:
            params = sum(p.numel() for p in model.parameters())
            return cls(params=params, metric=metric, metric_name=metric_name)
        from netsculpt.measure import measure

        m = measure(model, example_inputs, latency=latency)
        return cls(
            params=_get(m, "params"),
            macs=_get(m, "macs"),
            latency_ms=_get(m, "latency_ms"),
            size_bytes=_get(m, "size_bytes"),
            metric=metric,
            metric_name=metric_name,
        )

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Snapshot:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})

    def fill(self, other: Snapshot) -> Snapshot:
        """A copy with every ``None`` field taken from ``other``."""
        return Snapshot(
            **{
                f.name: getattr(self, f.name)
                if getattr(self, f.name) is not None
                else getattr(other, f.name)
                for f in fields(self)
            }
        )


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


@dataclass
class Report:
    """What an op did: config, before/after :class:`Snapshot`, findings, per-layer sizes, steps.

    Example::

        rep = Report(op="prune", config={"amount": 0.5}, before=Snapshot(params=100),
                     after=Snapshot(params=60), details={"scores": {"fc1": [0.1, 0.9]}})
        print(rep)                   # rich table
        rep.to_json("out/report.json"); rep.to_html("out/report.html")
    """

    op: str
    config: dict[str, Any] = field(default_factory=dict)
    before: Snapshot = field(default_factory=Snapshot)
    after: Snapshot = field(default_factory=Snapshot)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    layers_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    layers_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: list[Report] = field(default_factory=list)
    plan: Any = None  # the netsculpt.Plan the op applied (replay with ns.apply)

    # -- ratios --------------------------------------------------------------------------------
    def ratio(self, name: str) -> float | None:
        """``after / before`` for a snapshot field (``"params"``, ``"macs"``, ...), or ``None``."""
        b, a = getattr(self.before, name), getattr(self.after, name)
        if b is None or a is None or not isinstance(b, (int, float)) or b == 0:
            return None
        return float(a) / float(b)

    # -- combining -----------------------------------------------------------------------------
    @classmethod
    def combine(cls, reports: list[Report], op: str = "run", **kwargs: Any) -> Report:
        """One report over several steps: ``before`` from the first, ``after`` from the last.

        Fields a step did not measure are taken from the nearest step that did.

        Example::

            run = Report.combine([prune_report, heal_report])
        """
        reports = list(reports)
        before, after = Snapshot(), Snapshot()
        for r in reports:
            before = before.fill(r.before)
        for r in reversed(reports):
            after = after.fill(r.after)
        lb = next((r.layers_before for r in reports if r.layers_before), {})
        la = next((r.layers_after for r in reversed(reports) if r.layers_after), {})
        return cls(
            op=op, before=before, after=after, layers_before=lb, layers_after=la,
            steps=reports, **kwargs,
        )  # fmt: skip

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (tensors and arrays become lists)."""
        return {
            "op": self.op,
            "config": jsonable(self.config),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "ratios": {k: self.ratio(k) for k in ("params", "macs", "latency_ms", "size_bytes")},
            "details": jsonable(self.details),
            "notes": [str(n) for n in self.notes],
            "layers_before": jsonable(self.layers_before),
            "layers_after": jsonable(self.layers_after),
            "steps": [s.to_dict() for s in self.steps],
            **({"plan": self.plan.to_dict()} if self.plan is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """Rebuild a report written by :meth:`to_dict` / :meth:`to_json`."""
        try:
            return cls(
                op=d["op"],
                config=d.get("config", {}),
                before=Snapshot.from_dict(d.get("before")),
                after=Snapshot.from_dict(d.get("after")),
                details=d.get("details", {}),
                notes=list(d.get("notes", [])),
                layers_before=d.get("layers_before", {}),
                layers_after=d.get("layers_after", {}),
                steps=[cls.from_dict(s) for s in d.get("steps", [])],
                plan=_plan(d.get("plan")),
            )
        except (KeyError, TypeError) as e:
            raise InputError(f"report dict: missing or malformed field {e}") from e

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        """The report as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            _write(path, text)
        return text

    @classmethod
    def from_json(cls, path: str | Path) -> Report:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_html(self, path: str | Path | None = None) -> str:
        """One self-contained HTML page (tables + embedded PNG plots); written to ``path``."""
        from netsculpt.report.html import render_html

        text = render_html(self)
        if path is not None:
            _write(path, text)
        return text

    def render(self, width: int | None = None) -> str:
        """The console table as plain text, laid out for ``width`` columns (default: the
        terminal's; 80 in a pipe)."""
        from netsculpt.report.console import render_text

        return render_text(self, width=width)

    def __rich__(self) -> Any:
        from netsculpt.report.console import ReportTable

        return ReportTable(self)

    def __str__(self) -> str:
        return self.render()


def _plan(d: Any) -> Any:
    if d is None:
        return None
    from netsculpt.core.plan import Plan

    return Plan.from_dict(d)


def _write(path: str | Path, text: str) -> None:
    from netsculpt.core.files import write_text_atomic

    write_text_atomic(path, text)  # readers never see half a report


def jsonable(obj: Any) -> Any:
    """Convert tensors, numpy values, tuples, sets and paths into JSON-safe Python values.

    Example::

        jsonable({"s": torch.tensor([1.0, 2.0])})   # {"s": [1.0, 2.0]}
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Snapshot):
        return obj.to_dict()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return jsonable(obj.item())
    return str(obj)


def layer_sizes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per-module width attributes (``out_features``, ``out_channels``, ...) for a report.

    Example::

        layer_sizes(nn.Sequential(nn.Linear(4, 8)))   # {"0": {"in_features": 4, "out_features": 8}}
    """
    out: dict[str, dict[str, Any]] = {}
    for name, mod in model.named_modules():
        if not name:
            continue
        attrs = {a: jsonable(getattr(mod, a)) for a in _LAYER_ATTRS if hasattr(mod, a)}
        attrs = {a: v for a, v in attrs.items() if isinstance(v, (int, list))}
        if attrs:
            out[name] = {"type": type(mod).__name__, **attrs}
    return out


def width_of(attrs: dict[str, Any]) -> int | None:
    """The output width of a layer from its :func:`layer_sizes` entry."""
    for key in ("out_features", "out_channels", "num_features", "embedding_dim"):
        if isinstance(attrs.get(key), int):
            return attrs[key]
    shape = attrs.get("normalized_shape")
    if isinstance(shape, list) and shape and isinstance(shape[-1], int):
        return shape[-1]
    return None
