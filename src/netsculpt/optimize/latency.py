"""A per-layer latency table, measured once on this device (HALP-style, docs/algorithms.md §7).

Each Linear / Conv of the model is timed alone, at the batch size and thread count the user
asked for, on a grid of channel counts (multiples of the search's granularity, ``points`` per
prunable dim, the full size included), and read back by bilinear interpolation. Layers of the
same kind and input shape share one table (a stack of equal blocks is timed once). The rest of
the model (norms, activations, adds, pooling) is the measured whole-model time minus the table's
sum, half of it fixed and half scaled with the layers' output sizes. The search predicts a candidate's saving from the
table and checks the table against a real measurement of the whole model at every accepted step.

A ``timer(module, inputs) -> ms`` replaces the clock (a deterministic cost in tests, a remote
device).

>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
>>> fake = lambda mod, x: float(sum(p.numel() for p in mod.parameters()))
>>> layers = find_layers(m, torch.zeros(2, 16))
>>> t = LatencyTable.build(m, layers, fake, granularity=8, points=3)
>>> t.layers_ms({"0": (16, 16), "2": (4, 16)}, layers)
340.0
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.calibration.batches import run
from netsculpt.utils import eval_mode

Timer = Callable[[nn.Module, Any], float]
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def clock(
    threads: int = 2, rounds: int = 5, min_round_ms: float = 20.0, stat: str = "median"
) -> Timer:
    """A timer: the median (``stat="min"``: the fastest) over ``rounds`` of the mean time of a
    forward pass, in eval and inference mode with ``threads`` intra-op threads (restored after).
    A round repeats the pass until it lasts about ``min_round_ms`` (a fast layer is timed over
    many calls, a slow model once per round); one pass first warms up."""

    def timer(module: nn.Module, inputs: Any) -> float:
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with eval_mode(module), torch.inference_mode():
                t0 = time.perf_counter()
                run(module, inputs)
                first = (time.perf_counter() - t0) * 1000.0
                repeats = max(1, min(50, int(min_round_ms / max(first, 1e-3))))
                times = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    for _ in range(repeats):
                        run(module, inputs)
                    times.append((time.perf_counter() - t0) * 1000.0 / repeats)
        finally:
            torch.set_num_threads(old)
        return min(times) if stat == "min" else statistics.median(times)

    return timer


def batched(example_inputs: Any, batch: int | None) -> Any:
    """The example inputs at batch size ``batch`` (rows repeated in turn); as given for None."""
    if batch is None:
        return example_inputs

    def grow(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            return t
        idx = torch.arange(batch) % t.shape[0]
        return t.index_select(0, idx).contiguous()

    if isinstance(example_inputs, dict):
        return {k: grow(v) for k, v in example_inputs.items()}
    if isinstance(example_inputs, (list, tuple)):
        return type(example_inputs)(grow(v) for v in example_inputs)
    return grow(example_inputs)


@dataclass
class Layer:
    """One timed layer of the model as it is now: its path, kind key and input shape."""

    path: str
    module: nn.Module
    in_shape: tuple[int, ...]
    calls: int = 1

    @property
    def dims(self) -> tuple[int, int]:
        w = self.module.weight
        return int(w.shape[0]), int(w.shape[1])

    @property
    def depthwise(self) -> bool:
        m = self.module
        return isinstance(m, _CONV) and m.groups > 1 and m.groups == m.in_channels

    @property
    def family(self) -> tuple:
        """What the layer's time depends on besides its two channel counts."""
        m = self.module
        spatial = self.in_shape[2:] if isinstance(m, _CONV) else self.in_shape[1:-1]
        conv = ()
        if isinstance(m, _CONV):
            groups = "dw" if self.depthwise else m.groups
            conv = (m.kernel_size, m.stride, m.padding, m.dilation, groups, m.padding_mode)
        bias = getattr(m, "bias", None) is not None
        return (type(m).__name__, self.in_shape[0], spatial, conv, bias, str(m.weight.dtype))


