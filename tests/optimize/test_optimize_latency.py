"""The latency table: its mechanics with an injected timer (exact), a latency-budgeted search
with that timer (deterministic), and the real clock within a stated tolerance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.optimize.latency import LatencyTable, batched, find_layers, grid, monotone

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def fake_ms(module: nn.Module, inputs) -> float:
    """A deterministic 'latency': the MACs of every Linear / Conv in the module, in millions."""
    total = [0]

    def hook(m, args, out):
        total[0] += m.weight.numel() * (out.numel() // out.shape[1 if out.dim() > 2 else -1])

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, _LAYERS)]
    try:
        with torch.no_grad():
            module(inputs)
    finally:
        for h in handles:
            h.remove()
    return total[0] / 1e6


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 32, 5, padding=2), nn.ReLU(), nn.Conv1d(32, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 5),
    ).eval()  # fmt: skip


def test_grid_takes_multiples_and_the_full_size():
    assert grid(128, 16, 5, True) == [16, 48, 80, 96, 128]
    assert grid(40, 8, 9, True) == [8, 16, 24, 32, 40]
    assert grid(10, 8, 5, False) == [10]
    assert monotone([[1.0, 9.0], [2.0, 3.0]]) == [[1.0, 3.0], [2.0, 3.0]]


def test_table_interpolates_a_bilinear_cost_exactly():
    m, x = _net(), torch.randn(1, 1, 40)
    layers = find_layers(m, x, batch=4)
    assert [ly.in_shape[0] for ly in layers] == [4, 4, 4, 4]
    table = LatencyTable.build(m, layers, fake_ms, granularity=8, points=3)
    # MACs are bilinear in (out, in) channels: interpolation between grid points is exact
    for sizes in ({"0": (24, 1), "2": (40, 24), "6": (48, 40), "8": (5, 48)},
                  {"0": (32, 1), "2": (64, 32), "6": (48, 64), "8": (5, 48)}):  # fmt: skip
        widths = {p: d for p, d in sizes.items()}
        pruned = nn.Sequential(
            nn.Conv1d(1, widths["0"][0], 5, padding=2), nn.ReLU(),
            nn.Conv1d(widths["2"][1], widths["2"][0], 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(widths["6"][1], widths["6"][0]),
            nn.ReLU(), nn.Linear(widths["8"][1], 5),
        )  # fmt: skip
        want = fake_ms(pruned, batched(x, 4))
        assert table.layers_ms(sizes, layers) == pytest.approx(want, rel=1e-9)
    # a layer that is gone (a removed block) costs nothing
    assert table.layers_ms({"0": (32, 1)}, layers) < table.layers_ms(sizes, layers)


def test_latency_budget_with_an_injected_timer_is_met_exactly_and_deterministic(
    x, data, fast, fresh
):
    reps = [
        ns.optimize(
            fresh(), x, data=data, target_latency=0.5, timer=fake_ms, latency_batch=8, **fast
        )  # fmt: skip
        for _ in range(2)
    ]
    rep = reps[0]
    assert rep.details["stop"] == "target"
    assert rep.after.latency_ms <= 0.5 * rep.before.latency_ms
    assert reps[0].plan == reps[1].plan
    # the table's prediction is recorded next to the measurement at every accepted step;
    # with a timer that the table can represent, they agree
    for row in rep.details["trace"]:
        assert row["table_ms"] == pytest.approx(row["latency_ms"], rel=1e-6)
    assert rep.details["table_error_max"] < 1e-6
