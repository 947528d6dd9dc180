"""The llm-compressor anchor: its WandaPruningModifier / SparseGPTModifier on a saved
checkpoint, run in llm-compressor's own venv (``make bench-llmcompressor`` makes it).

Reads the checkpoint and the calibration tokens the netsculpt runs use (``calib`` in the
token file, the same sequences in the same batches), prunes every Linear of the decoder
layers (``lm_head`` ignored, as netsculpt's layer-by-layer path does), saves an ordinary
dense-format folder and prints ``{"wall": s, "rss_mb": MB}`` (the run's wall time (load, prune, save) and
the process's peak RSS).

Run: ``.venv-llmc/bin/python benchmarks/llmc_anchor.py CKPT TOKENS wanda|sparsegpt 0.5|2:4 OUT``.
"""

from __future__ import annotations

import argparse
import json
import time
import types

import torch


def main(ckpt: str, tokens: str, method: str, rule: str, out: str, batch: int = 4) -> dict:
    import transformers
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from safetensors.torch import load_file

    torch.set_num_threads(2)
    calib = load_file(tokens)["calib"]
    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    rows = [{"input_ids": calib[i]} for i in range(len(calib))]
    loader = torch.utils.data.DataLoader(
        rows,
        batch_size=batch,
        collate_fn=lambda b: {"input_ids": torch.stack([r["input_ids"] for r in b])},
    )
    kw = {"sparsity": 0.5, "mask_structure": rule if ":" in rule else "0:0",
          "targets": ["Linear"], "ignore": ["lm_head"]}  # fmt: skip
    if method == "sparsegpt":
        modifier = SparseGPTModifier(block_size=128, dampening_frac=0.01, **kw)
    else:
        modifier = WandaPruningModifier(**kw)
    # the data comes tokenised (byte ids) in a DataLoader: no tokenizer is read, but oneshot
    # wants a processor object when data is given
    oneshot(model=model, dataset=loader, recipe=modifier, num_calibration_samples=len(calib),
            pipeline="sequential", processor=types.SimpleNamespace())  # fmt: skip
    model.save_pretrained(out, save_compressed=False)
    wall = time.perf_counter() - t0  # load, calibrate, prune, save: as the netsculpt rows
    rss = _peak_rss_mb()
    return {"wall": round(wall, 2), "rss_mb": round(rss, 1)}


def _peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would carry the parent's peak across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="llm-compressor's Wanda / SparseGPT on a checkpoint")
    ap.add_argument("ckpt")
    ap.add_argument("tokens", help="safetensors file with a 'calib' (n, seq) tensor")
    ap.add_argument("method", choices=("wanda", "sparsegpt"))
    ap.add_argument("rule", choices=("0.5", "2:4"))
    ap.add_argument("out")
    a = ap.parse_args()
    print(json.dumps(main(a.ckpt, a.tokens, a.method, a.rule, a.out)))
