"""The built-in large-model demo: the shipped pretrained MiniLM (all-MiniLM-L6-v2), made smaller.

Drop 2 of its 6 layers (block influence), prune 30% of every layer's MLP channels (uniform, so
``save_pretrained`` still works), distil it back toward the original on sentences from the Python
standard library's docstrings, and measure on held-out sentences: embedding fidelity (mean
cosine to the original's embeddings), nearest-neighbour agreement, params and CPU latency.

The defaults (60 distillation steps of 16 sentences of at most 32 tokens, word embeddings
frozen) take about two minutes on two idle CPU cores; ``steps=300`` heals further. With ``output`` the model is written as a
sentence-transformers folder (``SentenceTransformer(output)`` loads it).

>>> from netsculpt.hf.demo import run_minilm_demo   # doctest: +SKIP
>>> print(run_minilm_demo(steps=60))                # doctest: +SKIP
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netsculpt.report import Report, Snapshot, layer_sizes


def sentences(n_train: int, n_test: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Distinct docstring sentences (20-200 characters), shuffled, split train / held-out."""
    from netsculpt.data.text import text_corpus

    seen, out = set(), []
    for s in re.split(r"(?<=[.!?])\s+|\n\s*\n", text_corpus()):
        s = " ".join(s.split())
        if 20 <= len(s) <= 200 and s not in seen and any(c.isalpha() for c in s):
            seen.add(s)
            out.append(s)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(out), generator=g).tolist()
    out = [out[i] for i in order]
    return out[:n_train], out[n_train : n_train + n_test]


def _batches(tok: Any, texts: list[str], size: int, max_len: int = 32) -> list[dict]:
    out = []
    for i in range(0, len(texts), size):
        enc = tok(texts[i : i + size], padding=True, truncation=True, max_length=max_len,
                  return_tensors="pt")  # fmt: skip
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return out


@torch.no_grad()
def embeddings(model: nn.Module, batches: list[dict]) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers recipe)."""
    from netsculpt.measure.evaluate import embed

    model.eval()
    vecs = [embed(model(**b), b["attention_mask"]) for b in batches]
    return nn.functional.normalize(torch.cat(vecs).float(), dim=-1)


def fidelity(ref: torch.Tensor, emb: torch.Tensor) -> dict[str, float]:
    """Mean cosine to the reference embeddings and nearest-neighbour agreement (self excluded)."""
    cos = float((ref * emb).sum(-1).mean())

    def nn_of(e: torch.Tensor) -> torch.Tensor:
        sim = e @ e.T
        sim.fill_diagonal_(-2)
        return sim.argmax(-1)

    agree = float((nn_of(ref) == nn_of(emb)).float().mean())
    return {"cosine": cos, "nn_agreement": agree}


def _latency(model: nn.Module, batch: dict) -> float:
    from netsculpt.measure.latency import latency_ms

    return latency_ms(model, batch, threads=1, warmup=2, repeats=7)["median"]


STEPS = 60  # distillation steps by default: about two minutes on two cores


def run_minilm_demo(
    *,
    drop: int = 2,
    mlp: float = 0.3,
    steps: int = STEPS,
    lr: float = 3e-4,
    n_train: int = 1024,
    n_test: int = 256,
    batch_size: int = 16,
    max_len: int = 32,
    val_fraction: float = 0.0,
    threads: int | None = 1,
    seed: int = 0,
    progress: bool = False,
    output: str | Path | None = None,
) -> Report:
    """Cut, prune and heal the bundled MiniLM; returns a Report with the demo's numbers.

    ``details`` holds fidelity / NN agreement after the surgery and after healing, the removed
    layers, latency and timings; ``notes`` the one-line story. ``output``: also save the model
    as a sentence-transformers folder there (:func:`save_sentence_transformer`). ``threads``:
    torch's CPU threads for the run (restored after; ``None``: leave them) — one by default:
    on a shared 2-core machine two threads spend several times the CPU for these small
    batches.
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(drop, mlp, steps, lr, n_train, n_test, batch_size, max_len, val_fraction,
                    seed, progress, output)  # fmt: skip
    finally:
        torch.set_num_threads(old_threads)


