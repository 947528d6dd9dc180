"""Hugging Face transformers: layer removal by criterion and MLP + head pruning vs Torch-Pruning.

Two decoders trained briefly from scratch on the stdlib docstring corpus (byte tokens): one with
GPT-2-small's depth and head count (12 layers, 12 heads) and a LLaMA-shaped one (12 layers,
12 query / 4 KV heads, SwiGLU). ``--size small`` (default) keeps them narrow enough for 2 shared
CPU cores (width 192); ``--size full`` uses GPT-2-small's width 768 (for a bigger machine).

For each model: perplexity and top-1 agreement with the dense model after removing 25% of the
layers by each criterion, after pruning 30% of heads + MLP channels with netsculpt, after
Torch-Pruning's LLM example recipe at the same parameter count, and after 2:4 (Wanda); every
structured row gets the same heal budget. Writes the ``transformers`` section of
``benchmarks/RESULTS.md`` (the LLaMA-7B meta-device figures are ``llama7b_meta.py``'s own
section).

Run: ``.venv/bin/python benchmarks/hf_llm.py [--size small] [--steps 500] [--heal 30]
[--jobs 2]``. Smallest setting (a smoke run, numbers meaningless): ``--size tiny --layers 4
--steps 2 --heal 1 --no-write``.
"""

from __future__ import annotations

import argparse
import copy
import math
import signal
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version

import torch

try:
    from benchmarks._results import stamp, write_section
except ImportError:  # run as a script from the repository root
    from _results import stamp, write_section

