"""Depth surgery evidence (issue 3): cut criteria vs random / drop-last, grow vs train longer,
bridge vs no bridge. Writes its tables into benchmarks/RESULTS.md (section cut_grow).

    .venv/bin/python benchmarks/cut_grow.py            # ~5 min on one CPU thread
"""

from __future__ import annotations

import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import netsculpt as ns
from netsculpt.data import load_dataset, make_loader
from netsculpt.data.models import ResidualMLP, SeedMLP
from netsculpt.graph.blocks import find_blocks

try:
    from benchmarks._results import write_section
except ImportError:  # run as a script from the repository root
    from _results import write_section
SEEDS = (0, 1, 2)


def train(model: nn.Module, name: str, epochs: int, lr: float = 3e-3, seed: int = 0) -> None:
    """Plain Adam + cross-entropy on the train split (the same loop for every row)."""
    torch.manual_seed(seed)
    loader = make_loader(load_dataset(name, "train"), 64, True, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, name: str) -> float:
    x, y = load_dataset(name, "test").tensors
    return float((model.eval()(x).argmax(-1) == y).float().mean())


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def calib(name: str) -> list:
    return list(make_loader(load_dataset(name, "train"), 128, True, 1))[:8]


# -- 1. cut ------------------------------------------------------------------------------------
def cut_table(epochs: int = 40, heal_epochs: int = 2) -> str:
    torch.manual_seed(0)
    base = ResidualMLP(40, 64, 12, 10)
    train(base, "mnist1d", epochs)
    x = torch.randn(1, 40)
    data = calib("mnist1d")
    rows = [
        f"| original (12 blocks) | – | – | {params(base):,} | {accuracy(base, 'mnist1d'):.3f} | – |"
    ]
    full = [
        ("kl (default)", dict(criterion="kl")),
        ("loss", dict(criterion="loss")),
        ("kl, iterative", dict(criterion="kl", iterative=True)),
        ("loss, iterative (SLEB)", dict(criterion="loss", iterative=True)),
        ("influence (ShortGPT)", dict(criterion="influence")),
        ("angular (Gromov, n=1)", dict(criterion="angular")),
        ("gate-Taylor", dict(criterion="taylor")),
        ("drop last n", dict(criterion="last")),
    ]
    short = [full[0], full[3], full[7]]
    for n, configs in ((3, full), (6, short)):
        keep_final = [f"blocks.{i}" for i in range(11 - n, 11)]  # Gromov's baseline
        for label, kw in [*configs, ("drop last n, keep the final block", dict(blocks=keep_final))]:
            acc, healed, gone, p = run_cut(base, x, data, n, kw)
            rows.append(f"| {n} | {label} | {gone} | {p:,} | {acc:.3f} | {healed:.3f} |")
        rand = [run_cut(base, x, data, n, dict(criterion="random", seed=s)) for s in SEEDS]
        a, h = statistics.mean(r[0] for r in rand), statistics.mean(r[1] for r in rand)
        sd = statistics.pstdev(r[1] for r in rand)
        rows.append(f"| {n} | random (mean of {len(SEEDS)} seeds) | – | {rand[0][3]:,} | "
                    f"{a:.3f} | {h:.3f} ± {sd:.3f} |")  # fmt: skip
    head = (
        f"ResidualMLP(40→64, 12 pre-norm residual blocks) trained {epochs} epochs on mnist1d; "
        f"remove n blocks (n=3 is 1/4; n=6 for contrast) by each rule, calibration 8×128 "
        f"train samples; heal = {heal_epochs} epochs Adam (lr 1e-3, same for every row). "
        f"Test accuracy.\n\n"
        "| n | criterion | blocks removed | params after | acc before heal | acc after heal |\n"
        "|---|---|---|---|---|---|\n"
    )
    return head + "\n".join(rows)


def run_cut(base, x, data, n, kw, heal_epochs: int = 2) -> tuple[float, float, str, int]:
    model = copy.deepcopy(base)
    rep = ns.cut(model, x, data=data, **({} if "blocks" in kw else {"count": n}), **kw)
    acc = accuracy(model, "mnist1d")
    train(model, "mnist1d", heal_epochs, lr=1e-3)
    gone = ", ".join(sorted((r["block"].split(".")[-1] for r in rep.details["removed"]), key=int))
    return acc, accuracy(model, "mnist1d"), gone, params(model)


