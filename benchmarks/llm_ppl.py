"""Held-out perplexity of a causal-LM checkpoint folder: the one scorer of the LLM benchmarks.

Self-contained (torch, transformers, safetensors; no netsculpt), so every pruned folder, made
by netsculpt or by another tool in another venv, is scored by the same code in the same venv.

Run: ``python benchmarks/llm_ppl.py CKPT TOKENS`` (``TOKENS``: a safetensors file whose
``heldout`` tensor holds (n, seq) token ids) prints ``{"ppl": ..., "sparsity": ...}``.
"""

from __future__ import annotations

import argparse
import json
import math

import torch


def perplexity(ckpt: str, tokens: str, batch: int = 8) -> dict:
    """exp(mean next-token cross-entropy) over every held-out sequence, and the fraction of
    zeros in the decoder layers' Linear weights."""
    import transformers
    from safetensors.torch import load_file

    ids = load_file(tokens)["heldout"]
    model = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            x = ids[i : i + batch]
            logits = model(input_ids=x).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
            )
            total, count = total + float(loss), count + x[:, 1:].numel()
    zeros = nonzero = 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in f".{name}":
            zeros += int((mod.weight == 0).sum())
            nonzero += int((mod.weight != 0).sum())
    return {"ppl": math.exp(total / count), "sparsity": zeros / max(zeros + nonzero, 1)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="held-out perplexity of a checkpoint folder")
    ap.add_argument("ckpt", help="a causal-LM checkpoint folder")
    ap.add_argument("tokens", help="a safetensors file with a 'heldout' (n, seq) tensor")
    args = ap.parse_args()
    print(json.dumps(perplexity(args.ckpt, args.tokens)))
