"""Evidence for optimize: a wide residual 1-D CNN on MNIST-1D (12 residual blocks of width 128)
made 2× and 3× faster at batch 256 on 2 threads, four ways:

- ``ns.optimize(target_latency=1/s, heal=True)`` (width reductions, block removals where this
  install's ``cut`` plans them, exact BatchNorm folds; latency from the per-layer table, checked
  by a real measurement at every step);
- Torch-Pruning ``MetaPruner`` with uniform ``GroupMagnitudeImportance(p=2)``, its channel
  ratio bisected until the *measured* latency matches the one ``optimize`` reached;
- ``ns.prune(importance="activation", data=calib)`` (uniform), its amount bisected the same way;
- ``ns.cut(count=k)`` alone (block removal, KL criterion), ``k`` the fewest blocks that reach
  that latency (or all removable blocks).

Every result is then healed with the same KD budget from the unpruned model (``ns.heal``) and
scored on 20,000 fresh MNIST-1D samples (``mnist1d_samples(20000, 43)``). Latency: the median
of rounds of one forward pass at batch 256 with 2 threads (``netsculpt.optimize.latency.clock``).
The table goes into ``benchmarks/RESULTS.md`` between ``<!-- optimize:begin -->`` and
``<!-- optimize:end -->``.

Run: ``.venv/bin/python benchmarks/optimize.py [--seeds 0 1 2] [--speedups 2 3]`` (long: each
seed trains the CNN and runs four searches per speed-up). ``--smoke`` runs a 2-block, width-16
CNN for one epoch without Torch-Pruning and writes nothing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import netsculpt as ns
from netsculpt.data import load_dataset, make_loader
from netsculpt.data.datasets import mnist1d_samples
from netsculpt.optimize.latency import batched, clock

try:
    from benchmarks._results import stamp, write_section
except ImportError:  # run as a script from the repository root
    from _results import stamp, write_section

X = torch.randn(1, 40)
METHODS = ("optimize", "tp-l2", "prune-activation", "cut")


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv1d(c, c, 3, padding=1, bias=False), nn.BatchNorm1d(c)
        self.conv2, self.bn2 = nn.Conv1d(c, c, 3, padding=1, bias=False), nn.BatchNorm1d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class WideResCNN1D(nn.Module):
    """Stem → ``blocks`` residual blocks of ``width`` channels at length 40 → pool → linear."""

    def __init__(self, width: int = 128, blocks: int = 12, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(1, width, 5, padding=2, bias=False),
                                  nn.BatchNorm1d(width), nn.ReLU())  # fmt: skip
        self.blocks = nn.Sequential(*(Block(width) for _ in range(blocks)))
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x.unsqueeze(1))).mean(-1))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 1000]).argmax(-1) for i in range(0, len(x), 1000)])
    return float((pred == y).float().mean())


def bisect(make, latency, goal: float, hi: float = 0.95, iters: int = 7):
    """The smallest setting in [0, hi] whose model's measured latency is ≤ ``goal``."""
    lo, best = 0.0, None
    for _ in range(iters):
        mid = (lo + hi) / 2
        m = make(mid)
        if latency(m) <= goal:
            hi, best = mid, m
        else:
            lo = mid
    return best if best is not None else make(hi)


def tp_uniform(model: nn.Module, ratio: float) -> nn.Module:
    import torch_pruning as tp

    m = copy.deepcopy(model).eval()
    tp.pruner.MetaPruner(m, X, importance=tp.importance.GroupMagnitudeImportance(p=2),
                         pruning_ratio=ratio, ignored_layers=[m.fc]).step()  # fmt: skip
    return m


