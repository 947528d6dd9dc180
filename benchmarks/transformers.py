"""Hugging Face transformers: layer removal by criterion and MLP + head pruning vs Torch-Pruning.

Two decoders trained briefly from scratch on the stdlib docstring corpus (byte tokens):
a GPT-2-shaped and a LLaMA-shaped (GQA) model, scaled down to run on 2 CPU cores. For each:
perplexity after removing 25% of layers by each criterion (+ the same heal budget), and after
pruning 30% of MLP channels and heads with netsculpt vs Torch-Pruning's LLM example recipe
(MetaPruner, num_heads, prune_num_heads=True, prune_head_dims=False), both healed alike.
Writes the ``transformers`` section of ``benchmarks/RESULTS.md``.

Run: ``.venv/bin/python benchmarks/transformers.py [--steps 300] [--heal 60]``
"""

from __future__ import annotations

import argparse
import copy
import math
import re
import signal
import sys
import time
import warnings
from pathlib import Path

# this file is named like the package it benchmarks: keep its folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import torch  # noqa: E402

warnings.filterwarnings("ignore")
SEQ, BATCH = 64, 16


def corpus() -> tuple[torch.Tensor, torch.Tensor]:
    from netsculpt.data.text import encode, text_corpus

    ids = encode(text_corpus())
    cut = int(len(ids) * 0.9)
    return ids[:cut], ids[cut:]


def batches(ids: torch.Tensor, n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        start = torch.randint(0, len(ids) - SEQ - 1, (BATCH,), generator=g)
        out.append({"input_ids": torch.stack([ids[s : s + SEQ] for s in start])})
    return out


def train(model, data: list[dict], lr: float) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for i, b in enumerate(data):
        for group in opt.param_groups:  # cosine decay
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / len(data)))
        loss = model(**b, labels=b["input_ids"]).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()


@torch.no_grad()
def ppl(model, data: list[dict]) -> float:
    model.eval()
    losses = [float(model(**b, labels=b["input_ids"]).loss) for b in data]
    return math.exp(sum(losses) / len(losses))


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def make(kind: str):
    import transformers as t

    if kind == "gpt2":
        cfg = t.GPT2Config(vocab_size=256, n_embd=128, n_layer=4, n_head=4, n_positions=SEQ,
                           bos_token_id=0, eos_token_id=0)  # fmt: skip
        return t.GPT2LMHeadModel(cfg)
    cfg = t.LlamaConfig(vocab_size=256, hidden_size=128, num_hidden_layers=4,
                        num_attention_heads=4, num_key_value_heads=2, intermediate_size=344,
                        max_position_embeddings=SEQ, bos_token_id=0, eos_token_id=0)  # fmt: skip
    return t.LlamaForCausalLM(cfg)


def tp_prune(model, example: dict, ratio: float) -> str:
    """Torch-Pruning's examples/LLMs recipe, restricted to heads + MLP (hidden kept)."""
    import torch_pruning as tp

    num_heads, ignored = {}, [model.lm_head]
    for name, m in model.named_modules():
        if name.endswith("self_attn"):
            num_heads[m.q_proj] = m.config.num_attention_heads
            num_heads[m.k_proj] = m.config.num_key_value_heads
            num_heads[m.v_proj] = m.config.num_key_value_heads
        if name.endswith(("o_proj", "down_proj")):
            ignored.append(m)  # their outputs are the hidden size, which stays
    pruner = tp.pruner.MetaPruner(
        model, example_inputs=example["input_ids"][:1], importance=tp.importance.GroupMagnitudeImportance(p=2),
        global_pruning=False, pruning_ratio=ratio, ignored_layers=ignored, num_heads=num_heads,
        prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=ratio,
        output_transform=lambda out: out.logits,
    )  # fmt: skip
    for g in pruner.step(interactive=True):
        g.prune()
    # the example's manual fix-ups: HF attributes Torch-Pruning does not know about
    for m in model.modules():
        if hasattr(m, "q_proj") and hasattr(m, "num_key_value_groups"):
            m.num_key_value_groups = m.q_proj.out_features // m.k_proj.out_features
    attn = model.model.layers[0].self_attn
    model.config.num_attention_heads = attn.q_proj.out_features // attn.head_dim
    model.config.num_key_value_heads = attn.k_proj.out_features // attn.head_dim
    return "ok"


TP_LIMIT_S = 180  # Torch-Pruning's dependency search can run for many minutes on LLaMA


