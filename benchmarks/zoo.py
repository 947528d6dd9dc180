"""Every torchvision classification model pruned at amount=0.5 (L2), with Torch-Pruning beside it.

For each model in ``torchvision.models.list_models(module=torchvision.models)`` (random init):
netsculpt prunes half of every channel group. A model **passes** when all of these hold:

- the pruned model runs and its output shape is unchanged, and its outputs are finite;
- MACs after ÷ MACs before ≤ ``MAX_MACS_RATIO`` (0.55: half the channels of every group should
  leave about a quarter of the MACs; a ratio above 0.55 means most of the model was left alone);
- ``ns.save`` → ``ns.load`` into a fresh instance gives outputs equal bit for bit.

Params and MACs before/after, the number of channel groups left whole (and the first reason),
and the reason for each failure. The same model pruned by Torch-Pruning 1.6.1
(``pruning_ratio=0.5``, ``GroupMagnitudeImportance(p=2)``, classifier ignored) when it is
installed, judged by the same shape / finite / MACs rules (it has no save format of its own).

Each tool prunes each model in a forked child process with a time limit (``--timeout``,
``--tp-timeout``): Torch-Pruning 1.6.1's dependency search never returns on some models (it
grows its index maps without end on maxvit_t), and such a run is a failure of its row, not of
the benchmark.

    python benchmarks/zoo.py [--only resnet18 swin_t] [--no-torch-pruning] [--tp-timeout 300]
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
    from benchmarks._results import stamp, write_section
except ImportError:  # run as a script from the repository root
    from _results import stamp, write_section


MAX_MACS_RATIO = 0.55


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
    import tempfile

    model, x = build(name)
    shape = model(x).shape
    macs0, params0 = count_macs(model, x), sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    rep = ns.prune(model, x, amount=0.5, importance="l2")
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        out = model(x)
    macs = count_macs(model, x)
    with tempfile.TemporaryDirectory() as d:
        ns.save(model, d)
        back = ns.load(d, model=build(name)[0]).eval()
        with torch.no_grad():
            reloads = torch.equal(back(x), out)
    skipped = rep.details.get("skipped", {})
    why = _judge(out, shape, (macs0, macs)) or ("" if reloads else "save → load outputs differ")
    return {
        "params": (params0, rep.after.params),
        "macs": (macs0, macs),
        "ok": not why,
        "error": why,
        "seconds": seconds,
        "skipped": len(skipped),
        "skip_reason": next(iter(skipped.values()), ""),
    }


def _judge(out, shape, macs) -> str:
    """Why a pruned model fails the shape / finite / MACs rules ('' when it passes)."""
    if out.shape != shape:
        return f"output shape {tuple(out.shape)} != {tuple(shape)}"
    if not torch.isfinite(out).all():
        return "outputs are not finite"
    if macs[1] / macs[0] > MAX_MACS_RATIO:
        return f"MACs ratio {macs[1] / macs[0]:.2f} > {MAX_MACS_RATIO}"
    return ""


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
        out = model.eval()(x)
    macs = (macs0, count_macs(model, x))
    why = _judge(out, shape, macs)
    return {"macs": macs, "ok": not why, "error": why}


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


def _isolated(fn, name: str, timeout: float) -> dict:
    """``_try(fn, name)`` in a forked child: its result, or a failure when it runs past
    ``timeout`` seconds or dies (killed for memory, for instance)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=lambda: send.send(_try(fn, name)), daemon=True)
    child.start()
    send.close()
    try:
        if recv.poll(timeout):
            return recv.recv()
        error = f"timeout after {timeout:.0f} s"
    except EOFError:  # the child ended without sending: it was killed
        child.join(5)
        error = f"process died (exit code {child.exitcode})"
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        recv.close()
    return {"ok": False, "error": error, "where": ""}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", help="these models only (default: every classifier)")
    p.add_argument("--no-torch-pruning", action="store_true", help="netsculpt column only")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per netsculpt run")
    p.add_argument("--tp-timeout", type=float, default=300, help="seconds per Torch-Pruning run")
    args = p.parse_args()
    import torchvision

    torch.set_num_threads(2)
    names = args.only or torchvision.models.list_models(module=torchvision.models)
    try:
        import torch_pruning  # noqa: F401

        with_tp = not args.no_torch_pruning
    except ImportError:
        with_tp = False
    command = "python benchmarks/zoo.py" + (f" --only {' '.join(args.only)}" if args.only else "")
    command += " --no-torch-pruning" if args.no_torch_pruning else ""
    command += f" --timeout {args.timeout:g} --tp-timeout {args.tp_timeout:g}"
    stamp_line = stamp(command, ("torch_pruning",) if with_tp else ())
    rows, t_all = [], time.perf_counter()
    for name in names:
        r = _isolated(ours, name, args.timeout)
        t = _isolated(prune_with_tp, name, args.tp_timeout) if with_tp else None
        rows.append((name, r, t))
        status = "pass" if r["ok"] else f"FAIL {r.get('error')}"
        tp_status = (
            "" if t is None else (" | TP pass" if t["ok"] else f" | TP FAIL {t.get('error')}")
        )
        print(f"{name:24s} {status}{tp_status}", flush=True)
        # written after every model, so that an interrupted run still leaves its rows
        write_section(
            "zoo", table(rows, with_tp, time.perf_counter() - t_all, len(names), stamp_line)
        )


