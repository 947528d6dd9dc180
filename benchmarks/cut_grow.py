"""Depth surgery evidence (issue 3): cut criteria vs random / drop-last, grow vs train longer,
bridge vs no bridge. Writes its tables into benchmarks/RESULTS.md (section cut_grow).

    .venv/bin/python benchmarks/cut_grow.py --jobs 2   # ~34 min on two CPU cores (the wide
                                                       # model's 5 seeds are the long pole)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import netsculpt as ns
from netsculpt.data import load_dataset, make_loader
from netsculpt.data.datasets import mnist1d_samples
from netsculpt.data.models import ResidualMLP, SeedMLP
from netsculpt.graph.blocks import find_blocks
from netsculpt.ops.cut import CutConfig

try:
    from benchmarks._results import stamp, write_section
except ImportError:  # run as a script from the repository root
    from _results import stamp, write_section
SEEDS = (0, 1, 2)
CUT_SEEDS = (0, 1, 2, 3, 4)


def train(
    model: nn.Module,
    name: str,
    epochs: int,
    lr: float = 3e-3,
    seed: int = 0,
    *,
    cosine: bool = False,
    steps: int | None = None,
) -> None:
    """Plain Adam + cross-entropy on the train split (the same loop for every row).

    ``cosine``: the learning rate decays from ``lr`` to 0 over the run (cosine); ``steps``: stop
    after that many optimiser steps (batches of 64) instead of after ``epochs`` epochs.
    """
    torch.manual_seed(seed)
    loader = make_loader(load_dataset(name, "train"), 64, True, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    total = steps if steps is not None else epochs * len(loader)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total) if cosine else None
    model.train()
    done = 0
    while done < total:
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            if sched is not None:
                sched.step()
            done += 1
            if done == total:
                break
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


BASE_EPOCHS, BASE_LR = 15, 3e-3  # the base model: trained to convergence (cosine decay to 0)
HEAL_STEPS, HEAL_LR = 50, 3e-4  # the short heal: 50 batches of 64 (< 1 epoch), constant lr
WIDTHS = {"wide": (16, 32, 64), "narrow": (8, 16, 32)}
BIG_TEST = 20_000  # extra mnist1d test samples, drawn with another generator seed


@functools.cache
def big_test() -> tuple[torch.Tensor, torch.Tensor]:
    """``BIG_TEST`` fresh MNIST-1D samples (the package's generator, seed 43 instead of 42: the
    same templates and noise model, different draws): 750 test samples give a standard error of
    0.005 at 98 %, larger than the differences between the cut rules after a heal."""
    x, y = mnist1d_samples(BIG_TEST, seed=43)
    return torch.from_numpy(x), torch.from_numpy(y)


@torch.no_grad()
def big_accuracy(model: nn.Module) -> float:
    x, y = big_test()
    return float((model.eval()(x).argmax(-1) == y).float().mean())


def base_model(seed: int, epochs: int = BASE_EPOCHS, widths: tuple = WIDTHS["wide"]) -> nn.Module:
    """The ResCNN1D the cut starts from, trained to convergence on mnist1d."""
    torch.manual_seed(seed)
    model = ResCNN1D(widths)
    train(model, "mnist1d", epochs, lr=BASE_LR, seed=seed, cosine=True)
    return model


def heal(model: nn.Module, seed: int, steps: int = HEAL_STEPS) -> None:
    """The same short heal for every row (the control row included)."""
    train(model, "mnist1d", 0, lr=HEAL_LR, seed=seed, steps=steps)


CUT_COLUMNS = ("before heal", "before heal, stale BN statistics", "after heal")
# the row that compares at equal removed parameters instead of equal removed blocks
EQUAL_PARAMS = "{default} at drop-last-n's params (target_params=)"


def cut_rules(default: str) -> list[tuple[str, dict]]:
    rules = [
        ("kl", dict(criterion="kl")),
        ("loss", dict(criterion="loss")),
        ("kl, iterative", dict(criterion="kl", iterative=True)),
        ("loss, iterative (SLEB)", dict(criterion="loss", iterative=True)),
        ("influence (ShortGPT)", dict(criterion="influence")),
        ("angular (Gromov, n=1)", dict(criterion="angular")),
        ("gate-Taylor", dict(criterion="taylor")),
    ]
    return [
        (f"{default} (default)", dict(criterion=default)),
        *[(label, kw) for label, kw in rules if kw != dict(criterion=default)],
        ("kl scored on stale BN statistics (recalibrate_bn=False)",
         dict(criterion="kl", recalibrate_bn=False)),
        ("drop last n", dict(criterion="last")),
        ("drop last n, keep the final block", dict(blocks=["stage3.0", "stage3.1", "stage3.2"])),
    ]  # fmt: skip


def default_criterion() -> str:
    """``ns.cut``'s default criterion, read from its config's field (a CutConfig cannot be
    built without one of threshold / count / blocks / target_params)."""
    return next(f.default for f in dataclasses.fields(CutConfig) if f.name == "importance")


def cut_rows(width: str, seeds: tuple = CUT_SEEDS, n: int = 3, draws: int = 3) -> dict:
    """Every rule on every seed's base model of one width: ``{label: [per-seed result]}``."""
    torch.set_num_threads(1)
    x = torch.randn(1, 40)
    data = calib("mnist1d")
    default = default_criterion()
    rules = cut_rules(default)
    res: dict[str, list] = {label: [] for label, _ in rules}
    res["random"], res["original"], res["control"] = [], [], []
    for seed in seeds:
        base = base_model(seed, widths=WIDTHS[width])
        acc = big_accuracy(base)
        res["original"].append(dict(acc=(acc, acc, None), params=params(base), gone=""))
        healed = copy.deepcopy(base)
        heal(healed, seed)
        res["control"].append(dict(acc=(None, None, big_accuracy(healed)), params=params(base),
                                   small=accuracy(healed, "mnist1d"), gone=""))  # fmt: skip
        for label, kw in rules:
            res[label].append(run_cut(base, x, data, n, kw, seed))
        # equal removed parameters: the default cuts until it is as small as drop-last-n's model
        kw = dict(criterion=default, target_params=res["drop last n"][-1]["params"])
        res.setdefault(EQUAL_PARAMS.format(default=default), []).append(
            run_cut(base, x, data, n, kw, seed)
        )
        for d in range(draws):
            kw = dict(criterion="random", seed=100 * seed + d)
            res["random"].append(run_cut(base, x, data, n, kw, seed) | dict(seed=seed))
        print(width, seed, {k: v[-1]["acc"] for k, v in res.items()}, flush=True)
    return res


