"""Every torchvision classification model pruned at amount=0.5 (L2), with Torch-Pruning beside it.

For each model in ``torchvision.models.list_models(module=torchvision.models)`` (random init):
netsculpt prunes half of every channel group; pass = the pruned model runs and its output shape
is unchanged. Params and MACs before/after; the reason for each failure. The same model pruned
by Torch-Pruning 1.6.1 (``pruning_ratio=0.5``, ``GroupMagnitudeImportance(p=2)``, classifier
ignored) when it is installed.

    python benchmarks/zoo.py [--only resnet18 swin_t] [--no-torch-pruning]
"""

from __future__ import annotations

import argparse
import gc
import time
import traceback

import torch

import netsculpt as ns
from netsculpt.measure import count_macs

try:
    from benchmarks._results import write_section
except ImportError:  # run as a script from the repository root
    from _results import write_section


def build(name: str):
    import torchvision

    kwargs = (
        {"aux_logits": False, "init_weights": False}
        if name in ("inception_v3", "googlenet")
        else {}
    )
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    size = 299 if name == "inception_v3" else 224
    return model, torch.randn(1, 3, size, size)


def ours(name: str) -> dict:
    model, x = build(name)
    shape = model(x).shape
    macs0, params0 = count_macs(model, x), sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    rep = ns.prune(model, x, amount=0.5, importance="l2")
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        ok = model(x).shape == shape
    return {
        "params": (params0, rep.after.params),
        "macs": (macs0, count_macs(model, x)),
        "ok": ok,
        "seconds": seconds,
        "skipped": len(rep.details["skipped"]),
    }


def prune_with_tp(name: str) -> dict:
    import torch_pruning as tp

    model, x = build(name)
    shape = model(x).shape
    macs0 = count_macs(model, x)
    classifier = [
        m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1000
    ]
    pruner = tp.pruner.MetaPruner(
        model,
        x,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=classifier,
    )
    pruner.step()
    with torch.no_grad():
        ok = model(x).shape == shape
    return {"macs": (macs0, count_macs(model, x)), "ok": ok}


def _try(fn, name):
    try:
        return fn(name)
    except Exception as e:  # a benchmark records failures instead of stopping
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        return {
            "ok": False,
            "error": f"{type(e).__name__}: {msg}",
            "where": traceback.extract_tb(e.__traceback__)[-1].filename.split("/")[-1],
        }
    finally:
        gc.collect()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", help="these models only (default: every classifier)")
    p.add_argument("--no-torch-pruning", action="store_true", help="netsculpt column only")
    args = p.parse_args()
    import torchvision

    torch.set_num_threads(2)
    names = args.only or torchvision.models.list_models(module=torchvision.models)
    try:
        import torch_pruning  # noqa: F401

        with_tp = not args.no_torch_pruning
    except ImportError:
        with_tp = False
    rows, t_all = [], time.perf_counter()
    for name in names:
        r = _try(ours, name)
        t = _try(prune_with_tp, name) if with_tp else None
        rows.append((name, r, t))
        status = "pass" if r["ok"] else f"FAIL {r.get('error')}"
        tp_status = (
            "" if t is None else (" | TP pass" if t["ok"] else f" | TP FAIL {t.get('error')}")
        )
        print(f"{name:24s} {status}{tp_status}", flush=True)
        # written after every model, so that an interrupted run still leaves its rows
        write_section("zoo", table(rows, with_tp, time.perf_counter() - t_all, len(names)))


def _ratio(pair) -> str:
    return f"{pair[1] / pair[0]:.2f}"


def table(rows, with_tp: bool, seconds: float, total: int) -> str:
    passed = sum(r["ok"] for _, r, _ in rows)
    tp_passed = sum(t["ok"] for _, _, t in rows if t is not None)
    head = [
        "## Zoo: every torchvision classification model at amount=0.5 (issue 2)",
        "",
        f"`benchmarks/zoo.py`, torch {torch.__version__}, CPU, random init, input 224×224 "
        f"(299 for inception_v3), L2 importance. netsculpt: **{passed}/{len(rows)} pass**"
        + (
            f"; Torch-Pruning 1.6.1 on the same models: **{tp_passed}/{len(rows)} pass**"
            if with_tp
            else " (Torch-Pruning column not run: --no-torch-pruning)"
        )
        + f". Total {seconds:.0f} s."
        + ("" if len(rows) == total else f" (Interrupted: {len(rows)} of {total} models.)"),
        "",
        "| model | netsculpt | params before → after | MACs before → after (ratio) | prune s |"
        + (" Torch-Pruning | TP MACs ratio |" if with_tp else ""),
        "|---|---|---|---|---|" + ("---|---|" if with_tp else ""),
    ]
    lines = []
    for name, r, t in rows:
        if r["ok"]:
            cells = [
                f"{name}",
                "pass",
                f"{r['params'][0]:,} → {r['params'][1]:,}",
                f"{r['macs'][0]:,} → {r['macs'][1]:,} ({_ratio(r['macs'])})",
                f"{r['seconds']:.1f}",
            ]
        else:
            cells = [name, f"fail: {r.get('error', 'output shape changed')}", "", "", ""]
        if with_tp:
            if t["ok"]:
                cells += ["pass", _ratio(t["macs"])]
            else:
                cells += [f"fail: {t.get('error', 'output shape changed')}", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(head + lines)


if __name__ == "__main__":
    main()
