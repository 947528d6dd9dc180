"""Latency budgets on real architectures: ``ns.optimize(target_latency=1/s)`` on torchvision's
resnet50 and mobilenet_v2 (random init: latency only, no quality), at batch 1 and 16.

For every model and batch size:

- ``optimize`` searches width reductions, block removals and exact BatchNorm folds for
  ``1/s`` of the measured latency (no data, no heal: the proxy reads the example inputs);
- a **uniform** L2 prune (``ns.prune(target_macs=...)``) to the MACs ``optimize`` reached, with
  the same exact BatchNorm folds (``ns.merge``), is the width-only baseline at equal MACs;
- the base, the optimized and the uniform model are then timed in interleaved rounds (each
  round times all three, in a rotating order; the median over rounds is reported), because
  the machine these run on is shared with other processes.

Figures: delivered latency ÷ target (within 5%?), the speed-ups of both at equal MACs, the
latency table's error at every accepted step of the search (its prediction ÷ the measured
model − 1; median and worst, with the step where it was worst) and the search seconds. The
table goes into ``benchmarks/RESULTS.md`` between ``<!-- optimize-latency:begin -->`` and
``<!-- optimize-latency:end -->``.

Run: ``.venv/bin/python benchmarks/optimize_latency.py [--models resnet50 mobilenet_v2]
[--batches 1 16] [--speedup 2] [--size 224]`` (minutes per model and batch size).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch
import torchvision

import netsculpt as ns
from netsculpt.optimize.latency import batched, clock

try:
    from benchmarks._results import stamp, write_section
except ImportError:  # run as a script from the repository root
    from _results import stamp, write_section


def interleaved(models: dict[str, torch.nn.Module], x, threads: int, rounds: int) -> dict:
    """The median over ``rounds`` of each model's time, all models timed in every round (the
    order rotates), so that a busy spell of the machine falls on all of them alike."""
    timer = clock(threads, rounds=3)
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            times[n].append(timer(models[n], x))
    return {n: statistics.median(v) for n, v in times.items()}


def one(args, arch: str, batch: int) -> dict:
    torch.manual_seed(0)
    base = getattr(torchvision.models, arch)().eval()
    x = torch.randn(1, 3, args.size, args.size)
    opt = copy.deepcopy(base)
    t0 = time.perf_counter()
    rep = ns.optimize(opt, x, target_latency=1 / args.speedup, heal=False, latency_batch=batch,
                      threads=args.threads, latency_rounds=args.rounds, step=args.step,
                      latency_points=args.points, time_budget=args.time_budget, seed=0,
                      progress=not args.quiet)  # fmt: skip
    search_s = time.perf_counter() - t0
    macs0, macs1 = ns.measure(base, x).macs, ns.measure(opt, x).macs
    uniform = copy.deepcopy(base)
    ns.prune(uniform, x, target_macs=macs1 / macs0, importance="l2", uniform=True)
    ns.merge(uniform, x)  # the same exact BatchNorm folds optimize starts with
    ns.make_permanent(uniform)
    ms = interleaved({"base": base, "optimize": opt, "uniform": uniform}, batched(x, batch),
                     args.threads, args.final_rounds)  # fmt: skip
    trace = [r for r in rep.details["trace"] if "table_error" in r]
    errs = [r["table_error"] for r in trace]
    worst = max(trace, key=lambda r: abs(r["table_error"])) if trace else None
    blocks = sum(1 for a in rep.plan.actions if a.kind == "remove_block")
    return {
        "model": arch,
        "batch": batch,
        "base_ms": ms["base"],
        "target": 1 / args.speedup,
        "delivered": ms["optimize"] / ms["base"],
        "opt_speedup": ms["base"] / ms["optimize"],
        "uni_speedup": ms["base"] / ms["uniform"],
        "macs": macs1 / macs0,
        "uni_macs": ns.measure(uniform, x).macs / macs0,
        "steps": len(trace) - 1,
        "blocks": blocks,
        "stop": rep.details["stop"],
        "err_median": statistics.median(abs(e) for e in errs) if errs else float("nan"),
        "err_worst": worst["table_error"] if worst else float("nan"),
        "worst_at": f"step {trace.index(worst)} ({worst['edit']})" if worst else "",
        "search_s": search_s,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| model | batch | base ms | delivered ÷ base (target) | delivered ÷ target | met "
        "(≤ +5%)? | optimize speed-up "
        "| uniform speed-up, same MACs | MACs (optimize / uniform) | steps (blocks) | stop "
        "| table error: median, worst (where) | search s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["delivered"] / r["target"]
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['base_ms']:.1f} | {r['delivered']:.3f} "
            f"({r['target']:.3f}) | {ratio:.3f} | {'yes' if ratio <= 1.05 else 'no'} | "
            f"{r['opt_speedup']:.2f}× | "
            f"{r['uni_speedup']:.2f}× | {r['macs']:.3f} / {r['uni_macs']:.3f} | {r['steps']} "
            f"({r['blocks']}) | {r['stop']} | {r['err_median'] * 100:.0f}%, "
            f"{r['err_worst'] * 100:+.0f}% ({r['worst_at']}) | {r['search_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--speedup", type=float, default=2.0, help="target: 1/speedup of the latency")
    p.add_argument("--size", type=int, default=224, help="input resolution")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="rounds of the search's timings")
    p.add_argument("--final-rounds", type=int, default=7, help="interleaved rounds at the end")
    p.add_argument("--step", type=float, default=0.1, help="optimize's step")
    p.add_argument("--points", type=int, default=3, help="optimize's latency_points")
    p.add_argument("--time-budget", type=float, default=240.0, help="seconds per search")
    p.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md")
    p.add_argument("--quiet", action="store_true", help="no per-step lines from optimize")
    args = p.parse_args()
    command = " ".join(["python", "benchmarks/optimize_latency.py", *sys.argv[1:]])
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    rows = []
    for arch in args.models:
        for b in args.batches:
            rows.append(one(args, arch, b))
            print(rows[-1], flush=True)
    text = table(rows)
    settings = (
        f"Random init, {args.size}×{args.size} inputs, {args.threads} threads; optimize without "
        f"data or heals, step {args.step:g}, latency_points {args.points}, "
        f"{args.rounds} rounds per search timing, time budget {args.time_budget:g} s; final "
        f"timings: {args.final_rounds} interleaved rounds (median); load average (1 min) "
        f"{load0:.1f} at the start and {os.getloadavg()[0]:.1f} at the end on "
        f"{os.cpu_count()} cores; {(time.perf_counter() - t0) / 60:.1f} min in all. "
        "Table error: the latency table's prediction ÷ the measured model − 1 at each accepted "
        "step (the step with the largest |error| named)."
    )
    print(text)
    if not args.no_write:
        write_section("optimize-latency", stamp(command) + "\n\n" + settings + "\n\n" + text)


if __name__ == "__main__":
    main()
