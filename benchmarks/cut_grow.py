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
from netsculpt.ops.cut import CutConfig

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
class ResBlock1D(nn.Module):
    """Pre-activation residual block ``x + conv(relu(bn(conv(relu(bn(x))))))``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm1d(c)
        self.conv1 = nn.Conv1d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(c)
        self.conv2 = nn.Conv1d(c, c, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))


class Down(nn.Module):
    """Stage transition BN → ReLU → strided conv (one module: not itself a cut candidate)."""

    def __init__(self, ci: int, co: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(ci)
        self.conv = nn.Conv1d(ci, co, 3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.bn(x)))


class ResCNN1D(nn.Module):
    """Residual 1-D CNN for (N, 40) signals: 3 stages (16/32/64 channels, length 40/20/10)
    of ``depth`` blocks each; 12 removable residual blocks at depth 4."""

    def __init__(self, widths: tuple = (16, 32, 64), depth: int = 4, classes: int = 10) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.stem = nn.Conv1d(1, c1, 5, padding=2, bias=False)
        self.stage1 = nn.Sequential(*(ResBlock1D(c1) for _ in range(depth)))
        self.down1 = Down(c1, c2)
        self.stage2 = nn.Sequential(*(ResBlock1D(c2) for _ in range(depth)))
        self.down2 = Down(c2, c3)
        self.stage3 = nn.Sequential(*(ResBlock1D(c3) for _ in range(depth)))
        self.norm = nn.BatchNorm1d(c3)
        self.head = nn.Linear(c3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x.unsqueeze(1))
        h = self.stage3(self.down2(self.stage2(self.down1(self.stage1(h)))))
        return self.head(F.relu(self.norm(h)).mean(-1))


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.pstdev(values):.3f}"


def cut_table(epochs: int = 12, heal_epochs: int = 2, n: int = 3, draws: int = 3) -> str:
    x = torch.randn(1, 40)
    data = calib("mnist1d")
    default = CutConfig().criterion
    configs = [
        (f"{default} (default)", dict(criterion=default)),
        *[
            (label, kw)
            for label, kw in [
                ("kl", dict(criterion="kl")),
                ("loss", dict(criterion="loss")),
                ("kl, iterative", dict(criterion="kl", iterative=True)),
                ("loss, iterative (SLEB)", dict(criterion="loss", iterative=True)),
                ("influence (ShortGPT)", dict(criterion="influence")),
                ("angular (Gromov, n=1)", dict(criterion="angular")),
                ("gate-Taylor", dict(criterion="taylor")),
            ]
            if kw != dict(criterion=default)
        ],
        ("drop last n", dict(criterion="last")),
        ("drop last n, keep the final block", dict(blocks=["stage3.0", "stage3.1", "stage3.2"])),
    ]
    res: dict[str, list] = {label: [] for label, _ in configs}
    res["random"] = []
    originals, p_orig = [], 0
    for seed in SEEDS:
        torch.manual_seed(seed)
        base = ResCNN1D()
        train(base, "mnist1d", epochs, seed=seed)
        originals.append(accuracy(base, "mnist1d"))
        p_orig = params(base)
        for label, kw in configs:
            res[label].append(run_cut(base, x, data, n, kw, heal_epochs, seed))
            print(seed, label, res[label][-1], flush=True)
        for d in range(draws):
            kw = dict(criterion="random", seed=100 * seed + d)
            res["random"].append(run_cut(base, x, data, n, kw, heal_epochs, seed))
        print(seed, "random", res["random"][-draws:], flush=True)
    rows = [f"| original (12 blocks) | – | {p_orig:,} | {_mean_sd(originals)} | – |"]
    for label in [*res]:
        r = res[label]
        if label == "random":
            label = f"random ({draws} draws per seed, {len(r)} in all)"
        gones = [g for *_, g, _p in r]
        gone = "–" if "random" in label else " / ".join(dict.fromkeys(gones))
        ps = [pp for *_, pp in r]
        pc = f"{ps[0]:,}" if len(set(ps)) == 1 else f"{statistics.mean(ps):,.0f} (mean)"
        rows.append(
            f"| {label} | {gone} | {pc} | {_mean_sd([a for a, *_ in r])} | "
            f"{_mean_sd([h for _, h, *_ in r])} |"
        )
    head = (
        f"ResCNN1D (defined in the script: stem conv → 3 stages × 4 pre-activation residual "
        f"blocks, 16/32/64 channels at length 40/20/10, BN, global average pool, linear head) "
        f"trained {epochs} epochs (Adam lr 3e-3) on mnist1d, seeds {', '.join(map(str, SEEDS))}. "
        f"Remove n={n} of the 12 blocks (1/4) by each rule; calibration 8×128 train samples; "
        f"heal = {heal_epochs} epochs Adam lr 1e-3, the same for every row. Test accuracy, "
        f"mean ± std over the {len(SEEDS)} trained models (random: over all draws). Blocks "
        f"removed: `stage.block`, the distinct lists over the seeds. Rows remove the same "
        f"number of blocks, not the same parameters: a stage-3 block holds 4× the parameters "
        f"of a stage-2 block.\n\n"
        "| criterion | blocks removed (per seed, distinct) | params after | acc before heal | "
        "acc after heal |\n|---|---|---|---|---|\n"
    )
    return head + "\n".join(rows) + "\n\n" + cut_verdict(res, f"{default} (default)")


def cut_verdict(res: dict[str, list], default: str) -> str:
    """Does the default beat drop-last-n and random? Mean accuracy and per-seed wins."""
    d = res[default]
    out = []
    for other in ("drop last n", "random"):
        o = res[other]
        if other == "random":  # per seed: the mean over that seed's draws
            k = len(o) // len(d)
            chunks = [o[j * k : (j + 1) * k] for j in range(len(d))]
            o = [tuple(statistics.mean(r[i] for r in c) for i in (0, 1)) for c in chunks]
        parts = []
        for i, stage in ((0, "before heal"), (1, "after heal")):
            dm, om = statistics.mean(r[i] for r in d), statistics.mean(r[i] for r in o)
            wins = sum(a[i] > b[i] for a, b in zip(d, o, strict=True))
            verdict = "beats" if dm > om and wins == len(d) else "does not beat"
            parts.append(
                f"{stage} it {verdict} {other} ({dm:.3f} vs {om:.3f}; higher on {wins} of "
                f"{len(d)} seeds)"
            )
        out.append(f"- {default} vs {other}: " + "; ".join(parts) + ".")
    healed = [statistics.mean(r[1] for r in rows) for rows in res.values()]
    out.append(
        f"- After the heal every row's mean is within {min(healed):.3f}–{max(healed):.3f}: the "
        f"heal is extra training for the whole network, so it mostly hides the choice of blocks; "
        f"the choice shows before the heal."
    )
    return "\n".join(out)


def run_cut(base, x, data, n, kw, heal_epochs: int = 2, seed: int = 0) -> tuple:
    model = copy.deepcopy(base)
    rep = ns.cut(model, x, data=data, **({} if "blocks" in kw else {"count": n}), **kw)
    acc = accuracy(model, "mnist1d")
    train(model, "mnist1d", heal_epochs, lr=1e-3, seed=seed)
    names = sorted(r["block"].removeprefix("stage") for r in rep.details["removed"])
    return acc, accuracy(model, "mnist1d"), ", ".join(names), params(model)


# -- 2. grow -----------------------------------------------------------------------------------
def grow_table(epochs: int = 10, depth: int = 4) -> str:
    x = torch.randn(1, 40)
    rows = []

    def small() -> nn.Module:
        torch.manual_seed(0)
        m = ResidualMLP(40, 24, depth, 10)
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
        (
            "wider ×2, noise 0.1, where=auto (kl)",
            dict(kind="wider", criterion="kl", count=2, noise=0.1),
        ),
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
                ns.grow(m, x, where=pick, kind=kw["kind"], noise=kw.get("noise", 0.0))
            except Exception:
                continue
            train(m, "mnist1d", epochs, seed=1)
            accs.append(accuracy(m, "mnist1d"))
            ps = params(m)
        if accs and "kl" in label:
            rows.append(
                (
                    f"{label.split(', where')[0]}, random place ({len(accs)} draws)",
                    ps,
                    statistics.mean(accs),
                )
            )
    rows.insert(0, ("small model, N epochs", params(base), accuracy(base, "mnist1d")))
    head = (
        f"ResidualMLP(40→24, {depth} blocks) trained N={epochs} epochs on mnist1d, grown at 2 places "
        f"(function-preserving: checked to 1e-5 at insertion), then N more epochs (same "
        f"loop); random place: 2 of the block names drawn at random, mean over the draws "
        f"where that kind can grow. One training run per row: on 750 test samples a "
        f"difference under ~0.02 is noise. "
        f"Wider replicates units and halves their outgoing weights; with noise 0 the replicas "
        f"get identical gradients and stay copies of each other; noise "
        f"0.1 adds ±η to the replicas' outgoing weights (the function is still preserved). "
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