def run_seed(args, seed: int, test) -> list[dict]:
    torch.manual_seed(seed)
    base = WideResCNN1D(args.width, args.blocks)
    train = make_loader(load_dataset("mnist1d", "train"), 64, shuffle=True, seed=seed)
    calib = make_loader(load_dataset("mnist1d", "val"), 64)
    ns.heal(base, train, epochs=args.epochs, lr=3e-3, progress=False, seed=seed)
    base.eval()
    timer = clock(args.threads, rounds=args.rounds)
    xb = batched(X, args.batch)

    def latency(m: nn.Module) -> float:
        return timer(m, xb)

    base_ms = statistics.median(latency(base) for _ in range(3))  # the noisiest one
    base_acc = accuracy(base, *test)
    rows = []
    for s in args.speedups:
        t0 = time.perf_counter()
        opt = copy.deepcopy(base)
        rep = ns.optimize(opt, X, data=calib, target_latency=1 / s, latency_batch=args.batch,
                          threads=args.threads, heal_steps=args.heal_steps, seed=seed,
                          time_budget=args.time_budget, progress=not args.quiet)  # fmt: skip
        goal = statistics.median(latency(opt) for _ in range(3))  # what the others match
        models = {"optimize": (opt, time.perf_counter() - t0, rep.details["stop"])}
        if not args.no_torch_pruning:
            t0 = time.perf_counter()
            try:
                m = bisect(lambda r: tp_uniform(base, r), latency, goal)
                models["tp-l2"] = (m, time.perf_counter() - t0, "")
            except ImportError as e:
                models["tp-l2"] = (None, 0.0, f"ImportError: {e}")

        def prune(a: float) -> nn.Module:
            m = copy.deepcopy(base)
            ns.prune(m, X, amount=max(a, 1e-3), importance="activation", data=calib)
            return m

        t0 = time.perf_counter()
        models["prune-activation"] = (bisect(prune, latency, goal), time.perf_counter() - t0, "")
        t0 = time.perf_counter()
        m, note = cut_to(base, calib, latency, goal, args.blocks)
        models["cut"] = (m, time.perf_counter() - t0, note)
        for name, (m, secs, note) in models.items():
            row = {"seed": seed, "speedup": s, "method": name, "note": note, "seconds": secs}
            if m is not None:
                before = accuracy(m, *test)
                ns.heal(m, train, teacher=base, loss="kd", steps=args.final_heal, progress=False,
                        seed=seed)  # fmt: skip
                row.update(latency=latency(m) / base_ms, macs=ns.measure(m, X).macs,
                           acc_before_heal=before, acc=accuracy(m.eval(), *test))  # fmt: skip
            rows.append(row)
            print(row, flush=True)
    rows.append({"seed": seed, "speedup": 1, "method": "base", "latency": 1.0, "acc": base_acc,
                 "base_ms": base_ms})  # fmt: skip
    return rows


def cut_to(base, calib, latency, goal, blocks):
    """``ns.cut(count=k)`` for the fewest ``k`` that reaches ``goal``."""
    m = None
    for k in range(1, blocks + 1):
        m = copy.deepcopy(base)
        ns.cut(m, X, count=k, data=calib)
        if latency(m) <= goal:
            return m, f"{k} blocks"
    return m, f"{blocks} blocks: latency goal not reached"


