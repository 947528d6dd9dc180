"""Losses for healing: knowledge distillation and hidden-state matching."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netsculpt.calibration.batches import first_tensor, logits_of
from netsculpt.measure.evaluate import IGNORE, attention_mask_of, embed, lm_labels


def kd_loss(
    student_out: Any,
    teacher_out: Any,
    inputs: Any,
    target: Any,
    task: str,
    temperature: float = 2.0,
) -> torch.Tensor:
    """KL(teacher ‖ student) of temperature-softened softmaxes × T²; 1 − cos for embeddings.

    For language models the KL is averaged over real (non-padding) tokens.

    Example::

        loss = kd_loss(student(x), teacher(x), x, None, "classification", temperature=2.0)
    """
    if task == "embedding":
        mask = attention_mask_of(inputs)
        s, t = embed(student_out, mask).float(), embed(teacher_out, mask).float()
        return (1 - F.cosine_similarity(s, t, dim=-1)).mean()
    s, t = logits_of(student_out).float(), logits_of(teacher_out).float()
    if s.shape != t.shape:
        raise ValueError(f"kd: student logits {tuple(s.shape)} != teacher {tuple(t.shape)}")
    s = s.reshape(-1, s.shape[-1]) / temperature
    t = t.reshape(-1, t.shape[-1]) / temperature
    per_row = F.kl_div(
        F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="none"
    )
    per_row = per_row.sum(-1)
    if task == "lm":
        keep = (lm_labels(inputs, target).reshape(-1) != IGNORE).to(per_row.dtype)
        return (per_row * keep).sum() / keep.sum().clamp_min(1) * temperature**2
    return per_row.mean() * temperature**2


def hidden_names(student: nn.Module, teacher: nn.Module, names: Any = True) -> list[str]:
    """Modules to match: the given names, or every block (item of a ``ModuleList`` /
    ``Sequential``) present in both models; leaf modules when there are no blocks."""
    teacher_names = dict(teacher.named_modules())
    if names is not True:
        return [n for n in names if n in teacher_names]
    blocks = [
        f"{parent}.{child}" if parent else child
        for parent, mod in student.named_modules()
        if isinstance(mod, (nn.ModuleList, nn.Sequential))
        for child, _ in mod.named_children()
    ]
    if not blocks:
        blocks = [n for n, m in student.named_modules() if n and not list(m.children())]
    return [n for n in blocks if n in teacher_names]


@contextmanager
def capture_hidden(
    student: nn.Module, teacher: nn.Module, names: list[str]
) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Record the outputs of ``names`` in both models during forward: ``{"s": {...}, "t": {...}}``."""
    seen: dict[str, dict[str, torch.Tensor]] = {"s": {}, "t": {}}
    handles = []
    for side, model in (("s", student), ("t", teacher)):
        mods = dict(model.named_modules())
        for name in names:

            def hook(_m: nn.Module, _i: Any, out: Any, side: str = side, name: str = name) -> None:
                t = first_tensor(out)
                if t is not None:
                    seen[side][name] = t

            handles.append(mods[name].register_forward_hook(hook))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def hidden_loss(seen: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor | None:
    """Mean relative MSE (MSE / mean square of the teacher's) over same-shaped module outputs."""
    terms = []
    for name, s in seen["s"].items():
        t = seen["t"].get(name)
        if t is not None and t.shape == s.shape:
            t = t.detach().float()
            terms.append(F.mse_loss(s.float(), t) / t.pow(2).mean().clamp_min(1e-8))
    return torch.stack(terms).mean() if terms else None
