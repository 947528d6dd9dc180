"""Evaluate a model on data: accuracy, loss, perplexity, embedding fidelity; plus size and cost.

Batches are read and run by :mod:`netsculpt.calibration.batches` (re-exported here as
``split_batch``, ``forward``, ``logits_of``, ``to_device``), as in every other op; :func:`embed`
and :func:`task_loss` (next-token shifting for LMs) are shared with :mod:`netsculpt.heal`.
A batch is ``(x, y)``, a bare ``x`` or a dict of keyword arguments (Hugging Face style);
``x`` may itself be a dict of keyword arguments or a tuple of positional ones.

Language models (``task="lm"``): a bare ``x`` or a dict batch (``input_ids`` / ``labels``, as in
Hugging Face) is shifted by one token here; in an ``(x, y)`` tensor pair ``y`` is already the
next token of each position (nanoGPT style) and is used as is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netsculpt.calibration.batches import loader, logits_of, run, split_batch, to_device
from netsculpt.core.errors import InputError

METRICS = ("accuracy", "loss", "perplexity", "fidelity")
TASKS = ("classification", "lm", "embedding")
IGNORE = -100


# -- batches: read and run as every other op does (netsculpt.calibration.batches) --------------
forward = run


def attention_mask_of(inputs: Any) -> torch.Tensor | None:
    return inputs.get("attention_mask") if isinstance(inputs, Mapping) else None


def embed(output: Any, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One vector per sample: mean-pooled last hidden state (masked), or the output itself."""
    if isinstance(output, Mapping) or hasattr(output, "last_hidden_state"):
        get = output.get if isinstance(output, Mapping) else lambda k: getattr(output, k, None)
        hidden = get("last_hidden_state")
        hidden = hidden if hidden is not None else logits_of(output)
    else:
        hidden = logits_of(output)
    if hidden.dim() == 3:
        if attention_mask is None:
            return hidden.mean(dim=1)
        m = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)
    return hidden.flatten(1)


def lm_labels(inputs: Any, target: Any) -> torch.Tensor:
    """Next-token labels: ``target`` or the input ids, with padding set to ``-100``."""
    labels = target
    if labels is None:
        labels = inputs.get("input_ids") if isinstance(inputs, Mapping) else inputs
    if not isinstance(labels, torch.Tensor):
        raise InputError("lm batch: need input_ids (or labels) as a tensor")
    mask = attention_mask_of(inputs)
    if mask is not None and target is None:
        labels = labels.masked_fill(mask == 0, IGNORE)
    return labels


def task_loss(output: Any, inputs: Any, target: Any, task: str) -> tuple[torch.Tensor, int, int]:
    """``(mean loss, count, correct)``: cross-entropy for classification, next-token CE for LMs."""
    logits = logits_of(output)
    if task == "lm":
        labels = lm_labels(inputs, target)
        if target is None or isinstance(inputs, Mapping):  # labels aligned with the input ids
            logits, labels = logits[:, :-1], labels[:, 1:]
    elif target is None:
        raise InputError("classification batch: no target; pass (x, y) batches or task='lm'")
    else:
        labels = target
    logits = logits.reshape(-1, logits.shape[-1]).float()
    labels = labels.reshape(-1).long()
    valid = labels != IGNORE
    count = int(valid.sum())
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE) if count else logits.sum() * 0
    correct = int((logits.argmax(-1)[valid] == labels[valid]).sum())
    return loss, count, correct


def batches(data: Any, batch_size: int = 64) -> Iterable:
    """Iterate batches: a ``Dataset`` is wrapped in a ``DataLoader``, anything else is iterated."""
    if isinstance(data, torch.Tensor):
        raise InputError("data: pass a Dataset, DataLoader or iterable of batches, not a tensor")
    return loader(data, batch_size)


def device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# -- evaluate --------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    *,
    metric: str = "accuracy",
    reference: nn.Module | None = None,
    example_inputs: Any = None,
    latency: bool = False,
    task: str | None = None,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Score ``model`` on ``data``; with ``example_inputs`` also params, MACs, latency, size.

    ``metric``: ``"accuracy"`` (and mean CE ``loss``), ``"loss"``, ``"perplexity"`` (LMs,
    token-weighted) or ``"fidelity"`` (mean cosine to ``reference``'s embeddings).

    Example::

        ns.evaluate(model, test_loader)                      # {"accuracy": 0.97, "loss": 0.1, ...}
        ns.evaluate(lm, text_batches, metric="perplexity")
    """
    if metric not in METRICS:
        raise InputError(f"evaluate: metric={metric!r} is not one of {', '.join(METRICS)}")
    task = task or {"perplexity": "lm", "fidelity": "embedding"}.get(metric, "classification")
    if task not in TASKS:
        raise InputError(f"evaluate: task={task!r} is not one of {', '.join(TASKS)}")
    if metric == "fidelity" and reference is None:
        raise InputError("evaluate: metric='fidelity' needs reference= (the original model)")
    result: dict[str, Any] = {"metric": metric}
    from netsculpt.core.utils import eval_mode

    with eval_mode(model), eval_mode(reference) if reference is not None else nullcontext():
        result.update(_score(model, data, metric, task, reference, max_batches))
    if example_inputs is not None:
        from netsculpt.measure import measure

        m = measure(model, example_inputs, latency=latency)
        for key in ("params", "macs", "latency_ms", "size_bytes"):
            value = m.get(key) if isinstance(m, dict) else getattr(m, key, None)
            if value is not None:
                result[key] = value
    else:
        result["params"] = sum(p.numel() for p in model.parameters())
    return result


def _score(
    model: nn.Module,
    data: Any,
    metric: str,
    task: str,
    reference: nn.Module | None,
    max_batches: int | None,
) -> dict[str, float]:
    device = device_of(model)
    total_loss, count, correct, cos_sum, samples = 0.0, 0, 0, 0.0, 0
    for i, batch in enumerate(batches(data)):
        if max_batches is not None and i >= max_batches:
            break
        inputs, target = split_batch(to_device(batch, device))
        output = forward(model, inputs)
        if metric == "fidelity":
            ref_out = forward(reference, to_device(inputs, device_of(reference)))
            mask = attention_mask_of(inputs)
            a = embed(output, mask).float()
            b = embed(ref_out, None if mask is None else mask.to(device_of(reference))).float()
            if a.shape != b.shape:
                raise InputError(
                    f"fidelity: embedding shapes differ {tuple(a.shape)} vs {tuple(b.shape)}"
                )
            cos_sum += float(F.cosine_similarity(a, b.to(a.device), dim=-1).sum())
            samples += a.shape[0]
            continue
        loss, n, c = task_loss(output, inputs, target, task)
        total_loss += float(loss) * n
        count, correct = count + n, correct + c
    if metric == "fidelity":
        if not samples:
            raise InputError("evaluate: data yielded no batches")
        return {"fidelity": cos_sum / samples, "samples": samples}
    if not count:
        raise InputError("evaluate: data yielded no labelled samples")
    mean = total_loss / count
    out = {"loss": mean, "samples": count}
    if metric == "perplexity" or task == "lm":
        out["perplexity"] = float(torch.tensor(mean).exp())
    if metric == "accuracy":
        out["accuracy"] = correct / count
    return out