def table(rows: list[dict]) -> str:
    lines = ["| speed-up | method | latency (× base) | speed-up ÷ target | test acc, no heal | "
             "test acc, KD heal | search s |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in sorted({r["speedup"] for r in rows if r["method"] != "base"}):
        for name in METHODS:
            rs = [r for r in rows if r["speedup"] == s and r["method"] == name and "acc" in r]
            if not rs:
                continue

            def ms(key: str, rs: list = rs, f=lambda v: v) -> str:
                v = [f(r[key]) for r in rs]
                sd = statistics.pstdev(v) if len(v) > 1 else 0.0
                return f"{statistics.mean(v):.3f} ± {sd:.3f}"

            lines.append(f"| {s:g}× | {name} | {ms('latency')} | "
                         f"{ms('latency', f=lambda v, s=s: 1 / v / s)} | {ms('acc_before_heal')} | "
                         f"{ms('acc')} | {statistics.mean(r['seconds'] for r in rs):.0f} |")  # fmt: skip
    base = [r for r in rows if r["method"] == "base"]
    lines.append(f"\nbase: test accuracy {statistics.mean(r['acc'] for r in base):.3f}, "
                 f"{statistics.mean(r['base_ms'] for r in base):.1f} ms")  # fmt: skip
    return "\n".join(lines + [""] + paired(rows))


def paired(rows: list[dict]) -> list[str]:
    """Per target: optimize against every other row, seed by seed (test accuracy after the KD
    heal), and the stop reasons of the searches."""
    out = []
    for s in sorted({r["speedup"] for r in rows if r["method"] != "base"}):
        opt = {r["seed"]: r for r in rows if r["speedup"] == s and r["method"] == "optimize"}
        stops = [str(r["note"]) for r in opt.values()]
        out.append(f"- {s:g}×: optimize stopped at "
                   + ", ".join(f"{k} ({stops.count(k)})" for k in sorted(set(stops))))  # fmt: skip
        for name in METHODS[1:]:
            pairs = [(opt[r["seed"]]["acc"], r["acc"]) for r in rows if r["speedup"] == s
                     and r["method"] == name and "acc" in r and "acc" in opt.get(r["seed"], {})]  # fmt: skip
            if not pairs:
                continue
            wins = sum(a > b for a, b in pairs)
            diff = statistics.mean(a - b for a, b in pairs)
            verdict = "loses" if diff < 0 else "wins"
            out.append(f"  - vs {name}: optimize {verdict} on the mean ({diff * 100:+.1f} pp), "
                       f"higher on {wins} of {len(pairs)} seeds")  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--speedups", type=float, nargs="+", default=[2.0, 3.0])
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--blocks", type=int, default=12)
    p.add_argument("--epochs", type=int, default=15, help="training epochs of the base CNN")
    p.add_argument("--batch", type=int, default=256, help="latency batch size")
    p.add_argument("--threads", type=int, default=2, help="latency threads")
    p.add_argument("--rounds", type=int, default=7, help="latency rounds (median)")
    p.add_argument("--heal-steps", type=int, default=30, help="optimize's heals between steps")
    p.add_argument("--final-heal", type=int, default=300, help="KD steps after every method")
    p.add_argument("--time-budget", type=float, default=3600.0)
    p.add_argument("--test-samples", type=int, default=20_000)
    p.add_argument("--no-torch-pruning", action="store_true")
    p.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md")
    p.add_argument("--quiet", action="store_true", help="no per-step lines from optimize")
    p.add_argument("--smoke", action="store_true", help="2 blocks of width 16, 1 epoch, 1 seed")
    args = p.parse_args()
    if args.smoke:
        args.seeds, args.speedups, args.width, args.blocks, args.epochs = [0], [2.0], 16, 2, 1
        args.batch, args.rounds, args.heal_steps, args.final_heal = 32, 3, 5, 5
        args.test_samples, args.no_torch_pruning, args.no_write = 2000, True, True
    x, y = mnist1d_samples(args.test_samples, seed=43)
    test = (torch.from_numpy(x), torch.from_numpy(y))
    command = " ".join(["python", "benchmarks/optimize.py", *sys.argv[1:]])
    t0 = time.perf_counter()
    rows = [r for seed in args.seeds for r in run_seed(args, seed, test)]
    text = table(rows)
    settings = (
        f"{args.blocks} residual blocks of width {args.width} trained {args.epochs} epochs; "
        f"latency at batch {args.batch}, {args.threads} threads, median of {args.rounds} rounds "
        f"(a shared 2-core machine: other processes ran alongside); optimize's heals "
        f"{args.heal_steps} steps, time budget {args.time_budget:g} s; every row then "
        f"{args.final_heal} KD steps from the unpruned model; test: {args.test_samples} fresh "
        f"samples; seeds {' '.join(map(str, args.seeds))}; "
        f"{(time.perf_counter() - t0) / 60:.1f} min in all."
    )
    print(text)
    if not args.no_write:
        write_section(
            "optimize", stamp(command, ("torch_pruning",)) + "\n\n" + settings + "\n\n" + text
        )


if __name__ == "__main__":
    main()
