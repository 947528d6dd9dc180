"""README's "Measured" list, generated from benchmarks/RESULTS.md (never typed by hand).

Each bullet reads its figures from one section of RESULTS.md (tables and the sentences the
benchmark scripts print) and names the stamp's commit. A section that is missing gives no
bullet; a section whose figures cannot be found is an error naming the section, so a change
of a script's output cannot leave README quoting stale numbers.

    python benchmarks/measured.py           # rewrite README.md between the measured markers
    python benchmarks/measured.py --check   # exit 1 when README.md differs from RESULTS.md
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"
_SECTION = re.compile(r"<!-- (?P<name>[\w-]+):begin -->\n(?P<body>.*?)<!-- (?P=name):end -->", re.S)


class Missing(Exception):
    """A section's figure was not found where its script prints it."""


def sections(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in _SECTION.finditer(text)}


def tables(body: str) -> list[list[dict[str, str]]]:
    """Every Markdown table of a section, as rows keyed by the header cells."""
    out, rows, header = [], [], None
    for line in [*body.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-: "):
                rows.append(dict(zip(header, cells, strict=False)))
            continue
        if header is not None:
            out.append(rows)
        rows, header = [], None
    return out


def find(name: str, body: str, pattern: str) -> re.Match:
    m = re.search(pattern, body, re.S)
    if m is None:
        raise Missing(f"benchmarks/RESULTS.md section {name!r}: no match for {pattern!r}")
    return m


def row(name: str, body: str, exact: bool = False, **match: str) -> dict[str, str]:
    """The first table row whose cells start with (``exact``: equal) the given values."""
    for t in tables(body):
        for r in t:
            if all((r.get(k) == v) if exact else r.get(k, "").startswith(v)
                   for k, v in match.items()):  # fmt: skip
                return r
    raise Missing(f"benchmarks/RESULTS.md section {name!r}: no table row with {match}")


def commit(name: str, body: str) -> str:
    """The stamp's commit (every section has one: tests/benchmarks/test_stamps.py)."""
    m = find(name, body, r"_Stamp: commit `(\w+)`")
    return f"`{m[1]}`"


# -- one bullet per section: (section, function(body) -> text) -----------------------------------
def zoo(b: str) -> str:
    ours = find("zoo", b, r"netsculpt: \*\*(\d+)/(\d+) pass\*\*")
    tp = re.search(r"Torch-Pruning 1\.6\.1 on the same models: \*\*(\d+)/(\d+) pass\*\*", b)
    r50 = row("zoo", b, model="resnet50")
    macs = re.findall(r"[\d,]+", r50["MACs before → after (ratio)"])
    g = lambda s: int(s.replace(",", "")) / 1e9  # noqa: E731
    rule = find("zoo", b, r"A pass: (.*?)(?:;|\.\s)")[1]
    theirs = (
        f"Torch-Pruning 1.6.1 {tp[1]}/{tp[2]} by the same rules, save → load aside"
        if tp
        else "Torch-Pruning column not run"
    )
    fails = [
        f"{r['model']} ({r['netsculpt'].removeprefix('fail: ')})"
        for t in tables(b)
        for r in t
        if r.get("netsculpt", "pass") != "pass"
    ]
    return (
        f"**Coverage** (`zoo.py`): **{ours[1]}/{ours[2]}** torchvision classification models "
        f"pass at `amount=0.5` ({rule}); {theirs}. resnet50 {g(macs[0]):.2f} → "
        f"{g(macs[1]):.2f} GMACs in {r50['prune s']} s."
        + (f" Fails: {'; '.join(fails)}." if fails else "")
    )


def timm_zoo(b: str) -> str:
    run = find("timm-zoo", b, r"Families run: \*\*(\d+)\*\* of (\d+)")
    ok = find("timm-zoo", b, r"prunes and reloads \*\*(\d+)/(\d+) \((\d+)%\)\*\*")
    tp = sum(r.get("TP") == "pass" for t in tables(b) for r in t)
    ran = f"all {run[2]} families run" if run[1] == run[2] else f"{run[1]} of {run[2]} families run"
    return (
        f"**timm** (`timm_zoo.py`, one model per family, `amount=0.3`): {ran}; "
        f"**{ok[1]}/{ok[2]} ({ok[3]}%) prune and reload**; Torch-Pruning 1.6.1 prunes {tp} of "
        f"the same {run[1]} in the same run."
    )


def speedup(b: str) -> str:
    parts = []
    for model in ("resnet18", "resnet50", "mobilenet_v2"):
        cells = []
        for tool in (
            "netsculpt",
            "Torch-Pruning",
            "netsculpt + BN fold",
            "Torch-Pruning + BN fold",
        ):
            try:
                r = row("speedup", b, exact=True, model=model, tool=tool)
            except Missing:  # an older section has no Torch-Pruning + BN fold row
                continue
            cells.append(f"{tool} {r['speed-up ÷ ideal b=16']}")
        parts.append(f"{model}: " + ", ".join(cells))
    against = (
        "the fold rows against the BN-folded original"
        if "BN-folded original" in b
        else "the fold row against the unfolded original"
    )
    return (
        f"**Real speed-up** (`speedup.py`, speed-up ÷ ideal at batch 16, {against}): "
        + "; ".join(parts)
        + "."
    )


def heal(b: str) -> str:
    won = find("heal", b, r"netsculpt's mean is ≥ Torch-Pruning's in (\d+) of (\d+)")
    base = find("heal", b, r"Unpruned test accuracy: ([\d.]+ ± [\d.]+) %")
    cells = []
    for t in tables(b):
        for r in t:
            if "best netsculpt (val)" in r:
                cells.append(
                    f"{r['MACs budget']} MACs: {r['best netsculpt (val)']} vs "
                    f"{r['best Torch-Pruning (val)']}, task heal Δ {r['task heal: Δ test, seeds won']}"
                )
    return (
        f"**Accuracy after healing** (`heal_vs_torch_pruning.py`, 1-D CNN on mnist1d, unpruned "
        f"{base[1]} %, 3 seeds, Torch-Pruning with L2, Taylor and activation, each tool's "
        f"configuration chosen on validation): netsculpt's mean ≥ Torch-Pruning's in "
        f"**{won[1]} of {won[2]}** cells; " + "; ".join(cells) + " (paired, seeds won)."
    )


# cut_grow's comparison lines: "... after heal it beats X (0.963 vs 0.961, ...; higher on 3 of 5"
_AFTER_HEAL = r"after heal it (?:does not beat|beats) [^(]*\(([\d.]+) vs ([\d.]+), [^;]*; higher on (\d+ of \d+)"


def cut_grow(b: str) -> str:
    """The default vs drop-last-n after the heal, at equal blocks and at equal parameters."""
    parts = []
    for model in ("wide", "narrow"):
        sub = find("cut_grow", b, rf"\*\*{model}\*\*(.*?)(?=\n\*\*\w+\*\*: |\nIssue 3|\Z)")[1]
        blocks = find("cut_grow", sub, r"- \S+ \(default\) vs drop last n: .*?" + _AFTER_HEAL)
        params = find("cut_grow", sub, r"- At equal parameters .*?" + _AFTER_HEAL)
        parts.append(
            f"{model}: {blocks[1]} vs drop-last-n {blocks[2]} at equal blocks (higher on "
            f"{blocks[3]} seeds), {params[1]} vs {params[2]} at equal parameters (higher on "
            f"{params[3]})"
        )
    return (
        "**Layer removal** (`cut_grow.py`, 12-block residual CNN on mnist1d, 5 seeds, test "
        "accuracy after the same heal, the default `kl` vs dropping the last blocks): "
        + "; ".join(parts)
        + "."
    )


def merge(b: str) -> str:
    p = row("merge", b, model="planted: Net2Wider copies", **{"threshold (cos dist)": "0.01"})
    wide = [r for t in tables(b) for r in t if r.get("model") == "trained wide"]
    if not wide:
        raise Missing("benchmarks/RESULTS.md section 'merge': no 'trained wide' rows")
    pairs = ", ".join(
        f"{r['params']}: {r['acc merge']} vs {r['acc L2 prune (params)'].split()[0]} / "
        f"{r['acc activation prune (params)'].split()[0]}"
        for r in wide
    )
    return (
        "**Neuron merge** (`merge.py`, digits MLP, no fine-tuning): on planted Net2Wider copies "
        f"(threshold 0.01, {p['params']} params) merge {p['acc merge']} vs dropping the merged "
        f"units {p['acc drop merged units']} and L2 / activation pruning at the same width "
        f"{p['acc L2 prune (params)'].split()[0]} / {p['acc activation prune (params)'].split()[0]}; "
        f"on a wide MLP trained from scratch, merge vs L2 / activation at equal params: {pairs}."
    )


def transformers(b: str) -> str:
    parts = []
    for model in ("llama", "gpt2"):
        sub = find("transformers", b, rf"\*\*{model}\*\*(.*?)(?=\n\*\*\w+\*\* \(|\Z)")[1]
        tp = row("transformers", sub, method="Torch-Pruning")
        dense = find("transformers", sub, r"dense perplexity \*\*([\d.]+)\*\*")[1]
        ours = []
        for imp in ("l2", "activation"):
            r = row("transformers", sub, method=f"netsculpt prune 30% heads + MLP ({imp}")
            ours.append(f"{imp} {r['ppl (no heal)']} → {r['ppl (healed)']}")
        theirs = (
            "Torch-Pruning's LLM recipe fails"
            if tp["ppl (no heal)"].startswith("failed")
            else f"Torch-Pruning's LLM recipe {tp['ppl (no heal)']} → {tp['ppl (healed)']}"
        )
        paired = re.findall(
            r"- Paired, healed perplexity, netsculpt (\w+) − Torch-Pruning: ([^\n]*?)\.?\n", sub
        )
        wins = "".join(f"; {imp} − Torch-Pruning {d}" for imp, d in paired)
        parts.append(
            f"{model} (dense {dense}): netsculpt 30% heads + MLP {', '.join(ours)} after the same "
            f"heal, {theirs}{wins}"
        )
    seeds = re.search(r"; (seeds [\d, ]+); dense perplexity", b)
    label = f"mean of {seeds[1]}" if seeds else "one seed"
    return f"**LLM width pruning** (`hf_llm.py`, perplexity, {label}): " + "; ".join(parts) + "."


def llm_calibrated(b: str) -> str:
    dense = find("llm-calibrated", b, r"Dense held-out perplexity: \*\*([\d.]+)\*\*")[1]
    parts = []
    for rule in ("50%", "2:4"):
        cells = []
        for tool, method, how in (("netsculpt", "magnitude", "memory"),
                                  ("netsculpt", "sparsegpt", "streamed"),
                                  ("llm-compressor", "sparsegpt", "sequential"),
                                  ("netsculpt", "wanda", "streamed"),
                                  ("llm-compressor", "wanda", "sequential")):  # fmt: skip
            r = row("llm-calibrated", b, rule=rule, tool=tool, method=method, how=how)
            cells.append(f"{tool} {method} {r['perplexity']} ({r['peak RSS (MB)']} MB)")
        parts.append(f"{rule}: " + ", ".join(cells))
    return (
        f"**Calibrated LLM sparsity** (`llm_calibrated.py`, 3.3 M LLaMA trained here, dense "
        f"perplexity {dense}, one seed; netsculpt one decoder layer at a time, peak RSS in "
        "brackets): " + "; ".join(parts) + "."
    )


def keras_digits(backend: str) -> Callable[[str], str]:
    name = f"keras-digits-{backend}"

    def bullet(b: str) -> str:
        ours = row(name, b, method="netsculpt l2")
        tfmot = row(name, b, method="tfmot ConstantSparsity")
        verdict = find(name, b, r"Test accuracy, netsculpt − tfmot, paired per seed: ([^\n]*?)\.\n")
        return (
            f"**Keras, {backend} backend** (`keras_digits.py`, digits CNN, 50% MACs + heal, 3 "
            f"seeds): netsculpt params {ours['params (non-zero)'].split()[0]}, `.keras` "
            f"{ours['`.keras`']}, batch-256 speed-up {ours['b256 speed-up']}; tfmot "
            f"(ConstantSparsity, the same non-zero count) `.keras` {tfmot['`.keras`']}, speed-up "
            f"{tfmot['b256 speed-up']}; test accuracy netsculpt − tfmot {verdict[1]}."
        )

    return bullet


def detection(b: str) -> str:
    rows = [r for t in tables(b) for r in t if "detector" in r]
    same = sum(r["structure"] == "same" and r["reload"] == "same" for r in rows)
    ratios = [float(re.search(r"\(([\d.]+)\)", r["params before → after"])[1]) for r in rows]
    return (
        f"**Detection** (`detection.py`, `scope=`): {same} of {len(rows)} torchvision detectors "
        f"pruned at 0.3 keep their output structure and reload; params ×{min(ratios):.2f}–"
        f"×{max(ratios):.2f}."
    )


def rnn(b: str) -> str:
    parts = []
    for model in ("GRU 64", "LSTM 64", "LSTM 64 ×2 layers, bidirectional"):
        o = row("rnn", b, model=model, method="original")
        r = row("rnn", b, model=model, method="l2")
        parts.append(
            f"{model} {o['test acc after heal'].split()[0]} → {r['test acc after heal'].split()[0]}"
        )
    tp = row("rnn", b, method="Torch-Pruning")["hidden"]
    return (
        "**RNN hidden units** (`rnn.py`, digits as rows, 50% of the hidden units, same heal): "
        + ", ".join(parts)
        + f"; Torch-Pruning's LSTM pruner: {tp}."
    )


def optimize(b: str) -> str:
    parts = []
    for target in ("2×", "3×"):
        cells = []
        for method in ("optimize", "tp-l2", "prune-activation", "cut"):
            r = row("optimize", b, **{"speed-up": target, "method": method})
            cells.append(f"{method} {r['test acc, KD heal'].split()[0]}")
        lat = row("optimize", b, **{"speed-up": target, "method": "optimize"})
        parts.append(f"{target}: " + ", ".join(cells) + f" (optimize's latency × base "
                     f"{lat['latency (× base)']})")  # fmt: skip
    setting = find("optimize", b, r"\n\n(\d+ residual blocks of width \d+ trained \d+ epochs)")[1]
    return (
        f"**optimize to a latency target** (`optimize.py`, {setting}, 3 seeds, KD-healed test "
        "accuracy; latencies measured on a shared machine, spread in brackets): "
        + "; ".join(parts)
        + "."
    )


def optimize_latency(b: str) -> str:
    rows = [r for t in tables(b) for r in t if "optimize speed-up" in r]
    if not rows:
        raise Missing("benchmarks/RESULTS.md section 'optimize-latency': no table")
    budget = find("optimize-latency", b, r"time budget ([\d.]+) s")[1]
    parts = []
    for r in rows:
        delivered, target = re.findall(r"[\d.]+", r["delivered ÷ base (target)"])
        met = "met" if r["met (≤ +5%)?"] == "yes" else f"not met, stop: {r['stop']}"
        parts.append(
            f"{r['model']} batch {r['batch']}: {delivered} of the base latency (target {target};"
            f" {met}), {r['optimize speed-up']} vs a uniform prune's "
            f"{r['uniform speed-up, same MACs']} at the same MACs"
        )
    return (
        "**optimize to a latency budget on torchvision** (`optimize_latency.py`, random init, "
        f"no data, {budget} s per search): " + "; ".join(parts) + "."
    )


def llama7b_meta(b: str) -> str:
    r = tables(b)[0][0]
    return (
        f"**LLaMA-7B on meta** (`llama7b_meta.py`): {r['params']} params, graph, groups and "
        f"blocks in {r['total']} at {r['peak RSS']} peak RSS."
    )


def default_importance(b: str) -> str:
    best = find("default-importance", b, r"Best mean validation accuracy: \*\*(\w+)\*\*")[1]
    means = {r["importance"]: r["mean val"] for t in tables(b) for r in t if "importance" in r}
    return (
        f"**Default importance with data** (`default_importance.py`, chosen on validation): "
        f"{best} (" + ", ".join(f"{k} {v}" for k, v in means.items()) + " mean val %)."
    )


def minilm(b: str) -> str:
    rows = [r for t in tables(b) for r in t if "fidelity after heal" in r and "params" in r]
    if not rows:
        raise Missing("benchmarks/RESULTS.md section 'minilm': no table of settings")
    seeds = find("minilm", b, r"Seeds ([\d, ]+) \(the split")[1]
    setup = find("minilm", b, r"(\d+) of 6 layers dropped.*?(\d+%) of the MLP.*?of (\d+) held-out")
    parts = [
        f"{r['setting']}: fidelity {r['fidelity after surgery']} → {r['fidelity after heal']}, "
        f"NN agreement {r['NN agreement after surgery']} → {r['NN agreement after heal']}, "
        f"{r['wall per run']} a run"
        for r in rows
    ]
    return (
        f"**MiniLM** (`minilm.py`, the real all-MiniLM-L6-v2, {setup[1]} of 6 layers cut + "
        f"{setup[2]} of MLP channels, KD heal, {setup[3]} held-out sentences, seeds {seeds}; params "
        f"{rows[0]['params']}): " + "; ".join(parts).replace("**", "") + "."
    )


BULLETS: list[tuple[str, Callable[[str], str]]] = [
    ("zoo", zoo),
    ("timm-zoo", timm_zoo),
    ("detection", detection),
    ("rnn", rnn),
    ("speedup", speedup),
    ("heal", heal),
    ("optimize", optimize),
    ("optimize-latency", optimize_latency),
    ("default-importance", default_importance),
    ("cut_grow", cut_grow),
    ("merge", merge),
    ("transformers", transformers),
    ("minilm", minilm),
    ("llm-calibrated", llm_calibrated),
    ("keras-digits-tensorflow", keras_digits("tensorflow")),
    ("keras-digits-torch", keras_digits("torch")),
    ("llama7b-meta", llama7b_meta),
]


def render(results: str) -> str:
    found = sections(results)
    lines = [
        BEGIN,
        "<!-- generated by benchmarks/measured.py from benchmarks/RESULTS.md; do not edit -->",
    ]
    for name, fn in BULLETS:
        if name in found:
            lines.append(f"- {fn(found[name])} _[{name}, {commit(name, found[name])}]_")
    return "\n".join([*lines, END])


def updated(readme: str, results: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise Missing(f"README.md has no {BEGIN} ... {END} block")
    head, rest = readme.split(BEGIN, 1)
    return head + render(results) + rest.split(END, 1)[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = ap.parse_args()
    readme, results = README.read_text(), RESULTS.read_text()
    try:
        new = updated(readme, results)
    except Missing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        if new != readme:
            print("README.md's measured list differs from benchmarks/RESULTS.md", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