def run_cut(base, x, data, n, kw, seed: int = 0) -> dict:
    """Cut a copy (the rule's own ``recalibrate_bn``), then the same blocks with stale BN
    statistics (a diagnostic), then heal the first copy."""
    model = copy.deepcopy(base)
    by_count = "blocks" not in kw and "target_params" not in kw
    rep = ns.cut(model, x, data=data, **({"count": n} if by_count else {}), **kw)
    gone = [r["block"] for r in rep.details["removed"]]
    stale = copy.deepcopy(base)
    ns.cut(stale, x, blocks=gone)  # no data: BatchNorm statistics left as trained
    before = big_accuracy(model)
    heal(model, seed)
    names = ", ".join(sorted(g.removeprefix("stage") for g in gone))
    return dict(acc=(before, big_accuracy(stale), big_accuracy(model)), params=params(model),
                gone=names, small=accuracy(model, "mnist1d"))  # fmt: skip


def _per_seed(rows: list[dict], k: int) -> list[tuple]:
    """Random rows: the mean over each seed's ``k`` draws, as one row per seed."""
    chunks = [rows[j * k : (j + 1) * k] for j in range(len(rows) // k)]
    return [tuple(statistics.mean(r["acc"][i] for r in c) for i in range(3)) for c in chunks]


def cut_table(width: str, res: dict, seeds: tuple = CUT_SEEDS) -> tuple[str, str]:
    default = f"{default_criterion()} (default)"
    orig, ctrl = res["original"], res["control"]
    rows = [
        f"| original (12 blocks) | – | {orig[0]['params']:,} | "
        f"{_mean_sd([r['acc'][0] for r in orig])} | – | – | – |",
        f"| original + the same heal (control, nothing cut) | – | {ctrl[0]['params']:,} | – | – | "
        f"{_mean_sd([r['acc'][2] for r in ctrl])} | {_mean_sd([r['small'] for r in ctrl])} |",
    ]
    draws = len(res["random"]) // len(seeds)
    for label, r in res.items():
        if label in ("original", "control"):
            continue
        shown = f"random ({draws} draws per seed, {len(r)} in all)" if label == "random" else label
        gone = "–" if label == "random" else " / ".join(dict.fromkeys(x["gone"] for x in r))
        ps = [x["params"] for x in r]
        pc = f"{ps[0]:,}" if len(set(ps)) == 1 else f"{statistics.mean(ps):,.0f} (mean)"
        cols = " | ".join(_mean_sd([x["acc"][i] for x in r]) for i in range(3))
        rows.append(f"| {shown} | {gone} | {pc} | {cols} | {_mean_sd([x['small'] for x in r])} |")
    c1, c2, c3 = WIDTHS[width]
    head = (
        f"**{width}**: ResCNN1D with {c1}/{c2}/{c3} channels, {orig[0]['params']:,} parameters. "
        "Accuracy on the 20,000 extra test samples, mean ± std over the "
        f"{len(seeds)} trained models (random: over all draws); last column: after heal on the "
        "built-in 750-sample test split.\n\n"
        "| criterion | blocks removed (per seed, distinct) | params after | acc before heal | "
        "acc before heal, stale BN statistics | acc after heal | after heal, 750-sample split |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    verdict, summary = cut_verdict(res, default, draws, width)
    return head + "\n".join(rows) + "\n\n" + verdict, summary


def _compare(d: list[tuple], o: list[tuple], other: str) -> tuple[list[str], bool]:
    """Paired per-seed comparison of accuracy tuples ``d`` vs ``o`` before and after heal:
    the two sentences, and whether ``d`` beats ``o`` after heal (higher mean, every seed)."""
    parts, beats_after = [], False
    for i, stage in ((0, "before heal"), (2, "after heal")):
        diffs = [a[i] - b[i] for a, b in zip(d, o, strict=True)]
        wins, ties = sum(x > 0 for x in diffs), sum(x == 0 for x in diffs)
        beats = statistics.mean(diffs) > 0 and wins == len(d)
        if i == 2:
            beats_after = beats
        tie = f", equal on {ties}" if ties else ""
        parts.append(
            f"{stage} it {'beats' if beats else 'does not beat'} {other} "
            f"({statistics.mean(a[i] for a in d):.3f} vs {statistics.mean(b[i] for b in o):.3f}"
            f", difference {_mean_sd(diffs)}; higher on {wins} of {len(d)} seeds{tie})"
        )
    return parts, beats_after


def cut_verdict(res: dict[str, list], default: str, draws: int, width: str) -> tuple[str, str]:
    """Does the default beat drop-last-n and random? "beats": a higher mean and higher on every
    seed; the paired difference (mean ± std over seeds) says by how much."""
    d = [r["acc"] for r in res[default]]
    ctrl = [r["acc"][2] for r in res["control"]]
    out, after = [], {}
    for other in ("drop last n", "drop last n, keep the final block", "random"):
        o = _per_seed(res[other], draws) if other == "random" else [r["acc"] for r in res[other]]
        parts = _compare(d, o, other)
        after[other] = parts[1]
        out.append(f"- {default} vs {other}: " + "; ".join(parts[0]) + ".")
    eq = EQUAL_PARAMS.format(default=default.removesuffix(" (default)"))
    if eq in res:
        parts = _compare([r["acc"] for r in res[eq]], [r["acc"] for r in res["drop last n"]],
                         "drop last n")  # fmt: skip
        out.append(f"- At equal parameters ({eq}) vs drop last n: " + "; ".join(parts[0]) + ".")
    last = [r["acc"][2] for r in res["drop last n"]]
    gap = [c - a for c, a in zip(ctrl, last, strict=True)]
    out.append(
        f"- Ceiling: after the heal, drop last n is {_mean_sd(gap)} below the control (the uncut "
        f"model given the same heal); the default is "
        f"{_mean_sd([c - a[2] for c, a in zip(ctrl, d, strict=True)])} below it."
    )
    kept = {k: statistics.mean(r["params"] for r in res[k]) for k in (default, "drop last n")}
    p0 = res["original"][0]["params"]
    out.append(
        f"- Parameters removed: drop last n {p0 - kept['drop last n']:,.0f}, the default "
        f"{p0 - kept[default]:,.0f} (mean), because the deepest blocks are the widest."
    )
    met = after["drop last n"] and after["random"]
    gap_d = statistics.mean(c - a[2] for c, a in zip(ctrl, d, strict=True))
    summary = f"{width} model **{'met' if met else 'not met'}**" + (
        ""
        if met
        else f" (after the heal drop last n is {statistics.mean(gap):.3f} and the default "
        f"{gap_d:.3f} below the uncut model given the same heal: no rule can beat drop last n "
        f"by more than {statistics.mean(gap):.3f} there)"
    )
    return "\n".join(out), summary


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


CUT_PROTOCOL = (
    "ResCNN1D (defined in the script: stem conv → 3 stages × 4 pre-activation residual blocks at "
    "length 40/20/10, BN, global average pool, linear head) at two widths, each trained to "
    f"convergence on mnist1d: {BASE_EPOCHS} epochs, Adam lr {BASE_LR:g} with cosine decay to 0, "
    f"batch 64; seeds {', '.join(map(str, CUT_SEEDS))}. Remove n=3 of the 12 blocks (1/4) by each "
    "rule with `ns.cut(..., data=calib)`, calibration 8×128 train samples; `ns.cut` re-estimates "
    "BatchNorm statistics on them for every rule (the baselines included). Heal = "
    f"{HEAL_STEPS} steps of Adam (batch 64, {HEAL_STEPS * 64:,} samples, under one epoch of the "
    f"3,500) at a constant lr {HEAL_LR:g}, BN in train mode, the same for every row; the control "
    "row gives the same heal to the uncut model. Diagnostic column: the same blocks removed with "
    "the BatchNorm statistics left as trained (what a cut without re-estimation delivers). Rows "
    "remove the same number of blocks, not the same parameters: a stage-3 block holds 4× the "
    "parameters of a stage-2 block. Test accuracy on 20,000 extra MNIST-1D samples (the "
    "package's generator with seed 43: standard error 0.0013 at 96 %)."
)


def main() -> None:
    from concurrent.futures import ProcessPoolExecutor

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=1, help="processes (the two cut widths run apart)")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    jobs = args.jobs
    stamp_line = stamp(f"python benchmarks/cut_grow.py --jobs {jobs}")
    with ProcessPoolExecutor(jobs) as pool:
        futures = {w: pool.submit(cut_rows, w) for w in WIDTHS}
        grow, bridge = grow_table(), bridge_table()
        tables = {w: cut_table(w, f.result()) for w, f in futures.items()}
    verdict = (
        "Issue 3 acceptance (the default beats random and drop-last-n after the same heal, "
        "higher on every seed): " + "; ".join(t[1] for t in tables.values()) + "."
    )
    parts = [
        "## Cut and grow (issue 3)\n",
        stamp_line + "\n",
        f"`benchmarks/cut_grow.py --jobs {jobs}`, torch {torch.__version__}, CPU, 1 thread per "
        f"job.\n",
        "### Cut: criteria vs random vs drop-last-n\n", CUT_PROTOCOL + "\n",
        *[t[0] + "\n" for t in tables.values()], verdict, "",
        "### Grow: deeper / wider at where=auto vs training longer vs a random place\n",
        grow, "",
        "### Bridge vs no bridge (before any heal)\n", bridge, "",
        f"_{time.time() - t0:.0f} s_",
    ]  # fmt: skip
    section = "\n".join(parts)
    print(section)
    if not args.no_write:
        write_section("cut_grow", section)


if __name__ == "__main__":
    main()
