"""How much each block matters, measured on data (docs/algorithms.md §1, §4).

Criteria (a block's *effect*; small = safe to remove):

- ``"loss"``: ablation Δloss, ``E[loss(f without b)] - E[loss(f)]`` (needs labelled data).
- ``"kl"``: ablation ``KL(p_f || p_{f without b})`` per sample / token (no labels; for a
  single-output regression, the relative MSE of the output instead).
- ``"influence"``: ShortGPT block influence ``1 - cos(h_in, h_out)`` per token.
- ``"angular"``: Gromov et al. angular distance ``arccos(cos(h_in, h_out)) / pi`` per token.
- ``"taylor"``: gate-Taylor ``|<dL/dh_out, r>|``, the first-order loss change of removing the
  block (one backward pass).
- ``"gradmax"``: GradMax ``sigma_1(sum g h^T)`` (gradient at the block output times its input):
  where new capacity would reduce the loss fastest (used by ``grow``).

"Without b" is what ``cut`` would leave: the skip path (residual), the identity, or the fitted
bridge (a shape-changing layer). Hidden states come from hooks (``netsculpt.calibration``).
With calibration data, the ablations (``loss``, ``kl``) run with every BatchNorm's statistics
re-estimated on that data (``adapt_bn``, :mod:`netsculpt.calibration.bn`): the score is the
damage of the network ``cut`` delivers, whose statistics it re-estimates the same way, not the
damage of stale statistics that no weight change is needed to repair.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
>>> rows = block_table(net, torch.randn(4, 8), [torch.randn(16, 8)], criteria=("kl",))
>>> [r["block"] for r in rows], rows[0]["kl"] >= 0
(['0', '2', '4'], True)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from netsculpt.calibration import Batch, as_batches, collect, outputs, run, span_replaced
from netsculpt.calibration.bn import adapted_bn, batchnorms
from netsculpt.calibration.hooks import first_tensor, task_loss
from netsculpt.core.errors import InputError
from netsculpt.core.utils import eval_mode
from netsculpt.graph.blocks import Block, find_blocks

ABLATION = ("loss", "kl")
HIDDEN = ("influence", "angular")
GRADIENT = ("taylor", "gradmax")
CRITERIA = (*ABLATION, *HIDDEN, *GRADIENT)
TABLE_DEFAULT = ("loss", "kl", "influence", "angular", "taylor")


def to_tokens(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``(tokens, features)``: the feature ``dim`` moved last, everything else flattened."""
    return t.movedim(dim, -1).reshape(-1, t.shape[dim]).double()


def fit_linear(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> tuple:
    """Ridge least squares ``y ~ x @ W.T + b`` on ``(tokens, features)`` rows; ``ridge`` is
    relative to the mean input variance. Returns ``(W, b)`` in float64.

    >>> x = torch.randn(100, 3, dtype=torch.float64)
    >>> w, b = fit_linear(x, x @ torch.eye(3, dtype=torch.float64) + 1, ridge=0.0)
    >>> bool(torch.allclose(w, torch.eye(3, dtype=torch.float64))), round(float(b[0]), 6)
    (True, 1.0)
    """
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    gram = xc.T @ xc
    lam = ridge * float(gram.diagonal().mean()) + 1e-12
    w = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), xc.T @ yc).T
    return w, my - w @ mx


def apply_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """``w`` applied along feature ``dim`` of ``x`` (a Linear for ``-1``, a 1x1 conv for ``1``)."""
    y = x.movedim(dim, -1).to(w.dtype) @ w.T + b
    return y.movedim(-1, dim).to(x.dtype)


def replacement(block: Block, bridge: tuple | None = None) -> Callable | None:
    """``fn(x, y)`` giving what the block's span outputs once removed, or None if it cannot go."""
    if block.how == "skip" or block.how == "identity":
        return lambda x, y: x
    if block.how == "zero":
        return lambda x, y: torch.zeros_like(y)
    if block.how.startswith("bridge") and bridge is not None:
        w, b = bridge
        return lambda x, y: apply_linear(x, w, b, block.feature_dim)
    return None


