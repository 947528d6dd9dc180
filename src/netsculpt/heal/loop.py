"""The healing loop: fine-tune and/or distil a model after surgery, in place."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from netsculpt.calibration.batches import run as forward
from netsculpt.calibration.batches import split_batch, to_device
from netsculpt.core import progress as _progress
from netsculpt.core.errors import InputError
from netsculpt.heal.data import make_loaders
from netsculpt.heal.losses import capture_hidden, hidden_loss, hidden_names, kd_loss
from netsculpt.heal.masks import HealMasks, fully_sharded
from netsculpt.measure.evaluate import TASKS, attention_mask_of, device_of, embed, task_loss
from netsculpt.report.core import Report, Snapshot

LOSSES = ("task", "kd", "both")
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
METRIC_NAME = {"classification": "accuracy", "lm": "perplexity", "embedding": "fidelity"}


def heal(
    model: nn.Module,
    data: Any,
    *,
    teacher: nn.Module | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    lr: float = 1e-3,
    loss: str | None = None,
    temperature: float = 2.0,
    alpha: float = 0.5,
    val_data: Any = None,
    val_fraction: float = 0.1,
    patience: int | None = None,
    seed: int = 0,
    optimizer: str = "adamw",
    weight_decay: float = 0.0,
    hidden: bool | list[str] = False,
    lora: dict[str, Any] | None = None,
    progress: bool = True,
    task: str = "classification",
    max_grad_norm: float | None = None,
    batch_size: int = 32,
    accelerator: Any = None,
    regularize: str | None = None,
    reg: float = 1e-4,
) -> Report:
    """Fine-tune / distil ``model`` in place to recover quality after surgery; returns a Report.

    ``loss``: ``"task"`` (cross-entropy; next-token for ``task="lm"``), ``"kd"`` (KL to
    ``teacher``'s softened outputs × T²) or ``"both"`` (``alpha``·kd + (1−alpha)·task); default
    ``"both"`` with a teacher, else ``"task"`` (``"kd"`` for embeddings). ``hidden=True`` adds
    relative MSE between same-named block outputs of equal shape. A validation split picks the
    best weights (restored at the end) and stops early after ``patience`` evaluations without
    improvement. Masks in ``model._netsculpt_masks`` are reapplied after every step, frozen
    parameters stay frozen, ``lora={"r": 8, "target_modules": [...]}`` trains LoRA adapters and
    merges them back. Runs under ``accelerate`` when installed (``accelerate launch`` works,
    with DDP or FSDP2: masks follow sharded parameters, :mod:`netsculpt.heal.masks`); a model
    already sharded with ``fully_shard`` trains as it is.
    ``regularize="group_lasso"`` (``reg`` · Σ of the channel groups' L2 norms) or ``"bn_l1"``
    (``reg`` · Σ|γ| of the BatchNorms) adds a sparsity penalty to the loss, so that whole
    channels shrink before a structured prune (:mod:`netsculpt.heal.regularize`).

    Example::

        original = copy.deepcopy(model)
        ns.prune(model, x, amount=0.5)
        ns.heal(model, train_loader, teacher=original, epochs=3)
    """
    loss = _check(teacher, epochs, steps, loss, task, optimizer, alpha, temperature, hidden, lr,
                  weight_decay)  # fmt: skip
    from netsculpt.heal import regularize as R

    R.check(regularize, reg, lora)
    opts = dict(task=task, loss=loss, temperature=temperature, alpha=alpha)
    config = {
        k: v for k, v in locals().items() if k not in ("model", "data", "teacher", "opts", "R")
    }
    config.update(teacher=teacher is not None, val_data=val_data is not None)
    config["accelerator"] = accelerator is not None
    torch.manual_seed(seed)
    train, val = make_loaders(
        data, val_data=val_data, val_fraction=val_fraction, seed=seed, batch_size=batch_size
    )
    from netsculpt.calibration.batches import probe_batch
    from netsculpt.core.utils import eval_mode

    with eval_mode(model):
        probe_batch(model, train, "heal")
    home = device_of(model)
    masks = HealMasks(model)
    pen = R.penalty(model, regularize, reg, R.example_of(train)) if regularize else None
    if lora:
        from netsculpt.heal.lora import lora_wrapped

        wrap = lora_wrapped(model, lora)
    else:
        wrap = nullcontext(model)
    with wrap as net:
        result = _train(
            net, model, teacher, train, val, opts, masks, hidden,
            epochs=epochs, steps=steps, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
            patience=patience, max_grad_norm=max_grad_norm, progress=progress,
            accelerator=accelerator, penalty=pen,
        )  # fmt: skip
    masks.apply()  # a LoRA merge writes into masked weights too
    model.to(home)
    teacher_home = result.pop("teacher_home")
    if teacher is not None:
        teacher.to(teacher_home)
    params = sum(p.numel() for p in model.parameters())
    name = METRIC_NAME[task] if task != "embedding" or teacher is not None else None
    notes = result.pop("notes")
    return Report(
        op="heal",
        config=config,
        before=Snapshot(params=params, metric=result.pop("metric_before"), metric_name=name),
        after=Snapshot(params=params, metric=result.pop("metric_after"), metric_name=name),
        details=result,
        notes=notes,
    )


def _check(
    teacher,
    epochs,
    steps,
    loss,
    task,
    optimizer,
    alpha,
    temperature,
    hidden,
    lr=1e-3,
    weight_decay=0.0,
) -> str:
    if task not in TASKS:
        raise InputError(f"heal: task={task!r} is not one of {', '.join(TASKS)}")
    if loss is None:
        loss = "kd" if task == "embedding" else ("both" if teacher is not None else "task")
    if loss not in LOSSES:
        raise InputError(f"heal: loss={loss!r} is not one of {', '.join(LOSSES)}")
    if loss != "task" and teacher is None:
        raise InputError(
            f"heal: loss={loss!r} needs teacher model: pass teacher= (e.g. a copy of the original)"
        )
    if hidden and teacher is None:
        raise InputError("heal: hidden=True matches hidden states of a teacher; pass teacher=")
    if task == "embedding" and loss != "kd":
        raise InputError("heal: task='embedding' has no labels; use loss='kd' with a teacher")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"heal: optimizer={optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and value < 1:
            raise InputError(f"heal: {name}={value} must be at least 1")
    if epochs is not None and steps is not None:
        raise InputError("heal: pass epochs= or steps=, not both")
    from netsculpt.core.config import non_negative, positive

    for name, value, check in (
        ("lr", lr, positive()),
        ("weight_decay", weight_decay, non_negative()),
    ):
        check(f"heal: {name}", value)
    if not 0 <= alpha <= 1 or temperature <= 0:
        raise InputError(
            f"heal: need 0 <= alpha <= 1 and temperature > 0 (got {alpha}, {temperature})"
        )
    return loss


def _objective(out, t_out, inputs, target, opts, seen=None) -> torch.Tensor:
    """The training loss for one batch (see :func:`heal` for what ``loss`` selects)."""
    kind, alpha = opts["loss"], opts["alpha"]
    value = 0.0
    if kind in ("task", "both"):
        value = task_loss(out, inputs, target, opts["task"])[0] * (
            1 - alpha if kind == "both" else 1
        )
    if kind in ("kd", "both"):
        kd = kd_loss(out, t_out, inputs, target, opts["task"], opts["temperature"])
        value = value + kd * (alpha if kind == "both" else 1)
    h = hidden_loss(seen) if seen is not None else None
    return value if h is None else value + h


@torch.no_grad()
def _validate(net, teacher, val, opts, device) -> tuple[float, float | None]:
    """``(mean objective, metric)`` on the validation data, in eval mode."""
    from netsculpt.core.utils import eval_mode

    task = opts["task"]
    total, n_batches, tokens, nll, correct, cos, samples = 0.0, 0, 0, 0.0, 0, 0.0, 0
    with eval_mode(net):
        for batch in val:
            inputs, target = split_batch(to_device(batch, device))
            out = forward(net, inputs)
            t_out = forward(teacher, inputs) if teacher is not None else None
            if opts["loss"] != "task" or task == "embedding":
                total += float(_objective(out, t_out, inputs, target, opts))
            if task == "embedding":
                mask = attention_mask_of(inputs)
                a, b = embed(out, mask), embed(t_out, mask)
                cos += float(torch.nn.functional.cosine_similarity(a, b, dim=-1).sum())
                samples += a.shape[0]
            elif target is not None or task == "lm":
                loss, n, c = task_loss(out, inputs, target, task)
                if opts["loss"] == "task":
                    total += float(loss)
                tokens, nll, correct = tokens + n, nll + float(loss) * n, correct + c
            n_batches += 1
    if not n_batches:
        return math.inf, None
    if task == "embedding":
        metric = cos / max(samples, 1)
    elif not tokens:
        metric = None
    else:
        metric = math.exp(nll / tokens) if task == "lm" else correct / tokens
    return total / n_batches, metric


def _train(net, model, teacher, train, val, opts, masks, hidden, **kw) -> dict[str, Any]:
    """The loop. ``net`` is what trains (``model`` or its LoRA wrapper); returns the findings."""
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise InputError("heal: no trainable parameters (every parameter has requires_grad=False)")
    opt_cls = OPTIMIZERS[kw["optimizer"]]
    extra = {"momentum": 0.9} if kw["optimizer"] == "sgd" else {}
    opt = opt_cls(params, lr=kw["lr"], weight_decay=kw["weight_decay"], **extra)

    acc = kw["accelerator"] or _default_accelerator()
    teacher_home = device_of(teacher) if teacher is not None else None
    if acc is not None:
        if not fully_sharded(net):  # sharded with fully_shard already: it trains as it is
            net, opt = acc.prepare(net, opt)
        if isinstance(train, DataLoader):
            train = acc.prepare(train)
        device, main = acc.device, acc.is_main_process
    else:
        device, main = device_of(net), True
    if teacher is not None:
        teacher.to(device).eval()
    masks.bind(model)  # the parameters that train now: wrapped, moved or sharded (FSDP2)
    masks.apply()
    names = hidden_names(model, teacher, hidden) if hidden else []

    steps, epochs = kw["steps"], kw["epochs"]
    per_epoch = len(train) if hasattr(train, "__len__") else None
    if steps is None:
        epochs = epochs or 1
        total = epochs * per_epoch if per_epoch else None
        eval_every = per_epoch
    else:
        total, epochs = steps, math.inf
        eval_every = max(1, steps // 10)
    raw = acc.unwrap_model(net) if acc is not None else net

    def snapshot() -> dict[str, torch.Tensor]:
        named = [(n, p) for n, p in raw.named_parameters() if p.requires_grad]
        named += list(raw.named_buffers())
        return {n: t.detach().to("cpu", copy=True) for n, t in named}

    state: dict[str, Any] = {"best_loss": math.inf, "best_step": 0, "bad": 0, "early": False}
    history: list[dict[str, Any]] = []
    metric_before = None
    if val:
        state["best_loss"], metric_before = _validate(net, teacher, val, opts, device)
        state["best_state"], state["best_metric"] = snapshot(), metric_before
    step, epoch, running = 0, 0, None

    def check() -> bool:
        """Validate; keep the best weights; True when patience has run out."""
        v_loss, v_metric = _validate(net, teacher, val, opts, device)
        history.append({"step": step, "train_loss": running, "val_loss": v_loss,
                        "val_metric": v_metric})  # fmt: skip
        if v_loss < state["best_loss"]:
            state.update(best_loss=v_loss, best_state=snapshot(), best_step=step,
                         best_metric=v_metric, bad=0)  # fmt: skip
        else:
            state["bad"] += 1
        state["early"] = kw["patience"] is not None and state["bad"] >= kw["patience"]
        return state["early"]

    bar = _progress.Bar("heal", total, enabled=bool(kw["progress"] and main))
    try:
        stop = False
        while epoch < epochs and not stop:
            seen_batch = False
            for batch in train:
                seen_batch = True
                net.train()
                inputs, target = split_batch(to_device(batch, device))
                ctx = capture_hidden(model, teacher, names) if names else nullcontext(None)
                with ctx as seen:
                    out = forward(net, inputs)
                    with torch.no_grad():
                        t_out = forward(teacher, inputs) if teacher is not None else None
                    loss = _objective(out, t_out, inputs, target, opts, seen)
                    if kw["penalty"] is not None:
                        loss = loss + kw["penalty"]()
                if acc is not None:
                    acc.backward(loss)
                else:
                    loss.backward()
                if kw["max_grad_norm"]:  # accelerate's version unscales fp16 gradients first
                    clip = (
                        acc.clip_grad_norm_ if acc is not None else torch.nn.utils.clip_grad_norm_
                    )
                    clip(params, kw["max_grad_norm"])
                opt.step()
                opt.zero_grad(set_to_none=True)
                masks.apply()  # zeros from unstructured pruning stay zero
                step += 1
                value = float(loss.detach())
                running = value if running is None else 0.9 * running + 0.1 * value
                bar.advance(loss=f"{running:.4f}", val=_fmt(state.get("best_metric")))
                stop = steps is not None and step >= steps
                if val and eval_every and (step % eval_every == 0 or stop):
                    stop = check() or stop
                if stop:
                    break
            if not seen_batch:
                raise InputError("heal: data yielded no batches")
            epoch += 1
            if val and not eval_every:  # data of unknown length: validate once per pass
                stop = check() or stop
    finally:
        bar.close()
    notes: list[str] = []
    if state["early"]:
        notes.append(f"stopped early at step {step}: no improvement in {state['bad']} evaluations")
    if not val:
        notes.append("no validation data: kept the final weights")
    elif state["best_step"] != step:
        with torch.no_grad():
            current = dict(raw.named_parameters()) | dict(raw.named_buffers())
            for n, t in state["best_state"].items():
                current[n].copy_(t)
        notes.append(
            f"restored the best weights on validation (step {state['best_step']} of {step})"
        )
    if acc is not None:
        acc.free_memory()
    return {
        "metric_before": metric_before,
        "metric_after": state.get("best_metric"),
        "val_loss_best": state["best_loss"] if val else None,
        "history": history,
        "best_step": state["best_step"] if val else step,
        "steps": step,
        "epochs": epoch,
        "stopped_early": state["early"],
        "final_train_loss": running,
        "teacher_home": teacher_home,
        "notes": notes,
    }


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def _default_accelerator() -> Any:
    """An ``accelerate.Accelerator`` when the package is installed (it reads ``accelerate
    launch``'s environment), else ``None`` and a plain single-device loop."""
    try:
        from accelerate import Accelerator
    except ImportError:
        return None
    return Accelerator()
