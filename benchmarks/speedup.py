"""Real CPU speed-up of structured pruning, side by side with Torch-Pruning, in one run.

resnet18, resnet50, mobilenet_v2 (random init) at amount=0.5 with L2 importance; Torch-Pruning
1.6.1 with ``pruning_ratio=0.5``, ``GroupMagnitudeImportance(p=2)``, classifier ignored. For each:
MACs, params, CPU latency at batch 1 and 16 (2 threads, median of 15 after warm-up), speed-up ÷
ideal (ideal = MACs ratio) and the seconds of analysis + pruning.

    python benchmarks/speedup.py
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

import netsculpt as ns
from netsculpt.measure import count_macs

try:
    from benchmarks._results import write_section
except ImportError:
    from _results import write_section

MODELS = ("resnet18", "resnet50", "mobilenet_v2")
THREADS, REPEATS = 2, 15


def latency(model, batch: int) -> float:
    x = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def prune_ours(model):
    x = torch.randn(1, 3, 224, 224)
    t = time.perf_counter()
    ns.prune(model, x, amount=0.5, importance="l2")
    return time.perf_counter() - t


def prune_tp(model):
    import torch_pruning as tp

    x = torch.randn(1, 3, 224, 224)
    t = time.perf_counter()
    pruner = tp.pruner.MetaPruner(
        model,
        x,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=[
            m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1000
        ],
    )
    pruner.step()
    return time.perf_counter() - t


def main() -> None:
    import torchvision

    torch.set_num_threads(THREADS)
    x1 = torch.randn(1, 3, 224, 224)
    rows = []
    for name in MODELS:
        torch.manual_seed(0)
        base = torchvision.models.get_model(name, weights=None).eval()
        macs0 = count_macs(base, x1)
        lat0 = {b: latency(base, b) for b in (1, 16)}
        for tool, fn in (("netsculpt", prune_ours), ("Torch-Pruning", prune_tp)):
            model = copy.deepcopy(base)
            secs = fn(model)
            model.eval()
            macs = count_macs(model, x1)
            lat = {b: latency(model, b) for b in (1, 16)}
            ideal = macs0 / macs
            row = {
                "model": name,
                "tool": tool,
                "macs": (macs0, macs),
                "params": (
                    sum(p.numel() for p in base.parameters()),
                    sum(p.numel() for p in model.parameters()),
                ),
                "secs": secs,
                "ideal": ideal,
            }
            for b in (1, 16):
                row[f"lat{b}"] = (lat0[b], lat[b])
                row[f"eff{b}"] = (lat0[b] / lat[b]) / ideal
            rows.append(row)
            print(
                f"{name:13s} {tool:13s} MACs x{macs / macs0:.2f}  b1 {lat0[1]:.1f}->{lat[1]:.1f} ms"
                f" ({row['eff1']:.2f} of ideal)  b16 {lat0[16]:.0f}->{lat[16]:.0f} ms "
                f"({row['eff16']:.2f} of ideal)  {secs:.2f}s",
                flush=True,
            )
    write_section("speedup", table(rows))


def table(rows) -> str:
    out = [
        "## Speed-up vs Torch-Pruning (issue 2)",
        "",
        f"`benchmarks/speedup.py`, torch {torch.__version__}, CPU, {THREADS} threads, latency = "
        f"median of {REPEATS} after 3 warm-up runs, 224×224, amount / pruning_ratio 0.5, L2. "
        "Speed-up ÷ ideal: (latency before / after) ÷ (MACs before / after). Both tools measured "
        "in the same run on the same machine.",
        "",
        "| model | tool | params | MACs | ms b=1 | ms b=16 | speed-up ÷ ideal b=1 | "
        "speed-up ÷ ideal b=16 | analysis + prune s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['tool']} | {r['params'][0] / 1e6:.2f}M → {r['params'][1] / 1e6:.2f}M"
            f" | {r['macs'][0] / 1e9:.2f}G → {r['macs'][1] / 1e9:.2f}G (×{r['macs'][1] / r['macs'][0]:.2f})"
            f" | {r['lat1'][0]:.1f} → {r['lat1'][1]:.1f} | {r['lat16'][0]:.0f} → {r['lat16'][1]:.0f}"
            f" | {r['eff1']:.2f} | {r['eff16']:.2f} | {r['secs']:.2f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
