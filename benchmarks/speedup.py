"""Real CPU speed-up of structured pruning, side by side with Torch-Pruning, in one run.

resnet18, resnet50, mobilenet_v2 (random init) at amount=0.5 with L2 importance; Torch-Pruning
1.6.1 with ``pruning_ratio=0.5``, ``GroupMagnitudeImportance(p=2)``, classifier ignored. For each:
MACs, params, CPU latency at batch 1 and 16 (2 threads, median of 15 after warm-up), speed-up ÷
ideal (ideal = MACs ratio) and the seconds of analysis + pruning. Writes the ``speedup`` section of
``benchmarks/RESULTS.md``.

    python benchmarks/speedup.py [--models resnet18 ...] [--no-torch-pruning]
"""

from __future__ import annotations

import argparse
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
THREADS, REPEATS = 2, 10


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


def prune_fold(model):
    """netsculpt's deployment path: the same pruning, then the exact BatchNorm folds."""
    x = torch.randn(1, 3, 224, 224)
    t = time.perf_counter()
    ns.prune(model, x, amount=0.5, importance="l2")
    ns.merge(model, x)
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


def _interleaved(models: dict, batch: int, rounds: int = 3) -> dict[str, float]:
    """Median latency per model, measured in alternating rounds (min over rounds), so that
    load drifting during the run hits every model alike."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for key, model in models.items():
            v = latency(model, batch)
            best[key] = min(best.get(key, v), v)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), help="torchvision model names")
    ap.add_argument("--no-torch-pruning", action="store_true", help="netsculpt rows only")
    args = ap.parse_args()
    import torchvision

    torch.set_num_threads(THREADS)
    x1 = torch.randn(1, 3, 224, 224)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        base = torchvision.models.get_model(name, weights=None).eval()
        macs0 = count_macs(base, x1)
        pruned, secs = {}, {}
        tools = (("netsculpt", prune_ours), ("Torch-Pruning", prune_tp),
                 ("netsculpt + BN fold", prune_fold))  # fmt: skip
        for tool, fn in tools:
            if tool == "Torch-Pruning" and args.no_torch_pruning:
                continue
            model = copy.deepcopy(base)
            secs[tool] = fn(model)
            pruned[tool] = model.eval()
        same = "Torch-Pruning" in pruned and [
            tuple(p.shape) for p in pruned["netsculpt"].parameters()
        ] == [tuple(p.shape) for p in pruned["Torch-Pruning"].parameters()]
        lat = {b: _interleaved({"base": base, **pruned}, b) for b in (1, 16)}
        for tool, model in pruned.items():
            macs = count_macs(model, x1)
            ideal = macs0 / macs
            same_row = same if tool != "netsculpt + BN fold" and not args.no_torch_pruning else None
            row = {"model": name, "tool": tool, "macs": (macs0, macs), "same": same_row,
                   "params": (sum(p.numel() for p in base.parameters()),
                              sum(p.numel() for p in model.parameters())),
                   "secs": secs[tool], "ideal": ideal}  # fmt: skip
            for b in (1, 16):
                row[f"lat{b}"] = (lat[b]["base"], lat[b][tool])
                row[f"eff{b}"] = (lat[b]["base"] / lat[b][tool]) / ideal
            rows.append(row)
            print(
                f"{name:13s} {tool:13s} MACs x{macs / macs0:.2f}  b1 {row['lat1'][0]:.1f}->"
                f"{row['lat1'][1]:.1f} ms ({row['eff1']:.2f} of ideal)  b16 {row['lat16'][0]:.0f}"
                f"->{row['lat16'][1]:.0f} ms ({row['eff16']:.2f} of ideal)  {secs[tool]:.2f}s"
                f"  same architecture: {same}",
                flush=True,
            )
    write_section("speedup", table(rows))


def table(rows) -> str:
    out = [
        "## Speed-up vs Torch-Pruning (issue 2)",
        "",
        f"`benchmarks/speedup.py`, torch {torch.__version__}, CPU, {THREADS} threads, latency = "
        f"median of {REPEATS} after 3 warm-up runs, best of 3 rounds that alternate the "
        "original and both pruned models, 224×224, amount / pruning_ratio 0.5, L2. "
        "Speed-up ÷ ideal: (latency before / after) ÷ (MACs before / after). All rows measured "
        "in the same run on the same machine. 'netsculpt + BN fold' adds `ns.merge` (exact "
        "BatchNorm folds) after the same pruning: the deployment path, not the like-for-like "
        "comparison. Where both tools produce the same architecture (shape for shape), the "
        "difference between their rows is measurement noise of this shared 2-core machine."
        + (
            ""
            if any(r["tool"] == "Torch-Pruning" for r in rows)
            else " (Torch-Pruning rows not run: --no-torch-pruning.)"
        ),
        "",
        "| model | tool | params | MACs | ms b=1 | ms b=16 | speed-up ÷ ideal b=1 | "
        "speed-up ÷ ideal b=16 | analysis + prune s | same architecture as the other tool |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['tool']} | {r['params'][0] / 1e6:.2f}M → {r['params'][1] / 1e6:.2f}M"
            f" | {r['macs'][0] / 1e9:.2f}G → {r['macs'][1] / 1e9:.2f}G (×{r['macs'][1] / r['macs'][0]:.2f})"
            f" | {r['lat1'][0]:.1f} → {r['lat1'][1]:.1f} | {r['lat16'][0]:.0f} → {r['lat16'][1]:.0f}"
            f" | {r['eff1']:.2f} | {r['eff16']:.2f} | {r['secs']:.2f} | {'–' if r['same'] is None else 'yes' if r['same'] else 'no'} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