def _too_slow(*_):
    raise TimeoutError(f"MetaPruner did not finish within {TP_LIMIT_S} s on this model")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(kind: str, steps: int, heal: int, lines: list[str]) -> None:
    import netsculpt as ns
    import netsculpt.hf as nhf
    from netsculpt.hf.layers import cut_layers

    torch.manual_seed(0)
    tr, te = corpus()
    model = make(kind)
    t0 = time.perf_counter()
    train(model, batches(tr, steps, 0), 3e-3)
    test, calib, heal_data = batches(te, 8, 1), batches(tr, 4, 2), batches(tr, heal, 3)
    base = ppl(model, test)
    n_layers = len(nhf.layer_widths(model)["layers"])
    drop = n_layers // 4
    lines.append(f"\n**{kind}**: {params(model) / 1e6:.2f} M params, {n_layers} layers, trained "
                 f"{steps} steps ({time.perf_counter() - t0:.0f} s); dense perplexity "
                 f"**{base:.2f}**; heal = {heal} LM steps (lr 1e-3) for every row.\n")  # fmt: skip
    lines.append("| method | params | layers removed | ppl (no heal) | ppl (healed) |")
    lines.append("|---|---|---|---|---|")
    for crit in ("influence", "angular", "ppl", "last"):
        m = copy.deepcopy(model)
        if crit == "last":
            removed = list(range(n_layers - 1 - drop, n_layers - 1))
            from netsculpt.hf.layers import drop_layers

            drop_layers(m, removed)
        else:
            removed = cut_layers(m, calib, drop, crit)
        p0 = ppl(m, test)
        train(m, heal_data, 1e-3)
        log(f"{kind} cut {crit} done")
        name = {
            "influence": "cut: block influence (ShortGPT)",
            "angular": "cut: angular (Gromov)",
            "ppl": "cut: iterative Δloss (SLEB)",
            "last": "cut: deepest layers (baseline)",
        }
        lines.append(f"| {name[crit]} | {params(m) / 1e6:.2f} M | {removed} | {p0:.2f} | "
                     f"{ppl(m, test):.2f} |")  # fmt: skip
    # width: 30% of MLP channels and heads
    m = copy.deepcopy(model)
    x = {"input_ids": calib[0]["input_ids"][:2]}
    nhf.prune(m, x, amount=0.3, targets=("heads", "mlp"), uniform=True, importance="l2")
    p0 = ppl(m, test)
    target = params(m)
    train(m, heal_data, 1e-3)
    lines.append(f"| netsculpt prune 30% heads + MLP (l2, uniform) | {target / 1e6:.2f} M | – | "
                 f"{p0:.2f} | {ppl(m, test):.2f} |")  # fmt: skip
    if kind == "llama":
        m = copy.deepcopy(model)
        signal.signal(signal.SIGALRM, _too_slow)
        signal.alarm(TP_LIMIT_S)
        try:
            tp_prune(m, x, 0.3)
            signal.alarm(0)
            p0 = ppl(m, test)
            train(m, heal_data, 1e-3)
            lines.append(f"| Torch-Pruning 1.6.1 LLM recipe, 30% heads + MLP | "
                         f"{params(m) / 1e6:.2f} M | – | {p0:.2f} | {ppl(m, test):.2f} |")  # fmt: skip
        except Exception as e:  # report, do not hide
            signal.alarm(0)
            msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            lines.append(f"| Torch-Pruning 1.6.1 LLM recipe | – | – | failed: {msg} | – |")
    m = copy.deepcopy(model)
    ns.prune(m, x, pattern="2:4", importance="activation", data=calib, remove_dead=False)
    p0 = ppl(m, test)
    lines.append(f"| netsculpt 2:4 (Wanda), no heal | {params(m) / 1e6:.2f} M (50% zeros in "
                 f"Linear) | – | {p0:.2f} | – |")  # fmt: skip


def write(section: str) -> None:
    path = Path(__file__).with_name("RESULTS.md")
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"<!-- transformers:begin -->\n{section}\n<!-- transformers:end -->"
    pat = re.compile(r"<!-- transformers:begin -->.*?<!-- transformers:end -->", re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block
    path.write_text(text + ("" if text.endswith("\n") else "\n"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--heal", type=int, default=60)
    ap.add_argument("--extra", type=str, default="", help="Markdown appended (demo, meta)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = ["## Hugging Face transformers (issue 6)",
             "", "Generated by `benchmarks/transformers.py` (CPU, 1 thread). Byte-level stdlib "
             "docstring corpus, 90/10 split; perplexity on 8 held-out batches of 16×64 tokens."]  # fmt: skip
    for kind in ("gpt2", "llama"):
        run(kind, args.steps, args.heal, lines)
    if args.extra:
        lines += ["", Path(args.extra).read_text()]
    write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
