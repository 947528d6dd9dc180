"""optimize: search for a smaller model that meets a latency / MACs / params budget (NetAdapt).

The op registry's entry for ``optimize``: :class:`OptimizeConfig` and ``run(session, cfg)``.
The search itself is :mod:`netsculpt.optimize.search`; it plans with the other ops' planners
and applies every accepted step through the session, so ``report.plan`` (the accepted
``fold`` / ``remove_channels`` / ``remove_block`` actions, in order) replays with ``ns.apply``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netsculpt.core.config import (
    OpConfig,
    budget,
    fraction,
    integer,
    non_negative,
    one_of,
    option,
    positive,
)
from netsculpt.core.errors import InputError
from netsculpt.optimize.budget import METRICS, targets_from

QUALITY = ("auto", "accuracy", "loss", "kl")


def _importance(name: str, v: Any) -> None:
    from netsculpt.importance import ESTIMATORS

    if v is not None and not callable(v) and v not in ESTIMATORS:
        raise InputError(f"{name}: unknown importance {v!r}; one of {', '.join(ESTIMATORS)}")


def _callable(name: str, v: Any) -> None:
    if v is not None and not callable(v):
        raise InputError(f"{name} must be a function timer(module, inputs) -> ms, got {v!r}")


@dataclass(frozen=True)
class OptimizeConfig(OpConfig):
    """What to reach and how hard to search.

    Targets (at least one): a fraction of the original (≤ 1) or an absolute figure (> 1:
    milliseconds, MACs, parameters). ``max_drop``: the largest allowed quality drop on the
    held-out batches (``metric``: accuracy points as a fraction, loss increase, or KL in nats to
    the original when the data has no labels). ``step``: cost saved per step, a fraction of the
    original cost.
    """

    target_latency: float | None = option(None, budget(), "latency budget (fraction ≤ 1, or ms)")
    target_macs: float | None = option(None, budget(), "MACs budget (fraction ≤ 1, or a count)")
    target_params: float | None = option(None, budget(), "params budget (fraction ≤ 1, or count)")
    metric: str = option("auto", one_of(*QUALITY), "quality for max_drop: accuracy, loss, kl")
    max_drop: float | None = option(None, non_negative(), "stop before the metric drops more")
    step: float = option(0.05, fraction(), "cost saved per step (fraction of the original)")
    granularity: int | None = option(None, integer(1), "kept widths are multiples of N "
                                     "(default 16 for ≥ 64 channels, 8 for ≥ 16)")  # fmt: skip
    importance: str | Callable | None = option(
        None, _importance, "channel scores; default activation with data, else l2"
    )
    fold: bool = option(True, None, "fold BatchNorms into their layers at the start (exact)")
    cut: bool = option(True, None, "also propose removing whole residual blocks")
    heal: bool = option(True, None, "distil briefly from the original every heal_every steps")
    heal_every: int = option(2, integer(1), "accepted steps between heals")
    heal_steps: int = option(20, integer(1), "training steps of each heal")
    heal_lr: float = option(1e-3, positive(), "learning rate of the heals")
    time_budget: float | None = option(None, positive(), "seconds; then the best so far")
    max_steps: int = option(200, integer(1), "most accepted steps")
    latency_batch: int | None = option(None, integer(1), "batch size of latency measurements")
    threads: int = option(2, integer(1), "threads of latency measurements")
    latency_rounds: int = option(5, integer(1), "rounds per latency measurement (median)")
    latency_points: int = option(5, integer(2), "channel counts timed per layer dim")
    timer: Callable | None = option(
        None, _callable, "fn(module, inputs) -> ms instead of the clock"
    )
    eval_batches: int = option(8, integer(1), "held-out batches of data for max_drop")
    max_batches: int = option(8, integer(1), "calibration batches of data (scores, proxy)")
    batch_size: int | None = option(None, integer(1), "batch size when data is a Dataset")
    ignore: Any = option((), None, "modules to leave whole: names, globs, modules, filter_fn")
    seed: int = option(0, integer(0), "seed of every random choice")
    progress: bool = option(True, None, "print one line per accepted step (stderr)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if all(getattr(self, f) is None for f, _ in METRICS.values()):
            raise InputError(
                "optimize needs a target: target_latency=, target_macs= or target_params= "
                "(or target={'latency': 0.5})"
            )


CONFIGS = (OptimizeConfig,)
KEYWORDS = ("target",)  # accepted besides the config's fields (see prepare)


def prepare(cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """``target={"latency": 0.5, ...}`` as the ``target_*`` fields (a metric given twice with
    two values is refused); ``ignore`` as a tuple."""
    kw = dict(overrides)
    fields = {f: kw.pop(f, None) for f, _ in METRICS.values()}
    kw.update(targets_from(kw.pop("target", None), fields))
    if isinstance(kw.get("ignore"), list):
        kw["ignore"] = tuple(kw["ignore"])
    return kw


def run(session: Any, cfg: OptimizeConfig) -> Any:
    """Shrink ``model`` in place until it meets the budget; return a Report.

    NetAdapt-style: at every step each channel group proposes removing just enough channels (in
    multiples of 8 / 16) to save ``step`` of the cost, and each removable residual block proposes
    going; every proposal is tried on the model, scored by the KL of its outputs to the
    original's on the calibration batches (BatchNorm statistics re-estimated), and the one with
    the least damage per unit of saved cost is kept. Latency savings come from a per-layer
    latency table measured once on this device (at ``latency_batch`` and ``threads``), checked
    against a real measurement at every step. With ``heal``, a short distillation from the
    original runs every ``heal_every`` steps. The search stops at the target, before
    ``max_drop`` would be exceeded on the held-out batches, after ``time_budget`` seconds or
    when nothing is left to remove; the report says which.

    ``target``: ``{"latency": 0.5, "macs": 0.3, "params": 1e6}`` or the keywords
    ``target_latency`` / ``target_macs`` / ``target_params`` (≤ 1: a fraction of the original;
    > 1: ms / MACs / parameters). ``report.details["trace"]``: cost and quality after every
    accepted step; ``report.plan`` replays the result on a fresh copy (``ns.apply``).

    >>> import torch, netsculpt as ns
    >>> m = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    >>> rep = ns.optimize(m, torch.ones(1, 8), target_macs=0.5, heal=False, progress=False)
    >>> rep.after.macs <= 0.5 * rep.before.macs, m[0].out_features % 16
    (True, 0)
    """
    from netsculpt.optimize.search import Search

    return Search(session, cfg).run()
