"""Calibrated LLM pruning: magnitude vs Wanda vs SparseGPT at 50% and 2:4, held-out perplexity.

A small LLaMA-shaped decoder (4 layers, width 256, 8 query / 4 KV heads, SwiGLU 768, byte
vocabulary) is trained from scratch on the offline stdlib-docstring corpus of
``benchmarks/hf_llm.py`` and saved with safetensors in several shards. Calibration: 16
training sequences of 128 tokens (4 batches of 4); held-out: 32 sequences of the corpus's last
10%. Every method prunes every Linear of the decoder layers (``lm_head`` and embeddings dense)
and every result is scored by ``benchmarks/llm_ppl.py``. Each run is its own process, so
its peak RSS is its own: netsculpt's layer-by-layer path (``netsculpt.hf.prune_pretrained``,
the checkpoint folder in, a folder out), netsculpt in memory (``ns.prune`` on the loaded
model) and, with ``--llmcompressor PYTHON``, llm-compressor's modifiers in their own venv
(``benchmarks/llmc_anchor.py``) on the same checkpoint and calibration tokens.

Run: ``.venv/bin/python benchmarks/llm_calibrated.py [--steps 400] [--llmcompressor
.venv-llmc/bin/python]``; smoke: ``--steps 2 --no-write``. Writes the ``llm-calibrated``
section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

try:
    from benchmarks._results import stamp, write_section
    from benchmarks.llm_ppl import perplexity
except ImportError:  # run as a script from the repository root
    from _results import stamp, write_section
    from llm_ppl import perplexity

HERE = Path(__file__).parent
WORK = HERE / "_work" / "llm-calibrated"
SEQ, N_CALIB, N_HELD, CALIB_BATCH = 128, 16, 32, 4
SEEDS = {"train": 0, "calib": 1, "heldout": 2}
RULES = {"50%": {"sparsity": 0.5}, "2:4": {"pattern": "2:4"}}
RUNS = [("magnitude", "memory"), ("wanda", "streamed"), ("sparsegpt", "streamed"),
        ("sparsegpt", "memory")]  # fmt: skip


def _config():
    import transformers

    return transformers.LlamaConfig(
        vocab_size=256, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=SEQ,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip


def _windows(ids: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, len(ids) - SEQ - 1, (n,), generator=g)
    return torch.stack([ids[s : s + SEQ] for s in start])


def make_checkpoint(steps: int, work: Path) -> dict:
    """Train the dense model (or reuse it when the same steps were trained) and save it, with
    the calibration and held-out token files."""
    import transformers
    from safetensors.torch import save_file

    from netsculpt.data.text import encode, text_corpus

    dense, tokens = work / "dense", work / "tokens.safetensors"
    info = work / "dense.json"
    if info.is_file() and json.loads(info.read_text())["steps"] == steps and dense.is_dir():
        return json.loads(info.read_text())
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ids = encode(text_corpus())
    cut = int(len(ids) * 0.9)
    train_ids, held_ids = ids[:cut], ids[cut:]
    save_file({"calib": _windows(train_ids, N_CALIB, SEEDS["calib"]),
               "heldout": _windows(held_ids, N_HELD, SEEDS["heldout"])}, str(tokens))  # fmt: skip
    torch.manual_seed(SEEDS["train"])
    model = transformers.LlamaForCausalLM(_config())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(SEEDS["train"])
    t0 = time.perf_counter()
    model.train()
    for i in range(steps):
        scale = min(1.0, (i + 1) / 30) * 0.5 * (1 + math.cos(math.pi * i / steps))
        for group in opt.param_groups:
            group["lr"] = 3e-3 * scale
        start = torch.randint(0, len(train_ids) - SEQ - 1, (16,), generator=g)
        x = torch.stack([train_ids[s : s + SEQ] for s in start])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval().save_pretrained(dense, max_shard_size="2MB")
    meta = {"steps": steps, "train_s": round(time.perf_counter() - t0, 1),
            "params": sum(p.numel() for p in model.parameters()),
            "shards": len(list(dense.glob("*.safetensors")))}  # fmt: skip
    info.write_text(json.dumps(meta))
    return meta


def one_run(method: str, where: str, rule: str, work: Path) -> dict:
    """One netsculpt prune in this process: ``{"wall": s, "rss_mb": peak RSS}``."""
    import transformers
    from safetensors.torch import load_file

    import netsculpt as ns
    import netsculpt.hf as nhf

    torch.set_num_threads(2)
    calib = load_file(str(work / "tokens.safetensors"))["calib"]
    data = [{"input_ids": calib[i : i + CALIB_BATCH]} for i in range(0, N_CALIB, CALIB_BATCH)]
    out = work / f"{method}-{where}-{rule.replace(':', '_').replace('%', 'pct')}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    if where == "streamed":
        nhf.prune_pretrained(work / "dense", out, data=data, importance=method, **RULES[rule])
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(work / "dense").eval()
        ns.prune(model, data[0], data=data, importance=method, ignore=["lm_head"],
                 remove_dead=False, **RULES[rule])  # fmt: skip
        ns.make_permanent(model)
        model.save_pretrained(out)
    wall = time.perf_counter() - t0
    rss = _peak_rss_mb()
    return {"wall": round(wall, 2), "rss_mb": round(rss, 1), "out": str(out)}


def _child(cmd: list[str]) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--llmcompressor", help="python of the llm-compressor venv")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--one", nargs=3, metavar=("METHOD", "WHERE", "RULE"), help=argparse.SUPPRESS)
    ap.add_argument("--work", default=str(WORK))
    args = ap.parse_args()
    work = Path(args.work)
    if args.one:
        print(json.dumps(one_run(*args.one, work)))
        return
    torch.set_num_threads(2)
    meta = make_checkpoint(args.steps, work)
    tokens = str(work / "tokens.safetensors")
    dense = perplexity(str(work / "dense"), tokens)
    rows = []
    for rule in RULES:
        for method, where in RUNS:
            r = _child(
                [sys.executable, __file__, "--work", str(work), "--one", method, where, rule]
            )
            rows.append({"tool": "netsculpt", "method": method, "where": where, "rule": rule, **r})
        if args.llmcompressor:
            for method in ("wanda", "sparsegpt"):
                out = work / f"llmc-{method}-{rule.replace(':', '_').replace('%', 'pct')}"
                shutil.rmtree(out, ignore_errors=True)
                cmd = [args.llmcompressor, str(HERE / "llmc_anchor.py"), str(work / "dense"),
                       tokens, method, "0.5" if rule == "50%" else rule, str(out)]  # fmt: skip
                r = _child(cmd)
                rows.append({"tool": "llm-compressor", "method": method, "where": "sequential",
                             "rule": rule, "out": str(out), **r})  # fmt: skip
    for r in rows:
        if "error" not in r:
            r.update(perplexity(r["out"], tokens))
    text = _section(meta, dense, rows, args)
    print(text)
    if not args.no_write:
        write_section("llm-calibrated", text)


def _section(meta: dict, dense: dict, rows: list[dict], args) -> str:
    cmd = "benchmarks/llm_calibrated.py" + (f" --steps {args.steps}" if args.steps != 400 else "")
    if args.llmcompressor:
        cmd += " --llmcompressor .venv-llmc/bin/python"
    lines = [
        "## LLM pruning, calibrated: magnitude vs Wanda vs SparseGPT (and llm-compressor)",
        "",
        stamp(cmd, ("transformers",)),
        "",
        f"LLaMA-shaped decoder, {meta['params'] / 1e6:.2f} M params (4 layers, width 256, 8/4 "
        f"heads, SwiGLU 768, byte vocab), trained {meta['steps']} steps ({meta['train_s']} s) "
        f"on the stdlib-docstring corpus, saved in {meta['shards']} shards. Calibration: "
        f"{N_CALIB} × {SEQ} training tokens (batches of {CALIB_BATCH}); held-out: {N_HELD} × "
        f"{SEQ} tokens of the last 10%. Seeds: {SEEDS}. Every Linear of the decoder layers is "
        "pruned (lm_head and embeddings dense); perplexity by `benchmarks/llm_ppl.py` for "
        "every row. Wall: the prune call (streamed: folder in → folder out, incl. writing); "
        "peak RSS: the whole process (Python, torch, transformers included).",
        "",
        f"Dense held-out perplexity: **{dense['ppl']:.3f}**.",
        "",
        "| rule | tool | method | how | perplexity | sparsity | wall (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['rule']} | {r['tool']} | {r['method']} | {r['where']} | "
                         f"failed: {r['error']} | | | |")  # fmt: skip
            continue
        lines.append(
            f"| {r['rule']} | {r['tool']} | {r['method']} | {r['where']} | {r['ppl']:.3f} | "
            f"{r['sparsity']:.3f} | {r['wall']:.1f} | {r['rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def _peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would carry the parent's peak across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()