warnings.filterwarnings("ignore")
SEQ, BATCH = 64, 16
N_TEST, N_CALIB = 8, 4
SIZES = {  # width, intermediate (LLaMA); both: 12 layers (--layers), 12 heads, LLaMA 4 KV heads
    "tiny": (48, 128),  # smoke test
    "small": (192, 512),
    "full": (768, 2048),
}
HEAD_DIM = {w: w // 12 for w, _ in SIZES.values()}


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


def train(model, data: list[dict], lr: float, warmup: int = 0) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for i, b in enumerate(data):
        scale = (i + 1) / warmup if i < warmup else 0.5 * (1 + math.cos(math.pi * i / len(data)))
        for group in opt.param_groups:  # linear warmup, cosine decay
            group["lr"] = lr * scale
        loss = model(**b, labels=b["input_ids"]).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()


@torch.no_grad()
def evaluate(model, data: list[dict], ref: list[torch.Tensor] | None) -> tuple[float, float]:
    """Perplexity, and top-1 next-token agreement with the dense model's predictions ``ref``."""
    model.eval()
    losses, agree = [], []
    for i, b in enumerate(data):
        out = model(**b, labels=b["input_ids"])
        losses.append(float(out.loss))
        if ref is not None:
            agree.append(float((out.logits.argmax(-1) == ref[i]).float().mean()))
    return math.exp(sum(losses) / len(losses)), (sum(agree) / len(agree) if agree else 1.0)


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def make(kind: str, size: str, layers: int = 12):
    import transformers as t

    width, inter = SIZES[size]
    if kind == "gpt2":
        cfg = t.GPT2Config(vocab_size=256, n_embd=width, n_layer=layers, n_head=12, n_positions=SEQ,
                           bos_token_id=0, eos_token_id=0)  # fmt: skip
        return t.GPT2LMHeadModel(cfg)
    cfg = t.LlamaConfig(vocab_size=256, hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=12, num_key_value_heads=4, intermediate_size=inter,
                        max_position_embeddings=SEQ, bos_token_id=0, eos_token_id=0)  # fmt: skip
    return t.LlamaForCausalLM(cfg)


def shape(model) -> str:
    """Widths read from the weights (a pruned GPT-2 config cannot express head_dim)."""
    c = model.config
    if c.model_type == "gpt2":
        blk, hd = model.transformer.h[0], HEAD_DIM[c.n_embd]
        heads, mlp = blk.attn.c_attn.nf // 3 // hd, blk.mlp.c_fc.nf
        return f"{len(model.transformer.h)} layers, {heads} heads × {hd}, MLP {mlp}"
    blk, hd = model.model.layers[0], c.head_dim
    q, kv = blk.self_attn.q_proj.out_features // hd, blk.self_attn.k_proj.out_features // hd
    mlp = blk.mlp.gate_proj.out_features
    return f"{len(model.model.layers)} layers, {q} query / {kv} KV heads × {hd}, MLP {mlp}"


def _rotate_half_by_roll(x: torch.Tensor) -> torch.Tensor:
    """``cat(-x2, x1)`` written as a roll times a sign: numerically identical to HF's rotate_half
    but without the slice + concat that Torch-Pruning 1.6's dependency search loops on."""
    half = x.shape[-1] // 2
    sign = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
    sign[:half] = -1
    return torch.roll(x, half, -1) * sign


@contextmanager
def tp_traceable(model):
    """While Torch-Pruning traces: eager attention (``repeat_kv`` makes the GQA head sharing a
    visible expand + reshape; SDPA's fused ``enable_gqa`` call does not) and the roll form of
    rotate_half. Both leave the computed values unchanged."""
    from transformers.models.llama import modeling_llama

    impl, rot = model.config._attn_implementation, modeling_llama.rotate_half
    model.set_attn_implementation("eager")
    modeling_llama.rotate_half = _rotate_half_by_roll
    try:
        yield
    finally:
        modeling_llama.rotate_half = rot
        model.set_attn_implementation(impl)


def tp_prune(model, example: torch.Tensor, ratio: float, head_ratio: float) -> None:
    """Torch-Pruning's examples/LLMs/prune_llm.py recipe (MetaPruner, GroupMagnitudeImportance
    p=2, num_heads for q/k/v, prune_num_heads=True, prune_head_dims=False, lm_head ignored),
    restricted to heads + MLP: o_proj / down_proj outputs (the hidden size) are kept."""
    import torch_pruning as tp

    num_heads, ignored = {}, [model.lm_head]
    for name, m in model.named_modules():
        if name.endswith("self_attn"):
            num_heads[m.q_proj] = model.config.num_attention_heads
            num_heads[m.k_proj] = model.config.num_key_value_heads
            num_heads[m.v_proj] = model.config.num_key_value_heads
        if name.endswith(("o_proj", "down_proj")):
            ignored.append(m)
    with tp_traceable(model):
        pruner = tp.pruner.MetaPruner(
            model, example_inputs=example, importance=tp.importance.GroupMagnitudeImportance(p=2),
            global_pruning=False, pruning_ratio=ratio, ignored_layers=ignored,
            num_heads=num_heads, prune_num_heads=True, prune_head_dims=False,
            head_pruning_ratio=head_ratio, output_transform=lambda out: out.logits,
        )  # fmt: skip
        for g in pruner.step(interactive=True):
            g.prune()
    # the example's fix-ups: HF attributes and config fields Torch-Pruning does not know about
    attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    for m in model.modules():
        if hasattr(m, "q_proj") and hasattr(m, "num_key_value_groups"):
            m.num_key_value_groups = m.q_proj.out_features // m.k_proj.out_features
    model.config.num_attention_heads = attn.q_proj.out_features // attn.head_dim
    model.config.num_key_value_heads = attn.k_proj.out_features // attn.head_dim
    model.config.intermediate_size = mlp.gate_proj.out_features


def tp_prune_matched(model, example: torch.Tensor, target: int) -> tuple[object, float, float]:
    """Torch-Pruning at 30% heads + MLP, its MLP ratio then corrected once so that the parameter
    count matches ``target`` (netsculpt's). Returns (model, MLP ratio, wall s of the last run)."""
    ratio = 0.3
    for _ in range(2):
        m = copy.deepcopy(model)
        t0 = time.perf_counter()
        tp_prune(m, example, ratio, 0.3)
        wall = time.perf_counter() - t0
        gap = params(m) - target
        if abs(gap) <= 0.002 * target:
            break
        c, mlp = model.config, m.model.layers[0].mlp
        per_channel = 3 * c.hidden_size * c.num_hidden_layers
        keep = round(mlp.gate_proj.out_features - gap / per_channel)
        ratio = 1 - (keep + 0.5) / c.intermediate_size
    return m, ratio, wall


TP_LIMIT_S = 600


def _too_slow(*_):
    raise TimeoutError(f"MetaPruner did not finish within {TP_LIMIT_S} s on this model")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(
    kind: str,
    size: str,
    steps: int,
    heal: int,
    heal_lr: float = 1e-3,
    layers: int = 12,
    seed: int = 0,
) -> dict:
    """One model trained with ``seed`` and every row measured on it: a dict of figures (the
    table is made in :func:`table`, over the seeds). The held-out test batches are the same
    for every seed; initialisation, training order, calibration and heal batches are not."""
    import netsculpt as ns
    import netsculpt.hf as nhf
    from netsculpt.hf.layers import cut_layers, drop_layers

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    tr, te = corpus()
    model = make(kind, size, layers)
    t0 = time.perf_counter()
    train(model, batches(tr, steps, 100 * seed), 2e-3, warmup=steps // 10)
    train_s = time.perf_counter() - t0
    test = batches(te, N_TEST, 1)
    calib, heal_data = batches(tr, N_CALIB, 100 * seed + 2), batches(tr, heal, 100 * seed + 3)
    with torch.no_grad():
        ref = [model(**b).logits.argmax(-1) for b in test]
    base, _ = evaluate(model, test, None)
    n_layers = len(nhf.layer_widths(model)["layers"])
    drop = n_layers // 4
    x = {"input_ids": calib[0]["input_ids"][:2]}
    log(f"{kind} seed {seed}: trained in {train_s:.0f} s, ppl {base:.2f}")
    out = {"kind": kind, "seed": seed, "width": model.config.hidden_size, "shape": shape(model),
           "params": params(model), "train_s": train_s, "base": base, "rows": []}  # fmt: skip

    def row(key: str, name: str, m, removed: str, prune_s: float, do_heal: bool = True,
            note: str = "") -> None:  # fmt: skip
        p0, a0 = evaluate(m, test, ref)
        p1 = a1 = None
        if do_heal:
            train(m, heal_data, heal_lr)
            p1, a1 = evaluate(m, test, ref)
        out["rows"].append({"key": key, "name": name, "params": params(m), "note": note,
                            "removed": removed, "prune_s": prune_s, "p0": p0, "p1": p1,
                            "a0": a0, "a1": a1})  # fmt: skip
        log(f"{kind} seed {seed}: {name}: {p0:.2f} -> {p1 if p1 is None else round(p1, 2)}")

    # the heal steps also keep training a briefly trained model: the dense model healed alike
    row("dense", "dense + the same heal (reference)", copy.deepcopy(model), "–", 0.0)
    names = {
        "influence": "cut: block influence (ShortGPT)",
        "angular": "cut: angular distance (Gromov)",
        "ppl": "cut: iterative Δloss (SLEB)",
        "last": "cut: deepest layers (baseline)",
    }
    for crit, name in names.items():
        m = copy.deepcopy(model)
        t0 = time.perf_counter()
        if crit == "last":
            removed = list(range(n_layers - 1 - drop, n_layers - 1))  # keep the final layer
            drop_layers(m, removed)
        else:
            removed = cut_layers(m, calib, drop, crit)
        row(crit, name, m, str(sorted(removed)), time.perf_counter() - t0)
    # width: 30% of heads and MLP channels (uniform, so the config stays HF-compatible)
    target = None
    for imp in ("l2", "activation"):
        m = copy.deepcopy(model)
        t0 = time.perf_counter()
        nhf.prune(m, x, amount=0.3, targets=("heads", "mlp"), uniform=True, importance=imp,
                  data=calib if imp != "l2" else None)  # fmt: skip
        wall = time.perf_counter() - t0
        target = target or params(m)
        row(imp, f"netsculpt prune 30% heads + MLP ({imp}, uniform) → {shape(m)}", m, "–", wall)
    try:  # the installed distribution's version: torch_pruning.__version__ says 1.6.0 in 1.6.1
        name = f"Torch-Pruning {version('torch-pruning')} LLM recipe, heads + MLP"
    except PackageNotFoundError:  # the row below then reports the ImportError
        name = "Torch-Pruning (not installed) LLM recipe, heads + MLP"
    signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(TP_LIMIT_S)
    try:
        m, ratio, wall = tp_prune_matched(model, x["input_ids"][:1], target)
        signal.alarm(0)
        row("tp", f"{name} (head ratio 0.3, MLP ratio {ratio:.3f}) → {shape(m)}", m, "–", wall)
    except Exception as e:  # report, do not hide
        signal.alarm(0)
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:110] if str(e) else ''}"
        out["rows"].append({"key": "tp", "name": name, "failed": msg})
        log(f"{kind} seed {seed}: Torch-Pruning failed: {msg}")
    m = copy.deepcopy(model)
    t0 = time.perf_counter()
    ns.prune(m, x, pattern="2:4", importance="activation", data=calib, remove_dead=False)
    row("2:4", "netsculpt 2:4 (Wanda)", m, "–", time.perf_counter() - t0, do_heal=False,
        note=" (50% zeros in Linear)")  # fmt: skip
    return out


