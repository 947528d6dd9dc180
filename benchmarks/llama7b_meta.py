"""LLaMA-7B-shaped config (LlamaConfig defaults) on the meta device: structure graph, groups and
blocks without materializing weights. Measures wall time and peak RSS of this process.

Run: ``.venv/bin/python benchmarks/llama7b_meta.py`` (prints one Markdown table row; writes
nothing). ``--layers 2`` keeps the 7B widths with 2 decoder layers instead of 32 (a smoke run).
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import torch


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--layers", type=int, default=None,
                    help="decoder layers (default: LlamaConfig's 32)")  # fmt: skip
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from transformers import LlamaConfig, LlamaForCausalLM

    from netsculpt.graph import build_graph
    from netsculpt.graph.blocks import find_blocks

    t0 = time.perf_counter()
    # 4096 hidden, 32 layers, 32 heads, 11008 MLP, 32000 vocab
    cfg = LlamaConfig() if args.layers is None else LlamaConfig(num_hidden_layers=args.layers)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    x = {"input_ids": torch.zeros(1, 16, dtype=torch.long, device="meta")}
    t1 = time.perf_counter()
    graph = build_graph(model, x)
    t2 = time.perf_counter()
    blocks = find_blocks(model, x, cap=graph.captured)  # reuse the export
    t3 = time.perf_counter()
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    groups = graph.prunable_groups()
    heads = sum(g.kind == "head" for g in groups)
    print(
        "| params | build model | graph + groups | blocks | total | peak RSS | prunable groups "
        "(head / channel) | blocks (removable) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {params / 1e9:.2f} B | {t1 - t0:.1f} s | {t2 - t1:.1f} s | {t3 - t2:.1f} s | "
        f"{t3 - t0:.1f} s | {rss_gb:.2f} GB | {len(groups)} ({heads} / {len(groups) - heads}) | "
        f"{len(blocks)} ({sum(b.removable for b in blocks)}) |"
    )


if __name__ == "__main__":
    main()
