"""Budgets of ``optimize``: what each target means, and the one rule that reads its value.

A target is a fraction of the original model's figure when it is at most 1, an absolute figure
when it is above 1 (milliseconds for latency, multiply-accumulates for MACs, a count for
params). 0, negatives, NaN and infinities are refused, and so is one metric given twice with
two values (``target={"latency": 0.5}`` and ``target_latency=0.4``).

>>> limit_of(0.5, 200.0), limit_of(120.0, 200.0)
(100.0, 120.0)
>>> targets_from({"macs": 0.5}, {"target_macs": None})
{'target_macs': 0.5}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netsculpt.core.config import budget
from netsculpt.core.errors import InputError

# metric -> (config field, unit of an absolute value)
METRICS: dict[str, tuple[str, str]] = {
    "latency": ("target_latency", "ms"),
    "macs": ("target_macs", "MACs"),
    "params": ("target_params", "parameters"),
}
ALIASES = {"latency_ms": "latency", "flops": "macs", "parameters": "params"}
NOT_SUPPORTED = {
    "memory": "a peak inference memory target is not supported: peak memory is not measured "
    "reliably on CPU from Python (allocator caching); use target_params or target_macs",
}


def limit_of(target: float, base: float) -> float:
    """The absolute limit of ``target``: ``target × base`` for a fraction (≤ 1), else itself."""
    return float(target) * float(base) if target <= 1 else float(target)


def targets_from(target: Any, fields: dict[str, Any]) -> dict[str, float]:
    """The ``target_*`` fields given by ``target=`` (a mapping ``{metric: value}``) merged with
    those given directly; a metric given twice with different values is an error."""
    out = {k: v for k, v in fields.items() if v is not None}
    if target is None:
        return out
    if not isinstance(target, dict) or not target:
        raise InputError(
            "optimize: target= must be a mapping such as {'latency': 0.5} (metrics: "
            f"{', '.join(METRICS)}), got {target!r}"
        )
    for name, value in target.items():
        key = ALIASES.get(str(name), str(name))
        if key in NOT_SUPPORTED:
            raise InputError(f"optimize: {NOT_SUPPORTED[key]}")
        if key not in METRICS:
            raise InputError(
                f"optimize: unknown target metric {name!r}; one of {', '.join(METRICS)}"
            )
        field = METRICS[key][0]
        budget()(f"target {key}", value)
        if field in out and out[field] != value:
            raise InputError(
                f"optimize: two {key} targets: target={{'{name}': {value}}} and "
                f"{field}={out[field]}; give one"
            )
        out[field] = value
    return out


@dataclass
class Budget:
    """One target resolved against the original figure: ``limit`` is absolute."""

    metric: str
    target: float
    base: float
    limit: float

    def met(self, value: float) -> bool:
        return value <= self.limit * (1 + 1e-9)

    def remaining(self, value: float) -> float:
        """How far ``value`` is above the limit, relative to it (≤ 0: met)."""
        return value / self.limit - 1.0

    def describe(self) -> str:
        unit = METRICS[self.metric][1]
        frac = self.limit / self.base if self.base else float("nan")
        fmt = "{:.4g}" if self.metric == "latency" else "{:,.0f}"
        limit, base = fmt.format(self.limit), fmt.format(self.base)
        return f"{self.metric} ≤ {limit} {unit} ({frac:.0%} of {base})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "target": self.target,
            "original": self.base,
            "limit": self.limit,
        }


def resolve(cfg: Any, base: dict[str, float]) -> list[Budget]:
    """The budgets of ``cfg`` (its ``target_*`` fields) against the original figures ``base``."""
    out = []
    for metric, (field, _) in METRICS.items():
        t = getattr(cfg, field, None)
        if t is not None:
            out.append(Budget(metric, float(t), float(base[metric]), limit_of(t, base[metric])))
    return out