def _ms(values: list[float], fmt: str = "{:.2f}") -> str:
    """Mean ± std over the seeds (the single value when there is one seed or they are equal)."""
    if len(set(values)) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def table(runs: list[dict], steps: int) -> list[str]:
    """One model's table over its seeds: mean ± std of each figure, layers removed per seed,
    then paired differences against Torch-Pruning (healed perplexity, lower is better)."""
    r0, seeds = runs[0], [r["seed"] for r in runs]
    label = f"seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else f"one seed ({seeds[0]})"
    lines = [
        f"\n**{r0['kind']}** (width {r0['width']}, {r0['shape']}): **{r0['params'] / 1e6:.2f} M** "
        f"params, trained {steps} steps of {BATCH}×{SEQ} tokens "
        f"({_ms([r['train_s'] for r in runs], '{:.0f}')} s); {label}; dense perplexity "
        f"**{statistics.mean(r['base'] for r in runs):.2f}**"
        + (f" ± {statistics.stdev(r['base'] for r in runs):.2f}." if len(runs) > 1 else ".")
        + "\n",
        "| method | params | layers removed | prune step | ppl (no heal) | ppl (healed) "
        "| top-1 agreement (no heal / healed) |",
        "|---|---|---|---|---|---|---|",
    ]
    by_key = [{x["key"]: x for x in r["rows"]} for r in runs]
    for key in by_key[0]:
        rows = [b[key] for b in by_key]
        if any("failed" in x for x in rows):
            msg = next(x["failed"] for x in rows if "failed" in x)
            n = sum("failed" in x for x in rows)
            lines.append(f"| {rows[0]['name']} | – | – | – | failed on {n} of {len(rows)} "
                         f"seed(s): `{msg}` | – | – |")  # fmt: skip
            continue
        names = {x["name"] for x in rows}
        name = rows[0]["name"] if len(names) == 1 else " / ".join(sorted(names))
        removed = rows[0]["removed"] if len({x["removed"] for x in rows}) == 1 else "; ".join(
            x["removed"] for x in rows)  # fmt: skip
        healed = rows[0]["p1"] is not None
        p1 = _ms([x["p1"] for x in rows]) if healed else "–"
        a1 = _ms([x["a1"] for x in rows], "{:.3f}") if healed else "–"
        lines.append(
            f"| {name} | {_ms([x['params'] / 1e6 for x in rows], '{:.3f}')} M{rows[0]['note']} | "
            f"{removed} | {_ms([x['prune_s'] for x in rows], '{:.1f}')} s | "
            f"{_ms([x['p0'] for x in rows])} | {p1} | {_ms([x['a0'] for x in rows], '{:.3f}')} / "
            f"{a1} |"
        )
    tp = [b.get("tp") for b in by_key]
    if len(runs) > 1 and all(t is not None and "failed" not in t for t in tp):
        lines.append("")
        for key in ("l2", "activation"):
            diff = [b[key]["p1"] - t["p1"] for b, t in zip(by_key, tp)]
            won = sum(d < 0 for d in diff)
            lines.append(
                f"- Paired, healed perplexity, netsculpt {key} − Torch-Pruning: "
                f"{_ms(diff)} (netsculpt lower on {won} of {len(diff)} seeds)."
            )
    return lines


