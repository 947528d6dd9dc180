"""Structured pruning of a Hugging Face transformer: ``ns.prune`` with the HF defaults.

The defaults live here, in :data:`DEFAULTS`, and every HF entry point takes them from
:func:`prune_options`: :func:`prune` (a model in memory), :func:`netsculpt.hf.prune_pretrained`
(a checkpoint folder shard by shard) and ``netsculpt prune HF_DIR`` (with or without
``--sharded``). They are:

- ``amount=0.3``: the fraction removed from each chosen part;
- ``targets=("heads", "mlp")``: attention heads and MLP channels; the hidden size (the residual
  stream, ``"hidden"``) only when asked for;
- ``uniform=True``: every layer keeps the same number of heads and MLP channels, so the config
  describes the model and ``save_pretrained`` / ``from_pretrained`` round-trips;
- ``all_or_nothing`` = ``uniform``: a uniform prune refuses to leave a planned group out
  ("uniform pruning needs every planned group"), as one layer left whole breaks uniformity;
- ``importance="l2"``: weight magnitude, also with ``data`` (which the data-driven estimators,
  ``activation`` — Minitron-style — and ``taylor``, need).

With grouped-query attention the graph couples each KV head with its query group, so a KV head
always leaves with its queries. After ``ns.prune`` the report gets the HF view:
``details["layers"]`` (per-layer widths), ``details["hf_compatible"]`` and, when the result
cannot round-trip through ``save_pretrained``, notes saying why (save with ``ns.save`` then).

>>> prune_options(amount=0.5)["targets"], prune_options(uniform=False)["all_or_nothing"]
(('heads', 'mlp'), False)
>>> import netsculpt.hf as nhf                                     # doctest: +SKIP
>>> rep = nhf.prune(model, {"input_ids": ids}, amount=0.3, targets=("heads", "mlp"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from netsculpt.report import Report

DEFAULTS: dict[str, Any] = {
    "amount": 0.3,
    "targets": ("heads", "mlp"),
    "uniform": True,
    "importance": "l2",
}


def prune_options(**given: Any) -> dict[str, Any]:
    """``ns.prune``'s keywords for a Hugging Face model: :data:`DEFAULTS` overridden by the
    ``given`` values that are not None; ``all_or_nothing`` follows ``uniform`` unless given."""
    kw = {**DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    targets = kw["targets"]
    kw["targets"] = (targets,) if isinstance(targets, str) else tuple(targets)
    kw.setdefault("all_or_nothing", bool(kw["uniform"]))
    return kw


def hf_details(model: nn.Module, report: Report) -> Report:
    """Add the HF view to a prune report: per-layer widths, whether ``save_pretrained``
    round-trips, and (first among the notes) why not."""
    from netsculpt.hf.config import hf_compatible, layer_widths

    ok, why = hf_compatible(model)
    report.details["layers"] = layer_widths(model)
    report.details["hf_compatible"] = ok
    report.notes[:0] = [f"save with ns.save: {w}" for w in why]
    return report


def prune(
    model: nn.Module,
    example_inputs: Any,
    *,
    amount: float = DEFAULTS["amount"],
    targets: tuple[str, ...] | list[str] = DEFAULTS["targets"],
    uniform: bool = DEFAULTS["uniform"],
    importance: str | Callable = DEFAULTS["importance"],
    global_: bool = False,
    data: Any = None,
    round_to: int | None = None,
) -> Report:
    """Prune heads / MLP channels / hidden size of an HF model in place; returns a Report.

    ``ns.prune(model, example_inputs, data=data, **prune_options(...))``: the structured prune
    with the HF defaults (see the module docstring), then the HF report details.
    ``amount``: fraction removed from each chosen part (``global_``: ranked across groups).
    ``uniform``: equal counts in every layer (HF-compatible config). ``importance``: any of
    ``ns.prune``'s estimators or a callable.
    """
    from netsculpt.engine.verbs import call

    kw = prune_options(amount=amount, targets=targets, uniform=uniform, importance=importance,
                       global_=global_, round_to=round_to)  # fmt: skip
    return hf_details(model, call("prune", model, example_inputs, data=data, **kw))
