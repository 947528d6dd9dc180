"""heal and evaluate for Keras models: Keras's own ``fit`` / ``evaluate`` with the model's own
compiled loss, optimizer and metrics (any backend, any data Keras reads).

``heal`` fine-tunes a copy (``keras.models.clone_model`` with the weights, compiled as the
input was) and reports the loss before and after; the model passed in is not changed.
Distillation from a teacher is not offered here (``netsculpt.heal`` does it for torch models).
"""

from __future__ import annotations

from typing import Any

from netsculpt.errors import InputError
from netsculpt.keras import data as D
from netsculpt.keras.verbs import _check_model, compile_like, mirror_of, weight_bytes


def _compiled(model: Any, verb: str) -> None:
    _check_model(model)
    if not getattr(model, "compiled", False):
        raise InputError(
            f"{verb}: the model is not compiled; compile it with a loss (and metrics) first, "
            "e.g. model.compile('adam', 'mse')"
        )


def _scores(model: Any, data: Any, batch_size: int) -> dict[str, float]:
    args, kw = D.fit_arguments(data, batch_size)
    out = model.evaluate(*args, verbose=0, return_dict=True, **kw)
    return {k: float(v) for k, v in out.items()}


def heal(
    model: Any,
    data: Any,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    validation_data: Any = None,
    seed: int = 0,
    verbose: int = 0,
    **fit_kwargs: Any,
) -> tuple[Any, Any]:
    """Fine-tune a copy of ``model`` on ``data`` with its compiled loss and optimizer; returns
    ``(new_model, report)`` (``report.before`` / ``after``: the loss on ``data``)."""
    import keras

    from netsculpt.report import Report, Snapshot

    _compiled(model, "heal")
    if epochs < 1:
        raise InputError(f"heal: epochs={epochs} must be at least 1")
    keras.utils.set_random_seed(seed)
    new = keras.models.clone_model(model)
    new.set_weights(model.get_weights())
    compile_like(new, model)
    before = _scores(new, data, batch_size)
    args, kw = D.fit_arguments(data, batch_size)
    if validation_data is not None:
        kw["validation_data"] = validation_data
    history = new.fit(*args, epochs=epochs, verbose=verbose, **kw, **fit_kwargs)
    after = _scores(new, data, batch_size)
    params = new.count_params()
    config = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "loss": str(new.loss)}
    report = Report(
        op="heal",
        config=config,
        before=Snapshot(params=params, metric=before.get("loss"), metric_name="loss"),
        after=Snapshot(params=params, metric=after.get("loss"), metric_name="loss"),
        details={
            "before": before,
            "after": after,
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "keras": {"backend": keras.backend.backend()},
        },
    )
    return new, report


def evaluate(
    model: Any, data: Any, *, example_inputs: Any = None, batch_size: int = 32
) -> dict[str, Any]:
    """``model.evaluate`` on ``data`` (its compiled loss and metrics) plus ``params`` and
    ``size_bytes``; with ``example_inputs`` also ``macs`` (counted on the torch mirror)."""
    _compiled(model, "evaluate")
    out: dict[str, Any] = {"metric": "loss", **_scores(model, data, batch_size)}
    out["params"] = model.count_params()
    out["size_bytes"] = weight_bytes(model)
    if example_inputs is not None:
        from netsculpt.measure import measure

        mirror, _, xs = mirror_of(model, example_inputs)
        x = tuple(D._torch(a) for a in xs)
        out["macs"] = int(measure(mirror, x[0] if len(x) == 1 else x, latency=False).macs)
    return out