NOTES = """
**Torch-Pruning notes.** (1) Out of the box, `MetaPruner(...)` on these HF LLaMA models never
returns (the earlier "did not finish within 180 s"): in Torch-Pruning 1.6 the dependency search
(`DependencyGraph.get_pruning_group` → `_fix_dependency_graph_non_recursive`) loops forever on
HF's `rotate_half` (`cat(-x[..., d/2:], x[..., :d/2])`). The slice and concat sit on a cycle
(`k → transpose → slice → cat → mul → add ← mul ← transpose`) and their index maps shift the
indices by half a head dim each lap, so `Group.has_pruning_op` never sees a repeat: on a 1-layer
model the indices for a 64-channel `k_proj` had reached 116,288 after 20,000 group entries (same
symptom as upstream issue #527, Qwen3). The benchmark traces with `rotate_half` rewritten as
`roll(x, d/2) · sign` (bit-identical values, no slice/concat); MetaPruner then builds in seconds.
(2) With the default SDPA attention, transformers 5 calls the fused kernel with `enable_gqa`, so
no `repeat_kv` appears in the trace; Torch-Pruning then puts q, k and v in one 64-channel group
and fails with `RuntimeError: shape '[12, -1]' is invalid for input of size 64` (upstream issue
#516). Tracing with `attn_implementation="eager"` (switched back to SDPA afterwards) fixes it.
(3) Its GQA rule removes query heads only (one per KV group: 12 → 8 query heads, all 4 KV heads
kept), where netsculpt removes whole KV groups (12/4 → 9/3); both save the same attention
parameters, and the MLP ratio is corrected once so that the totals match. Config fix-ups as in
its example (`num_key_value_groups`, `num_attention_heads`, `num_key_value_heads`,
`intermediate_size`). (4) GPT-2 is not supported: HF's `Conv1D` is neither `nn.Linear` nor a
conv to Torch-Pruning, its channel counts come back `None` and graph construction fails in
`index_mapping.update_concat_index_mapping` (the error in the GPT-2 table).
"""