# -- 2. grow -----------------------------------------------------------------------------------
def grow_table(epochs: int = 10) -> str:
    x = torch.randn(1, 40)
    rows = []

    def small() -> nn.Module:
        torch.manual_seed(0)
        m = ResidualMLP(40, 24, 2, 10)
        train(m, "mnist1d", epochs)
        return m

    base = small()
    long = copy.deepcopy(base)
    train(long, "mnist1d", epochs, seed=1)
    rows.append(("no grow, trained 2N", params(long), accuracy(long, "mnist1d")))
    data = calib("mnist1d")
    variants = [
        ("deeper, where=auto (kl)", dict(kind="deeper", criterion="kl", count=2)),
        ("deeper, where=auto (gradmax)", dict(kind="deeper", criterion="gradmax", count=2)),
        ("wider ×2, where=auto (kl)", dict(kind="wider", criterion="kl", count=2)),
        ("wider ×2, where=auto (gradmax)", dict(kind="wider", criterion="gradmax", count=2)),
    ]
    names = [b.name for b in find_blocks(base, x)]
    for label, kw in variants:
        m = copy.deepcopy(base)
        try:
            rep = ns.grow(m, x, data=data, **kw)
        except ImportError:  # wider needs netsculpt.surgery.widen
            rows.append((f"{label}: not run, netsculpt.surgery.widen not available", None, None))
            continue
        where = ", ".join(g["block"] for g in rep.details["grown"])
        train(m, "mnist1d", epochs, seed=1)
        rows.append((f"{label} [{where}]", params(m), accuracy(m, "mnist1d")))
        accs, ps = [], 0
        g = torch.Generator().manual_seed(0)
        for _s in SEEDS:  # the same kind grown at random places
            m = copy.deepcopy(base)
            pick = [names[int(i)] for i in torch.randperm(len(names), generator=g)[:2]]
            try:
                ns.grow(m, x, where=pick, kind=kw["kind"])
            except Exception:
                continue
            train(m, "mnist1d", epochs, seed=1)
            accs.append(accuracy(m, "mnist1d"))
            ps = params(m)
        if accs and "kl" in label:
            rows.append(
                (f"{kw['kind']}, random place ({len(accs)} seeds)", ps, statistics.mean(accs))
            )
    rows.insert(0, ("small model, N epochs", params(base), accuracy(base, "mnist1d")))
    head = (
        f"ResidualMLP(40→24, 2 blocks) trained N={epochs} epochs on mnist1d, grown at 2 places "
        f"(function-preserving: the report's max |Δoutput| is 0), then N more epochs (same loop). "
        f"Test accuracy.\n\n| model | params | test acc |\n|---|---|---|\n"
    )
    return head + "\n".join(
        f"| {r[0]} | {r[1]:,} | {r[2]:.3f} |" if r[1] is not None else f"| {r[0]} | – | – |"
        for r in rows
    )


# -- 3. bridge ---------------------------------------------------------------------------------
def bridge_table(epochs: int = 30, heal_epochs: int = 2) -> str:
    torch.manual_seed(0)
    base = SeedMLP(64, 10)  # the seed's shape: Linear→64, ReLU, Linear 64→32, ReLU, Linear
    train(base, "digits", epochs)
    x = torch.rand(1, 64)
    data = calib("digits")
    rows = [f"| original | {params(base):,} | {accuracy(base, 'digits'):.3f} | – | – |"]
    for label, bridge in [("bridge, ridge least squares", "lstsq"),
                          ("bridge, trained (distilled)", "train"),
                          ("no bridge (first 32 channels)", "none")]:  # fmt: skip
        m = copy.deepcopy(base)
        rep = ns.cut(m, x, data=data, blocks=["2"], bridge=bridge)
        acc = accuracy(m, "digits")
        train(m, "digits", heal_epochs, lr=1e-3)
        rows.append(f"| {label} | {params(m):,} | {acc:.3f} | {accuracy(m, 'digits'):.3f} | "
                    f"{rep.notes[0]} |")  # fmt: skip
    head = (
        f"SeedMLP(64→64→32→10) trained {epochs} epochs on digits; cut the 64→32 layer (block "
        f"`2`); calibration 8×128 train samples; heal = {heal_epochs} epochs Adam lr 1e-3.\n\n"
        "| cut of block 2 | params | acc before heal | acc after heal | how |\n"
        "|---|---|---|---|---|\n"
    )
    return head + "\n".join(rows)


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.time()
    parts = [
        "## Cut and grow (issue 3)\n",
        f"`benchmarks/cut_grow.py`, torch {torch.__version__}, CPU, 1 thread.\n",
        "### Cut: criteria vs random vs drop-last-n\n", cut_table(), "",
        "### Grow: deeper / wider at where=auto vs training longer vs a random place\n",
        grow_table(), "",
        "### Bridge vs no bridge (before any heal)\n", bridge_table(), "",
        f"_{time.time() - t0:.0f} s_",
    ]  # fmt: skip
    section = "\n".join(parts)
    print(section)
    if "--no-write" not in sys.argv:
        write_section("cut_grow", section)


if __name__ == "__main__":
    main()