def _ratio(pair) -> str:
    return f"{pair[1] / pair[0]:.2f}"


def table(rows, with_tp: bool, seconds: float, total: int, stamp_line: str = "") -> str:
    passed = sum(r["ok"] for _, r, _ in rows)
    tp_passed = sum(t["ok"] for _, _, t in rows if t is not None)
    head = [
        "## Zoo: every torchvision classification model at amount=0.5 (issue 2)",
        "",
        stamp_line,
        "",
        f"`benchmarks/zoo.py`, torch {torch.__version__}, CPU, random init, input 224×224 "
        f"(299 for inception_v3), L2 importance. netsculpt: **{passed}/{len(rows)} pass**"
        + (
            f"; Torch-Pruning 1.6.1 on the same models: **{tp_passed}/{len(rows)} pass**"
            if with_tp
            else " (Torch-Pruning column not run: --no-torch-pruning)"
        )
        + f". Total {seconds:.0f} s. A pass: output shape kept, finite outputs, MACs ratio ≤ "
        f"{MAX_MACS_RATIO}, and save → load into a fresh instance gives equal outputs (bit for "
        "bit); Torch-Pruning's column uses the same rules except save → load. 'groups left "
        "whole': channel groups netsculpt did not prune, with the first reason."
        + ("" if len(rows) == total else f" (Interrupted: {len(rows)} of {total} models.)"),
        "",
        "| model | netsculpt | params before → after | MACs before → after (ratio) | prune s "
        "| groups left whole |" + (" Torch-Pruning | TP MACs ratio |" if with_tp else ""),
        "|---|---|---|---|---|---|" + ("---|---|" if with_tp else ""),
    ]
    lines = []
    for name, r, t in rows:
        status = "pass" if r["ok"] else f"fail: {r.get('error') or 'unknown'}"
        if "params" in r:
            skip = str(r["skipped"]) + (f" ({_cell(r['skip_reason'])})" if r["skipped"] else "")
            cells = [
                name,
                status,
                f"{r['params'][0]:,} → {r['params'][1]:,}",
                f"{r['macs'][0]:,} → {r['macs'][1]:,} ({_ratio(r['macs'])})",
                f"{r['seconds']:.1f}",
                skip,
            ]
        else:
            cells = [name, status, "", "", "", ""]
        if with_tp:
            tp_status = "pass" if t["ok"] else f"fail: {t.get('error') or 'unknown'}"
            cells += [tp_status, _ratio(t["macs"]) if "macs" in t else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(head + lines)


def _cell(text: str) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= 80 else text[:77] + "..."


if __name__ == "__main__":
    main()