def _run_star(args: tuple) -> list[str]:
    return run(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small",
                    help="tiny: width 48 (smoke test); small: width 192 (2 CPU cores); "
                         "full: GPT-2-small's width 768")  # fmt: skip
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--heal", type=int, default=30)
    ap.add_argument("--heal-lr", type=float, default=1e-3)
    ap.add_argument("--layers", type=int, default=12, help="decoder layers of each model")
    ap.add_argument("--models", default="gpt2,llama")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="one model trained per seed; tables give mean ± std")  # fmt: skip
    ap.add_argument("--jobs", type=int, default=1,
                    help="(model, seed) runs in parallel (1 thread each)")  # fmt: skip
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    kinds = args.models.split(",")
    jobs = [(k, args.size, args.steps, args.heal, args.heal_lr, args.layers, seed)
            for k in kinds for seed in args.seeds]  # fmt: skip
    t0 = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(min(args.jobs, len(jobs))) as pool:
            done = pool.map(_run_star, jobs)
    else:
        done = [run(*j) for j in jobs]
    total = time.perf_counter() - t0
    layers = "" if args.layers == 12 else f" --layers {args.layers}"
    lines = [
        "## Hugging Face transformers (issue 6)",
        "",
        stamp(
            f"python benchmarks/hf_llm.py --size {args.size} --steps {args.steps} --heal "
            f"{args.heal} --heal-lr {args.heal_lr:g}{layers} --models {args.models} "
            f"--seeds {' '.join(map(str, args.seeds))} --jobs {args.jobs}"
        ),
        "",
        f"Generated by `benchmarks/hf_llm.py --size {args.size} --steps {args.steps} "
        f"--heal {args.heal} --heal-lr {args.heal_lr:g}{layers} --seeds {' '.join(map(str, args.seeds))}` (CPU, 1 thread per run, {args.jobs} run(s) at a time, "
        f"{total / 60:.0f} min in all on a shared 2-core machine, so wall times are indicative "
        f"only). Models trained from scratch on the byte-level stdlib docstring corpus "
        f"(vocab 256), 90/10 split; perplexity on {N_TEST} held-out batches of {BATCH}×{SEQ} "
        f"tokens; top-1 agreement = fraction of those tokens where the pruned model's argmax "
        f"equals the dense model's. Layer criteria score on {N_CALIB} calibration batches and "
        f"remove 25% of the layers; every structured row is healed with the same {args.heal} "
        f"LM steps (peak lr {args.heal_lr:g}, cosine; the first row heals the dense model alike). "
        f"Prune step = wall time of the scoring + surgery call. Each seed trains its own model "
        f"(initialisation, training order, calibration and heal batches); figures are mean ± std "
        f"over the seeds, on the same test batches.",
    ]
    for kind in kinds:
        lines += table([d for d in done if d["kind"] == kind], args.steps)
    if "llama" in kinds:
        lines.append(NOTES.rstrip())
    section = "\n".join(lines) + "\n"
    if not args.no_write:
        write_section("transformers", section)
    print(section)


if __name__ == "__main__":
    main()
