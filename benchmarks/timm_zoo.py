"""One model per timm family pruned at amount=0.3 (L2), saved, reloaded; Torch-Pruning beside it.

A family is a timm model module (``timm.list_modules()``: ``resnet``, ``mobilevit``,
``byobnet``...); its smallest model is picked by parameter count (counted on the meta device
over a short list chosen by name, cached in ``timm_families.json``); ``test_*`` models are left
out. Each model runs in its own process with a timeout, random init (``pretrained=False``).

Columns: pass (the pruned model runs with the same output shape and fewer parameters), save →
``ns.load`` into a fresh instance → same outputs, params and MACs before/after, the reason of
each failure; Torch-Pruning 1.6.1 (``MetaPruner``, ``pruning_ratio=0.3``,
``GroupMagnitudeImportance(p=2)``, classifier ignored) on an identical model when installed.

    python benchmarks/timm_zoo.py [--families resnet,mobilevit] [--limit 5] [--no-write]
        [--no-torch-pruning] [--timeout 420] [--tp-timeout 240] [--max-size 160] [--jobs 1]
        [--budget-min 30]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CACHE = Path(__file__).with_name("timm_families.json")
# name tokens of small variants, smallest first (a short list to count parameters on)
_SIZES = ("atto", "femto", "pico", "nano", "xxxs", "xxs", "xs", "micro", "mini", "tiny", "t",
          "small", "s", "lite", "light", "b0", "s0", "m", "base", "b")  # fmt: skip


def _name_key(name: str) -> tuple:
    tokens = re.split(r"[_.]", name)
    rank = min((_SIZES.index(t) for t in tokens if t in _SIZES), default=len(_SIZES))
    nums = [int(n) for n in re.findall(r"\d+", name)] or [0]
    return (rank, nums[0], len(name))


def families() -> dict[str, list[str]]:
    import timm
    from timm.models import _registry

    out: dict[str, list[str]] = {}
    for name in timm.list_models():
        if not name.startswith("test_"):
            out.setdefault(_registry._model_to_module[name], []).append(name)
    return out


def _meta_params(name: str) -> int | None:
    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # a model that does not build is not a candidate
        return None


def pick_models(shortlist: int = 6) -> dict[str, str]:
    """{family: smallest model}, cached per timm version."""
    import timm

    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    if cache.get("timm") == timm.__version__:
        return cache["models"]
    picked = {}
    for fam, names in sorted(families().items()):
        counts = {n: _meta_params(n) for n in sorted(names, key=_name_key)[:shortlist]}
        counts = {n: c for n, c in counts.items() if c is not None}
        picked[fam] = min(counts, key=counts.get) if counts else sorted(names, key=_name_key)[0]
    CACHE.write_text(json.dumps({"timm": timm.__version__, "models": picked}, indent=1) + "\n")
    return picked


def build(name: str, max_size: int):
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    cfg = model.pretrained_cfg or {}
    size = int((cfg.get("input_size") or (3, 224, 224))[-1])
    if not cfg.get("fixed_input_size", False) and max_size < size:
        try:  # a smaller input where the model takes one (some need their own size)
            with torch.no_grad():
                model(torch.randn(1, 3, max_size, max_size))
            size = max_size
        except Exception:
            pass
    return model, torch.randn(1, 3, size, size)


def _error(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0][:220] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"


def run_ours(name: str, max_size: int, count: bool = False) -> dict:
    import timm
    import torch

    import netsculpt as ns
    from netsculpt.measure import count_macs

    model, x = build(name, max_size)
    row: dict = {"size": x.shape[-1]}
    with torch.no_grad():
        shape = model(x).shape
    row["params0"] = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    try:
        rep = ns.prune(model, x, amount=0.3, importance="l2")
    except Exception as e:  # every failure is recorded with its reason
        row.update(ok=False, error=_error(e), netsculpt_error=isinstance(e, ns.NetsculptError))
        return row
    row["seconds"] = time.perf_counter() - t0
    row["skipped"] = len(rep.details.get("skipped", {}))
    with torch.no_grad():
        y = model(x)
    row["params1"] = sum(p.numel() for p in model.parameters())
    # MACs of the capture prune made, and after: predicted from the graph (a fresh count costs
    # one more export; --count-macs does it)
    row["macs0"], row["macs1"] = rep.before.macs, rep.after.macs
    if count:
        row["macs1"] = count_macs(model, x)
    if y.shape != shape:
        row.update(ok=False, error=f"output shape {tuple(y.shape)} != {tuple(shape)}")
        return row
    if row["params1"] >= row["params0"]:
        why = next(iter(rep.details.get("skipped", {}).values()), "no group was prunable")
        row.update(ok=False, error=f"nothing removed ({why[:200]})", netsculpt_error=True)
        return row
    row["ok"] = True
    with tempfile.TemporaryDirectory() as d:
        try:
            ns.save(model, Path(d) / "m")
            fresh = timm.create_model(name, pretrained=False)
            back = ns.load(Path(d) / "m", model=fresh).eval()
            with torch.no_grad():
                diff = float((back(x) - y).abs().max())
            scale = float(y.abs().max()) or 1.0
            row["reload"] = diff <= 1e-4 * scale + 1e-5
            if not row["reload"]:
                row["reload_error"] = f"reloaded outputs differ by {diff:.3g}"
        except Exception as e:
            row.update(reload=False, reload_error=_error(e))
    return row


def run_tp(name: str, max_size: int) -> dict:
    import torch
    import torch_pruning as tp

    model, x = build(name, max_size)
    with torch.no_grad():
        shape = model(x).shape
    macs0 = tp.utils.count_ops_and_params(model, x)[0]  # Torch-Pruning's own counter
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    ignored = [m for m in ([head] if isinstance(head, torch.nn.Module) else []) if m is not None]
    try:
        pruner = tp.pruner.MetaPruner(
            model, x, importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=0.3, ignored_layers=ignored,
        )  # fmt: skip
        pruner.step()
        with torch.no_grad():
            ok = model(x).shape == shape
        return {"ok": ok, "macs": [macs0, tp.utils.count_ops_and_params(model, x)[0]]}
    except Exception as e:
        return {"ok": False, "error": _error(e)}


def worker(name: str, max_size: int, tp: bool, count: bool) -> None:
    """One model, one library, printed as a ``ROW {json}`` line."""
    import torch

    torch.set_num_threads(1)
    try:
        row = run_tp(name, max_size) if tp else run_ours(name, max_size, count)
    except Exception as e:  # building or measuring failed before pruning
        row = {"ok": False, "error": _error(e)}
    print("ROW " + json.dumps(row), flush=True)


def _subprocess(name: str, args, tp: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--max-size", str(args.max_size)]
    cmd += ["--tp-worker"] if tp else []
    cmd += ["--count-macs"] if args.count_macs else []
    t0, limit = time.perf_counter(), args.tp_timeout if tp else args.timeout
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timeout after {limit} s", "wall": limit}
    rows = [ln[4:] for ln in out.stdout.splitlines() if ln.startswith("ROW ")]
    if not rows:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"ok": False, "error": f"worker died ({tail})", "wall": time.perf_counter() - t0}
    row = json.loads(rows[-1])
    row["wall"] = time.perf_counter() - t0
    return row


def run_one(name: str, args) -> dict:
    """netsculpt, then Torch-Pruning, each in its own process with its own timeout."""
    row = _subprocess(name, args, tp=False)
    if args.with_tp:
        row["tp"] = _subprocess(name, args, tp=True)
    return row


def _fmt(a, b) -> str:
    return f"{a:,} → {b:,} ({b / a:.2f})" if a else ""


def table(rows: list, args, seconds: float, total: int, head_line: str) -> str:
    n = len(rows)
    ok = sum(bool(r.get("ok")) for _, _, r in rows)
    both = sum(bool(r.get("ok") and r.get("reload")) for _, _, r in rows)
    named = sum(bool(r.get("netsculpt_error")) for _, _, r in rows if not r.get("ok"))
    tp_rows = [r["tp"] for _, _, r in rows if "tp" in r]
    tp_ok = sum(bool(t.get("ok")) for t in tp_rows)
    lines = [
        "## timm zoo: one model per timm family at amount=0.3",
        "",
        head_line,
        "",
        f"Random init, L2 importance, input {args.max_size}×{args.max_size} (the model's own "
        f"size when it is fixed or smaller), CPU, 1 thread per model, timeout {args.timeout} s. "
        f"Families run: **{n}** of {total}. netsculpt prunes **{ok}/{n}**, prunes and reloads "
        f"**{both}/{n} ({100 * both / max(n, 1):.0f}%)**; of the {n - ok} failures, {named} are "
        f"NetsculptErrors naming the op/module. MACs: netsculpt's count of the capture "
        f"(after: predicted from the graph{'' if not args.count_macs else ', checked by a fresh count'}); "
        f"Torch-Pruning's MACs ratio by its own counter."
        + (f" Torch-Pruning 1.6.1: **{tp_ok}/{len(tp_rows)}** prune." if tp_rows else "")
        + f" Total {seconds / 60:.0f} min.",
        "",
        "| family | model | in | netsculpt | reload | params before → after | "
        "MACs before → after | prune s | TP | TP MACs ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fam, name, r in rows:
        tp_cell, tp_ratio = "", ""
        if "tp" in r:
            t = r["tp"]
            tp_cell = "pass" if t.get("ok") else f"fail: {t.get('error', 'shape changed')}"
            tp_ratio = f"{t['macs'][1] / t['macs'][0]:.2f}" if t.get("ok") else ""
        if r.get("ok"):
            reload = "pass" if r.get("reload") else f"fail: {r.get('reload_error', '')}"
            cells = [
                "pass", reload, _fmt(r["params0"], r["params1"]), _fmt(r["macs0"], r["macs1"]),
                f"{r.get('seconds', 0):.0f}",
            ]  # fmt: skip
        else:
            cells = [f"fail: {r.get('error', '')}", "", "", "", ""]
        cells = [fam, name, str(r.get("size", ""))] + cells + [tp_cell, tp_ratio]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--families", default="", help="comma-separated timm module names")
    p.add_argument("--limit", type=int, default=0, help="run the first N families only")
    p.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    p.add_argument("--no-torch-pruning", action="store_true")
    p.add_argument("--timeout", type=int, default=420, help="seconds per model")
    p.add_argument("--tp-timeout", type=int, default=240, help="seconds per Torch-Pruning run")
    p.add_argument("--max-size", type=int, default=160)
    p.add_argument("--count-macs", action="store_true", help="count MACs after on a fresh export")
    p.add_argument("--jobs", type=int, default=1, help="models run at once")
    p.add_argument("--budget-min", type=float, default=0, help="start no model after N minutes")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--tp-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    try:
        import torch_pruning  # noqa: F401

        args.with_tp = not args.no_torch_pruning
    except ImportError:
        args.with_tp = False
    if args.worker:
        worker(args.worker, args.max_size, args.tp_worker, args.count_macs)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from _results import stamp, write_section

    head_line = stamp(" ".join(["python", "benchmarks/timm_zoo.py", *sys.argv[1:]]),
                      ("timm", "torch-pruning"))  # fmt: skip
    picked = pick_models()
    fams = [f for f in args.families.split(",") if f] or sorted(picked)
    unknown = [f for f in fams if f not in picked]
    if unknown:
        sys.exit(f"unknown timm families: {', '.join(unknown)}")
    fams = fams[: args.limit] if args.limit else fams
    rows, t0 = [], time.perf_counter()

    def one(fam: str) -> dict | None:
        if args.budget_min and time.perf_counter() - t0 > 60 * args.budget_min:
            return None  # over the time budget: this family is not run
        return run_one(picked[fam], args)

    pool = ThreadPoolExecutor(max(1, args.jobs))
    futures = [pool.submit(one, fam) for fam in fams]
    for fam, fut in zip(fams, futures):
        name = picked[fam]
        r = fut.result()
        if r is None:
            continue
        rows.append((fam, name, r))
        status = "pass" if r.get("ok") else f"FAIL {r.get('error')}"
        reload = "" if not r.get("ok") else (" reload ok" if r.get("reload") else
                                             f" RELOAD FAIL {r.get('reload_error')}")  # fmt: skip
        tp = "" if "tp" not in r else (" | TP pass" if r["tp"].get("ok") else " | TP fail")
        print(f"{fam:26s} {name:32s} {status}{reload}{tp} ({r.get('wall', 0):.0f} s)", flush=True)
        text = table(rows, args, time.perf_counter() - t0, len(picked), head_line)
        if not args.no_write:  # after every model: an interrupted run still leaves its rows
            write_section("timm-zoo", text)
    if args.no_write:
        print(text)


if __name__ == "__main__":
    main()
