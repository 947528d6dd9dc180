"""torchvision detectors pruned by scope: backbone + FPN + heads, post-processing untouched.

Each detector (random init: weights=None, weights_backbone=None; score threshold 0 so that
random weights still return boxes) is pruned with ``ns.prune(model, ([img],), amount=0.3,
scope=[...], importance="l2")``. A row: params of the whole model before -> after, MACs of the
pruned scopes before -> after (the rest of a detector is not a graph), prune seconds, whether
``model([img])`` still returns the same structure (one dict per image, the same keys, the same
trailing dims, boxes found), and whether ``ns.save`` -> ``ns.load`` into a fresh detector
gives the same detections.

    python benchmarks/detection.py [--size 224] [--only retinanet_resnet50_fpn] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models import detection as D

import netsculpt as ns

HEADS = ["backbone", "rpn.head", "roi_heads.box_head"]
DETECTORS = {  # constructor -> (scopes, score-threshold keyword)
    "fasterrcnn_resnet50_fpn": (HEADS, "box_score_thresh"),
    "maskrcnn_resnet50_fpn": (HEADS + ["roi_heads.mask_head"], "box_score_thresh"),
    "retinanet_resnet50_fpn": (["backbone", "head"], "score_thresh"),
    "fcos_resnet50_fpn": (["backbone", "head"], "score_thresh"),
    "ssdlite320_mobilenet_v3_large": (["backbone", "head"], "score_thresh"),
}


def build(name: str, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    _, thresh = DETECTORS[name]
    kw = {"weights": None, "weights_backbone": None, thresh: 0.0}
    if not name.startswith("ssd"):  # SSDlite resizes to its own 320
        kw.update(min_size=size, max_size=size)
    return getattr(D, name)(**kw).eval()


def structure(out: list[dict]) -> list[tuple]:
    return [tuple(sorted((k, tuple(v.shape[1:])) for k, v in o.items())) for o in out]


def run(name: str, size: int) -> dict:
    scopes = DETECTORS[name][0]
    model = build(name, size)
    img = torch.rand(3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model([img])
    t0 = time.perf_counter()
    rep = ns.prune(model, ([img],), amount=0.3, scope=scopes, importance="l2")
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        out = model([img])
    same = structure(out) == structure(ref) and len(out[0]["boxes"]) > 0
    with tempfile.TemporaryDirectory() as d:
        ns.save(model, Path(d) / "m")
        back = ns.load(Path(d) / "m", model=build(name, size)).eval()
        with torch.no_grad():
            again = back([img])
    reload = all(torch.allclose(a[k], b[k], atol=1e-4) for a, b in zip(out, again) for k in a)
    return {
        "model": name,
        "scopes": scopes,
        "params": (rep.before.params, rep.after.params),
        "macs": (rep.before.macs, rep.after.macs),
        "seconds": seconds,
        "same": same,
        "boxes": (len(ref[0]["boxes"]), len(out[0]["boxes"])),
        "reload": reload,
    }


def _m(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def table(rows: list[dict], head: str, size: int) -> str:
    out = [
        "## Detection: torchvision detectors pruned by scope",
        "",
        head,
        "",
        f"Random init, image {size}×{size} (SSDlite: its own 320), `amount=0.3`, L2 importance, "
        "CPU. MACs are of the pruned scopes (captured with the inputs recorded in one forward); "
        "params of the whole model. *Structure*: `model([img])` returns one dict per image with "
        "the same keys and trailing dims, and boxes (score threshold 0). *Reload*: `ns.save` -> "
        "`ns.load(model=fresh)` gives the same detections.",
        "",
        "| detector | scopes | params before → after | scope MACs before → after | prune s "
        "| structure | boxes before / after | reload |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {', '.join(r['scopes'])} | fail: {r['error']} "
                       "| | | | | |")  # fmt: skip
            continue
        (p0, p1), (m0, m1) = r["params"], r["macs"]
        out.append(
            f"| {r['model']} | {', '.join(r['scopes'])} | {_m(p0)} → {_m(p1)} ({p1 / p0:.2f}) "
            f"| {m0 / 1e9:.2f}G → {m1 / 1e9:.2f}G ({m1 / m0:.2f}) | {r['seconds']:.0f} "
            f"| {'same' if r['same'] else 'CHANGED'} | {r['boxes'][0]} / {r['boxes'][1]} "
            f"| {'same' if r['reload'] else 'DIFFERS'} |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from _results import stamp, write_section

    head = stamp(" ".join(["python", "benchmarks/detection.py", *sys.argv[1:]]))
    rows = []
    for name in args.only or list(DETECTORS):
        try:
            rows.append(run(name, args.size))
        except Exception as e:  # noqa: BLE001 - a failing detector is a row, not the end
            msg = " ".join(f"{type(e).__name__}: {e}".split())[:200]
            rows.append({"model": name, "scopes": DETECTORS[name][0], "error": msg})
        print(rows[-1], flush=True)
    text = table(rows, head, args.size)
    print(text)
    if not args.no_write:
        write_section("detection", text)


if __name__ == "__main__":
    main()