class BlockScorer:
    """Calibration batches, reference outputs and per-block activations, collected once."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        data: Any = None,
        blocks: list[Block] | None = None,
        *,
        max_batches: int = 8,
        ridge: float = 1e-3,
        loss_fn: Callable | None = None,
        adapt_bn: bool = True,
    ) -> None:
        self.model, self.example_inputs = model, example_inputs
        self.blocks = blocks if blocks is not None else find_blocks(model, example_inputs)
        self.batches: list[Batch] = as_batches(data, example_inputs, max_batches)
        self.loss_fn = loss_fn or task_loss
        self.ridge = ridge
        self.ref = outputs(model, self.batches)
        # re-estimate BatchNorm statistics in ablations only on real data (not example inputs)
        self.adapt_bn = adapt_bn and data is not None and bool(batchnorms(model))
        self._io: dict[str, list] | None = None
        self._grad_io: dict[str, list] | None = None
        self._bridges: dict[str, tuple] = {}

    # -- activations ---------------------------------------------------------------------------
    def _collect(self, grad: bool) -> dict[str, list]:
        firsts = {b.modules[0]: b for b in self.blocks}
        lasts = {b.modules[-1]: b for b in self.blocks}
        seen: dict[str, list] = {b.name: [] for b in self.blocks}
        pending: dict[str, Any] = {}

        def fn(name: str, rec: Any) -> None:
            if name in firsts:
                pending[firsts[name].name] = rec.input
            if name in lasts:
                b = lasts[name]
                seen[b.name].append((pending.pop(b.name, rec.input), rec.output, rec.grad))

        mods = sorted(set(firsts) | set(lasts))
        collect(self.model, mods, self.batches, fn, grad=grad, loss_fn=self.loss_fn)
        return seen

    def io(self, grad: bool = False) -> dict[str, list]:
        """Per block name: ``[(input, output, grad_or_None)]`` for every batch."""
        if grad:
            self._grad_io = self._grad_io or self._collect(True)
            return self._grad_io
        self._io = self._io or self._grad_io or self._collect(False)
        return self._io

    def bridge(self, block: Block) -> tuple:
        """The ridge least-squares bridge ``(W, b)`` from the block's input to its output."""
        if block.name not in self._bridges:
            d = block.feature_dim
            pairs = self.io()[block.name]
            x = torch.cat([to_tokens(i, d) for i, _, _ in pairs])
            y = torch.cat([to_tokens(o, d) for _, o, _ in pairs])
            self._bridges[block.name] = fit_linear(x, y, self.ridge)
        return self._bridges[block.name]

    def replacement(self, block: Block) -> Callable | None:
        if not block.removable:
            return None
        return replacement(block, self.bridge(block) if block.how.startswith("bridge") else None)

    # -- criteria ------------------------------------------------------------------------------
    def score(self, criterion: str, each: Any = None) -> dict[str, float]:
        """``{block name: score}`` for one criterion (NaN where it is undefined). ``each``
        wraps the loop over blocks (a progress bar: ``each(blocks) -> iterable``)."""
        if criterion not in _SCORERS:
            raise InputError(f"unknown block criterion {criterion!r}: one of {', '.join(CRITERIA)}")
        blocks = each(self.blocks) if each is not None else self.blocks
        return {b.name: float(_SCORERS[criterion](self, b)) for b in blocks}

    def _ablated_outputs(self, block: Block) -> list | None:
        fn = self.replacement(block)
        if fn is None:
            return None
        span = span_replaced(self.model, block.modules[0], block.modules[-1], fn)
        bn = adapted_bn(self.model, self.batches) if self.adapt_bn else contextlib.nullcontext()
        with span, bn, eval_mode(self.model), torch.no_grad():
            return [first_tensor(run(self.model, b.inputs)) for b in self.batches]

    def _loss(self, block: Block) -> float:
        if any(b.target is None for b in self.batches):
            raise InputError(
                "criterion 'loss' needs labelled data: pass data=... of (x, y) batches"
            )
        outs = self._ablated_outputs(block)
        if outs is None:
            return math.nan
        deltas = [
            float(self.loss_fn(o, b.target) - self.loss_fn(r, b.target))
            for o, r, b in zip(outs, self.ref, self.batches)
        ]
        return sum(deltas) / len(deltas)

    def _kl(self, block: Block) -> float:
        outs = self._ablated_outputs(block)
        if outs is None:
            return math.nan
        vals = [output_divergence(r, o) for r, o in zip(self.ref, outs)]
        return sum(vals) / len(vals)

    def _hidden(self, block: Block, angular: bool) -> float:
        fn = self.replacement(block)
        if fn is None:
            return math.nan
        vals = []
        for x, y, _ in self.io()[block.name]:
            after = x + y if block.how == "zero" else y
            before = fn(x, y) if block.how.startswith("bridge") else x
            cos = F.cosine_similarity(
                to_tokens(before, block.feature_dim), to_tokens(after, block.feature_dim), dim=-1
            ).clamp(-1, 1)
            vals.append(float((torch.arccos(cos) / math.pi if angular else 1 - cos).mean()))
        return sum(vals) / len(vals)

    def _taylor(self, block: Block) -> float:
        fn = self.replacement(block)
        if fn is None:
            return math.nan
        total = 0.0
        pairs = self.io(grad=True)[block.name]
        for x, y, g in pairs:
            if g is not None:
                total += float((g.double() * (y - fn(x, y)).double()).sum())
        return abs(total) / max(len(pairs), 1)

    def _gradmax(self, block: Block) -> float:
        m, n = None, 0
        for x, _, g in self.io(grad=True)[block.name]:
            if g is None:
                continue
            h, gt = to_tokens(x, block.feature_dim), to_tokens(g, block.feature_dim)
            if h.shape[0] != gt.shape[0]:
                return math.nan
            m = gt.T @ h if m is None else m + gt.T @ h
            n += 1
        return math.nan if m is None else float(torch.linalg.matrix_norm(m, ord=2)) / n


