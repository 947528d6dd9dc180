"""Recurrent pruning: half the hidden units of a GRU / LSTM digit classifier, the same heal after.

The digits (8×8) are read row by row: a sequence of 8 rows of 8 pixels. Each model is trained,
pruned at amount=0.5 (every group: the recurrent units and the input projection), healed with
the same budget (KD from the original, a few epochs) and measured: test accuracy before / after
the heal, parameters, CPU latency (batch 64, 1 thread). Importance: L2 over the gate rows, and
activation (hidden-state norms on training batches). Beside it Torch-Pruning's LSTM pruner
(``MetaPruner``, L2 magnitude, the same ratio and heal) where it runs: it has no GRU pruner, and
its LSTM pruner handles one unidirectional layer. Every figure is mean ± std over the seeds.

    python benchmarks/rnn.py [--seeds 0 1 2] [--no-write]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

import netsculpt as ns
from netsculpt.data.datasets import load_dataset, make_loader
from netsculpt.data.train import accuracy, train_quick
from netsculpt.measure.latency import latency_ms


class RowClassifier(nn.Module):
    def __init__(self, kind: str, hidden: int = 64, layers: int = 1, bidirectional: bool = False):
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[kind]
        self.proj = nn.Linear(8, 32)
        self.rnn = rnn(32, hidden, num_layers=layers, batch_first=True,
                       bidirectional=bidirectional)  # fmt: skip
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 10)

    def forward(self, x):
        rows = torch.relu(self.proj(x.reshape(x.shape[0], 8, 8)))
        return self.head(self.rnn(rows)[0][:, -1])


MODELS = {
    "GRU 64": dict(kind="gru"),
    "LSTM 64": dict(kind="lstm"),
    "LSTM 64 ×2 layers, bidirectional": dict(kind="lstm", layers=2, bidirectional=True),
}


def run(name: str, spec: dict, seed: int) -> list[dict]:
    torch.manual_seed(seed)
    model = RowClassifier(**spec)
    train_quick(model, "digits", epochs=40, lr=3e-3, seed=seed)
    train = make_loader(load_dataset("digits", "train"), 64, shuffle=True, seed=seed)
    test = make_loader(load_dataset("digits", "test"), 256)
    x = next(iter(test))[0][:64]
    calib = [b for b, _ in make_loader(load_dataset("digits", "train"), 64)][:8]
    rows = [_row(name, "original", model, test, x, None)]
    methods = ["l2", "activation"] + (["Torch-Pruning"] if _tp_runs(spec) else [])
    for method in methods:
        pruned = copy.deepcopy(model)
        t0 = time.perf_counter()
        if method == "Torch-Pruning":
            try:
                _tp_prune(pruned, x)
                pruned(x)
            except Exception as e:  # noqa: BLE001 - its failure is the finding
                rows.append({"model": name, "method": method, "error": _first_line(e)})
                continue
        else:
            data = calib if method == "activation" else None
            ns.prune(pruned, x, amount=0.5, importance=method, data=data)
        seconds = time.perf_counter() - t0
        before_heal = accuracy(pruned.eval(), test)
        ns.heal(pruned, train, teacher=model, epochs=5, lr=3e-3, progress=False, seed=seed)
        rows.append(_row(name, method, pruned, test, x, before_heal, seconds))
    return rows


def _first_line(e: Exception) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:160]


def _tp_runs(spec: dict) -> bool:
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        return False
    return spec["kind"] == "lstm" and spec.get("layers", 1) == 1 and not spec.get("bidirectional")


def _tp_prune(model: RowClassifier, x: torch.Tensor) -> None:
    import torch_pruning as tp

    pruner = tp.pruner.MetaPruner(
        model, x, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
        ignored_layers=[model.head],
    )  # fmt: skip
    pruner.step()


def _row(name, method, model, test, x, before_heal, seconds=None) -> dict:
    return {
        "model": name,
        "method": method,
        "hidden": model.rnn.hidden_size,
        "params": sum(p.numel() for p in model.parameters()),
        "acc_before_heal": before_heal,
        "acc": accuracy(model.eval(), test),
        "ms": latency_ms(model, x, threads=1, repeats=30)["median"],
        "seconds": seconds,
    }


def _ms(values: list) -> str:
    if any(v is None for v in values):
        return "–"
    m = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.3f} ± {sd:.3f}" if m < 1.5 else f"{m:.2f} ± {sd:.2f}"


def table(rows: list[dict], head: str, seeds: list[int]) -> str:
    out = [
        "## Recurrent pruning: half the hidden units of GRU / LSTM digit classifiers",
        "",
        head,
        "",
        "Digits read as 8 rows of 8 pixels; trained 40 epochs; pruned at 50% of every group "
        "(the recurrent units and the input projection), then the same heal for each: "
        "`ns.heal(teacher=original, epochs=5)`. Latency: batch 64, 1 thread, median of 30. "
        f"Mean ± std over seeds {', '.join(map(str, seeds))} (model init, training order, heal).",
        "",
        "| model | method | hidden | params | test acc before heal | test acc after heal | ms "
        "| prune s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = list(dict.fromkeys((r["model"], r["method"]) for r in rows))
    for model, method in keys:
        rs = [r for r in rows if (r["model"], r["method"]) == (model, method)]
        errors = sorted({r["error"] for r in rs if "error" in r})
        if errors:
            failed = sum("error" in r for r in rs)
            why = "; ".join(errors)
            out.append(f"| {model} | {method} | fail ({failed}/{len(rs)} seeds): {why} | | | | | |")
            rs = [r for r in rs if "error" not in r]
            if not rs:
                continue
        hidden = sorted({r["hidden"] for r in rs})
        params = sorted({r["params"] for r in rs})
        out.append(
            f"| {model} | {method} | {'/'.join(map(str, hidden))} | "
            f"{'/'.join(f'{p:,}' for p in params)} | {_ms([r['acc_before_heal'] for r in rs])} | "
            f"{_ms([r['acc'] for r in rs])} | {_ms([r['ms'] for r in rs])} | "
            f"{_ms([r['seconds'] for r in rs])} |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from _results import stamp, write_section

    head = stamp(" ".join(["python", "benchmarks/rnn.py", *sys.argv[1:]]), ("torch-pruning",))
    torch.set_num_threads(1)
    rows = []
    for name, spec in MODELS.items():
        for seed in args.seeds:
            rows += run(name, spec, seed)
            print(rows[-1], flush=True)
    text = table(rows, head, args.seeds)
    print(text)
    if not args.no_write:
        write_section("rnn", text)


if __name__ == "__main__":
    main()
