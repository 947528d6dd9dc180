"""Which importance ``ns.prune`` uses by default when ``data=`` is given, chosen on validation data.

A 1-D CNN on MNIST-1D (``ConvNet1D``, trained per seed) is pruned to 75 / 50 / 25 % of its MACs
(``target_macs``) with each data-driven and weight-only estimator, then healed by KD from the
unpruned CNN (the same budget and batch order for every row). The choice is made on the
**validation** split only; the test split is printed beside it and plays no part in the choice.

Run: ``.venv/bin/python benchmarks/default_importance.py [--seeds 0 1 2] [--no-write]``
(single thread; about two minutes per seed). Writes the ``default-importance`` section of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import time

import torch

import netsculpt as ns
from netsculpt.data import ConvNet1D, load_dataset, make_loader, train_quick

try:
    from benchmarks._results import stamp, write_section
except ImportError:  # run as a script from the repository root
    from _results import stamp, write_section

X = torch.randn(1, 40)
BUDGETS = (0.75, 0.5, 0.25)
CANDIDATES = ("l2", "taylor", "activation")
CALIB_BATCHES = 8


def one_seed(seed: int, args) -> list[dict]:
    splits = {s: load_dataset("mnist1d", s, seed) for s in ("train", "val", "test")}
    val, test = (make_loader(splits[s], 256) for s in ("val", "test"))
    torch.manual_seed(seed)
    base = ConvNet1D()
    train_quick(base, "mnist1d", epochs=args.train_epochs, seed=seed)
    base.eval()
    calib = list(itertools.islice(make_loader(splits["train"], 64, True, seed + 1), CALIB_BATCHES))
    rows = []
    for frac, imp in itertools.product(BUDGETS, CANDIDATES):
        m = copy.deepcopy(base)
        ns.prune(m, X, target_macs=frac, importance=imp, data=calib)
        train = make_loader(splits["train"], 64, True, seed)  # the same batch order every row
        ns.heal(m, train, teacher=base, loss="kd", epochs=args.heal_epochs, seed=seed,
                progress=False)  # fmt: skip
        row = {"seed": seed, "budget": frac, "importance": imp,
               "val": ns.evaluate(m, val)["accuracy"], "test": ns.evaluate(m, test)["accuracy"]}  # fmt: skip
        rows.append(row)
        print(f"seed {seed} budget {frac} {imp}: val {row['val']:.4f} test {row['test']:.4f}")
    return rows


def table(rows: list[dict], args, seconds: float, head: str) -> str:
    def cell(imp: str, frac: float, split: str) -> list[float]:
        return [r[split] for r in rows if r["importance"] == imp and r["budget"] == frac]

    def ms(v: list[float]) -> str:
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{100 * statistics.mean(v):.1f} ± {100 * sd:.1f}"

    overall = {
        i: statistics.mean(r["val"] for r in rows if r["importance"] == i) for i in CANDIDATES
    }
    best = max(overall, key=overall.get)
    lines = [
        "## Default importance with data (chosen on validation)",
        "",
        head,
        "",
        f"ConvNet1D on MNIST-1D, seeds {' '.join(map(str, args.seeds))}, pruned with "
        f"`target_macs`, KD heal {args.heal_epochs} epochs; mean ± std accuracy (%) over seeds. "
        f"The choice uses the validation column only.",
        "",
        "| importance | " + " | ".join(f"val @ {int(f * 100)}% MACs" for f in BUDGETS) + " | "
        + " | ".join(f"test @ {int(f * 100)}%" for f in BUDGETS) + " | mean val |",
        "|---" * (2 * len(BUDGETS) + 2) + "|",
    ]  # fmt: skip
    for imp in CANDIDATES:
        vals = [ms(cell(imp, f, "val")) for f in BUDGETS]
        tests = [ms(cell(imp, f, "test")) for f in BUDGETS]
        lines.append(f"| {imp} | " + " | ".join(vals + tests) + f" | {100 * overall[imp]:.2f} |")
    wins = {
        i: sum(
            1
            for s in args.seeds
            for f in BUDGETS
            if max(CANDIDATES, key=lambda c: cell(c, f, "val")[args.seeds.index(s)]) == i
        )
        for i in CANDIDATES
    }
    n = len(args.seeds) * len(BUDGETS)
    lines += [
        "",
        f"Best mean validation accuracy: **{best}**; (seed, budget) cells won on validation: "
        + ", ".join(f"{i} {wins[i]}/{n}" for i in CANDIDATES)
        + f". Wall time {seconds / 60:.1f} min.",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-epochs", type=int, default=60)
    p.add_argument("--heal-epochs", type=int, default=2)
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args()
    torch.set_num_threads(1)
    head = stamp(" ".join(["python", "benchmarks/default_importance.py", *sys.argv[1:]]))
    start = time.time()
    rows = [r for s in args.seeds for r in one_seed(s, args)]
    text = table(rows, args, time.time() - start, head)
    print(text)
    if not args.no_write:
        write_section("default-importance", text)


if __name__ == "__main__":
    main()