def output_divergence(ref: torch.Tensor, out: torch.Tensor) -> float:
    """Mean ``KL(softmax(ref) || softmax(out))`` over samples / tokens; relative MSE for a
    single output (regression)."""
    ref, out = ref.double(), out.double()
    if ref.shape[-1] == 1:
        return float(((out - ref) ** 2).mean() / ((ref**2).mean() + 1e-12))
    lp, lq = F.log_softmax(ref, -1), F.log_softmax(out, -1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


_SCORERS: dict[str, Callable[[BlockScorer, Block], float]] = {
    "loss": BlockScorer._loss,
    "kl": BlockScorer._kl,
    "influence": lambda s, b: s._hidden(b, angular=False),
    "angular": lambda s, b: s._hidden(b, angular=True),
    "taylor": BlockScorer._taylor,
    "gradmax": BlockScorer._gradmax,
}


def block_table(
    model: nn.Module,
    example_inputs: Any,
    data: Any = None,
    criteria: Sequence[str] = TABLE_DEFAULT,
    *,
    blocks: list[Block] | None = None,
    max_batches: int = 8,
) -> list[dict[str, Any]]:
    """One row per block: name, kind, params, MACs, shapes, how it would be removed, and each
    criterion's score. ``"loss"`` is skipped without labelled data. Reads only.

    Example::

        rows = block_table(model, x, calib, criteria=("kl", "influence"))
    """
    scorer = BlockScorer(model, example_inputs, data, blocks, max_batches=max_batches)
    labelled = all(b.target is not None for b in scorer.batches)
    crit = [c for c in criteria if c != "loss" or labelled]
    scores = {c: scorer.score(c) for c in crit}
    rows = []
    for b in scorer.blocks:
        row: dict[str, Any] = {
            "block": b.name, "kind": b.kind, "params": b.params, "macs": b.macs,
            "in_shape": list(b.in_shape), "out_shape": list(b.out_shape),
            "removable": b.removable, "how": b.how or b.reason,
        }  # fmt: skip
        row.update({c: scores[c][b.name] for c in crit})
        rows.append(row)
    return rows


def plot_block_scores(
    rows: list[dict[str, Any]], path: str | Path, criteria: Sequence[str] | None = None
) -> Path:
    """A bar chart (one panel per criterion) of :func:`block_table` rows, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crit = [c for c in (criteria or CRITERIA) if rows and c in rows[0]]
    if not crit:
        raise InputError("plot_block_scores: no criterion columns in the table")
    names = [r["block"] for r in rows]
    fig, axes = plt.subplots(len(crit), 1, figsize=(max(6, 0.35 * len(names)), 2.2 * len(crit)))
    for ax, c in zip([axes] if len(crit) == 1 else axes, crit):
        vals = [r[c] if r[c] == r[c] else 0.0 for r in rows]  # NaN (undefined) drawn as 0
        ax.bar(range(len(names)), vals, color="tab:blue")
        ax.set_ylabel(c)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