def _run(drop, mlp, steps, lr, n_train, n_test, batch_size, max_len, val_fraction, seed,
         progress, output) -> Report:  # fmt: skip
    import netsculpt as ns
    from netsculpt.core import progress as bar
    from netsculpt.core.errors import InputError
    from netsculpt.hf.io import load_minilm
    from netsculpt.hf.layers import cut_layers
    from netsculpt.hf.structured import prune

    if steps < 1 or n_train < batch_size or n_test < 2:
        raise InputError(
            f"demo: steps={steps} must be >= 1, n_train={n_train} >= batch_size={batch_size}, "
            f"n_test={n_test} >= 2"
        )
    bar.quiet_libraries()
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with bar.step("load MiniLM", enabled=progress):
        model, tok = load_minilm()
        original = copy.deepcopy(model).eval()
        train_txt, test_txt = sentences(n_train, n_test, seed)
        train = _batches(tok, train_txt, batch_size, max_len)
        test = _batches(tok, test_txt, 64, max_len)
    bench = _batches(tok, test_txt[:8], 8, max_len=64)[0]
    with bar.step("measure the original", enabled=progress):
        ref = embeddings(original, test)
        before = Snapshot(params=sum(p.numel() for p in model.parameters()),
                          latency_ms=_latency(model, bench), metric=1.0, metric_name="fidelity")  # fmt: skip
    layers_before = layer_sizes(model)
    with bar.step(f"cut {drop} layers, prune {mlp:.0%} of MLP channels", enabled=progress):
        removed = cut_layers(model, train[:2], drop, "influence")
        prep = prune(model, train[0], amount=mlp, targets=("mlp",), uniform=True,
                     importance="activation", data=train[:2])  # fmt: skip
        surgery = fidelity(ref, embeddings(model, test))
    # the word embeddings (11.7 M of 17.7 M params) are the teacher's and stay frozen: a
    # third less work per step; the short heal keeps its last weights (no validation passes)
    words = model.get_input_embeddings().weight
    words.requires_grad_(False)
    try:
        heal_rep = ns.heal(model, train, teacher=original, task="embedding", steps=steps, lr=lr,
                           progress=progress, seed=seed, val_fraction=val_fraction)  # fmt: skip
    finally:
        words.requires_grad_(True)
    with bar.step("measure the result", enabled=progress):
        healed = fidelity(ref, embeddings(model, test))
        after = Snapshot(params=sum(p.numel() for p in model.parameters()),
                         latency_ms=_latency(model, bench), metric=healed["cosine"],
                         metric_name="fidelity")  # fmt: skip
    from netsculpt.hf.config import hf_compatible

    details = {
        "removed_layers": removed,
        "mlp_channels_removed": prep.details["removed"].get("mlp", 0),
        "after_surgery": surgery,
        "after_heal": healed,
        "heal_steps": steps,
        "held_out_sentences": len(test_txt),
        "hf_compatible": hf_compatible(model)[0],
        "seconds": round(time.perf_counter() - t0, 1),
        "heal_seconds": heal_rep.details.get("seconds") if heal_rep.details else None,
    }
    notes = [
        f"layers {removed} dropped (block influence), {mlp:.0%} of MLP channels pruned per layer",
        f"fidelity {surgery['cosine']:.3f} → {healed['cosine']:.3f} after {steps} KD steps; "
        f"NN agreement {surgery['nn_agreement']:.2f} → {healed['nn_agreement']:.2f}",
    ]
    if output is not None:
        with bar.step(f"save {output}", enabled=progress):
            save_sentence_transformer(model, tok, output)
        details["saved_to"] = str(output)
        notes.append(f"saved to {output}: SentenceTransformer({str(output)!r}) loads it")
    return Report(op="demo", config={"model": "minilm", "drop": drop, "mlp": mlp, "steps": steps,
                  "lr": lr, "batch_size": batch_size, "max_len": max_len}, before=before,
                  after=after, details=details, notes=notes, layers_before=layers_before,
                  layers_after=layer_sizes(model))  # fmt: skip


def save_sentence_transformer(model: nn.Module, tok: Any, directory: str | Path) -> Path:
    """Write ``model`` as a sentence-transformers folder with the bundled MiniLM's modules
    (Transformer → mean Pooling → Normalize) and tokenizer, loadable by
    ``sentence_transformers.SentenceTransformer(directory)`` and by ``AutoModel``.

    The model must be HF-expressible (:func:`netsculpt.hf.config.hf_compatible`), as the
    demo's uniform pruning and layer cut keep it.
    """
    from netsculpt.hf.folders import save_hf_folder
    from netsculpt.hf.io import minilm_path

    return save_hf_folder(model, directory, source=minilm_path(), tokenizer=tok)