def find_layers(model: nn.Module, inputs: Any, batch: int | None = None) -> list[Layer]:
    """The Linear / Conv layers ``inputs`` runs through, with their input shapes (one forward;
    ``batch``: the batch size the shapes are read at, in place of that of ``inputs``)."""
    found: dict[str, Layer] = {}
    handles = []
    for path, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, *_CONV)) and isinstance(
            getattr(mod, "weight", None), torch.Tensor
        ):

            def hook(m: nn.Module, args: tuple, _out: Any, path: str = path) -> None:
                x = args[0] if args else None
                if not isinstance(x, torch.Tensor):
                    return
                if path in found:
                    found[path].calls += 1
                else:
                    shape = tuple(int(s) for s in x.shape)
                    if batch is not None and len(shape) > 1:
                        shape = (batch, *shape[1:])
                    found[path] = Layer(path, m, shape)

            handles.append(mod.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            run(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return list(found.values())


def grid(size: int, granularity: int, points: int, prunable: bool) -> list[int]:
    """Channel counts to time for a dim of ``size``: ``points`` multiples of ``granularity``
    spread from the smallest to ``size`` (which is always included); just ``size`` when the
    dim cannot change."""
    if not prunable or size <= 1:
        return [size]
    q = max(1, granularity)
    allowed = sorted({*range(q, size + 1, q), size}) if size > q else list(range(1, size + 1))
    if len(allowed) <= points:
        return allowed
    pick = np.unique(np.round(np.linspace(0, len(allowed) - 1, max(points, 2))).astype(int))
    return [allowed[i] for i in pick]


def _interp(xs: Sequence[int], x: float) -> tuple[int, int, float]:
    """Indices and weight of ``x`` between grid points (clamped at the ends)."""
    if len(xs) == 1 or x <= xs[0]:
        return 0, 0, 0.0
    if x >= xs[-1]:
        return len(xs) - 1, len(xs) - 1, 0.0
    j = int(np.searchsorted(xs, x))
    lo, hi = xs[j - 1], xs[j]
    return j - 1, j, (x - lo) / (hi - lo)


@dataclass
class Entry:
    """The times of one family of layers on a grid of (out, in) channel counts."""

    family: tuple
    size: tuple[int, int]
    out_grid: list[int]
    in_grid: list[int]
    ms: list[list[float]]

    def predict(self, d0: int, d1: int) -> float:
        i0, i1, a = _interp(self.out_grid, d0)
        j0, j1, b = _interp(self.in_grid, d1)
        t = self.ms
        top = (1 - b) * t[i0][j0] + b * t[i0][j1]
        bottom = (1 - b) * t[i1][j0] + b * t[i1][j1]
        return float((1 - a) * top + a * bottom)

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.family[0],
            "size": list(self.size),
            "out": self.out_grid,
            "in": self.in_grid,
            "ms": [[round(v, 5) for v in row] for row in self.ms],
        }


def monotone(ms: list[list[float]]) -> list[list[float]]:
    """Times that never grow when channels go: each entry is the least of itself and every
    entry at as many or more channels (a busy machine only ever adds time, so the smaller
    reading is kept).

    >>> monotone([[1.0, 5.0], [2.0, 3.0]])
    [[1.0, 3.0], [2.0, 3.0]]
    """
    a = np.asarray(ms, dtype=np.float64)
    a = np.minimum.accumulate(a[::-1, ::-1], axis=0)
    a = np.minimum.accumulate(a, axis=1)[::-1, ::-1]
    return a.tolist()


def _probe(layer: Layer, d0: int, d1: int) -> tuple[nn.Module, torch.Tensor]:
    """A fresh layer like ``layer`` with weight dims (d0, d1), and an input for it."""
    m = layer.module
    dtype = m.weight.dtype
    shape = list(layer.in_shape)
    bias = getattr(m, "bias", None) is not None
    if isinstance(m, nn.Linear):
        new: nn.Module = nn.Linear(d1, d0, bias=bias)
        shape[-1] = d1
    else:
        groups = d0 if layer.depthwise else m.groups
        cin = d0 if layer.depthwise else d1 * groups
        new = type(m)(cin, d0, m.kernel_size, m.stride, m.padding, m.dilation, groups, bias,
                      m.padding_mode)  # fmt: skip
        shape[1] = cin
    gen = torch.Generator().manual_seed(0)
    return new.to(dtype).eval(), torch.randn(shape, generator=gen).to(dtype)


@dataclass
class LatencyTable:
    """Per-layer times by family, and the rest of the model's time at the start."""

    entries: list[Entry]
    rest_ms: float = 0.0
    scale: float = 1.0  # the layers' times × scale + the rest = the measured model at the start
    rest_elems: float = 1.0  # output elements of the timed layers when ``rest_ms`` was measured
    seconds: float = 0.0
    checks: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        model: nn.Module,
        layers: list[Layer],
        timer: Timer,
        *,
        granularity: int | Callable[[int], int] = 8,
        points: int = 5,
        prunable: Callable[[Layer, int], bool] | None = None,
        whole_ms: float | None = None,
    ) -> LatencyTable:
        """Time every family of ``layers`` on its grid; ``prunable(layer, dim)``: whether that
        weight dim can lose channels (else one point); ``granularity``: the width multiple, or
        a function of the dim's size; ``whole_ms``: the measured model."""
        t0 = time.perf_counter()
        q = granularity if callable(granularity) else (lambda n: granularity)
        entries: dict[tuple, Entry] = {}
        for layer in layers:
            d0, d1 = layer.dims
            can = [prunable(layer, d) if prunable else True for d in (0, 1)]
            if layer.depthwise:
                can[1] = False
            elif isinstance(layer.module, _CONV) and layer.module.groups > 1:
                can = [False, False]  # grouped conv: widths must stay divisible; timed as is
            g0 = grid(d0, q(d0), points, can[0])
            g1 = grid(d1, q(d1), points, can[1])
            key = (layer.family, d0, d1, tuple(g0), tuple(g1))
            if key in entries:
                continue
            ms = [[timer(*_probe(layer, a, b)) for b in g1] for a in g0]
            entries[key] = Entry(layer.family, (d0, d1), g0, g1, monotone(ms))
        table = cls(list(entries.values()))
        if whole_ms is not None:
            sizes = {ly.path: ly.dims for ly in layers}
            timed = table.layers_ms(sizes, layers)
            # anchored on the measured model: the rest is what the layers leave of it; layers
            # that sum to more than the model (timed alone, or a busy machine) are scaled down
            table.scale = min(1.0, whole_ms / timed) if timed > 0 else 1.0
            table.rest_ms = max(0.0, whole_ms - timed)
            table.rest_elems = float(max(1, out_elements(layers, sizes)))
        table.seconds = time.perf_counter() - t0
        return table

    def entry(self, layer: Layer, d0: int, d1: int) -> Entry | None:
        """The table of ``layer``'s family that covers (d0, d1) most tightly."""
        same = [e for e in self.entries if e.family == layer.family]
        if not same:
            return None
        cover = [e for e in same if e.size[0] >= d0 and e.size[1] >= d1]
        pool = cover or same
        return min(pool, key=lambda e: (e.size[0] * e.size[1]) * (1 if cover else -1))

    def layers_ms(self, sizes: dict[str, tuple[int, int]], layers: list[Layer]) -> float:
        """The summed table times of ``layers`` at ``sizes`` (``{path: (out, in)}``; a layer
        missing from ``sizes`` is gone)."""
        total = 0.0
        for layer in layers:
            if layer.path not in sizes:
                continue
            d0, d1 = sizes[layer.path]
            e = self.entry(layer, d0, d1)
            if e is not None:
                total += layer.calls * e.predict(d0, d1)
        return total

    def predict(self, layers: list[Layer], sizes: dict[str, tuple[int, int]]) -> float:
        """The whole model's time at ``sizes``: the layers' table times plus the rest, scaled
        with the layers' output elements."""
        return self.scale * self.layers_ms(sizes, layers) + self.rest(layers, sizes)

    def rest(self, layers: list[Layer], sizes: dict[str, tuple[int, int]]) -> float:
        """The untimed part at ``sizes``: half of it a fixed cost (dispatch, small ops), half
        proportional to the layers' output elements (norms, activations and adds on them)."""
        ratio = out_elements(layers, sizes) / self.rest_elems
        return self.rest_ms * (0.5 + 0.5 * ratio)

    def as_dict(self) -> dict[str, Any]:
        return {
            "entries": [e.as_dict() for e in self.entries],
            "rest_ms": round(self.rest_ms, 5),
            "scale": round(self.scale, 5),
            "seconds": round(self.seconds, 3),
            "checks": self.checks,
        }


def out_elements(layers: list[Layer], sizes: dict[str, tuple[int, int]]) -> int:
    """Output elements of the layers at ``sizes`` (channels × batch × positions, per call)."""
    total = 0
    for ly in layers:
        if ly.path not in sizes:
            continue
        if isinstance(ly.module, _CONV):
            stride = int(np.prod(ly.module.stride)) or 1
            positions = ly.in_shape[0] * int(np.prod(ly.in_shape[2:])) // stride
        else:
            positions = int(np.prod(ly.in_shape[:-1]))
        total += ly.calls * sizes[ly.path][0] * max(1, positions)
    return total
